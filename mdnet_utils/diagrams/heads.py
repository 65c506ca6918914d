"""Notebooks 03-05, the ensemble read by its classifier: Eqs. (8)-(9), the heads over the last stage's members
(one shared classifier; one per member after the shared BN-ReLU, Eq. (9) exactly; one per member after a BN-ReLU
each, the variant), and Eq. (10), the ensemble-connection of an EcNet stage."""
from __future__ import annotations

from math import prod

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import nn

from mdnet_utils.diagrams.drawing import EDGE, Box, Canvas, branch_layers, layer_box
from mdnet_utils.models.config import ModelConfig, build_model
from mdnet_utils.models.decoupled import DecoupledResNet
from mdnet_utils.models.mdnet import feature_grid

__all__ = ["ensemble_heads", "ecnet_stage"]

ROW, LIGHT = 0.56, "#555555"  # the distance between two members' rows; the colour of what is not an equation


# --- Eqs. (8)-(9) ---------------------------------------------------------------------------------------------
def _label(name: str) -> str:
    """"F_12" -> calligraphic F with index 12, "h_10" -> h with index 10."""
    return f"$\\mathcal{{F}}_{{{name[2:]}}}$" if name[0] == "F" else f"${name[0]}_{{{name[2:]}}}$"


def _rows(names: list[str], top: float) -> list[tuple[str | None, float]]:
    """(member, y) of the rows drawn: every member up to 7, else the first three, None (a row of dots: those left
    out) and the last two."""
    shown = names if len(names) <= 7 else names[:3] + [None] + names[-2:]
    return [(name, top - ROW * r) for r, name in enumerate(shown)]


def _shared_head(c: Canvas, model: nn.Module, rows) -> None:
    """Eq. (8), left: the members summed into y_L, the head's one BN-ReLU, GAP and the one classifier w^c."""
    mid = (rows[0][1] + rows[-1][1]) / 2
    plus = c.sum(2.05, mid)
    c.row(mid, plus, (2.9, "BN-ReLU", "norm", 0.85), (3.75, "GAP", "pool", 0.6), (4.6, f"$w^c$: "
          f"{model.fc.in_features}→{model.fc.out_features}", "classifier", 0.95), (5.5, "$p^c$", "tensor", 0.55))
    c.text(2.05, mid - 0.45, "$y_L$", fs=8.5)
    for name, y in rows:
        if name is None:
            c.text(0.85, y, "⋮", fs=12)
        else:
            c.arrow(c.box(0.85, y, _label(name), "tensor", w=0.9, h=0.4).right, plus)


