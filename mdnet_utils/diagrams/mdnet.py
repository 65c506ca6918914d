"""Notebooks 06-07, MDNet: Eqs. (11)-(14), the pipeline from an image to a diagnosis and a report."""
from __future__ import annotations

from matplotlib.figure import Figure

from mdnet_utils.diagrams.drawing import Canvas
from mdnet_utils.models.config import MODEL_PRESETS, build_model
from mdnet_utils.models.mdnet import feature_grid

__all__ = ["mdnet_pipeline"]


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
    c = Canvas(12.0, 7.9, f"MDNet ({name} + CAM attention): one image in, a diagnosis and a report out")
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
