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
# - to verify Eq. (5) numerically (float64, to 1e-10) on a trained network, for every pair of blocks in a stage, and
#   to see it fail where a ReLU follows the sum (the post-activation block);
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
# On a 2-core laptop CPU: **~3.5 min** in full mode (most of it the lesion studies over three seeds; nothing is
# trained: the networks are the shipped references), **~25 s** in fast mode (`MDNET_FAST=1`, for tests only).
# Measured by `make run` and `make runtimes` (`notebooks/runtimes.json`).

# %%
# Setup: the same first cell in every notebook.
# The inline backend from the start: a figure made outside pyplot (the diagrams) is shown as a cell's value too.
# %matplotlib inline
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
from mdnet_utils import config, diagrams, get_device, reference, seed_everything
from mdnet_utils.data import CLASSES, make_synthetic_dataset
from mdnet_utils.data.loading import load_tiles
from mdnet_utils.evaluation.diagnosis import accuracy
from mdnet_utils.models import build_model, cifar_resnet
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
# Unroll the substitution all the way and each $x_i$ inside the sum is itself a sum: three blocks are eight
# paths from $x_0$ to $x_3$, one for each choice, at every block, between its shortcut and its branch (section 4
# counts them):

# %%
diagrams.unrolled_paths(3)

# %% [markdown]
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

def identity_segments(blocks):
    """Runs of consecutive blocks with an identity shortcut: inside each, Eq. (3) holds block by block."""
    segments, current = [], []
    for i, block in enumerate(blocks):
        if not block.keeps_shape:
            segments.append(current); current = []
            continue
        current.append(i)
    return [s for s in segments + [current] if s]


def eq5_errors(records, segments):
    """max |x_L - x_l - sum_{i=l}^{L-1} F_i(x_i)| for every pair l < L inside a segment (NaN elsewhere)."""
    n = len(records)
    errors = np.full((n + 1, n + 1), np.nan)
    for seg in segments:
        for a, l in enumerate(seg):
            for L in seg[a:]:
                L = L + 1                                   # x_L is the output of block L-1
                x_l, x_L = records[l].x_in, records[L - 1].out
                total = sum(records[i].branch for i in range(l, L))
                errors[l, L] = (x_L - x_l - total).abs().max().item()
    return errors


segments = identity_segments(blocks)
errors = eq5_errors(records, segments)
print(f"{np.isfinite(errors).sum()} pairs (l, L) in {len(segments)} identity segments; "
      f"largest |x_L - x_l - sum F_i(x_i)| = {np.nanmax(errors):.1e}")
assert np.nanmax(errors) < 1e-10

# %% [markdown]
# **Check that could fail.** Eq. (5) is not a property of this trained network: it is an identity of the forward
# pass of a pre-activation network, whatever its weights, because nothing follows the sum. So it must hold on
# random weights as well, and it must *fail* on the post-activation network of He et al. (2015), whose block
# applies a ReLU after the sum (Eq. (2), $f$ = ReLU): there $x_{l+1} = \mathrm{ReLU}(x_l + F_l(x_l))$, and each
# ReLU cuts off the negative part of the sum it follows. Both ResNet-32s, random weights, float64, every pair
# $l < L$ within a stage:

# %%
# NBVAL_CHECK_OUTPUT
x_random = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
random_records, random_errors = {}, {}
for preact in (True, False):
    torch.manual_seed(0)
    net = cifar_resnet(32, preact=preact, num_classes=len(CLASSES), stem_stride=2).double().eval()
    kind = "pre-activation" if preact else "post-activation"
    with torch.no_grad():
        random_records[kind] = read_stream(net, x_random)
    random_errors[kind] = eq5_errors(random_records[kind], identity_segments(residual_blocks(net)))
    err = np.nanmax(random_errors[kind])
    verdict = "< 1e-10: Eq. (5) holds" if err < 1e-10 else f"= {err:.1e}: Eq. (5) fails"
    print(f"{kind:15s} ResNet-32, random weights: largest |x_L - x_l - sum F_i(x_i)| {verdict}")
    assert (err < 1e-10) == preact

# %% [markdown]
# **Picture: the two sides of Eq. (5).** Left and middle: for the first stage (blocks 0 to 4), every point is
# one entry of the stage's output (a channel at a pixel of a tile; 4,000 of them drawn at random), placed at the
# value Eq. (5) predicts, $x_0 + \sum_{i=0}^{4} F_i(x_i)$, and at the value the network computes, $x_5$. In the
# trained pre-activation ResNet-32 every point lies on the diagonal. In the post-activation ResNet-32 (random
# weights, random inputs) no output is negative, whatever the sum predicts: the ReLUs after the sums have cut
# it off, block by block. Right: the largest error of Eq. (5) against the number of blocks it unrolls, $L - l$:
# rounding error at every span for pre-activation, trained or not; for post-activation, large from a single
# block on.