def _member_heads(c: Canvas, model: DecoupledResNet, x0: float, rows) -> Box | None:
    """A ``DecoupledResNet``'s head from x0: its members, what normalises them, then per member GAP and w_m^c,
    the scores summed into p^c. The normalisation is read from the model: ``norm == "shared"`` (Eq. (9) exactly)
    is ONE BN-ReLU box spanning every member, its statistics and gate fed by a bus that sums the members into y_L
    (returns that sum node); else one BN-ReLU box per member (the variant; returns None)."""
    names, shared = model.member_names, model.norm == "shared"
    ys = [y for _, y in rows]
    mid, xn = (ys[0] + ys[-1]) / 2, x0 + 1.8
    plus = c.sum(x0 + 4.6, mid)
    c.row(mid, plus, (x0 + 5.25, "$p^c$", "tensor", 0.55))
    c.text(plus.x + 0.33, mid + 0.42, "$+\\,b_c$", fs=8.5)
    node = None
    if shared:  # one box, the backbone's own final BN and its ReLU, over all the rows
        top, bottom = ys[0] + 0.22, ys[-1] - 0.22
        label = (f"the shared head's\none BN-ReLU\n({model.bn.num_features} ch),\n$a$, $s$ and gate $g$\n"
                 "set by the sum $y_L$,\n\napplied to every\nmember:\n$g\\,(a\\,h + s)$,  $g\\,a\\,\\mathcal{F}_m$"
                 if len(rows) > 3 else "the shared\nBN-ReLU:\n$a$, $s$, $g$\nfrom $y_L$")  # few rows: a short box
        bn = c.box(xn, (top + bottom) / 2, label, "norm", w=1.3, h=top - bottom, fs=8.5)
        bus = x0 + 0.93  # where each member also feeds the sum y_L
        node = c.sum(xn, bottom - 0.55)
        c.ax.add_line(Line2D([bus, bus], [ys[0], node.y], color=EDGE, lw=1.1, zorder=1, gid="arrow"))
        c.arrow((bus, node.y), node.left)
        c.arrow(node.top, bn.bottom)
        c.text(xn + 0.12, (node.top[1] + bn.bottom[1]) / 2, "$a$, $s$, $g$", fs=8.5, ha="left")
        c.text(node.x + 0.3, node.y, "$y_L$ = the members' sum", fs=8.5, ha="left")
    for name, y in rows:
        if name is None:
            c.text(x0 + 0.45, y, "⋮", fs=12)
            continue
        m = names.index(name)
        member, clf = c.box(x0 + 0.45, y, _label(name), "tensor", w=0.75, h=0.4), model.head.classifiers[m]
        if shared:
            c.ax.plot([bus], [y], "o", color=EDGE, ms=3.5, zorder=3)
            c.arrow(member.right, (bn.left[0], y))
            start = (bn.right[0], y)
        else:
            norm = c.box(xn, y, f"BN-ReLU$_{{{m + 1}}}$", "norm", w=1.0, h=0.4)
            c.arrow(member.right, norm.left)
            start = norm.right
        boxes = c.row(y, (x0 + 2.95, "GAP", "pool", 0.55),
                      (x0 + 3.8, f"$w^c_{{{m + 1}}}$: {clf.in_features}→{clf.out_features}", "classifier", 0.85),
                      h=0.4)
        c.arrow(start, boxes[0].left)
        c.arrow(boxes[-1].right, plus)
    return node


def ensemble_heads(depth: int = 32) -> Figure:
    """Eqs. (8)-(9): the class score of the last stage's ensemble in the pre-activation ResNet-``depth`` (notebooks
    03-04), three heads read from the built models. Eq. (8) (head "shared"): the members (the stage's projected
    input h, each residual F_m) summed into y_L, one BN-ReLU, pooling, one shared classifier w^c. Eq. (9) exactly
    (head "eq9", ``DecoupledResNet(norm="shared")``): that one BN-ReLU, its statistics and gate set by the sum y_L,
    applied to each member, then GAP and w_m^c per member, the scores summed. Below, apart: the variant (head
    "decoupled", ``norm="per-member"``), a BN-ReLU per member, which is not Eq. (9)."""
    shared = build_model(ModelConfig(backbone="resnet", depth=depth, width=1, head="shared"))
    eq9, variant = (build_model(shared.config.replace(head=h)) for h in ("eq9", "decoupled"))
    names, width = eq9.member_names, eq9.head.member_channels[0]
    side = "×".join(map(str, feature_grid(shared.config.image_size, shared.config.stem_stride)))
    n = len(_rows(names, 0))
    height = 5.8 + 2 * ROW * (n - 1)  # two sets of rows, the headings, the sum y_L, the formulas, the key
    c = Canvas(12.0, height, f"{shared.config.name}: the last stage's {len(names)} members ({width} channels, "
                             f"{side}) and three heads")
    c.eq(3.0, height - 0.8, "Eq. (8): one shared classifier $w^c$")
    c.eq(9.1, height - 0.8, "Eq. (9) exactly: the shared BN-ReLU, one $w^c_m$ per member")
    rows = _rows(names, height - 1.35)
    _shared_head(c, shared, rows)
    node = _member_heads(c, eq9, 6.2, rows)
    foot = (node.y if node else rows[-1][1] - 0.77) - 0.75  # node: the sum y_L of a shared BN-ReLU
    c.text(3.0, foot, "$p^c = w^c \\cdot \\mathrm{GAP}(\\mathrm{BNReLU}(h + {\\sum}_m \\mathcal{F}_m)) + b_c$:\n"
           "every member weighed by the same $w^c$")
    c.text(9.1, foot, "$p^c = w^c_1 \\cdot \\mathrm{GAP}(g\\,(a\\,h + s)) + {\\sum}_m w^c_{m+1} \\cdot \\mathrm{GAP}"
           "(g\\,a\\,\\mathcal{F}_m) + b_c$,\n$g = 1[\\mathrm{BN}(y_L) > 0]$: each member weighed by its own $w^c_m$; "
           "all equal: Eq. (8)", fs=8.5)
    line = foot - 0.55
    c.ax.add_line(Line2D([0.3, 11.7], [line, line], color=LIGHT, lw=0.8, ls="--", zorder=1, gid="divider"))
    c.text(6.0, line - 0.35, "Not Eq. (9): a variant with a BN-ReLU per member (head \"decoupled\", notebook 04)",
           colour=LIGHT, weight="bold")
    rows = _rows(variant.member_names, line - 0.9)
    _member_heads(c, variant, 0.4, rows)
    c.text(9.1, (rows[0][1] + rows[-1][1]) / 2,
           "each member has its own BN-ReLU$_m$:\nits own statistics, affine map and gate,\n"
           "$p^c = {\\sum}_m w^c_m \\cdot \\mathrm{GAP}(\\mathrm{BNReLU}_m(\\mathrm{member}_m)) + b_c$\n\n"
           "not Eq. (9) as written; and with every $w^c_m = w^c$\nnot Eq. (8) either: "
           "$\\mathrm{ReLU}(\\mathrm{BN}(a)) + \\mathrm{ReLU}(\\mathrm{BN}(b))"
           " \\neq \\mathrm{ReLU}(\\mathrm{BN}(a + b))$",
           fs=8.5, colour=LIGHT)
    blocks = len(names) - 1
    c.text(6.0, rows[-1][1] - 0.7, f"{_label(names[0])}: the last stage's input, pre-activated (BN-ReLU) and "
           f"projected by a strided 1×1 conv;  $\\mathcal{{F}}_m$: the residuals of its {blocks} "
           f"block{'s' * (blocks > 1)}", fs=8.5)
    return c.key()


