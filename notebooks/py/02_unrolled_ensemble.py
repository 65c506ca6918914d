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
# # 02 · The unrolled ensemble
#
# Eq. (3) says what one pre-activation block does. Apply it again and again and a residual network
# turns out to be a *sum*: the input of a stage plus every residual added on the way. That one line,
# Eq. (5), is where MDNet starts: the paper's argument (notebook 03 onwards) is about how the
# classifier weighs the members of this sum. Here we derive it, check it to the last bit on a trained
# network, follow the gradient through it, and take the network apart block by block.
#
# ### What you will learn
# - to derive Eqs. (4) and (5) from Eq. (3), and to spot the two index slips in the write-up the series starts from;
# - to verify Eq. (5) numerically (float64, to 1e-10) on a trained network, for every pair of blocks in a stage;
# - what Eq. (6) says about gradients (the direct "1" term), checked with autograd, and how gradient norms differ with and without shortcuts;
# - the ensemble view of Veit et al. (2016): $2^n$ paths, a binomial distribution of path lengths, and lesion studies that delete blocks.
#
# *Equations covered: (4)–(6).*
#
# ### Prerequisites
# Notebook 01 (residual blocks, Eq. 3; the ResNet-32 and plain-32 reference models it compares, loaded here
# from `checkpoints/`).
#
# ### Runtime
# On a 2-core laptop CPU: **~2 min** in full mode (most of it the lesion studies over three seeds; nothing is
# trained: the networks are the shipped references), **~15 s** in fast mode (`MDNET_FAST=1`, for tests only).
# Measured by `make run` and `make runtimes` (`notebooks/runtimes.json`).

# %%
# Setup: the same first cell in every notebook.
import copy
import platform
from math import comb

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from torch import nn

import mdnet_utils
from mdnet_utils import config, get_device, reference, seed_everything
from mdnet_utils.data import CLASSES, make_synthetic_dataset
from mdnet_utils.data.loading import load_tiles
from mdnet_utils.evaluation.diagnosis import accuracy
from mdnet_utils.models import build_model
from mdnet_utils.models.stream import lesion, read_stream, record_stream, residual_blocks

seed_everything(config.seed)
device = get_device()
print(f"mode: {config.mode} | mdnet_utils {mdnet_utils.__version__} | torch {torch.__version__} | "
      f"python {platform.python_version()}")
sns.set_theme(style="whitegrid", context="notebook")

# %% [markdown]
# ## 1. Unrolling Eq. (3): Eqs. (4) and (5)
#
# Eq. (3) holds for every block that keeps width and resolution:
# $x_{l+1} = x_l + F_l(x_l)$. Write it for block $l-1$ too, $x_l = x_{l-1} + F_{l-1}(x_{l-1})$, and substitute:
#
# $$\text{(4)}\quad x_{l+1} = x_{l-1} + F_{l-1}(x_{l-1}) + F_l(x_l).$$
#
# > **An index slip.** The write-up this series starts from prints the last terms as $F_l(x_{l-1})$ and an
# > unindexed $F$. Each residual function is applied to *its own block's* input: $F_{l-1}$ to $x_{l-1}$, $F_l$ to $x_l$.
#
# Repeat the substitution (by induction on $L - l$) and, for any shallower block $l$ and deeper block $L$ of
# the same stage,
#
# $$\text{(5)}\quad x_L = x_l + \sum_{i=l}^{L-1} F_i(x_i).$$
#
# > **The second slip.** The write-up prints $F_l(x_i)$ inside the sum; the index belongs to $i$: term $i$ is
# > block $i$'s residual of block $i$'s input.
#
# Two things Eq. (5) says: the deep feature $x_L$ is the shallow feature $x_l$ *plus a sum* (not a product, as
# in a plain network, where $x_L$ is a composition of $L - l$ functions); and every block's residual reaches
# $x_L$ directly. The sum runs *within a stage*: where a block changes width or resolution its shortcut
# $h$ is a projection, not the identity, and the unrolling starts again.
#
# ## 2. Checking Eq. (5) on a trained network
#
# We take the pre-activation ResNet-32 of notebook 01 (three stages of five blocks; the reference model, seed 0,
# and its plain twin for later; the other two seeds join the lesion study of section 4), switch it to
# float64 so that rounding does not hide anything, and run test tiles through it while `read_stream`
# records every block's input $x_i$ and residual $F_i(x_i)$. Then, for **every** pair $l < L$ inside a
# stage, we measure $\max |x_L - x_l - \sum_{i=l}^{L-1} F_i(x_i)|$.

