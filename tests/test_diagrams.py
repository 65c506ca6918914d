"""The schematic diagrams show what the code does: each renders off screen, labels every equation its docstring
names, keeps its labels apart and its arrows off them, and every number it prints (paths, channel counts, sizes)
is the one the built model has."""
import re
from itertools import combinations
from math import comb

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from mdnet_utils import diagrams  # noqa: E402
from mdnet_utils.diagrams import heads  # noqa: E402
from mdnet_utils.models import ModelConfig, build_model, ecnet, feature_grid, literal_ecnet, mdnet  # noqa: E402

torch.set_num_threads(1)

DIAGRAMS = ["residual_block", "unrolled_paths", "ensemble_heads", "ecnet_stage", "mdnet_pipeline"]


@pytest.fixture(scope="module")
def figures():
    """Each diagram with its defaults, built and rendered once for the module (they are not pyplot's: nothing to
    close there; clearing them frees them)."""
    figs = {name: getattr(diagrams, name)() for name in DIAGRAMS}
    for fig in figs.values():
        rendered(fig)
    yield figs
    for fig in figs.values():
        fig.clear()


def rendered(fig: Figure):
    """Draw ``fig`` with Agg (the checks below need the text extents); its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def all_texts(fig: Figure) -> list[str]:
    """Every string on the figure: labels, titles, bar labels, tick labels, the colour key."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def claimed_equations(function) -> list[int]:
    """The equation numbers a docstring starts with: "Eqs. (1)-(3): ..." -> [1, 2, 3]; "Eq. (10): ..." -> [10]."""
    match = re.match(r"Eqs?\. \((\d+)\)(?:-\((\d+)\))?", function.__doc__)
    first, last = int(match[1]), int(match[2] or match[1])
    return list(range(first, last + 1))


def layout_faults(fig: Figure) -> list[str]:
    """Labels of the diagram's axes that overlap each other or leave the figure, and arrows (gid "arrow") that
    pass through a label. ``fig`` must have been rendered (``rendered``)."""
    renderer, ax = fig.canvas.get_renderer(), fig.axes[0]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts if t.get_text().strip()]
    faults = [f"{a!r} overlaps {b!r}" for (a, ba), (b, bb) in combinations(boxes, 2) if ba.overlaps(bb)]
    faults += [f"{s!r} leaves the figure" for s, b in boxes
               if b.x0 < 0 or b.y0 < 0 or b.x1 > fig.bbox.width or b.y1 > fig.bbox.height]
    for artist in (a for a in ax.get_children() if a.get_gid() == "arrow"):
        path = artist.get_path() if isinstance(artist, FancyArrowPatch) else Path(artist.get_xydata())
        for vertices in path.transformed(artist.get_transform()).to_polygons(closed_only=False):
            x, y = np.concatenate([np.linspace(p, q, 40) for p, q in zip(vertices, vertices[1:])]).T
            for s, b in boxes:
                inner = b.shrunk(0.9, 0.8)   # the ink, not the padding around it
                if np.any((x > inner.x0) & (x < inner.x1) & (y > inner.y0) & (y < inner.y1)):
                    faults.append(f"an arrow crosses {s!r}")
    return faults


# --- every diagram ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DIAGRAMS)
def test_a_diagram_renders_and_labels_every_equation_its_docstring_names(figures, name):
    fig = figures[name]
    assert isinstance(fig, Figure) and 8 <= fig.get_figwidth() <= 12
    assert isinstance(fig.canvas, FigureCanvasAgg) and fig.canvas.get_renderer().width > 0   # drawn by the fixture
    text = " ".join(all_texts(fig))
    missing = [k for k in claimed_equations(getattr(diagrams, name)) if f"({k})" not in text]
    assert not missing, f"{name} names Eqs. {missing} in its docstring but not on the figure"


@pytest.mark.parametrize("name", DIAGRAMS)
def test_labels_do_not_overlap_and_arrows_do_not_cross_them(figures, name):
    assert layout_faults(figures[name]) == []


