"""Notebooks 01-02, the residual network: Eqs. (1)-(3), its block (post- and pre-activation), and Eqs. (4)-(5), its
unrolling into 2^n paths."""
from __future__ import annotations

from math import comb

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mdnet_utils.diagrams.drawing import EDGE, Canvas, branch_layers, layer_box
from mdnet_utils.models.blocks import BasicBlock, PreActBasicBlock

__all__ = ["residual_block", "unrolled_paths"]


# --- Eqs. (1)-(3) ---------------------------------------------------------------------------------------------
def _block_panel(c, x0, block, title) -> str:
    """One block, top to bottom: x_l, the branch's layers, the shortcut on the left, the sum (and f)."""
    cx = x0 + 2.9
    c.text(x0 + 2.6, 7.1, title, fs=10.5, weight="bold")
    top = c.box(cx, 6.6, "$x_l$", "tensor", w=1.1)
    layers = [c.box(cx, 5.75 - 0.58 * i, *layer_box(m), h=0.42) for i, m in enumerate(branch_layers(block))]
    c.ax.plot([cx], [6.1], "o", color=EDGE, ms=4, zorder=3)  # where the shortcut leaves the stream
    for a, b in zip([top] + layers, layers):
        c.arrow(a.bottom, b.top)
    plus = c.sum(cx, layers[-1].bottom[1] - 0.45)
    c.arrow(layers[-1].bottom, plus.top)
    c.arrow((cx, 6.1), (cx - 1.55, 6.1), (cx - 1.55, plus.y), plus.left)
    c.text(cx - 1.72, (6.1 + plus.y) / 2, "identity shortcut   $h(x_l) = x_l$", rotation=90)
    bx, y1, y2 = cx + 0.95, layers[0].top[1], layers[-1].bottom[1]  # a bracket names the residual branch
    c.ax.plot([bx - 0.07, bx, bx, bx - 0.07], [y1, y1, y2, y2], color=EDGE, lw=1)
    c.text(bx + 0.1, (y1 + y2) / 2, "$\\mathcal{F}_l(x_l)$\nresidual\nbranch", ha="left")
    out = c.box(cx, 1.25, "$x_{l+1}$", "tensor", w=1.1)
    c.eq(plus.x + 0.3, plus.y, "Eq. (3)" if block.preact else "Eq. (1)", ha="left")
    if block.preact:
        c.arrow(plus.bottom, out.top)
        c.text(cx + 0.15, (plus.y + out.y) / 2 - 0.05, "nothing after the sum:\n$f$ = identity", fs=8.5, ha="left")
        return "$x_{l+1} = x_l + \\mathcal{F}_l(x_l)$   Eq. (3)"
    relu = c.box(cx, 2.0, "ReLU = $f$", "act", w=1.1, h=0.42)
    c.eq(relu.right[0] + 0.15, relu.y, "Eq. (2)", ha="left")
    c.arrow(plus.bottom, relu.top)
    c.arrow(relu.bottom, out.top)
    return "$y_l = \\mathcal{F}_l(x_l) + h(x_l)$  (1),   $x_{l+1} = f(y_l)$  (2)"


def residual_block() -> Figure:
    """Eqs. (1)-(3): the residual block, post-activation (``BasicBlock``: conv-BN-ReLU-conv-BN, the sum, then
    f = ReLU; Eqs. (1)-(2)) beside pre-activation (``PreActBasicBlock``: BN-ReLU-conv-BN-ReLU-conv, the sum, nothing
    after it; Eq. (3)). The layers are those ``branch`` runs, in its order; h is the identity (shape kept)."""
    c = Canvas(10.4, 8.0, "The residual block: its branch $\\mathcal{F}_l$, its shortcut $h$ and what follows the sum")
    for i, cls in enumerate([BasicBlock, PreActBasicBlock]):
        name = "pre-activation (He et al. 2016)" if cls.preact else "post-activation (He et al. 2015)"
        c.text(5.2 * i + 2.6, 0.55, _block_panel(c, 5.2 * i, cls(16, 16), name), fs=10)
    return c.key()


# --- Eqs. (4)-(5) ---------------------------------------------------------------------------------------------
def _compact_chain(c, y, n, step):
    """The residual network as built: x_0, then per block an F_i above the stream and a sum (Eq. (3))."""
    prev = c.box(0.6, y, "$x_0$", "tensor", w=0.55, h=0.38).right
    for i in range(n):
        plus = c.sum(0.9 + (i + 1) * step, y, r=0.14)
        f = c.box(plus.x - step / 2, y + 0.55, f"$\\mathcal{{F}}_{{{i}}}$", "conv", w=0.6, h=0.36)
        c.arrow(prev, plus.left)
        c.arrow((prev[0] + 0.12, y), (prev[0] + 0.12, f.y), f.left)
        c.arrow(f.right, (plus.x, f.y), plus.top)
        prev = plus.right
    c.arrow(prev, c.box(prev[0] + 0.55, y, f"$x_{{{n}}}$", "tensor", w=0.55, h=0.38).left)