# %%
root = make_synthetic_dataset(config.dataset_dir, n_images=config.n_images, seed=config.seed)
test_images, test_labels, _ = load_tiles(root, "test")
seeds = sorted(reference.metas("resnet-32"))
nets = {name: {s: reference.load(name, seed=s)[0] for s in seeds} for name in ("resnet-32", "plain-32")}
resnet, plain = nets["resnet-32"][0], nets["plain-32"][0]     # seed 0: sections 2 and 3
for name in nets:
    stored = reference.seed_table(name, ["accuracy"])["accuracy"]
    print(f"{name}: seeds {seeds}, stored test accuracy " + ", ".join(f"{stored[f'seed {s}']:.1%}" for s in seeds))

# %%
net64 = copy.deepcopy(resnet).double().cpu().eval()
x = test_images[:16].double() / 255
with torch.no_grad():
    records = read_stream(net64, x)
blocks = residual_blocks(net64)

# Runs of consecutive blocks with an identity shortcut: inside each, Eq. (3) holds block by block.
segments, current = [], []
for i, block in enumerate(blocks):
    if not block.keeps_shape:
        segments.append(current); current = []
        continue
    current.append(i)
segments = [s for s in segments + [current] if s]

errors = np.full((len(blocks) + 1, len(blocks) + 1), np.nan)
for seg in segments:
    for a, l in enumerate(seg):
        for L in seg[a:]:
            L = L + 1                                   # x_L is the output of block L-1
            x_l, x_L = records[l].x_in, records[L - 1].out
            total = sum(records[i].branch for i in range(l, L))
            errors[l, L] = (x_L - x_l - total).abs().max().item()
checked = np.isfinite(errors)
print(f"{checked.sum()} pairs (l, L) in {len(segments)} identity segments; "
      f"largest |x_L - x_l - sum F_i(x_i)| = {np.nanmax(errors):.1e}")
assert np.nanmax(errors) < 1e-10

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.2))
sns.heatmap(np.log10(np.where(checked, errors, np.nan) + 1e-300), ax=a, cmap="viridis",
            cbar_kws={"label": "log10 max error"}, vmin=-17, vmax=-13)
a.set_xlabel("L (x_L = output of block L-1)"); a.set_ylabel("l"); a.set_title("Eq. (5): error for every pair l < L")
scale = [records[i].x_in.norm().item() for i in range(len(blocks))]
resid = [records[i].branch.norm().item() for i in range(len(blocks))]
b.semilogy(scale, "o-", label=r"$\|x_l\|$"); b.semilogy(resid, "s-", label=r"$\|F_l(x_l)\|$")
for i, blk in enumerate(blocks):
    if not blk.keeps_shape:
        b.axvline(i, color="gray", ls=":")
b.set_xlabel("block l"); b.legend(); b.set_title("the stream grows by small residuals (dotted: downsampling)")
plt.show()

# %% [markdown]
# ## 3. The gradient: Eq. (6)
#
# Differentiate Eq. (5) with respect to $x_l$ and apply the chain rule through $x_L$:
#
# $$\text{(6)}\quad \frac{\partial \text{Loss}}{\partial x_l}
#   = \frac{\partial \text{Loss}}{\partial x_L}\left(1 + \frac{\partial}{\partial x_l}\sum_{i=l}^{L-1} F_i(x_i)\right)
#   = \underbrace{\frac{\partial \text{Loss}}{\partial x_L}}_{\text{direct}}
#   + \underbrace{\frac{\partial \text{Loss}}{\partial x_L}\,\frac{\partial}{\partial x_l}\sum_{i=l}^{L-1} F_i(x_i)}_{\text{through the residuals}}.$$
#
# The "1" is the direct path: the gradient at $x_L$ arrives at $x_l$ *unchanged*, whatever the blocks in
# between do. It cannot vanish unless the second term happens to cancel it exactly for a whole batch.
# We check the split with autograd: the direct term is the gradient at $x_L$; the second term is a
# vector-Jacobian product computed on its own; the two must add up to autograd's gradient at $x_l$.

