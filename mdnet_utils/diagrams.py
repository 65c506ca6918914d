"""Schematic diagrams of the course's networks, drawn by code with matplotlib alone, one function per picture.

Each returns a ``matplotlib.figure.Figure`` outside pyplot (a notebook shows it once, as a cell's value). What it
shows is read from the models (a block's layer order from its forward pass, channel counts from the built network),
so it cannot silently disagree with the code. A colour means one kind of operation in every diagram (``COLOURS``).

    residual_block   Eqs. (1)-(3): the post- and the pre-activation residual block
    unrolled_paths   Eqs. (4)-(5): n blocks unroll into 2^n paths, of binomially distributed lengths
    ensemble_heads   Eqs. (8)-(9): one shared classifier for the implicit ensemble, and one per member
    ecnet_stage      Eq. (10): a stage of the released EcNet or of the literal reading, with its channel counts
    mdnet_pipeline   Eqs. (11)-(14): image, EcNet, diagnosis and CAM, attention, LSTM, report
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb, hypot, prod

import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.ticker import MaxNLocator
from torch import nn

from mdnet_utils.models.blocks import BasicBlock, PreActBasicBlock
from mdnet_utils.models.config import MODEL_PRESETS, ModelConfig, build_model
from mdnet_utils.models.mdnet import feature_grid

__all__ = ["COLOURS", "residual_block", "unrolled_paths", "ensemble_heads", "ecnet_stage", "mdnet_pipeline"]

#: kind of operation -> (its colour, the same in every diagram; its name in the key under a figure)
COLOURS = {"conv": ("#9ecae1", "convolution"), "norm": ("#fdd0a2", "normalisation (BN)"),
           "pool": ("#d9d9d9", "pooling"), "act": ("#fff2ae", "activation (ReLU)"), "sum": ("#a1d99b", "sum"),
           "concat": ("#cbc9e2", "concatenation"), "classifier": ("#fb9a99", "classifier"),
           "attention": ("#f1e2cc", "attention"), "lstm": ("#8dd3c7", "LSTM, embedding"), "tensor": ("#fff", "tensor")}
FONT, EDGE, EQ_COLOUR = 9, "#333333", "#08519c"


# --- drawing helpers: a diagram is boxes, nodes, arrows and text on one axes measured in inches ---------------
@dataclass(frozen=True)
class _Box:  # a drawn box or node: its centre and size, and the midpoints of its sides where arrows attach
    x: float
    y: float
    w: float
    h: float

    top = property(lambda s: (s.x, s.y + s.h / 2))
    bottom = property(lambda s: (s.x, s.y - s.h / 2))
    left = property(lambda s: (s.x - s.w / 2, s.y))
    right = property(lambda s: (s.x + s.w / 2, s.y))


class _Canvas:
    """A figure with one axes over all of it whose data unit is the inch (circles stay round, a gap of 0.2 is 0.2
    inch), and what every diagram draws on it: text, equation tags, boxes, sum nodes, arrows, the colour key."""

    def __init__(self, width: float, height: float, title: str):
        self.fig = Figure(figsize=(width, height))
        self.ax = self.fig.add_axes((0, 0, 1, 1), xlim=(0, width), ylim=(0, height))
        self.ax.set_axis_off()
        self.text(width / 2, height - 0.3, title, fs=11, weight="bold")

    def text(self, x, y, s, fs=FONT, colour="black", **kw):
        return self.ax.text(x, y, s, fontsize=fs, color=colour, zorder=4, **{"ha": "center", "va": "center", **kw})

    def eq(self, x, y, s, **kw):  # an equation tag, in the one colour every diagram uses for them
        return self.text(x, y, s, colour=EQ_COLOUR, weight="bold", **kw)

    def box(self, x, y, s, kind, w=1.6, h=0.45, fs=FONT) -> _Box:
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                         fc=COLOURS[kind][0], ec=EDGE, lw=1, zorder=2, gid=kind))
        self.text(x, y, s, fs=fs)
        return _Box(x, y, w, h)

    def sum(self, x, y, r=0.17) -> _Box:  # a circle with a plus (Eq. (10)'s (+), a concatenation, is a box)
        self.ax.add_patch(Circle((x, y), r, fc=COLOURS["sum"][0], ec=EDGE, lw=1, zorder=2, gid="sum"))
        self.text(x, y, "+", fs=12, weight="bold")
        return _Box(x, y, 2 * r, 2 * r)

    def arrow(self, *points) -> None:
        """An arrow along a polyline: elbows as plain lines, the head on the last segment (all gid "arrow"). A last
        point that is a (sum) node ends the arrow on its rim, facing the point before: many arrows can meet there."""
        if isinstance(node := points[-1], _Box):
            (px, py), r = points[-2], node.w / 2
            d = hypot(px - node.x, py - node.y)
            points = points[:-1] + ((node.x + r * (px - node.x) / d, node.y + r * (py - node.y) / d),)
        for p, q in zip(points[:-2], points[1:-1]):
            self.ax.add_line(Line2D([p[0], q[0]], [p[1], q[1]], color=EDGE, lw=1.1, zorder=1, gid="arrow"))
        self.ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=11, shrinkA=0,
                                          shrinkB=0, color=EDGE, lw=1.1, zorder=1, gid="arrow"))

    def row(self, y, *specs, h=0.42, fs=FONT) -> list[_Box]:
        """Boxes given as (x, label, kind, width) or already drawn, on one line, each arrowed to the next."""
        boxes = [b if isinstance(b, _Box) else self.box(b[0], y, b[1], b[2], w=b[3], h=h, fs=fs) for b in specs]
        for a, b in zip(boxes, boxes[1:]):
            self.arrow(a.right, b.left)
        return boxes

    def key(self) -> Figure:
        """The colour key under the figure (the kinds of box drawn, in the order of COLOURS); the figure."""
        handles = [Patch(fc=colour, ec=EDGE, label=name) for k, (colour, name) in COLOURS.items()
                   if k in {p.get_gid() for p in self.ax.patches}]
        self.fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8.5,
                        handlelength=1.2, columnspacing=1.2, bbox_to_anchor=(0.5, 0.0))
        return self.fig


# --- Eqs. (1)-(3) ---------------------------------------------------------------------------------------------
def _branch_layers(block) -> list[nn.Module]:
    """The leaf modules F_l runs, in the order ``branch`` calls them (hooks on a tiny input): the code's order."""
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in block.modules()
             if not list(m.children()) and not isinstance(m, nn.Identity)]
    with torch.no_grad():
        block.eval().branch(torch.zeros(1, block.in_channels, 4, 4))
    for h in hooks:
        h.remove()
    return calls


