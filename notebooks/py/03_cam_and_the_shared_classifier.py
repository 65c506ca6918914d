# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · CAM and the shared classifier
#
# A residual network ends with global average pooling (GAP) and one linear layer. This notebook
# looks at that last layer twice. First as a **map**: the class score is the average of a class
# activation map, which shows where the network found its evidence (Eq. 7), and our masks let us
# measure whether that is where the lesion is. Then as a **sum**: with Eq. (5) the score splits into
# one contribution per member of the residual ensemble (Eq. 8), all weighed by the same classifier.
# That shared classifier is what MDNet changes.
#
# ### What you will learn
# - Eq. (7): GAP + linear = the spatial mean of the class activation map, with the 1/(HW) factor and the bias made explicit;
# - to draw CAMs over the tiles and score them against the lesion and mitosis masks (mass inside, pointing game, against chance);
# - Eq. (8): every logit as an exact sum of member contributions, read from the residual stream, and why exact is not
#   independent: batch norm's affine map and the ReLU's mask in front of $w^c$ are set by all members together;
# - the paper's argument against one shared classifier, and where MDNet goes from here.
#
# *Equations covered: (7)–(8).*
#
# ### Prerequisites
# Notebooks 01 and 02 (their ResNet-32, the reference model shipped in `checkpoints/`, is loaded here).
#
# ### Runtime
# On a 2-core laptop CPU: **~30 s** in full mode (nothing is trained: the ResNet-32s are the shipped references),
# **~10 s** in fast mode (`MDNET_FAST=1`, for tests only). Measured by `make run` and `make runtimes`
# (`notebooks/runtimes.json`).

# %%
# Setup: the same first cell in every notebook.
# The inline backend from the start: a figure made outside pyplot (the diagrams) is shown as a cell's value too.
# %matplotlib inline
import platform

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

import mdnet_utils
from mdnet_utils import config, diagrams, get_device, reference, seed_everything
from mdnet_utils.data import CLASSES, FEATURES, ReportDataset, make_synthetic_dataset
from mdnet_utils.data.loading import load_tiles
from mdnet_utils.evaluation.localisation import localisation_scores
from mdnet_utils.models import (class_activation_map, eq7_score, lesion, logit_decomposition, logits_from_cam,
                                model_cam)

seed_everything(config.seed)
device = get_device()
print(f"mode: {config.mode} | mdnet_utils {mdnet_utils.__version__} | torch {torch.__version__} | "
      f"python {platform.python_version()}")
sns.set_theme(style="whitegrid", context="notebook")

# %% [markdown]
# ## 1. The class score is the mean of a map: Eq. (7)
#
# Let $y_L^{(k)}(i, j)$ be the $k$-th of the $K$ feature maps the last block hands to the head (after its
# final BN–ReLU), on an $H \times W$ grid, and $w^c$ the weights of class $c$ in the linear layer. GAP then
# linear gives the logit $z_c = \sum_k w_k^c \frac{1}{HW}\sum_{i,j} y_L^{(k)}(i,j) + b_c$. The write-up drops the
# $\frac{1}{HW}$ and the bias and calls the result a probability; it is the pre-softmax score
#
# $$\text{(7)}\quad p^c = \sum_k w_k^c \sum_{i,j} y_L^{(k)}(i, j) = HW\,(z_c - b_c).$$
#
# Swap the two sums and the score is the sum over positions of one map, the **class activation map**
# (Zhou et al. 2016): $M_c(i, j) = \sum_k w_k^c\, y_L^{(k)}(i, j)$, so $z_c = \frac{1}{HW}\sum_{i,j} M_c(i,j) + b_c$.
# We check both on the ResNet-32 of notebooks 01 and 02 (the reference model, seed 0):

# %%
root = make_synthetic_dataset(config.dataset_dir, n_images=config.n_images, seed=config.seed)
seeds = sorted(reference.metas("resnet-32"))
models = {s: reference.load("resnet-32", seed=s)[0] for s in seeds}   # in eval mode, on the CPU
model = models[0]
test = ReportDataset(root, "test")
images, labels, _ = load_tiles(root, "test")
print(f"ResNet-32 seed 0, stored test accuracy {reference.metas('resnet-32')[0]['test']['accuracy']:.1%}; "
      f"{len(test)} test tiles here")