# %%
# NBVAL_CHECK_OUTPUT
loss_fn = nn.CrossEntropyLoss()
seg = segments[0]
l, L = seg[0], seg[-1] + 1
with record_stream(net64) as recs:
    loss = loss_fn(net64(x), test_labels[:16])
x_l, x_L = recs[l].x_in, recs[L - 1].out
grad_l, grad_L = torch.autograd.grad(loss, [x_l, x_L], retain_graph=True)
residual_sum = sum(recs[i].branch for i in range(l, L))
through_residuals, = torch.autograd.grad(residual_sum, x_l, grad_outputs=grad_L)
direct = grad_L
assert torch.allclose(direct + through_residuals, grad_l, atol=1e-10, rtol=0)
print(f"blocks {l}..{L - 1}: dLoss/dx_l = direct + through the residuals, to 1e-10")

# %%
print(f"|direct| = {direct.norm():.3e}, |through residuals| = {through_residuals.norm():.3e}, "
      f"|dLoss/dx_l| = {grad_l.norm():.3e}")

# %% [markdown]
# **Picture: the gradient reaching each block.** For the residual and the plain ResNet-32, at
# initialisation and after training, the norm of $\partial \text{Loss} / \partial x_l$ at every block's input
# (one training batch, in training mode as during training). Without shortcuts, the gradient has to pass
# through every layer's Jacobian on its way down; with them, each block also receives the direct term.

# %%
train_images, train_labels, _ = load_tiles(root, "train")
xb, yb = train_images[:64].float() / 255, train_labels[:64]

def gradient_norms(model):
    model = copy.deepcopy(model).cpu().train()       # a copy: training mode updates batch-norm statistics
    with record_stream(model) as recs:
        loss = loss_fn(model(xb), yb)
    grads = torch.autograd.grad(loss, [r.x_in for r in recs])
    return [g.norm().item() for g in grads]

norms = {}
for name, trained in [("ResNet-32", resnet), ("plain-32", plain)]:
    torch.manual_seed(0)                            # the initial weights the reference's seed 0 started from
    fresh = build_model(reference.REGISTRY[name.lower()].model)
    norms[(name, "at initialisation")] = gradient_norms(fresh)
    norms[(name, "trained")] = gradient_norms(trained)

fig, ax = plt.subplots(figsize=(9, 4))
for (name, when), values in norms.items():
    ax.semilogy(values, ("-" if name.startswith("ResNet") else "--") + ("o" if when == "trained" else ""),
                label=f"{name}, {when}", color="tab:purple" if name.startswith("ResNet") else "tab:orange",
                alpha=1.0 if when == "trained" else 0.6)
ax.set_xlabel("block l"); ax.set_ylabel(r"$\|\partial$Loss$/\partial x_l\|$"); ax.legend(fontsize=8)
plt.show()
ratio = {k: v[0] / v[-1] for k, v in norms.items()}
for k, r in ratio.items():
    print(f"{k[0]:9s} {k[1]:18s} gradient norm at block 0 / at the last block: {r:8.2f}")

# %% [markdown]
# **What this run shows.** At 32 layers *with batch normalisation*, neither network's gradient vanishes:
# BN rescales every layer, and that, not the shortcut, is what keeps plain-32 trainable at all (notebook
# 01: it trains, only worse). The norms grow towards the input in both, because the stream is smaller
# there (a normalised layer's gradient scales like $1/\|x\|$; the figure in section 2 shows $\|x_l\|$ growing
# with depth). The shortcut's benefit at this depth is the optimisation of notebook 01, not a rescued
# gradient; He et al. (2016) show the direct term becoming decisive at hundreds to a thousand layers.
#
# ## 4. The ensemble view (Veit et al. 2016)
#
# Unroll all $n$ blocks of a residual network, not just one stage, keeping each block's two routes (the
# shortcut or the residual branch) and the network is a collection of $2^n$ **paths**. A path that takes
# $k$ residual branches passes through $k$ blocks' layers; there are $\binom{n}{k}$ such paths, so if every
# route were equally used, path lengths would follow a Binomial$(n, \tfrac12)$ distribution: most paths are
# of medium length, and very few are as deep as the network.

