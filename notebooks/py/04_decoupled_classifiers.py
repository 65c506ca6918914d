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
# # 04 · Decoupled classifiers
#
# Notebook 03 ended with Eq. (8): the class score of a residual network is a sum over the members of
# an ensemble, all weighed by one classifier $w^c$. MDNet's first change is to give every member its
# own classifier, Eq. (9). This notebook builds that head, shows why it is the same thing as one linear
# layer over a concatenation (which is how Eq. (10) will realise it), and puts it on a real network, where a
# batch norm and a ReLU sit between the members' sum and the classifier: Eq. (9) exactly keeps the one BN–ReLU
# of the sum, and with equal weights is the shared network again; a BN–ReLU per member is a variant that is not.
# It compares both with the shared head on the same backbone (three seeds of each, trained to the end), and
# asks which members the heads lean on.
#
# ### What you will learn
# - Eq. (9): one classifier per ensemble member, the scores summed; `DecoupledHead`;
# - the identity $W^\top [a; b] = W_a^\top a + W_b^\top b$, checked numerically: a linear layer over a concatenation *is* a set of decoupled classifiers;
# - Eq. (9) on a real network: batch norm's affine map and the ReLU's mask of the sum, carried to each member, so that with equal weights it *is* the shared network (checked on the trained ResNet-32); and why one BN–ReLU per member is not Eq. (9);
# - how the heads compare with the shared head on the same backbone, trained the same way, over three seeds (reported as it comes out);
# - per-member importance: what each member contributes, and what deleting it costs.
#
# *Equations covered: (9).*
#
# ### Prerequisites
# Notebooks 01–03 (the shared ResNet-32 of notebook 01; it and its decoupled twins are reference models shipped
# in `checkpoints/`, loaded here).
#
# ### Runtime
# On a 2-core laptop CPU: **~20 s** in full mode (nothing is trained: all three networks are shipped references;
# notebook 01 shows their recipe training live), **~15 s** in fast mode (`MDNET_FAST=1`, for tests only). Measured
# by `make run` and `make runtimes` (`notebooks/runtimes.json`).

# %%
# Setup: the same first cell in every notebook.
import platform

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from torch import nn

import mdnet_utils
from mdnet_utils import config, get_device, reference, seed_everything
from mdnet_utils.data import CLASSES, make_synthetic_dataset
from mdnet_utils.data.loading import load_tiles
from mdnet_utils.evaluation.seeds import mean_and_sd, seed_curves
from mdnet_utils.models import DecoupledHead, DecoupledResNet, logit_decomposition

seed_everything(config.seed)
device = get_device()
print(f"mode: {config.mode} | mdnet_utils {mdnet_utils.__version__} | torch {torch.__version__} | "
      f"python {platform.python_version()}")
sns.set_theme(style="whitegrid", context="notebook")

# %% [markdown]
# ## 1. One classifier per member: Eq. (9)
#
# Write the last stage's stream as its members, $y_L = y_1 + \sum_{m=1}^{L-1} F_m(y_m)$ (Eq. 5). The shared head
# scores $\sum_{i,j} w^c \cdot y_L$ (Eq. 8): one $w^c$ for all members. The decoupled head gives member $m$ its own
# weights $w^c_{m+1}$:
#
# $$\text{(9)}\quad p^c = \sum_{i,j} \Big( w_1^c \cdot y_1 + \sum_{m=1}^{L-1} w_{m+1}^c \cdot F_m(y_m) \Big).$$
#
# With $w_1^c = w_2^c = \dots = w^c$ it is Eq. (8) again, so the decoupled head can do everything the shared
# one can, and more: it can weigh a shallow member's features differently from a deep one's. (As printed, the
# equations have nothing between the sum and the classifier; section 2 puts them on a real network, which has.)
#
# ### A linear layer over a concatenation is a decoupled head
#
# Stack the members along the channels, $[a; b]$, and apply one linear layer $W = [W_a; W_b]$ (its rows split
# the same way): $W^\top [a; b] = W_a^\top a + W_b^\top b$. One classifier over the concatenation is exactly one
# classifier per part, summed. That is why MDNet's ensemble-connection (Eq. 10, notebook 05), which
# *concatenates* members instead of adding them, gets a decoupled head from an ordinary linear layer (as the
# equations print it, with nothing between; behind a BN–ReLU, which acts channel by channel, each member is
# normalised on its own: the per-member form of section 2, not Eq. (9) exactly). Check the identity
# with `DecoupledHead.from_linear`, which cuts a linear layer's weights into per-member classifiers:

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
a, b, c = torch.randn(5, 16), torch.randn(5, 32), torch.randn(5, 8)        # three members, pooled
linear = nn.Linear(16 + 32 + 8, len(CLASSES))
head = DecoupledHead.from_linear(linear, [16, 32, 8])
one_layer = linear(torch.cat([a, b, c], dim=1))                             # W^T [a; b; c] + bias
per_member = head.member_scores([a, b, c])                                  # W_a^T a, W_b^T b, W_c^T c
assert torch.allclose(one_layer, per_member.sum(1) + head.bias, atol=1e-6)
assert torch.allclose(head([a, b, c]), one_layer, atol=1e-6)
print("W^T [a; b; c] = W_a^T a + W_b^T b + W_c^T c: equal for", per_member.shape[0], "samples and",
      per_member.shape[2], "classes")