@pytest.mark.parametrize("name", DIAGRAMS)
def test_a_colour_means_one_kind_of_operation_and_the_key_lists_those_drawn(figures, name):
    fig = figures[name]
    kinds = {p.get_gid() for p in fig.axes[0].patches} & set(diagrams.COLOURS)
    for patch in (p for p in fig.axes[0].patches if p.get_gid() in diagrams.COLOURS):
        assert matplotlib.colors.same_color(patch.get_facecolor(), diagrams.COLOURS[patch.get_gid()][0])
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert key == [label for kind, (_, label) in diagrams.COLOURS.items() if kind in kinds]


def test_a_diagram_is_not_left_open_in_pyplot():
    before = plt.get_fignums()
    fig = diagrams.unrolled_paths(2)
    assert plt.get_fignums() == before    # nothing for a notebook to show twice, nothing to close
    fig.clear()


def test_the_layout_check_finds_overlaps_and_crossings():
    fig = Figure(figsize=(4, 2))
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, 4), ylim=(0, 2))
    ax.text(1, 1, "a label", ha="center", va="center", fontsize=10)
    ax.text(1.1, 1, "another", ha="center", va="center", fontsize=10)
    ax.text(3.9, 1.9, "far out", fontsize=10)
    ax.add_patch(FancyArrowPatch((0.2, 1.0), (1.9, 1.0), arrowstyle="-|>", gid="arrow"))
    rendered(fig)
    faults = layout_faults(fig)
    assert "'a label' overlaps 'another'" in faults and "'far out' leaves the figure" in faults
    assert "an arrow crosses 'a label'" in faults


def test_claimed_equations_reads_single_equations_and_ranges():
    assert claimed_equations(diagrams.residual_block) == [1, 2, 3]
    assert claimed_equations(diagrams.ecnet_stage) == [10]
    assert claimed_equations(diagrams.mdnet_pipeline) == [11, 12, 13, 14]


# --- each diagram's content -------------------------------------------------------------------------------------
def test_the_residual_blocks_draw_the_layers_their_branch_runs_and_f_only_after_the_post_activation_sum(figures):
    fig = figures["residual_block"]
    layers = {"conv 3×3", "BN", "ReLU", "ReLU = $f$"}
    boxes = [t for t in fig.axes[0].texts if t.get_text() in layers]
    left = [t.get_text() for t in sorted(boxes, key=lambda t: -t.get_position()[1]) if t.get_position()[0] < 5.2]
    right = [t.get_text() for t in sorted(boxes, key=lambda t: -t.get_position()[1]) if t.get_position()[0] > 5.2]
    assert left == ["conv 3×3", "BN", "ReLU", "conv 3×3", "BN", "ReLU = $f$"]     # Eqs. (1)-(2): f = ReLU after +
    assert right == ["BN", "ReLU", "conv 3×3", "BN", "ReLU", "conv 3×3"]          # Eq. (3): nothing after the sum
    labels = all_texts(fig)
    assert labels.count("identity shortcut   $h(x_l) = x_l$") == 2
    assert labels.count("$\\mathcal{F}_l(x_l)$\nresidual\nbranch") == 2


@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_blocks_unroll_into_2_to_the_n_paths_whose_lengths_are_binomial(n):
    fig = diagrams.unrolled_paths(n)
    ax = fig.axes[0]
    assert sum(line.get_gid() == "path" for line in ax.lines) == 2 ** n
    residuals = [t for t in ax.texts if re.fullmatch(r"\$\\mathcal\{F\}_\{\d+\}\$", t.get_text())]
    assert len(residuals) == n + n * 2 ** (n - 1)   # the network as built, then k boxes on each path of length k
    bars = next(a for a in fig.axes if a.get_gid() == "path-lengths")
    assert [p.get_height() for p in bars.patches] == [comb(n, k) for k in range(n + 1)]
    assert sum(p.get_height() for p in bars.patches) == 2 ** n
    fig.clear()


@pytest.mark.parametrize("bad", [0, 6, True, 2.0])
def test_unrolled_paths_refuses_what_it_cannot_draw(bad):
    with pytest.raises(ValueError, match="n_blocks"):
        diagrams.unrolled_paths(bad)