# %%
fig, ax = plt.subplots(figsize=(9, 3.6))
for n, label in [(len(blocks), f"our ResNet-32 (n = {len(blocks)} blocks)"), (54, "ResNet-110 (n = 54)")]:
    k = np.arange(n + 1)
    ax.plot(k, [comb(n, int(i)) / 2 ** n for i in k], "o-", ms=3, label=f"{label}: $2^{{{n}}}$ = {2 ** n:.2e} paths")
ax.set_xlabel("path length k (residual branches taken)"); ax.set_ylabel("share of paths"); ax.legend()
plt.show()

# %% [markdown]
# ### Lesion study: deleting blocks
#
# If a residual network behaves like an ensemble of many paths, deleting one block removes only the
# paths through its branch (half of them), and the network should keep working: Eq. (3) turns the
# block into the identity. A plain network has a single path; deleting one of its layers breaks it.
# `lesion(model, blocks)` runs a network with chosen branches removed (for a plain block, with the
# whole layer removed: possible only where it keeps width and resolution).

# %%
eval_images, eval_labels = test_images, test_labels
nice = {"resnet-32": "ResNet-32", "plain-32": "plain-32"}
rows, base = [], []
for name, by_seed in nets.items():
    for seed, model in by_seed.items():
        base.append({"net": nice[name], "seed": seed, "accuracy": accuracy(model, eval_images, eval_labels)})
        for i, block in enumerate(residual_blocks(model)):
            if block.plain and not block.keeps_shape:   # a plain layer that changes shape cannot be removed
                continue
            with lesion(model, [i]):
                rows.append({"net": nice[name], "seed": seed, "deleted block": i,
                             "accuracy": accuracy(model, eval_images, eval_labels),
                             "downsampling": not block.keeps_shape})
single, base = pd.DataFrame(rows), pd.DataFrame(base)
fig, ax = plt.subplots(figsize=(11, 3.8))
sns.barplot(data=single, x="deleted block", y="accuracy", hue="net", ax=ax, palette=["tab:purple", "tab:orange"],
            errorbar=("pi", 100))                        # the bar: the mean over seeds; the line: lowest to highest
for i in single[single.downsampling]["deleted block"].unique():
    ax.axvspan(i - 0.5, i + 0.5, color="gray", alpha=0.15)
for name, color in [("ResNet-32", "tab:purple"), ("plain-32", "tab:orange")]:
    ax.axhline(base[base.net == name].accuracy.mean(), color=color, ls=":", lw=1)
ax.axhline(1 / len(CLASSES), color="k", ls="--", lw=1, label="chance")
ax.set_title(f"test accuracy with one block deleted, {len(seeds)} seeds "
             "(grey: downsampling blocks; dotted: nothing deleted)")
ax.legend(fontsize=8, loc="lower left")
plt.show()
# per seed: the mean and the worst single deletion; then their mean and sd over the seeds
per_seed = single.groupby(["net", "seed"])["accuracy"].agg(["mean", "min"]).join(
    base.set_index(["net", "seed"]).rename(columns={"accuracy": "intact"}))
print(per_seed.round(3).to_string())
print(per_seed.groupby("net").agg(["mean", "std"]).round(3).to_string())
survive = single.assign(kept=single.accuracy > 0.9).groupby(["net", "seed"])["kept"].sum().unstack("seed")
print("single deletions that keep the test accuracy above 90 %, per seed:\n" + survive.to_string())
print(f"the majority class's share of the test split: {np.bincount(eval_labels.numpy()).max() / len(eval_labels):.3f}")

# %% [markdown]
# Deleting several blocks at once: for each $k$, delete $k$ blocks of the residual network chosen at
# random (several draws for each of the three seeds), and watch the accuracy. Veit et al. found a smooth
# decline, the signature of an ensemble, rather than the collapse a single deep path would show.

# %%
rng = np.random.default_rng(config.seed)
draws = config.pick(full=3, fast=1)
ks = range(1, len(blocks) + 1, config.pick(full=1, fast=5))
rows = []
for seed, model in nets["resnet-32"].items():
    for k in ks:
        for _ in range(draws):
            chosen = sorted(rng.choice(len(blocks), size=k, replace=False).tolist())
            with lesion(model, chosen):
                rows.append({"seed": seed, "k": k, "accuracy": accuracy(model, eval_images, eval_labels)})