# %%
# NBVAL_CHECK_OUTPUT
x = images[:32].float() / 255
with torch.no_grad():
    logits = model(x)
    features = model.features(x)                          # y_L: (B, K, H, W), what GAP pools
    cam = class_activation_map(features, model.fc.weight)  # M_c(i, j) for every class: (B, C, H, W)
B, K, H, W = features.shape
print(f"features {K} x {H} x {W}; CAMs {tuple(cam.shape[1:])}")
assert torch.allclose(logits_from_cam(cam, model.fc.bias), logits, atol=1e-5)   # z_c = mean M_c + b_c
assert torch.allclose(eq7_score(features, model.fc.weight), H * W * (logits - model.fc.bias), atol=1e-3)
print("GAP + linear = (1/HW) sum_ij M_c(i, j) + b_c, and Eq. (7)'s p^c = HW (z_c - b_c): both hold")

# %% [markdown]
# **Picture.** The CAM of the *predicted* class, upsampled from the 8×8 feature grid to the tile, over
# test tiles with a lesion (yellow outline) and, where there are any, mitotic figures (cyan).

# %%
# The loader's entries hold label and grade *indices* (into CLASSES and each feature's GRADES).
LOW, HIGH = CLASSES.index("low grade"), CLASSES.index("high grade")
MITOSIS = FEATURES.index("mitosis")
lesion_idx = [i for i in range(len(test)) if test.entries[i]["label"] in (LOW, HIGH)][:8]
batch = torch.stack([test[i]["image"] for i in lesion_idx])
with torch.no_grad():
    pred = model(batch).argmax(1)
    maps = model_cam(model, batch, classes=pred)           # (B, 64, 64)