# %%
def two_sides(records, segment):
    """Eq. (5)'s two sides over one run of identity blocks, flattened: x_l + sum_i F_i(x_i), and x_L."""
    l, L = segment[0], segment[-1] + 1
    summed = records[l].x_in + sum(records[i].branch for i in range(l, L))
    return summed.flatten(), records[L - 1].out.flatten()


def worst_by_span(errors):
    """The largest error of Eq. (5) over the pairs (l, L) that unroll L - l blocks, for each L - l."""
    spans = {}
    for l, L in zip(*np.nonzero(np.isfinite(errors))):
        spans[L - l] = max(spans.get(L - l, 0.0), errors[l, L])
    return sorted(spans.items())


fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained")
for ax, (name, recs_of) in zip(axes, [("pre-activation ResNet-32, trained (test tiles)", records),
                                      ("post-activation ResNet-32, random weights", random_records["post-activation"])]):
    predicted, computed = two_sides(recs_of, segments[0])
    pick = torch.randperm(len(computed), generator=torch.Generator().manual_seed(0))[:4000]
    ax.scatter(predicted[pick], computed[pick], s=4, alpha=0.3, color="tab:purple")
    ends = [float(predicted[pick].min()), float(predicted[pick].max())]
    ax.plot(ends, ends, "k--", lw=1, label="the diagonal: Eq. (5) holds")
    ax.set_xlabel(r"$x_0 + \sum_{i=0}^{4} F_i(x_i)$, as Eq. (5) predicts"); ax.set_ylabel(r"$x_5$, as computed")
    ax.set_title(name, fontsize=11); ax.legend(loc="upper left", fontsize=9)
for label, errs, style in [("pre-activation, trained", errors, "o-"),
                           ("pre-activation, random weights", random_errors["pre-activation"], "s--"),
                           ("post-activation, random weights", random_errors["post-activation"], "^-")]:
    span, worst = zip(*worst_by_span(errs))
    axes[2].semilogy(span, np.maximum(worst, 1e-18), style, label=label)
axes[2].set_xlabel("blocks unrolled, L - l"); axes[2].set_xticks(range(1, 6))
axes[2].set_ylabel("largest error of Eq. (5)"); axes[2].legend(fontsize=9)
axes[2].set_title("Eq. (5)'s error, float64", fontsize=11)
plt.show()

# %% [markdown]
# And the sizes of the terms, block by block over the 16 test tiles: the stream $\|x_l\|$ that a block reads,
# and the residual $\|F_l(x_l)\|$ it adds. Within a stage the stream grows, block after block; at the
# downsampling blocks its norm drops.

# %%
scale = [records[i].x_in.norm().item() for i in range(len(blocks))]
resid = [records[i].branch.norm().item() for i in range(len(blocks))]
fig, ax = plt.subplots(figsize=(8, 4))
ax.semilogy(scale, "o-", label=r"$\|x_l\|$, the stream a block reads")
ax.semilogy(resid, "s-", label=r"$\|F_l(x_l)\|$, the residual it adds")
for i, blk in enumerate(blocks):
    if not blk.keeps_shape:
        ax.axvline(i, color="gray", ls=":")
ax.set_xlabel("block l"); ax.legend()
ax.set_title("trained ResNet-32: the stream and what each block adds (dotted: downsampling)", fontsize=11)
plt.show()
ratio = np.array(resid) / np.array(scale)
print(f"the residual a block adds is {ratio[1:].min():.2f} to {ratio[1:].max():.2f} times the size of the stream it "
      f"is added to ({ratio[0]:.2f} times at block 0): comparable to it, not a small correction")

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
# **The direct path's share.** The "1" guarantees that the gradient at $x_L$ arrives at $x_l$; it does not say
# how much of the gradient at $x_l$ that is. For each run of blocks with identity shortcuts (where Eq. (5)
# holds), $x_l$ the input of its first block and $x_L$ the output of its last, the norm of the direct term over
# the norm of the whole gradient at $x_l$:

# %%
with record_stream(net64) as stream:              # a fresh graph: the check above has used its own up
    test_loss = loss_fn(net64(x), test_labels[:16])