def _layer_box(module: nn.Module, channels: bool = False) -> tuple[str, str]:
    """(label, kind) of a layer's box; a convolution's label names its kernel, stride and (if asked) channels."""
    if isinstance(module, nn.Conv2d):
        k, s = module.kernel_size[0], module.stride[0]
        label = f"conv {k}×{k}" + (f", stride {s}" if s > 1 else "")
        return label + (f"\n{module.in_channels}→{module.out_channels}" if channels else ""), "conv"
    return ("BN", "norm") if isinstance(module, nn.BatchNorm2d) else (type(module).__name__, "act")


def _block_panel(c, x0, block, title) -> str:
    """One block, top to bottom: x_l, the branch's layers, the shortcut on the left, the sum (and f)."""
    cx = x0 + 2.9
    c.text(x0 + 2.6, 7.1, title, fs=10.5, weight="bold")
    top = c.box(cx, 6.6, "$x_l$", "tensor", w=1.1)
    layers = [c.box(cx, 5.75 - 0.58 * i, *_layer_box(m), h=0.42) for i, m in enumerate(_branch_layers(block))]
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
    c = _Canvas(10.4, 8.0, "The residual block: its branch $\\mathcal{F}_l$, its shortcut $h$ and what follows the sum")
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
    c = _Canvas(11.0, height, f"Unrolling {n} residual block{'s' * (n > 1)}: $2^{{{n}}} = {2 ** n}$ paths")
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