multi = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(8, 3.6))
sns.lineplot(data=multi, x="k", y="accuracy", hue="seed", marker="o", errorbar=None, ax=ax, palette="Purples_d")
ax.axhline(1 / len(CLASSES), color="k", ls="--", lw=1, label="chance"); ax.legend(title="seed")
ax.set_xlabel("blocks deleted at random"); ax.set_title("ResNet-32: test accuracy as blocks are deleted")
plt.show()
print(multi.pivot_table(index="k", columns="seed", values="accuracy", aggfunc="mean").round(3).to_string())

# %% [markdown]
# **Reading the lesion plots honestly.** Veit et al. measured this on ResNet-110 trained for 160 epochs on
# CIFAR; our ResNet-32s are the three reference seeds (30 epochs on 3,024 tiles), and they are only partly the
# ensemble Veit et al. describe. The three seeds agree on the pattern (the black lines span them):
#
# - deleting one of the **later** blocks of a stage (8 and 9, 12 to 14) costs the residual network almost
#   nothing, as Veit et al. found: 5 to 7 single deletions per seed keep it above 90 % test accuracy. The
#   plain network has no such layer on any seed: deleting any layer that can be removed takes it to 0.334
#   ± 0.009 on average (the mean over its deletions, over the seeds), near the share of a single class;
# - but the **early** blocks of the residual network (0 to 2 above all) are fragile: with a single 3×3 stem
#   in front of them they do most of the work of turning colours into features, so the "ensemble" leans on
#   them (deleting block 0 takes every seed to 0.110, below chance). The downsampling blocks (5, 10), whose
#   shortcut is a learned projection, are fragile too, as in Veit et al.;
# - deleting blocks at random therefore does not degrade smoothly here, unlike in Veit et al.: with one
#   block deleted the mean over the draws is 0.957, 0.384 and 0.941 on the three seeds (0.384: the draws of
#   seed 1 hit fragile blocks), with two it is 0.234 to 0.548, and from six deletions on the seeds stay
#   between 0.23 and 0.37, around 0.296, the share of one class, where all three sit from eleven on: by then a
#   fragile block is gone in every draw.
#
# The gradient of section 3 shows the same from the other side: in the trained network most of the gradient
# reaching stage 1 arrives *through* the residuals (norm 8.988e-01 in the print of section 3), not by the
# direct term (5.321e-03).

# %% [markdown]
# ## Summary
#
# - Applying Eq. (3) repeatedly gives Eq. (4) and, by induction, Eq. (5): inside a stage,
#   $x_L = x_l + \sum_{i=l}^{L-1} F_i(x_i)$. (The write-up's $F_l(x_{l-1})$ and $F_l(x_i)$ are index slips.)
# - On a trained ResNet-32 in float64 Eq. (5) holds to rounding error for every pair of blocks in a stage.
# - Eq. (6): the gradient at $x_l$ is the gradient at $x_L$ *plus* a term through the residuals; autograd agrees.
# - Read as paths, $n$ blocks give $2^n$ paths of binomially distributed length. Veit et al. found that
#   deleting blocks degrades a residual network gradually. Our ResNet-32 (three reference seeds) survives
#   the loss of most single later blocks, but not of its early or downsampling blocks, and a few random
#   deletions take it to a single class; deleting any one layer of the plain network breaks it.
# - Notebook 03 puts the classifier on top of Eq. (5): the class score becomes a sum over these members.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **Where (5) stops.** Run the check across a downsampling block (l in stage 1, L in stage 2). How large is
#    the error, and which term of Eq. (1) is responsible?
# 2. **Post-activation.** Repeat the check of Eq. (5) on `mdnet_utils.models.cifar_resnet(32, preact=False)`. Why does it fail,
#    even inside a stage?
# 3. **Gradient by path length.** Veit et al. measured how much gradient flows through paths of each length by
#    sampling which blocks' branches are active in the backward pass. Implement it with `lesion` on the
#    backward pass only (hint: detach chosen branches), and find where most gradient comes from.
# 4. **Which blocks matter?** Delete the single most harmful block of the residual network together with
#    its neighbour. Is the damage the sum of the two single deletions?