shares = []
for seg in segments:
    first, last = seg[0], seg[-1] + 1
    g_first, g_last = torch.autograd.grad(test_loss, [stream[first].x_in, stream[last - 1].out], retain_graph=True)
    shares.append((first, last - 1, float(g_last.norm() / g_first.norm())))
    print(f"blocks {first}..{last - 1}: the direct term is {shares[-1][2]:.1%} of the gradient at x_{first} "
          f"(norm {g_last.norm():.3e} of {g_first.norm():.3e})")
first, last, share = shares[0]
print(f"At the input of stage 1 (block {first}), the direct path of Eq. (6) is {share:.1%} of the gradient's norm: "
      + (f"almost all of the gradient there comes through the residuals of blocks {first} to {last}." if share < 0.1
         else f"the residuals of blocks {first} to {last} do not bring almost all of it."))

# %% [markdown]
# So the "1" of Eq. (6) is a guarantee, not the bulk of the gradient: in the trained network, what reaches the
# input of stage 1 comes through the residuals of its blocks (norm 8.988e-01, against 5.321e-03 by the direct
# path, as printed above). In the two later stages the direct path's share is larger (printed per stage).

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

# %%
def stream_norms(model):
    """||x_l|| at every block's input, on the batch and in the mode of the gradients above."""
    model = copy.deepcopy(model).cpu().train()
    with torch.no_grad():
        return [r.x_in.norm().item() for r in read_stream(model, xb)]


for name, trained in [("ResNet-32", resnet), ("plain-32", plain)]:
    torch.manual_seed(0)
    fresh = build_model(reference.REGISTRY[name.lower()].model)
    for when, model in [("at initialisation", fresh), ("trained", trained)]:
        stream = stream_norms(model)
        print(f"{name:9s} {when:18s} the stream's norm at the last block / at block 0: {stream[-1] / stream[0]:5.2f}; "
              f"the gradient's at block 0 / at the last block: {ratio[(name, when)]:8.2f}")

# %% [markdown]
# **What this run shows.** At 32 layers *with batch normalisation*, neither network's gradient vanishes:
# BN rescales every layer, and that, not the shortcut, is what keeps plain-32 trainable at all (notebook
# 01: it trains, only worse). The norms grow towards the input in both (the two cells above print by how much),
# for different reasons.
#
# - In the residual network the stream is a sum that grows block by block within a stage (the figure of
#   section 2), and a layer that normalises its input passes back a gradient that scales like $1/\|x\|$: the
#   smaller stream near the input receives the larger gradient, and where the stream shrinks, after each
#   downsampling block, the gradient steps up (blocks 6 and 11 in the curves at initialisation).
# - That explanation does not hold for the plain network: its stream is not a sum, and at initialisation it is
#   about as large at the last block as at block 0, yet at initialisation its gradient grows towards the input
#   more than the residual network's. That is batch norm's gradient explosion: in a deep network with batch
#   norm and no shortcuts, the gradient grows exponentially with depth towards the input at initialisation,
#   whatever the weights' scale, and batch norm itself is the cause (Yang et al. 2019); the
#   gradients also lose their correlation from one input to the next, "shatter", which shortcuts prevent
#   (Balduzzi et al. 2017). Yang et al. also find that training narrows the gradient's range, as it does here:
#   the trained plain-32's ratio is below its ratio at initialisation.
#
# The shortcut's benefit at this depth is the optimisation of notebook 01, not a rescued gradient; He et al.
# (2016) show the direct term becoming decisive at hundreds to a thousand layers.
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
#   between 0.234 and 0.367, around 0.296, the share of one class, where all three sit from eleven on: by then a
#   fragile block is gone in every draw.
#
# The gradient of section 3 points the same way: at the input of stage 1, most of the gradient arrives through
# the residuals of blocks 0 to 4, not by the direct path.