# %% [markdown]
# ## 2. Eq. (9) on a real network: one BN–ReLU, carried to each member
#
# Our ResNet-32 does not feed $y_L$ to the classifier as it is. Its head is
# $z = W\,\mathrm{GAP}\big(\mathrm{ReLU}(\mathrm{BN}(y_L))\big) + b$, and the last stage's stream is
# $y_L = h + \sum_m F_m$ (its projected input $h_{10}$ and the residuals $F_{10}, \dots, F_{14}$ of its blocks,
# notebook 03). Both steps between the sum and $W$ split over the members. Batch norm is an affine map per
# channel, $\mathrm{BN}(y) = a \odot y + s$ with $a = \gamma / \sqrt{\sigma^2 + \epsilon}$ and $s = \beta - a \odot \mu$ (the
# running mean and variance in eval mode, the batch's in training). The ReLU is $g \odot z$ with the mask
# $g = 1[z > 0]$. So
#
# $$\mathrm{ReLU}(\mathrm{BN}(y_L)) = g \odot (a \odot h + s) + \sum_m g \odot a \odot F_m, \qquad g = 1[\mathrm{BN}(y_L) > 0],$$
#
# one gated, scaled copy of every member, with BN's shift $s$ given to the first. Eq. (9) on this network gives
# each of these its own classifier:
#
# $$\text{(9)}\quad p^c = w_1^c \cdot \mathrm{GAP}\big(g \odot (a \odot h + s)\big) + \sum_m w_{m+1}^c \cdot \mathrm{GAP}(g \odot a \odot F_m) + b_c .$$
#
# There is **one** BN–ReLU, the shared head's: its statistics, its affine map and its mask are those of the
# sum. With every $w^c_m = w^c$ the parts add up to $\mathrm{ReLU}(\mathrm{BN}(y_L))$ again, and Eq. (9) *is* the shared
# network: the same function, so the same logits and, in training, the same gradients (`tests/test_decoupled.py`
# checks both). `DecoupledResNet(backbone, num_classes)` is this
# model (`mdnet_utils.models.decoupled`; `shared_bn_relu` carries the BN–ReLU member by member), and
# `DecoupledResNet.from_shared(model)` copies a trained shared network into it with every $w^c_m = w^c$.
#
# **A variant that is not Eq. (9).** Give each member a BN–ReLU of its own,
# $p^c = \sum_m w^c_m \cdot \mathrm{GAP}(\mathrm{BNReLU}_m(\text{member}_m)) + b_c$ (`DecoupledResNet(..., norm="per-member")`).
# That adds normalisations the equation does not have, and with equal weights it is not Eq. (8): even with
# every $\mathrm{BN}_m$ a copy of the shared head's, $\sum_m \mathrm{ReLU}(\mathrm{BN}(\text{member}_m)) \ne \mathrm{ReLU}(\mathrm{BN}(\sum_m \text{member}_m))$,
# since each member gets the shift $s$ and a mask of its own. It is the reference `resnet-32-decoupled`, the
# "decoupled ResNet-32" of notebook 05. The check, on the trained ResNet-32 (seed 0) in float64, with equal
# weights, then with distinct ones:

# %%
root = make_synthetic_dataset(config.dataset_dir, n_images=config.n_images, seed=config.seed)
test_images, test_labels, _ = load_tiles(root, "test")
shared64 = reference.load("resnet-32", seed=0)[0].double()          # the trained shared network, Eq. (8)
x64 = test_images[:32].double() / 255
eq9 = DecoupledResNet.from_shared(shared64)                          # Eq. (9) exactly, every w_m^c = w^c
variant = DecoupledResNet.from_shared(shared64, norm="per-member")   # its own copy of the BN-ReLU per member
distinct = DecoupledResNet.from_shared(shared64)
with torch.no_grad():
    distinct.head.classifiers[0].weight.mul_(2.0)                    # h's classifier on weights of its own
    z, z_eq9, z_variant, z_distinct = (m(x64) for m in (shared64, eq9, variant, distinct))