def heads_panels(fig: Figure) -> dict[str, dict]:
    """``ensemble_heads``' three panels: "eq8" (top left), "eq9" (top right), "variant" (under the dashed line, gid
    "divider"); each as {"kinds": the kind (gid) of every box and node, "boxes": (kind, extent in inches) of each,
    "texts": its labels}. ``fig`` must have been rendered."""
    ax = fig.axes[0]
    dividers = [line for line in ax.lines if line.get_gid() == "divider"]
    assert len(dividers) == 1, "the variant is set apart by one dashed line"
    cut = dividers[0].get_ydata()[0]

    def panel(x, y):
        return "variant" if y < cut else "eq8" if x < 6 else "eq9"

    panels = {name: {"kinds": [], "boxes": [], "texts": []} for name in ("eq8", "eq9", "variant")}
    to_data = ax.transData.inverted()
    for patch in (p for p in ax.patches if p.get_gid() in diagrams.COLOURS):
        box = patch.get_extents().transformed(to_data)
        where = panels[panel((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)]
        where["kinds"].append(patch.get_gid())
        where["boxes"].append((patch.get_gid(), box))
    for t in (t for t in ax.texts if t.get_text().strip()):
        panels[panel(*t.get_position())]["texts"].append(t.get_text())
    return panels


@pytest.mark.parametrize("depth", [32, 20])
def test_ensemble_heads_draws_eq8_eq9_exactly_and_the_variant_as_the_built_models_have_them(figures, depth):
    fig = figures["ensemble_heads"] if depth == 32 else diagrams.ensemble_heads(depth)
    if depth != 32:
        rendered(fig)
    eq9, variant = (build_model(ModelConfig(backbone="resnet", depth=depth, width=1, head=h)) for h in ("eq9",
                                                                                                        "decoupled"))
    assert eq9.norm == "shared" and variant.norm == "per-member" and len(variant.norms) == len(variant.member_names)
    members = len(eq9.member_names)
    width, classes = eq9.head.member_channels[0], eq9.head.classifiers[0].out_features
    panels = heads_panels(fig)
    per_member = rf"\$w\^c_\{{\d+\}}\$: {width}→{classes}"
    # Eq. (8): the members summed, one BN-ReLU, one shared classifier
    eq8 = panels["eq8"]
    assert eq8["kinds"].count("norm") == 1 and eq8["kinds"].count("classifier") == 1
    assert eq8["texts"].count(f"$w^c$: {width}→{classes}") == 1 and eq8["kinds"].count("tensor") == members + 1
    # Eq. (9) exactly: ONE BN-ReLU box, spanning every member's row, fed by the sum y_L; a classifier per member
    eq9_panel = panels["eq9"]
    assert eq9_panel["kinds"].count("norm") == 1, "Eq. (9) exactly normalises the members with ONE BN-ReLU"
    (_, bn), = [b for b in eq9_panel["boxes"] if b[0] == "norm"]
    rows = [box for kind, box in eq9_panel["boxes"] if kind == "tensor" and box.x1 < bn.x0]   # left of it: members
    assert len(rows) == members and all(bn.y0 < box.y0 and box.y1 < bn.y1 for box in rows)
    assert eq9_panel["kinds"].count("sum") == 2                           # y_L (the statistics) and the scores
    assert "$a$, $s$, $g$" in eq9_panel["texts"] and any("set by the sum $y_L$" in t for t in eq9_panel["texts"])
    assert eq9_panel["kinds"].count("classifier") == members
    assert sum(bool(re.fullmatch(per_member, t)) for t in eq9_panel["texts"]) == members
    # the variant, set apart and named as not Eq. (9): one BN-ReLU per member, a classifier per member
    var = panels["variant"]
    assert var["kinds"].count("norm") == len(variant.norms) == members
    assert [t for t in var["texts"] if t.startswith("BN-ReLU$")] == [f"BN-ReLU$_{{{m}}}$" for m in
                                                                      range(1, members + 1)]
    assert var["kinds"].count("classifier") == members and var["kinds"].count("sum") == 1
    assert sum(bool(re.fullmatch(per_member, t)) for t in var["texts"]) == members
    assert any(t.startswith("Not Eq. (9)") for t in var["texts"])
    assert not any("Eq. (9)" in t and "Not" not in t and "not" not in t for t in var["texts"])
    labels = all_texts(fig)
    first, last = eq9.member_names[0][2:], eq9.member_names[-1][2:]
    assert f"$h_{{{first}}}$" in labels and f"$\\mathcal{{F}}_{{{last}}}$" in labels
    if depth != 32:
        assert layout_faults(fig) == []
        fig.clear()


def test_the_eq9_panel_is_read_from_the_model_so_a_per_member_eq9_would_show(monkeypatch):
    """The check above can fail: were head "eq9" to build the per-member variant, its panel would draw a BN-ReLU
    per member (the diagram draws what the model does, not a fixed picture)."""
    real = heads.build_model
    monkeypatch.setattr(heads, "build_model", lambda cfg: real(cfg.replace(head="decoupled") if cfg.head == "eq9"
                                                               else cfg))
    fig = diagrams.ensemble_heads()
    rendered(fig)
    assert heads_panels(fig)["eq9"]["kinds"].count("norm") == 6
    fig.clear()


@pytest.mark.parametrize("variant, stage, depth, width", [
    ("released", 3, 20, 4), ("released", 2, 29, 2), ("literal", 3, 11, 6), ("literal", 1, 20, 2)])
def test_ecnet_stage_prints_the_channel_counts_and_sizes_of_the_built_network(variant, stage, depth, width):
    fig = diagrams.ecnet_stage(variant, stage, depth=depth, width=width)
    labels = " | ".join(all_texts(fig))
    net = (ecnet if variant == "released" else literal_ecnet)(depth, width, 4, stem_stride=2)
    n = (depth - 2) // 9
    drawn = list(net.blocks)[(stage - 1) * n:(stage - 1) * n + 2]
    shapes = {}  # what each drawn block really takes and gives on a 64-pixel image: (channels, side) in and out

    def record(block, inputs, output):  # a forward hook: returns None, so the output is left as it is
        shapes[block] = (tuple(inputs[0].shape[1:3]), tuple(output.shape[1:3]))

    hooks = [b.register_forward_hook(record) for b in drawn]
    with torch.no_grad():
        net(torch.zeros(1, 3, 64, 64))
    for hook in hooks:
        hook.remove()
    sym = "x" if variant == "released" else "y"
    for block in drawn:
        (c_in, s_in), (c_out, s_out) = shapes[block]
        assert f"${sym}_l$\n{c_in} ch, {s_in}×{s_in}" in labels
        assert f"${sym}_{{l+1}}$\n{c_out} ch, {s_out}×{s_out}" in labels
        convs = [block.conv1, block.conv2, block.conv3] + ([block.downsample] if block.downsample is not None else [])
        for conv in convs:
            assert f"{conv.in_channels}→{conv.out_channels}" in labels, conv
        if block.concat:                                   # Eq. (10): F_l's channels, then the shortcut's
            shortcut = block.downsample.out_channels if block.downsample is not None else block.in_channels
            assert f"concat\n{block.branch_channels}+{shortcut}" in labels
            assert block.branch_channels + shortcut == c_out
    assert "Eq. (10)" in labels
    assert ("Eq. (3)" in labels) == (variant == "released" and n > 1)   # the literal net never adds
    fig.clear()


def test_ecnet_stage_refuses_an_unknown_variant_or_stage():
    with pytest.raises(ValueError, match="variant"):
        diagrams.ecnet_stage("paper")
    with pytest.raises(ValueError, match="stage"):
        diagrams.ecnet_stage("released", 4)


@pytest.mark.parametrize("width", [4, 2])
def test_the_pipeline_labels_equations_11_to_14_and_the_sizes_of_mdnet(figures, width):
    fig = figures["mdnet_pipeline"] if width == 4 else diagrams.mdnet_pipeline(width=width)
    labels = " | ".join(all_texts(fig))
    for k in (10, 11, 12, 13, 14):
        assert f"Eq. ({k})" in labels
    model = mdnet(8, widen_factor=width)
    gh, gw = feature_grid(64, 2)
    d = model.image_model.num_features
    assert f"$C(I)$: {gh}×{gw} = {gh * gw} positions\n× {d} channels" in labels
    assert f"$z_t = a_t\\, C(I)$: {d}" in labels and f"{d}→{model.image_model.fc.out_features}" in labels
    assert f"{model.decoder.hidden_dim} units" in labels and f"EcNet-20-{width}" in labels
    assert "diagnosis" in labels and "report" in labels