# --- Eqs. (8)-(9) ---------------------------------------------------------------------------------------------
def ensemble_heads(depth: int = 32) -> Figure:
    """Eqs. (8)-(9): the class score of the last stage's ensemble in the pre-activation ResNet-``depth`` (notebook 04).
    Eq. (8): the members (the stage's projected input h, each residual F_m) summed into y_L, one BN-ReLU, pooling and
    shared classifier w^c. Eq. (9), ``DecoupledResNet``: per member a BN-ReLU, pooling, w_m^c; the scores summed."""
    shared = build_model(ModelConfig(backbone="resnet", depth=depth, width=1, head="shared"))
    decoupled = build_model(shared.config.replace(head="decoupled"))
    names, width = decoupled.member_names, decoupled.head.member_channels[0]
    classes = decoupled.head.classifiers[0].out_features
    side = "×".join(map(str, feature_grid(shared.config.image_size, shared.config.stem_stride)))
    label = {name: f"$\\mathcal{{F}}_{{{name[2:]}}}$" if name[0] == "F" else f"${name[0]}_{{{name[2:]}}}$"
             for name in names}  # "F_12" -> calligraphic F with index 12, "h_10" -> h with index 10
    rows = names if len(names) <= 7 else names[:3] + [None] + names[-2:]  # None: the rows left out
    height = 3.0 + 0.62 * len(rows)
    c = _Canvas(12.0, height, f"{shared.config.name}: the last stage's {len(names)} members ({width} channels, "
                              f"{side}) and the classifier")
    ys = [height - 1.35 - 0.62 * r for r in range(len(rows))]
    mid = sum(ys) / len(ys)
    c.eq(3.0, height - 0.8, "Eq. (8): one shared classifier $w^c$")
    c.eq(9.0, height - 0.8, "Eq. (9): one classifier $w^c_m$ per member")
    plus, dplus = c.sum(2.05, mid), c.sum(10.65, mid)
    c.row(mid, plus, (2.9, "BN-ReLU", "norm", 0.85), (3.75, "GAP", "pool", 0.6), (4.6, f"$w^c$: "
          f"{shared.fc.in_features}→{shared.fc.out_features}", "classifier", 0.95), (5.5, "$p^c$", "tensor", 0.55))
    c.row(mid, dplus, (11.5, "$p^c$", "tensor", 0.55))
    c.text(2.05, mid - 0.45, "$y_L$", fs=8.5)
    c.text(11.0, mid + 0.45, "$+\\,b_c$", fs=8.5)
    for name, y in zip(rows, ys):
        if name is None:  # the rows left out
            c.text(0.85, y, "⋮", fs=12)
            c.text(6.85, y, "⋮", fs=12)
            continue
        m = names.index(name) + 1
        member = c.box(0.85, y, label[name], "tensor", w=0.9, h=0.42)
        c.arrow(member.right, plus)
        boxes = c.row(y, (6.85, label[name], "tensor", 0.9), (7.95, f"BN-ReLU$_{{{m}}}$", "norm", 1.0),
                      (8.85, "GAP", "pool", 0.55), (9.7, f"$w^c_{{{m}}}$: {width}→{classes}", "classifier", 0.85))
        c.arrow(boxes[-1].right, dplus)
    foot = min(ys) - 0.75
    c.text(3.0, foot, "$p^c = w^c \\cdot \\mathrm{GAP}(\\mathrm{BNReLU}(h + {\\sum}_m \\mathcal{F}_m)) + b_c$:\n"
           "every member weighed by the same $w^c$")
    c.text(9.0, foot, "$p^c = {\\sum}_m w^c_m \\cdot \\mathrm{GAP}(\\mathrm{BNReLU}_m(\\mathrm{member}_m)) + b_c$:\n"
           "each member weighed by its own $w^c_m$")
    c.text(6.0, foot - 0.65, f"{label[names[0]]}: the last stage's input, pre-activated (BN-ReLU) and projected by "
           f"a strided 1×1 conv;  $\\mathcal{{F}}_m$: the residuals of its {len(names) - 1} blocks", fs=8.5)
    return c.key()