fig, axes = plt.subplots(2, len(lesion_idx), figsize=(2.1 * len(lesion_idx), 4.6))
for col, i in enumerate(lesion_idx):
    item = test[i]
    axes[0, col].imshow(item["image"].permute(1, 2, 0), interpolation="nearest")
    axes[0, col].set_title(f"{item['id']}\ntrue: {CLASSES[item['label']]}", fontsize=8)
    axes[1, col].imshow(item["image"].permute(1, 2, 0), interpolation="nearest")
    axes[1, col].imshow(maps[col], cmap="jet", alpha=0.45)
    axes[1, col].contour(item["masks"]["lesion"][0], levels=[0.5], colors="yellow", linewidths=1)
    if item["masks"]["mitosis"].any():
        axes[1, col].contour(item["masks"]["mitosis"][0], levels=[0.5], colors="cyan", linewidths=1)
    axes[1, col].set_title(f"CAM of '{CLASSES[pred[col]]}'", fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
plt.show()


# %% [markdown]
# ### Does the map look at the lesion? A measurement
#
# Two scores for any saliency map against a ground-truth mask (`mdnet_utils.evaluation.localisation`):
# **mass inside**, the share of the (non-negative) map that falls in the mask, and the **pointing game**,
# whether the map's maximum lies in the mask. A map that knows nothing, spread uniformly, scores the
# mask's area share on both: that is the chance level to beat. We score the predicted class's CAM over
# every test tile with a lesion, against the lesion mask, and over tiles with mitoses against the
# (much smaller) mitosis mask, for each of the three reference seeds. **Lift** is mass inside divided by its
# chance level: 1 is a uniform map, and 1 / (the mask's share) is the most any map can reach.

# %%
def cam_scores(net, mask_name, keep):
    idx = [i for i in range(len(test)) if keep(test.entries[i])]
    xs = torch.stack([test[i]["image"] for i in idx])
    masks = torch.stack([test[i]["masks"][mask_name][0] for i in idx]) > 0.5
    with torch.no_grad():
        maps = model_cam(net, xs, classes=net(xs).argmax(1))
    scores = {k: float(v.nanmean()) for k, v in localisation_scores(maps, masks).items()}
    return scores | {"lift": scores["mass_inside"] / scores["mass_inside_uniform"], "tiles": len(idx)}

masks_scored = {"lesion mask (low and high grade)": ("lesion", lambda e: e["label"] in (LOW, HIGH)),
                "mitosis mask (tiles with mitoses)": ("mitosis", lambda e: e["grades"][MITOSIS] > 0)}
columns = ["tiles", "mass_inside", "mass_inside_uniform", "lift", "pointing_game", "pointing_game_uniform"]
per_seed = pd.DataFrame([{"mask": m, "seed": s, **cam_scores(net, *how)}
                         for m, how in masks_scored.items() for s, net in models.items()]).set_index(["mask", "seed"])
print(per_seed[columns].round(3).to_string())
table = per_seed[columns].groupby("mask", sort=False).agg(["mean", "std"])
print("\nmean and sd over the seeds\n" + table.round(3).to_string())
means = table.xs("mean", axis=1, level=1)
ax = means[["mass_inside", "mass_inside_uniform", "pointing_game", "pointing_game_uniform"]].plot.bar(
    figsize=(9, 3.6), rot=0, color=["tab:purple", "#d8c8e8", "tab:green", "#c8e8c8"],
    yerr=table.xs("std", axis=1, level=1)[["mass_inside", "mass_inside_uniform", "pointing_game",
                                           "pointing_game_uniform"]])
ax.set_title(f"CAM of the predicted class against chance (uniform map), mean ± sd over {len(seeds)} seeds")
ax.legend(["mass inside, CAM", "mass inside, uniform map", "pointing game, CAM",
           "pointing game, uniform map"], fontsize=8)
plt.show()

# %% [markdown]
# **Reading the table.** Over the three reference seeds, the CAM of the predicted class beats chance on the
# lesion clearly: 0.571 ± 0.01 of its mass falls inside the lesion (chance: the lesion's area share, 0.297),
# a lift of 1.924 ± 0.033, and its maximum lands in the lesion for 0.955 ± 0.009 of the tiles. On the mitotic
# figures it beats chance too, though on a tiny target: 0.019 of its mass falls inside the mitosis masks
# (chance 0.008), a lift of 2.263 ± 0.018, and its maximum lands on a mitosis for 0.057 ± 0.014 of the tiles
# (chance 0.008). The three seeds agree to within these spreads. A *diagnosis* map spreads over the whole
# abnormal region (its lift is well under the 1 / share that a map confined to the lesion would reach); it
# does not single out the few pixels of each mitosis. Pointing at a particular finding is what the per-word
# attention of
# notebooks 06 and 07 is for, and these masks will measure it there.
#
# ## 2. The class score is a sum over the ensemble: Eq. (8)
#
# Notebook 02 showed that inside a stage the last feature is a sum, $y_L = y_1 + \sum_{m} F_m(y_m)$ (Eq. 5,
# with $y_1$ the stream where the sum starts). Put that sum into Eq. (7):
#
# $$\text{(8)}\quad p^c = \sum_{i,j} w^c \cdot y_L = \sum_{i,j} w^c \cdot \Big( y_1 + \sum_{m=1}^{L-1} F_m(y_m) \Big).$$
#
# The score of class $c$ is a sum of one term per **member** of the ensemble, and every member is weighed
# by the **same** $w^c$.
#
# **Picture.** The ensemble and its classifier, drawn from our ResNet-32 (`mdnet_utils.diagrams`), three heads.
# Top left, Eq. (8): the last stage's members summed into $y_L$, then the head's one BN–ReLU, pooling and the one
# shared $w^c$. Top right, Eq. (9) exactly: the same one BN–ReLU, its statistics and its on/off gate $g$ set by
# the sum $y_L$ and applied to each member, then one classifier $w^c_m$ per member and their scores summed; with
# every $w^c_m = w^c$ it is Eq. (8) again. Below the dashed line, set apart, a variant that is not Eq. (9): each
# member gets a BN–ReLU of its own. Notebook 04 compares the three.

# %%
diagrams.ensemble_heads()   # a Figure: shown once, as the cell's value

# %% [markdown]
# Two details make the split exact for a real network, and `logit_decomposition` handles both (its docstring
# has the whole argument). The sum restarts at a projection shortcut, so for our ResNet the members are the
# input of the last stage ($h$) and the residuals of the last stage's blocks. And the head's BN–ReLU sits between
# the sum and $w^c$: in eval mode BN is an affine map per channel, and ReLU is $g \odot z$ with the on/off pattern
# $g$ fixed at the one this input produced, so the logit splits exactly into one share per member (the shift of
# the BN and the bias form a "rest").
#
# Exact, but not independent: **the gates are set jointly**. The ReLU's mask $g$ is the one the *whole sum* $y_L$
# produced, and BN's affine map comes from the running statistics of the sums it saw in training; neither
# belongs to one member. A member's share is its part of *this* logit under gates that all members set
# together: not the score it would give alone, and not what removing it would cost (without it the sum, and
# so the mask, changes). Check first that the parts add up to the logits:

# %%
# NBVAL_CHECK_OUTPUT
x64 = images[:32].double() / 255
dec = logit_decomposition(model.double(), x64)
assert torch.allclose(dec.total(), dec.logits, atol=1e-10)
print("members:", ", ".join(dec.names), "+ rest (BN shift and bias)")
print("contributions sum to the logits (float64, to 1e-10)")
model = model.float()                                  # back to float32 for what follows

# %%
pred = dec.logits.argmax(1)
share = dec.contributions[torch.arange(len(pred)), :, pred].float()      # (B, M): each member's part of the winning logit
frame = pd.DataFrame(share.numpy(), columns=dec.names)
fig, (a, b) = plt.subplots(1, 2, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1, 2]})
sns.barplot(data=frame.melt(var_name="member", value_name="contribution"), x="member", y="contribution",
            ax=a, color="tab:purple", errorbar="sd")