# %% [markdown]
# ## Summary
#
# - Applying Eq. (3) repeatedly gives Eq. (4) and, by induction, Eq. (5): inside a stage,
#   $x_L = x_l + \sum_{i=l}^{L-1} F_i(x_i)$. (The write-up's $F_l(x_{l-1})$ and $F_l(x_i)$ are index slips.)
# - On a trained ResNet-32 in float64 Eq. (5) holds to rounding error for every pair of blocks in a stage. It is
#   an identity of the pre-activation forward pass, for any weights: it holds on random weights too, and fails
#   on a post-activation ResNet-32, whose ReLU after each sum breaks the unrolled sum.
# - Eq. (6): the gradient at $x_l$ is the gradient at $x_L$ *plus* a term through the residuals; autograd agrees.
#   In the trained network the direct term is a small part of the gradient at the input of stage 1; most of it
#   arrives through the residuals.
# - Both networks' gradients grow towards the input; in the plain one that is batch norm's gradient explosion,
#   not the size of the stream.
# - Read as paths, $n$ blocks give $2^n$ paths of binomially distributed length. Veit et al. found that
#   deleting blocks degrades a residual network gradually. Our ResNet-32 (three reference seeds) does not: it
#   keeps above 90 % test accuracy after 5 to 7 of its 15 single deletions (later blocks of a stage), falls
#   to 0.110 without block 0 and is fragile without its downsampling blocks, and from six random deletions on
#   it is near the share of a single class. Deleting any one removable layer of the plain network takes it
#   below 90 % on every seed.
# - Notebook 03 puts the classifier on top of Eq. (5): the class score becomes a sum over these members.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **Where (5) stops.** Run the check across a downsampling block (l in stage 1, L in stage 2). How large is
#    the error, and which term of Eq. (1) is responsible?
# 2. **Where the post-activation sum breaks.** In the post-activation ResNet-32 of section 2, count for each
#    block the share of the entries of $x_l + F_l(x_l)$ that its ReLU sets to zero. Does the error of Eq. (5)
#    grow with the number of blocks between $l$ and $L$?
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


# %% [markdown]
# ### Exercise C · A lesion study by hand
#
# Section 4 deletes blocks with `lesion`, which hooks into them. Do it yourself: write
# `lesion_accuracy(model, images, labels, deleted)`, the accuracy of a pre-activation CIFAR ResNet (such as the
# references) on uint8 `images` with the residual branches of the blocks `deleted` removed (indices into
# `model.blocks`, the numbering of `residual_blocks`). Walk the model's parts in order: `model.stem`; each block
# of `model.blocks`, where a deleted one keeps only its shortcut, $x_{l+1} = h(x_l)$ (`block.h`); the final
# BN-ReLU `model.final_act`; the global average pooling; `model.fc`. Leave the model as it was. The check
# refuses calls to the model itself and to `lesion`, and compares you with `lesion` on a small seeded ResNet-14
# (two blocks a stage) with random batch norms, for six sets of deleted blocks, downsampling blocks among them.
# Then run it on a reference: does deleting block 0 give the accuracy of section 4?

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def lesion_accuracy(model, images, labels, deleted):
    """Accuracy of a pre-activation CIFAR ResNet with the residual branches of the blocks `deleted` removed."""
    with torch.no_grad():
        x = model.stem(images.float() / 255)
        for i, block in enumerate(model.blocks):
            x = block.h(x) if i in deleted else block(x)   # deleted: F_l gone, the shortcut h(x_l) kept
        logits = model.fc(model.final_act(x).mean((2, 3)))
    return float((logits.argmax(1) == labels).float().mean())


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_lesion_accuracy

check_lesion_accuracy(lesion_accuracy)

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
#
# 5. Why does Eq. (5) fail for a post-activation network, even within a stage?
#
#    <details><summary>Answer</summary>
#
#    Its block applies a ReLU after the sum, $x_{l+1} = \mathrm{ReLU}(x_l + F_l(x_l))$: each ReLU cuts off the negative part of the sum, so $x_L$ is no longer $x_l$ plus the residuals.
#
#    </details>

# %% [markdown]
# ## References
#
# - K. He, X. Zhang, S. Ren, J. Sun. *Identity Mappings in Deep Residual Networks.* ECCV 2016 (arXiv:1603.05027).
# - A. Veit, M. Wilber, S. Belongie. *Residual Networks Behave Like Ensembles of Relatively Shallow Networks.*
#   NeurIPS 2016 (arXiv:1605.06431).
# - G. Yang, J. Pennington, V. Rao, J. Sohl-Dickstein, S. S. Schoenholz. *A Mean Field Theory of Batch
#   Normalization.* ICLR 2019 (arXiv:1902.08129).
# - D. Balduzzi, M. Frean, L. Leary, J. P. Lewis, K. W.-D. Ma, B. McWilliams. *The Shattered Gradients Problem: If
#   resnets are the answer, then what is the question?* ICML 2017 (arXiv:1702.08591).
# - Z. Zhang, Y. Xie, F. Xing, M. McGough, L. Yang. *MDNet: A Semantically and Visually Interpretable Medical
#   Image Diagnosis Network.* CVPR 2017 (arXiv:1707.02485).
