"""What every schematic diagram is drawn with: a canvas measured in inches, boxes, sum nodes, arrows, text, the
colour key, and the boxes a model's layers become (read from the model itself, so a picture cannot disagree with
the code). A colour means one kind of operation in every diagram (``COLOURS``)."""
from __future__ import annotations

from dataclasses import dataclass
from math import hypot

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch
from torch import nn

__all__ = ["COLOURS", "FONT", "EDGE", "EQ_COLOUR", "Box", "Canvas", "branch_layers", "layer_box"]

#: kind of operation -> (its colour, the same in every diagram; its name in the key under a figure)
COLOURS = {"conv": ("#9ecae1", "convolution"), "norm": ("#fdd0a2", "normalisation (BN)"),
           "pool": ("#d9d9d9", "pooling"), "act": ("#fff2ae", "activation (ReLU)"), "sum": ("#a1d99b", "sum"),
           "concat": ("#cbc9e2", "concatenation"), "classifier": ("#fb9a99", "classifier"),
           "attention": ("#f1e2cc", "attention"), "lstm": ("#8dd3c7", "LSTM, embedding"), "tensor": ("#fff", "tensor")}
FONT, EDGE, EQ_COLOUR = 9, "#333333", "#08519c"


# --- drawing helpers: a diagram is boxes, nodes, arrows and text on one axes measured in inches ---------------
@dataclass(frozen=True)
class Box:  # a drawn box or node: its centre and size, and the midpoints of its sides where arrows attach
    x: float
    y: float
    w: float
    h: float

    top = property(lambda s: (s.x, s.y + s.h / 2))
    bottom = property(lambda s: (s.x, s.y - s.h / 2))
    left = property(lambda s: (s.x - s.w / 2, s.y))
    right = property(lambda s: (s.x + s.w / 2, s.y))


class Canvas:
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

    def box(self, x, y, s, kind, w=1.6, h=0.45, fs=FONT) -> Box:
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0,rounding_size=0.06",
                                         fc=COLOURS[kind][0], ec=EDGE, lw=1, zorder=2, gid=kind))
        self.text(x, y, s, fs=fs)
        return Box(x, y, w, h)

    def sum(self, x, y, r=0.17) -> Box:  # a circle with a plus (Eq. (10)'s (+), a concatenation, is a box)
        self.ax.add_patch(Circle((x, y), r, fc=COLOURS["sum"][0], ec=EDGE, lw=1, zorder=2, gid="sum"))
        self.text(x, y, "+", fs=12, weight="bold")
        return Box(x, y, 2 * r, 2 * r)

    def arrow(self, *points) -> None:
        """An arrow along a polyline: elbows as plain lines, the head on the last segment (all gid "arrow"). A last
        point that is a (sum) node ends the arrow on its rim, facing the point before: many arrows can meet there."""
        if isinstance(node := points[-1], Box):
            (px, py), r = points[-2], node.w / 2
            d = hypot(px - node.x, py - node.y)
            points = points[:-1] + ((node.x + r * (px - node.x) / d, node.y + r * (py - node.y) / d),)
        for p, q in zip(points[:-2], points[1:-1]):
            self.ax.add_line(Line2D([p[0], q[0]], [p[1], q[1]], color=EDGE, lw=1.1, zorder=1, gid="arrow"))
        self.ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=11, shrinkA=0,
                                          shrinkB=0, color=EDGE, lw=1.1, zorder=1, gid="arrow"))

    def row(self, y, *specs, h=0.42, fs=FONT) -> list[Box]:
        """Boxes given as (x, label, kind, width) or already drawn, on one line, each arrowed to the next."""
        boxes = [b if isinstance(b, Box) else self.box(b[0], y, b[1], b[2], w=b[3], h=h, fs=fs) for b in specs]
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



# --- a model's layers as boxes ------------------------------------------------------------------------------
def branch_layers(block) -> list[nn.Module]:
    """The leaf modules F_l runs, in the order ``branch`` calls them (hooks on a tiny input): the code's order."""
    calls: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m)) for m in block.modules()
             if not list(m.children()) and not isinstance(m, nn.Identity)]
    with torch.no_grad():
        block.eval().branch(torch.zeros(1, block.in_channels, 4, 4))
    for h in hooks:
        h.remove()
    return calls


def layer_box(module: nn.Module, channels: bool = False) -> tuple[str, str]:
    """(label, kind) of a layer's box; a convolution's label names its kernel, stride and (if asked) channels."""
    if isinstance(module, nn.Conv2d):
        k, s = module.kernel_size[0], module.stride[0]
        label = f"conv {k}×{k}" + (f", stride {s}" if s > 1 else "")
        return label + (f"\n{module.in_channels}→{module.out_channels}" if channels else ""), "conv"
    return ("BN", "norm") if isinstance(module, nn.BatchNorm2d) else (type(module).__name__, "act")