a.set_title("each member's part of the predicted class's logit\n(mean ± sd over 32 test tiles)")
frame.iloc[:12].plot.bar(stacked=True, ax=b, colormap="viridis", width=0.8)
b.plot(range(12), (dec.logits[:12, :] - dec.rest[:12, :])[torch.arange(12), pred[:12]].numpy(), "k_", ms=18,
       mew=2, label="logit - rest")
b.set_xlabel("test tile"); b.set_title("the same, tile by tile: the parts stack up to the logit"); b.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# **The joint gates, measured.** The last residual, $F_{14}$, feeds nothing but the head: removing it
# (`lesion`) changes the sum the head sees and nothing upstream. If a share were what a member adds on its own,
# removing $F_{14}$ would lower the predicted class's logit by exactly its share, tile by tile:

# %%
last = dec.names[-1]                                          # the last block's residual
rows = torch.arange(len(pred))
with torch.no_grad(), lesion(model, [int(last.split("_")[1])]):
    without = model(x64.float())
drop = (dec.logits.float() - without)[rows, pred]             # what removing it costs the predicted class
own = share[:, dec.names.index(last)]                         # its share of that logit (Eq. 8)
gap = (own - drop).abs()
print(f"{last}: share of the predicted class's logit {own.mean():.3f} on average; removing it lowers that logit by "
      f"{drop.mean():.3f} on average")
print(f"tile by tile the two differ by up to {gap.max():.3f} ({int((gap > 1e-3).sum())} of {len(gap)} tiles differ "
      f"by more than 1e-3): {'not equal, the mask moved' if gap.max() > 1e-3 else 'equal on these tiles'}")