# --- Eq. (10) -------------------------------------------------------------------------------------------------
def _shortcut(c, block, y, low, sym) -> tuple[list, int]:
    """The part of x_{l+1} that is not F_l, on the lower lane: (where its arrow to the merge starts, its channels)."""
    ds, ch = block.downsample, block.in_channels
    if ds is None and getattr(block, "pool", None) is None:  # the identity: a plain line
        c.text(5.5, low + 0.15, f"identity, ${sym}_l$ ({ch} ch)", fs=8.5)
        return [(1.65, y), (1.65, low)], ch
    box = (c.box(5.5, low, f"avg pool 2×2\n{ch} ch", "pool", w=1.3, h=0.58, fs=8.5) if ds is None  # literal, stride 2
           else c.box(5.5, low, "$P_l$: " + layer_box(ds, channels=True)[0], "conv", w=1.9, h=0.58, fs=8.5))  # P_l
    c.arrow((1.65, y), (1.65, low), box.left)
    return [box.right], ch if ds is None else ds.out_channels


def _ec_row(c, y, index, block, side, sym) -> int:
    """One EcNet block as a row: x_l, its branch F_l above (BN and ReLU in one box), its shortcut below, the
    concatenation (Eq. (10)) or the sum (Eq. (3)), x_{l+1}. Returns x_{l+1}'s side."""
    kind = "ensemble-connection, concatenation" if block.concat else "identity addition"
    c.text(0.2, y + 1.05, f"block {index}: {kind}", ha="left", weight="bold")
    src = c.box(0.8, y, f"${sym}_l$\n{block.in_channels} ch, {side}×{side}", "tensor", w=1.2, h=0.62)
    layers, boxes, x = branch_layers(block), [], 2.05
    for m in (m for m in layers if not isinstance(m, nn.ReLU)):  # each ReLU follows a BN: drawn in its box
        label, kind = ("BN\nReLU", "norm") if isinstance(m, nn.BatchNorm2d) else layer_box(m, channels=True)
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
    c = Canvas(11.8, height, f"{'Released' if released else 'Literal'} {cfg.name.replace('literal-', '')}, "
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