# --- Eq. (10) -------------------------------------------------------------------------------------------------
def _shortcut(c, block, y, low, sym) -> tuple[list, int]:
    """The part of x_{l+1} that is not F_l, on the lower lane: (where its arrow to the merge starts, its channels)."""
    ds, ch = block.downsample, block.in_channels
    if ds is None and getattr(block, "pool", None) is None:  # the identity: a plain line
        c.text(5.5, low + 0.15, f"identity, ${sym}_l$ ({ch} ch)", fs=8.5)
        return [(1.65, y), (1.65, low)], ch
    box = (c.box(5.5, low, f"avg pool 2×2\n{ch} ch", "pool", w=1.3, h=0.58, fs=8.5) if ds is None  # literal, stride 2
           else c.box(5.5, low, "$P_l$: " + _layer_box(ds, channels=True)[0], "conv", w=1.9, h=0.58, fs=8.5))  # P_l
    c.arrow((1.65, y), (1.65, low), box.left)
    return [box.right], ch if ds is None else ds.out_channels


def _ec_row(c, y, index, block, side, sym) -> int:
    """One EcNet block as a row: x_l, its branch F_l above (BN and ReLU in one box), its shortcut below, the
    concatenation (Eq. (10)) or the sum (Eq. (3)), x_{l+1}. Returns x_{l+1}'s side."""
    kind = "ensemble-connection, concatenation" if block.concat else "identity addition"
    c.text(0.2, y + 1.05, f"block {index}: {kind}", ha="left", weight="bold")
    src = c.box(0.8, y, f"${sym}_l$\n{block.in_channels} ch, {side}×{side}", "tensor", w=1.2, h=0.62)
    layers, boxes, x = _branch_layers(block), [], 2.05
    for m in (m for m in layers if not isinstance(m, nn.ReLU)):  # each ReLU follows a BN: drawn in its box
        label, kind = ("BN\nReLU", "norm") if isinstance(m, nn.BatchNorm2d) else _layer_box(m, channels=True)
        w = 0.6 if kind == "norm" else 1.3
        boxes.append(c.box(x + w / 2, y + 0.55, label, kind, w=w, h=0.58, fs=8.5))
        x += w + 0.22
    c.arrow(src.right, (1.65, y), (1.65, boxes[0].y), boxes[0].left)
    c.row(y, *boxes)
    low, mx = y - 0.6, x + 0.35
    start, h_ch = _shortcut(c, block, y, low, sym)
    merge = (c.box(mx, y, f"concat\n{block.branch_channels}+{h_ch}", "concat", w=0.9, h=0.62, fs=8.5)
             if block.concat else c.sum(mx, y))
    c.eq(mx + 0.45, y + 0.55, "Eq. (10)" if block.concat else "Eq. (3)", ha="left")
    c.arrow(boxes[-1].right, (mx, boxes[-1].y), merge.top)
    c.arrow(*start, (mx, low), merge.bottom)
    out = side // block.stride
    c.row(y, merge, (mx + 1.3, f"${sym}_{{l+1}}$\n{block.out_channels} ch, {out}×{out}", "tensor", 1.3), h=0.62)
    return out