# %% [markdown]
# ### The paper's argument, in our words
#
# Eq. (8) shows an ensemble whose members are all read through one lens. $w^c$ is a single direction in
# feature space per class. The paper's example is the stem-level member $y_1$, the first block's output, scored
# with the same weights as the residual of the last block, though the two see the tile at very different depths
# and receptive fields. **Our decomposition has no such member.** A pre-activation ResNet's projection shortcut
# (BN–ReLU, then a strided 1×1 convolution) is not linear, so the sum of Eq. (5) restarts at each stage's first
# block, and our members are the last stage's: its projected input $h_{10}$, which holds the stem and stages 1
# and 2 in one term, and the residuals $F_{10}, \dots, F_{14}$ of its five blocks. (The sum goes back to the stem
# only where every shortcut is linear, as in the EcNets of notebook 05: see `logit_decomposition`.) The
# argument carries over to our members in this weaker form: $h_{10}$ and $F_{14}$ still see the tile at
# different depths, and the same $w^c$ scores both. If one member's features would be better weighed
# differently, a shared classifier cannot do it; it can only find a compromise that serves their *sum*. In the
# paper's words, "using a single weighting function in the classification module is suboptimal ... the outputs
# of all ensembles share classifiers such that the importance of their individual features are undermined".
#
# The remedy, Eq. (9), gives every member its own classifier $w^c_m$; Eq. (10) changes the skip connection
# so that the members stay separately available to the head. Notebooks 04 and 05 build both and measure,
# at our scale, whether it helps. Note what the bars above already say: the members do not contribute
# equally. The input of the last stage ($h_{10}$) adds little to the winning logit; each residual of the last
# stage adds a share of the same order on average, and the shares change from tile to tile, so how they
# are weighed matters.

# %% [markdown]
# ## Summary
#
# - GAP + linear is the mean of the class activation map plus the bias: $z_c = \frac{1}{HW}\sum_{ij} M_c(i,j) + b_c$;
#   the write-up's Eq. (7) is $HW(z_c - b_c)$, a score, not a probability.
# - The CAM of the predicted class can be *measured* against our masks: mass inside and pointing game, each
#   against the chance level of a uniform map.
# - With Eq. (5) the logit is an exact sum of member contributions (Eq. 8), each weighed by the same $w^c$:
#   the shared classifier MDNet sets out to decouple. Exact, not independent: BN's affine map and the ReLU's mask
#   in front of $w^c$ are set by all members together, so a share is not what the member would score alone.
# - Our members are the last stage's projected input $h_{10}$ and its residuals, not the paper's stem-level $y_1$:
#   the sum restarts at the non-linear projection shortcut.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **Chance, exactly.** Show that a constant saliency map scores the mask's area share on both
#    measures. Why is that the right baseline, and not one half?
# 2. **Which class's map?** Score the CAM of the *true* class instead of the predicted one. For which tiles
#    do the two differ, and what does that say about the errors?
# 3. **A plain network's CAM.** Compute CAMs for the plain-32 network of notebook 01 (`reference.load("plain-32", seed=0)`).
#    Eq. (7) still holds; why does Eq. (8) not?
# 4. **Members by stage.** Which member carries the largest share for *normal* tiles, and which for
#    *high grade* tiles? Group the bar chart by the true class.

# %% [markdown]
# ### Exercise A · A class activation map
#
# Write `cam(features, fc_weight)`: Eq. (7)'s maps $M_c(i, j) = \sum_k w^c_k\, y^{(k)}(i, j)$ for every image and
# every class, from the last feature maps `features` `(B, K, H, W)` and the linear layer's weight `fc_weight`
# `(C, K)`; return `(B, C, H, W)`. One `torch.einsum` does it; a loop over classes is fine too.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def cam(features, fc_weight):
    """Eq. (7): M_c(i, j) = sum_k w_k^c y^(k)(i, j), (B, K, H, W) and (C, K) -> (B, C, H, W)."""
    return torch.einsum("ck,bkhw->bchw", fc_weight, features)


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_cam

check_cam(cam)