gaps = {name: (other - z).abs().max().item() for name, other in
        [("Eq. (9), equal weights", z_eq9), ("Eq. (9), h's weights doubled", z_distinct),
         ("per-member BN-ReLU, equal weights", z_variant)]}
for name, gap in gaps.items():
    print(f"{name:34s} largest |logit - shared ResNet-32's logit| on {len(x64)} test tiles: {gap:.2e}")
assert gaps["Eq. (9), equal weights"] < 1e-10                   # Eq. (9) with equal weights is Eq. (8)
assert gaps["Eq. (9), h's weights doubled"] > 1e-3                # distinct weights: another function
assert gaps["per-member BN-ReLU, equal weights"] > 1e-3           # the variant is not Eq. (8) again
print("Eq. (9) with equal weights gives the shared network's logits to 1e-10 (float64); the per-member variant "
      "with equal weights does not")

# %% [markdown]
# **Picture.** Every logit of the three models against the shared network's: Eq. (9) with equal weights lies on
# the diagonal; the same model with one classifier changed, and the per-member variant with equal weights, leave it.

# %%
fig, ax = plt.subplots(figsize=(7, 4.8))
for values, style, label in [(z_eq9, "o", "Eq. (9), equal weights"), (z_distinct, "^", "Eq. (9), h's weights doubled"),
                             (z_variant, "x", "per-member BN-ReLU, equal weights")]:
    ax.plot(z.flatten(), values.flatten(), style, ms=5, alpha=0.7, label=label)
lim = [min(z.min(), z_variant.min(), z_distinct.min()).item(), max(z.max(), z_variant.max(), z_distinct.max()).item()]
ax.plot(lim, lim, "k:", lw=1, label="equal to the shared network")
ax.set_xlabel("logit of the shared ResNet-32 (Eq. 8)"); ax.set_ylabel("logit of the decoupled model")
ax.set_title(f"{len(x64)} test tiles × {z.shape[1]} classes, seed 0"); ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. Shared, Eq. (9) and the variant, on the same backbone
#
# Three reference models, three seeds each, trained with the recipe of notebook 01 (30 epochs on all 3,024
# training tiles, the checkpoint of the best validation accuracy kept): the shared network, notebook 01's
# ResNet-32; **Eq. (9) exactly** (`resnet-32-eq9`); and the **per-member BN–ReLU** variant (`resnet-32-decoupled`).
# Everything but the head is identical: backbone, initial weights (each model is drawn from the same seed,
# backbone first, so all start from the same backbone), data, optimiser, epochs.