# %% [markdown]
# ### Exercise A · The paths of a linear residual network
#
# Take residual branches that are linear maps, $F_i(x) = A_i x$. Then $x_n = (I + A_{n-1}) \cdots (I + A_0)\, x$,
# and multiplying out gives one term per path: a choice, for every block, of the shortcut or the branch.
# Write `paths_by_length(x, matrices)` that returns the list $[s_0, \dots, s_n]$, where $s_k$ is the sum of the
# terms of the paths that take exactly $k$ branches (so $s_0 = x$ and $s_0 + \dots + s_n = x_n$). `x` is a
# vector of shape `(D,)`, `matrices` a list of $n$ tensors `(D, D)`. Enumerate the $2^n$ paths
# (`itertools.product((0, 1), repeat=n)`); remember that the block applied first is the rightmost factor.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
import itertools


def paths_by_length(x, matrices):
    """Sum of the paths through n linear residual blocks, grouped by the number k of branches they take."""
    n = len(matrices)
    sums = [torch.zeros_like(x) for _ in range(n + 1)]
    for path in itertools.product((0, 1), repeat=n):      # 1: the branch of block i, 0: its shortcut
        term = x
        for i in range(n):                                 # block 0 acts first
            if path[i]:
                term = matrices[i] @ term
        sums[sum(path)] += term
    return sums


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_paths_by_length

check_paths_by_length(paths_by_length)


# %% [markdown]
# ### Exercise B · Eq. (6)'s two terms
#
# Write `gradient_split(x_l, branches, grad_L)`: given a stage's input `x_l`, its residual branches (a list of
# functions $F_i$) and the gradient of the loss at its output, `grad_L` $= \partial \text{Loss} / \partial x_L$,
# return Eq. (6)'s two terms `(direct, through_residuals)`, each shaped like `x_l`. Build
# $x_L = x_l + \sum_i F_i(x_i)$ block by block from a copy of `x_l` that requires gradients, then use
# `torch.autograd.grad` with `grad_outputs=grad_L` on the sum of the residuals, as in section 3.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def gradient_split(x_l, branches, grad_L):
    """Eq. (6): dLoss/dx_l = grad_L (direct) + grad_L d(sum_i F_i(x_i))/dx_l (through the residuals)."""
    x = x_l.detach().clone().requires_grad_(True)
    stream, residuals = x, 0
    for branch in branches:
        r = branch(stream)
        residuals = residuals + r
        stream = stream + r
    through, = torch.autograd.grad(residuals, x, grad_outputs=grad_L)
    return grad_L, through


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_gradient_split

check_gradient_split(gradient_split)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. In Eq. (5), which input does the residual function $F_i$ receive?
#
#    <details><summary>Answer</summary>
#
#    Its own block's input $x_i$, not $x_l$ (the write-up's index slip).
#
#    </details>
#
# 2. Why does Eq. (5) hold only within a stage?
#
#    <details><summary>Answer</summary>
#
#    Where a block changes width or resolution its shortcut is a projection, not the identity, so $x_{l+1} \ne x_l + F_l(x_l)$ there.
#
#    </details>
#
# 3. How many paths does a network of $n$ residual blocks have, and how many of them take $k$ branches?
#
#    <details><summary>Answer</summary>
#
#    $2^n$ paths, $\binom{n}{k}$ of them of length $k$.
#
#    </details>
#
# 4. What does the '1' in Eq. (6) guarantee, and what did this notebook's measurement show at 32 layers?
#
#    <details><summary>Answer</summary>
#
#    The gradient at $x_L$ reaches $x_l$ unchanged; at 32 layers with batch norm neither network's gradient vanishes, so the benefit here is easier optimisation, not a rescued gradient.
#
#    </details>

# %% [markdown]
# ## References
#
# - K. He, X. Zhang, S. Ren, J. Sun. *Identity Mappings in Deep Residual Networks.* ECCV 2016 (arXiv:1603.05027).
# - A. Veit, M. Wilber, S. Belongie. *Residual Networks Behave Like Ensembles of Relatively Shallow Networks.*
#   NeurIPS 2016 (arXiv:1605.06431).
# - Z. Zhang, Y. Xie, F. Xing, M. McGough, L. Yang. *MDNet: A Semantically and Visually Interpretable Medical
#   Image Diagnosis Network.* CVPR 2017 (arXiv:1707.02485).