def ecnet_stage(variant: str = "released", stage: int = 3, *, depth: int | None = None,
                width: int | None = None) -> Figure:
    """Eq. (10): one stage of an EcNet, block by block, with the channel counts of the built network (64-pixel input).
    "released" (``ecnet``, default EcNet-20-4, MDNet's): the stage's first block concatenates its branch with a strided
    1x1 projection P_l of its input, the blocks after it add (Eq. (3)). "literal" (``literal_ecnet``, default
    literal EcNet-11-6, notebook 05): every block concatenates its branch to its input; the width grows."""
    if variant not in ("released", "literal") or stage not in (1, 2, 3):
        raise ValueError(f"variant={variant!r}, stage={stage!r}: use 'released' or 'literal', and stage 1, 2 or 3.")
    released = variant == "released"
    cfg = ModelConfig(backbone="ecnet" if released else "ecnet-literal", depth=depth or (20 if released else 11),
                      width=width or (4 if released else 6))
    model, n = build_model(cfg), (cfg.depth - 2) // 9
    blocks, first = list(model.blocks), (stage - 1) * n
    side = cfg.image_size // model.stem.stride[0] // prod(b.stride for b in blocks[:first])
    height = 2.2 + 2.35 * min(n, 2)
    c = _Canvas(11.8, height, f"{'Released' if released else 'Literal'} {cfg.name.replace('literal-', '')}, "
                              f"stage {stage} of 3")
    c.eq(5.9, height - 0.7, "Eq. (10) at the stage's first block, $x_{l+1} = \\mathcal{F}_l(x_l) \\oplus P_l(x_l)$, "
         "Eq. (3) in the blocks after it" if released else "Eq. (10) at every block: $y_{l+1} = \\mathcal{F}_l(y_l) "
         "\\oplus y_l$, the width grows block by block", fs=9.5)
    for r in range(min(n, 2)):
        side = _ec_row(c, height - 2.1 - 2.35 * r, first + r, blocks[first + r], side, "x" if released else "y")
    ins = [blocks[s * n].in_channels for s in range(3)] + [model.num_features]
    notes = ["$\\oplus$: concatenation along channels, the branch's channels first"]
    if n > 2:
        notes.append(f"then {n - 2} more block{'s' * (n > 3)} like the last row"
                     f"{'' if released else ', each adding its branch'}: the stage ends at {ins[stage]} ch")
    if released and blocks[first].branch_channels != 16 * cfg.width * 2 ** (stage - 1):
        notes.append(f"stage 3's branches are half their nominal 64k = {64 * cfg.width} (as released), so the "
                     f"stage runs at {ins[stage]} ch like stage 2")
    notes.append(f"the whole net: stem conv 3×3 3→{ins[0]}   " + "   ".join(f"stage {s + 1}: {ins[s]}→{ins[s + 1]}"
                 for s in range(3)) + f"   head BN-ReLU, GAP, linear {model.fc.in_features}→{model.fc.out_features}")
    for i, note in enumerate(notes):
        c.text(5.9, 0.5 + 0.27 * (len(notes) - i), note, fs=8.5)
    return c.key()