# %% [markdown]
# ### Exercise B · Eq. (8) through batch norm and the ReLU gate
#
# Section 2 split the logits into the members' shares through the head's BN–ReLU; do it yourself. Write
# `member_scores(members, bn, w)`: `members` a list of $M$ tensors `(B, K, H, W)` whose sum is $y_L$, `bn` the
# head's `nn.BatchNorm2d` in eval mode, `w` the classifier's weight `(C, K)`; return `(B, M, C)`, each member's
# part of the class scores (without the bias). In eval mode BN is an affine map per channel,
# $\mathrm{BN}(y) = a \odot y + s$ with $a = \gamma / \sqrt{\sigma^2 + \epsilon}$ and $s = \beta - a \odot \mu$ (`bn.weight`,
# `bn.bias`, `bn.running_var`, `bn.running_mean`, `bn.eps`), and the ReLU is $g \odot z$ with the mask
# $g = 1[\mathrm{BN}(y_L) > 0]$ of the whole sum. Member $m$'s part is $w \cdot \mathrm{GAP}(g \odot a \odot \text{member}_m)$;
# the first member's also carries the shift, $w \cdot \mathrm{GAP}(g \odot s)$, so that the parts add up to
# $w \cdot \mathrm{GAP}(\mathrm{ReLU}(\mathrm{BN}(y_L)))$. The check compares with the package's `shared_bn_relu`
# (`mdnet_utils.models.decoupled`) on seeded members and a batch norm with trained-looking statistics.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def member_scores(members, bn, w):
    """Eq. (8) through the head's BN-ReLU: member m's part w . GAP(g * a * member_m), the first's also g * s."""
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)            # BN(y) = a * y + s, per channel
    s = bn.bias - a * bn.running_mean
    a, s = a.view(1, -1, 1, 1), s.view(1, -1, 1, 1)
    g = (a * sum(members) + s > 0).to(a.dtype)                    # the ReLU's mask, set by the whole sum
    parts = [g * (a * m + (s if i == 0 else 0)) for i, m in enumerate(members)]
    return torch.stack([p.mean(dim=(2, 3)) @ w.T for p in parts], dim=1)


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_member_scores

check_member_scores(member_scores)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. Why is the class score of a GAP + linear network the mean of a map?
#
#    <details><summary>Answer</summary>
#
#    Pooling and the linear layer are both linear, so they commute: $\sum_k w_k^c \frac{1}{HW}\sum_{i,j} y^{(k)}(i,j) = \frac{1}{HW}\sum_{i,j} M_c(i,j)$.
#
#    </details>
#
# 2. Why does a CAM have to be upsampled before it is laid over the tile, and what does that cost?
#
#    <details><summary>Answer</summary>
#
#    It lives on the feature grid (a few cells per side); upsampling smooths it, so fine structure such as single mitoses cannot be resolved.
#
#    </details>
#
# 3. In Eq. (8), what is the same for every member of the ensemble?
#
#    <details><summary>Answer</summary>
#
#    The classifier $w^c$ (and, in a real network, the head's BN–ReLU in front of it): one weight vector scores every member alike, in our ResNet $h_{10}$ and $F_{10}, \dots, F_{14}$.
#
#    </details>
#
# 4. What is MDNet's argument against that?
#
#    <details><summary>Answer</summary>
#
#    Members carry different information (shallow and deep features); one shared classifier cannot weigh them differently.
#
#    </details>
#
# 5. The members' shares add up to the logit exactly. Why is a share still not what the member would score alone?
#
#    <details><summary>Answer</summary>
#
#    The ReLU's mask is set by the whole sum $y_L$ (and BN's statistics by the sums seen in training): a share is taken under gates that all members set together, and removing the member moves the mask.
#
#    </details>

# %% [markdown]
# ## References
#
# - B. Zhou, A. Khosla, A. Lapedriza, A. Oliva, A. Torralba. *Learning Deep Features for Discriminative Localization.* CVPR 2016 (CAM).
# - Z. Zhang, Y. Xie, F. Xing, M. McGough, L. Yang. *MDNet: A Semantically and Visually Interpretable Medical
#   Image Diagnosis Network.* CVPR 2017 (arXiv:1707.02485).
# - A. Veit, M. Wilber, S. Belongie. *Residual Networks Behave Like Ensembles of Relatively Shallow Networks.* NeurIPS 2016.
# - J. Zhang et al. *Top-down Neural Attention by Excitation Backprop.* ECCV 2016 (the pointing game).