# %%
SHARED, EQ9, VARIANT = "shared (Eq. 8)", "Eq. (9) exactly", "per-member BN-ReLU"
names = {SHARED: "resnet-32", EQ9: "resnet-32-eq9", VARIANT: "resnet-32-decoupled"}
colours = {SHARED: "tab:purple", EQ9: "tab:orange", VARIANT: "tab:green"}
refs = {label: reference.metas(name) for label, name in names.items()}   # the JSONs: histories, figures
seeds = sorted(refs[SHARED])
nets = {label: {s: reference.load(names[label], seed=s)[0] for s in sorted(metas)} for label, metas in refs.items()}
for label, by_seed in nets.items():
    some = next(iter(by_seed.values()))
    print(f"{label:19s} {sum(p.numel() for p in some.parameters()):>8,} parameters, seeds {sorted(by_seed)}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 3.8))
for label, metas in refs.items():
    color = colours[label]
    for ax, key in zip(axes, ("train_loss", "val_accuracy")):
        c = seed_curves(metas, key)                     # per epoch: mean, min and max over the seeds
        if key == "val_accuracy":
            c = c.assign(mean=1 - c["mean"], min=1 - c["max"], max=1 - c["min"])
        ax.plot(c.index, c["mean"], color=color, lw=2, label=f"{label} (mean of {len(metas)} seeds)")
        ax.fill_between(c.index, c["min"], c["max"], color=color, alpha=0.15)
for ax, title in zip(axes, ["training loss", "validation error (band: lowest to highest seed)"]):
    ax.set_title(title); ax.set_xlabel("epoch"); ax.set_yscale("log")
axes[0].legend()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
final = {label: mean_and_sd(pd.DataFrame({
    "training loss": {f"seed {s}": m["history"][-1]["train_loss"] for s, m in metas.items()},
    "test accuracy": reference.seed_table(metas, ["accuracy"])["accuracy"].drop(["mean", "sd"])}))
    for label, metas in refs.items()}
print(pd.concat(final, axis=1).to_string(float_format="{:.3f}".format))
for a, b in [(VARIANT, SHARED), (EQ9, SHARED), (EQ9, VARIANT)]:
    for figure in ("training loss", "test accuracy"):
        d = reference.difference(*(list(final[label][figure].drop(["mean", "sd"])) for label in (a, b)))
        print(f"{a} - {b}, {figure}: {d['difference']:+.3f} (sd {d['sd_a']:.3f} and {d['sd_b']:.3f}): "
              f"{'measurable' if d['measurable'] else 'not measurable at this scale'}")

# %% [markdown]
# ## 4. Which members does each head lean on?
#
# Two views of importance, for the shared network and the per-member BN–ReLU variant. **Contribution**: each
# member's part of the predicted class's logit (for the shared network by `logit_decomposition`, Eq. 8; for the
# variant directly, from its per-member classifiers). **Parts of the ensemble**: with a BN–ReLU and a
# classifier of its own, each member's scores are a classifier on their own, so we can ask how well one member
# does alone, and how well all the others do without it (where the members share one BN–ReLU, as in the shared
# network and in Eq. (9), this is not possible without changing what that BN–ReLU sees, so we show it for the
# variant only).

# %%
x, y = test_images[:256].float() / 255, test_labels[:256]
pick = lambda parts, logits: parts[torch.arange(len(x)), :, logits.argmax(1)]
contrib, ensemble = [], []
for seed in seeds:                                        # every seed of both heads, on the same 256 test tiles
    shared, dec = nets[SHARED][seed], nets[VARIANT][seed]
    with torch.no_grad():
        parts_shared = logit_decomposition(shared, x)
        parts_dec = dec.member_scores(x)                    # (B, M, C)
        logits_dec = dec(x)
    for head, part in [(SHARED, pick(parts_shared.contributions, parts_shared.logits)),
                       (VARIANT, pick(parts_dec, logits_dec))]:
        contrib += [{"seed": seed, "head": head, "member": name, "contribution": float(part[:, m].mean())}
                    for m, name in enumerate(dec.member_names)]
    full = (logits_dec.argmax(1) == y).float().mean().item()
    for m, name in enumerate(dec.member_names):
        ensemble += [{"seed": seed, "member": name, "all members": full,
                      "this member alone": (parts_dec[:, m].argmax(1) == y).float().mean().item(),
                      "all but this member": (logits_dec - parts_dec[:, m]).argmax(1).eq(y).float().mean().item()}]
contrib, ensemble = pd.DataFrame(contrib), pd.DataFrame(ensemble)
fig, (a, b) = plt.subplots(1, 2, figsize=(13, 3.6))
sns.barplot(data=contrib, x="member", y="contribution", hue="head", ax=a, palette=["tab:purple", "tab:green"],
            errorbar=("pi", 100))
a.set_title(f"mean contribution to the predicted class's logit\n(bar: mean of {len(seeds)} seeds; line: their range)")
parts = ensemble.melt(id_vars=["seed", "member"], value_vars=["this member alone", "all but this member"],
                      var_name="part", value_name="accuracy")
sns.barplot(data=parts, x="member", y="accuracy", hue="part", ax=b, palette=["#9fd89f", "tab:green"],
            errorbar=("pi", 100))
b.axhline(ensemble["all members"].mean(), color="k", ls=":", lw=1,
          label=f"all members ({ensemble['all members'].mean():.1%}, mean of the seeds)")
b.set_ylim(0, 1); b.set_title("per-member BN-ReLU: test accuracy from parts of the ensemble"); b.set_xlabel("member")
b.legend(fontsize=8, loc="lower right")
plt.show()
print(contrib.pivot_table(index="member", columns="head", values="contribution", aggfunc=["mean", "std"],
                          sort=False).round(2).to_string())
print(ensemble.groupby("member", sort=False)[["this member alone", "all but this member"]].agg(["mean", "std"])
      .round(3).to_string())
print(f"all members: {ensemble['all members'].mean():.3f} ± {ensemble.groupby('seed')['all members'].first().std():.3f} "
      f"on these {len(x)} tiles")


# %% [markdown]
# **What happens at this scale.** Over three seeds each, the three heads cannot be told apart. Eq. (9) exactly
# ends training at a loss of 0.084 ± 0.012, the per-member BN–ReLU variant at 0.089 ± 0.008 and the shared head
# at 0.092 ± 0.009; on test they reach 0.955 ± 0.005, 0.948 ± 0.007 and 0.957 ± 0.013. Every pairwise difference
# is smaller than the spreads of the seeds (the cell prints each one as not measurable), and the validation
# curves lie inside each other's bands from epoch 20 on. This does not reproduce the paper's gain from
# decoupling. That claim was made for EcNet on CIFAR with 200 GPU epochs; our task is one that all three
# networks read at about 95 %, which leaves little room for a head to matter.
#
# The contribution chart shows the mechanism, and it is the same on every seed: with its own BN–ReLU and
# classifier, the variant gives the input of the last stage, $h_{10}$, a share of the logit like any residual's
# (0.83 ± 0.17, against 0.09 ± 0.03 in the shared head, which all but ignores it); the five residuals weigh
# about the same in both heads (0.97 to 1.27). The second chart shows an ensemble in the strict sense: each
# residual member alone reads the diagnosis about as well as all of them together (0.875 to 0.945, $F_{10}$
# the weakest, $F_{12}$ level with the 0.944 of all members), $h_{10}$ alone much worse (0.578), and dropping any single
# member costs at most half a point. The members are redundant here; on a harder task, where they disagree,
# how they are weighed is what Eq. (9) is about.

# %% [markdown]
# ## Summary
#
# - Eq. (9) gives each ensemble member its own classifier $w^c_m$ and sums the scores; with all $w^c_m$
#   equal it is the shared classifier of Eq. (8).
# - On a real network a BN–ReLU sits between the members' sum and the classifier. Eq. (9) exactly keeps that one
#   BN–ReLU and carries its affine map and its mask, both set by the sum, to every member (`DecoupledResNet`);
#   with equal weights it gives the trained ResNet-32's logits back. One BN–ReLU per member (the reference
#   `resnet-32-decoupled`) is a variant: not Eq. (9), and with equal weights not Eq. (8).
# - $W^\top [a; b] = W_a^\top a + W_b^\top b$: one linear layer over a concatenation is a decoupled head. This is how
#   Eq. (10)'s concatenating skip connection gives a decoupled head; behind a head's BN–ReLU, which acts channel
#   by channel, each concatenated member is normalised on its own: the per-member form, not Eq. (9) exactly
#   (notebook 05).
# - On the same backbone, Eq. (9) exactly, the per-member BN–ReLU variant and the shared network reach the same
#   training loss and test accuracy within the spread of three seeds each: at our scale the head makes no
#   difference we can measure.
# - Per-member contributions show which depths of the network each head relies on; in the per-member variant
#   every member is a classifier of its own, and here they are largely redundant.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **Tie the weights.** Constrain all member classifiers of a `DecoupledHead` to be equal (share one
#    `nn.Linear`), in Eq. (9) and in the per-member variant. Which of the two is the shared ResNet, and does the
#    other train like it?
# 2. **Per-member bias.** `DecoupledHead(..., per_member_bias=True)` gives each member a bias. Show that only
#    their sum reaches the logits, so the model is no more expressive.
# 3. **Fewer members.** Decouple only $h$ from the sum of the residuals (two members). How much of the
#    decoupled head's behaviour does that keep?
# 4. **Which members does Eq. (9) lean on?** Repeat section 4 for `resnet-32-eq9`. Its $h_{10}$ share carries
#    BN's shift, which `logit_decomposition` keeps apart (the "rest") for the shared network: compare like with like.

# %% [markdown]
# ### Exercise A · Eq. (9), by hand
#
# Write `decoupled_scores(members, weights, bias)`: Eq. (9) with GAP, $p^c = \sum_m w^c_m \cdot \mathrm{GAP}(\text{member}_m) + b_c$,
# for `members` a list of `(B, K_m, H, W)` tensors, `weights` a list of `(C, K_m)` classifiers and `bias` `(C,)`;
# return `(B, C)`.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def decoupled_scores(members, weights, bias):
    """Eq. (9): p^c = sum_m w_m^c . GAP(member_m) + b_c."""
    return sum(m.mean(dim=(-2, -1)) @ w.T for m, w in zip(members, weights)) + bias


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_decoupled_scores

check_decoupled_scores(decoupled_scores)


# %% [markdown]
# ### Exercise B · Eq. (9) exactly, in training mode too
#
# Write `eq9_head(members, bn, weights, bias)`, the head of section 2's model on given members: `members` a list
# of $M$ tensors `(B, K, H, W)` (the first is $h$), `bn` the head's `nn.BatchNorm2d`, `weights` a list of $M$
# classifiers `(C, K)`, `bias` `(C,)`; return the logits `(B, C)`. One BN–ReLU for the sum $y$ of the members:
# $\mathrm{BN}(y) = a \odot y + s$ with $a = \gamma / \sqrt{\sigma^2 + \epsilon}$ and $s = \beta - a \odot \mu$, where $\mu$
# and $\sigma^2$ are the running statistics when `bn` is in eval mode, and when it is in training mode
# (`bn.training`) the mean and variance of $y$ over the batch and the positions, as batch norm computes them;
# $g = 1[\mathrm{BN}(y) > 0]$. Then $p = \sum_m w_m \cdot \mathrm{GAP}(g \odot a \odot \text{member}_m) + w_1 \cdot \mathrm{GAP}(g \odot s) + b$.
# The check runs it in both modes and, with equal weights, holds it to the shared head,
# $W\,\mathrm{GAP}(\mathrm{ReLU}(\mathrm{BN}(y))) + b$.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def eq9_head(members, bn, weights, bias):
    """Eq. (9) exactly: the sum's one BN-ReLU carried to each member, a classifier each, the scores summed."""
    y = sum(members)
    if bn.training:                                        # batch norm in training: this batch's statistics
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    a = bn.weight / torch.sqrt(var + bn.eps)               # BN(y) = a * y + s, per channel
    s = bn.bias - a * mean
    a, s = a.view(1, -1, 1, 1), s.view(1, -1, 1, 1)
    g = (a * y + s > 0).to(y.dtype)                        # the ReLU's mask, set by the whole sum
    parts = [g * (a * m + (s if i == 0 else 0)) for i, m in enumerate(members)]
    return sum(p.mean(dim=(2, 3)) @ w.T for p, w in zip(parts, weights)) + bias


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_eq9_head

check_eq9_head(eq9_head)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. With all $w^c_m$ equal, what does Eq. (9) reduce to?
#
#    <details><summary>Answer</summary>
#
#    Eq. (8), the shared classifier of a residual network; on a real network too, when the members share the head's one BN–ReLU (its affine map and mask set by their sum).
#
#    </details>
#
# 2. Why is a decoupled head no more expressive than one linear layer over the concatenated members?
#
#    <details><summary>Answer</summary>
#
#    A linear layer over a concatenation splits into one block of weights per member (the rows $W_a, W_b$ of section 1; the columns of `nn.Linear`'s weight, which is stored transposed): a classifier per member, summed, as in Eq. (9).
#
#    </details>
#
# 3. Then what does decoupling change?
#
#    <details><summary>Answer</summary>
#
#    What the classifier can see: in a residual network the members are summed before the head, so it sees only their sum.
#
#    </details>
#
# 4. At this scale the per-member variant's members are redundant. What in the notebook shows it?
#
#    <details><summary>Answer</summary>
#
#    Every residual member alone reads the diagnosis about as well as all of them together, and dropping any single member costs almost nothing.
#
#    </details>
#
# 5. Why is a BN–ReLU per member not Eq. (9)?
#
#    <details><summary>Answer</summary>
#
#    It normalises and gates each member on its own: $\sum_m \mathrm{ReLU}(\mathrm{BN}(\text{member}_m)) \ne
#    \mathrm{ReLU}(\mathrm{BN}(\sum_m \text{member}_m))$ (BN's shift counts once per member, each member has its own mask), so even equal weights do not give the shared head back.
#
#    </details>

# %% [markdown]
# ## References
#
# - Z. Zhang, Y. Xie, F. Xing, M. McGough, L. Yang. *MDNet: A Semantically and Visually Interpretable Medical
#   Image Diagnosis Network.* CVPR 2017 (arXiv:1707.02485), Section 3.1.
# - A. Veit, M. Wilber, S. Belongie. *Residual Networks Behave Like Ensembles of Relatively Shallow Networks.* NeurIPS 2016.
# - K. He, X. Zhang, S. Ren, J. Sun. *Identity Mappings in Deep Residual Networks.* ECCV 2016.