# --- Eqs. (11)-(14) -------------------------------------------------------------------------------------------
def mdnet_pipeline(depth: int = 20, width: int = 4, image_size: int = 64) -> Figure:
    """Eqs. (11)-(14): MDNet (``models.config.mdnet``), sizes read from the built model. The EcNet's features C(I)
    give the class scores (arg max: the diagnosis); the CAM c of the predicted class steers the attention a_t
    (Eq. (14)), which weighs C(I)'s positions into the context z_t (Eq. (13)); the LSTM (Eq. (12)) reads z_t and
    the previous word and gives the next word's distribution (Eq. (11)), word after word: the report."""
    cfg = MODEL_PRESETS["mdnet"].replace(depth=depth, width=width, image_size=image_size, vocab_size=8)
    model = build_model(cfg)  # vocab_size 8 is a placeholder: the vocabulary comes with the data (drawn as V)
    im, dec, name, s = model.image_model, model.decoder, cfg.name.split("+")[0], cfg.image_size
    gh, gw = feature_grid(cfg.image_size, cfg.stem_stride)
    d, n, classes = im.num_features, dec.attention.num_positions, im.fc.out_features
    c = _Canvas(12.0, 7.9, f"MDNet ({name} + CAM attention): one image in, a diagnosis and a report out")
    c.text(0.2, 7.2, "image model", ha="left", colour="#555555", style="italic")
    c.text(0.2, 4.1, "language model, one word per step $t$", ha="left", colour="#555555", style="italic")
    _, _, feats, clf, _, _ = c.row(
        6.5, (0.85, f"image $I$\n3×{s}×{s}", "tensor", 1.3), (2.75, f"{name}\nEq. (10)", "conv", 1.7),
        (4.95, f"$C(I)$: {gh}×{gw} = {n} positions\n× {d} channels", "tensor", 2.0),
        (7.25, f"GAP + linear $w^c$\n{im.fc.in_features}→{classes}, Eq. (7)", "classifier", 1.8),
        (9.25, f"scores $p^c$\n{classes} classes", "tensor", 1.3),
        (11.05, f"diagnosis $\\hat{{c}}$\none of {classes}", "tensor", 1.5), h=0.62)
    embed, lstm, _, word, _ = c.row(
        1.55, (0.85, f"embedding\n$E\\, x_{{t-1}}$: {dec.embedding.embedding_dim}", "lstm", 1.3),
        (3.35, f"LSTM, Eq. (12), {dec.hidden_dim} units\n$h_t = \\mathrm{{LSTM}}(E\\, x_{{t-1}}, h_{{t-1}}, z_t)$",
         "lstm", 2.9), (6.45, "linear + softmax, Eq. (11)\n$p(x_t \\mid I, x_{0:t-1})$ over V words", "classifier",
                        2.7),
        (8.65, "word $x_t$", "tensor", 1.0), (10.7, "report\n$x_1 \\dots x_T$", "tensor", 1.6), h=0.68)
    cam = c.box(6.4, 5.0, f"CAM of $\\hat{{c}}$:  $c = (w^{{\\hat{{c}}}})^\\top C(I)$\n{gh}×{gw}, gradient stopped",
                "tensor", w=2.6, h=0.62)
    att = c.box(6.4, 3.3, "attention, Eq. (14)\n$a_t = \\mathrm{softmax}(W_{\\mathrm{att}}\\,\\tanh(W_h\\, "
                "h_{t-1} + c))$", "attention", w=3.3, h=0.68)
    ctx = c.box(3.2, 3.3, f"context, Eq. (13)\n$z_t = a_t\\, C(I)$: {d}", "attention", w=2.0, h=0.68)
    for points in (((5.5, feats.bottom[1]), (5.5, cam.top[1])), ((7.25, clf.bottom[1]), (7.25, cam.top[1])),
                   (cam.bottom, att.top), (att.left, ctx.right), ((4.3, feats.bottom[1]), (3.6, ctx.top[1])),
                   ((3.2, ctx.bottom[1]), (3.2, lstm.top[1])), ((4.5, lstm.top[1]), (5.3, att.bottom[1])),
                   (word.bottom, (word.x, 0.75), (embed.x, 0.75), embed.bottom)):
        c.arrow(*points)
    for x, y, label, ha in ((10.15, 6.95, "arg max", "center"), (4.47, 3.5, "$a_t$", "center"),
                            (7.35, 5.75, "$w^{\\hat{c}}$: the weights of the predicted class", "left"),
                            (6.5, 4.2, f"$c$, standardised ({n} values)", "left"), (3.1, 2.55, "$z_t$", "right"),
                            (4.95, 1.75, "$h_t$", "center"), (5.05, 2.35, "$h_{t-1}$, at the next step", "left"),
                            (5.0, 0.93, "at the next step, $x_t$ becomes $x_{t-1}$", "center"),
                            (10.45, 0.93, "Eq. (11): $\\log p(x_{0:T} \\mid I) = {\\sum}_t \\log p(x_t \\mid I, "
                                          "x_{0:t-1})$", "center")):
        c.text(x, y, label, fs=8.5, ha=ha)
    return c.key()