def _length_bars(fig, rect, n, colour):
    """The path-length distribution: C(n, k) paths through k residual branches (the axes' gid: "path-lengths")."""
    bars = fig.add_axes(rect, gid="path-lengths")
    heights = [comb(n, k) for k in range(n + 1)]
    bars.bar_label(bars.bar(range(n + 1), heights, color=colour, edgecolor=EDGE), fontsize=8.5)
    bars.set(title=f"path lengths: $\\binom{{{n}}}{{k}}$ paths\nthrough k residual branches", xticks=range(n + 1),
             xlabel="k (branches on the path)", ylabel="number of paths", ylim=(0, max(heights) * 1.2))
    bars.yaxis.set_major_locator(MaxNLocator(integer=True))  # path counts are whole numbers


def unrolled_paths(n_blocks: int = 3) -> Figure:
    """Eqs. (4)-(5): unrolled, n residual blocks are 2^n paths from x_0 to x_n, each through a block's branch or
    skipping it. Left: the network as built, then every path, one row each (gid "path"), grouped by the number k of
    branches it goes through; right: the path-length distribution, C(n, k) paths of length k (Veit et al. 2016)."""
    if not isinstance(n_blocks, int) or isinstance(n_blocks, bool) or not 1 <= n_blocks <= 5:
        raise ValueError(f"n_blocks={n_blocks!r}: draw 1 to 5 blocks (2 to 32 paths, one row each).")
    n, rh = n_blocks, 0.36 if n_blocks <= 4 else 0.27
    height = 4.3 + 2 ** n * rh  # the chain, the equation, one row per path, the footnote and the key
    c = Canvas(11.0, height, f"Unrolling {n} residual block{'s' * (n > 1)}: $2^{{{n}}} = {2 ** n}$ paths")
    _compact_chain(c, height - 1.45, n, min(1.5, 5.0 / n))
    c.eq(0.3, height - 2.2, f"Eq. (5):  $x_{{{n}}} = x_0 + {{\\sum}}_{{i=0}}^{{{n - 1}}} \\mathcal{{F}}_i(x_i)$",
         ha="left")
    c.text(0.3, height - 2.5, "and each $x_i$ is a sum itself (Eq. (4)); unrolled, one path per choice at every "
           "block: skip it or go through its branch", ha="left")
    colour = [colormaps["viridis"](0.05 + 0.65 * k / n) for k in range(n + 1)]
    paths = sorted((tuple((p >> (n - 1 - i)) & 1 for i in range(n)) for p in range(2 ** n)), key=sum)
    xs, y0 = [1.4 + (i + 0.5) * 4.4 / n for i in range(n)], height - 2.85
    for i, x in enumerate(xs):
        c.text(x, y0, f"block {i}", fs=8.5, colour="#555555")
    for r, path in enumerate(paths):
        y, k = y0 - 0.35 - r * rh, sum(path)
        c.ax.add_line(Line2D([1.1, 6.1], [y, y], color=colour[k], lw=2, zorder=1, gid="path"))
        c.text(0.95, y, "$x_0$", fs=8.5, ha="right")
        c.text(6.25, y, f"$x_{{{n}}}$", fs=8.5, ha="left")
        for i in (i for i, through in enumerate(path) if through):
            c.box(xs[i], y, f"$\\mathcal{{F}}_{{{i}}}$", "conv", w=0.5, h=rh * 0.78, fs=8.5)
        if r == 0 or sum(paths[r - 1]) != k:  # one bracket per path length k
            m = comb(n, k)
            top, bottom = y + rh * 0.4, y - (m - 1) * rh - rh * 0.4
            c.ax.plot([6.7, 6.78, 6.78, 6.7], [top, top, bottom, bottom], color=colour[k], lw=1.5)
            c.text(6.9, (top + bottom) / 2, f"k = {k}: {m} path{'s' * (m > 1)}", ha="left", colour=colour[k])
    _length_bars(c.fig, (8.6 / 11, 1.2 / height, 2.1 / 11, (height - 2.9) / height), n, colour)
    c.text(3.6, 0.6, "a line: the stream skips the block ($h$ = identity);  a box: the path goes through its "
           "residual branch", fs=8.5)
    return c.key()
