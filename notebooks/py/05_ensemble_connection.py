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
# # 05 · The ensemble-connection
#
# Eq. (9) wants a classifier per member; Eq. (10) makes the members available to it. Instead of *adding*
# a block's residual to the stream, MDNet *concatenates* it: the members then sit side by side in the
# channels, and one linear head over the concatenation is a decoupled head (notebook 04), as long as no later
# block adds them up again. The paper's
# equation and the authors' released code read this differently; we build both, count their channels and
# parameters against the paper's table, and compare them with the residual networks of notebooks 01 and 04
# (all four as reference models, three seeds each).
#
# ### What you will learn
# - Eq. (10), $y_{l+1} = F_l(y_l) \oplus y_l$, and its two readings: concatenation at every block (literal), and at stage transitions only (the released EcNet);
# - the channel bookkeeping of both, block by block, and EcNet's parameter counts against the paper's table (to the parameter);
# - how pre-activation ResNet, decoupled ResNet, literal ensemble-connection and EcNet compare on our tiles over three seeds (accuracy, parameters, time per epoch, CAM localisation), and what that does and does not say.
#
# *Equations covered: (10).*
#
# ### Prerequisites
# Notebooks 01–04.
#
# ### Runtime
# On a 2-core laptop CPU: **~45 s** in full mode (nothing is trained: the four networks are reference models
# shipped in `checkpoints/`), **~20 s** in fast mode (`MDNET_FAST=1`, for tests only). Measured by `make run` and
# `make runtimes` (`notebooks/runtimes.json`).

# %%
# Setup: the same first cell in every notebook.
# The inline backend from the start: a figure made outside pyplot (the diagrams) is shown as a cell's value too.
# %matplotlib inline
import copy
import platform
import time

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

import mdnet_utils
from mdnet_utils import config, diagrams, get_device, reference, seed_everything
from mdnet_utils.data import CLASSES, ReportDataset, make_synthetic_dataset
from mdnet_utils.evaluation.localisation import localisation_scores
from mdnet_utils.evaluation.seeds import seed_curves
from mdnet_utils.models import channel_table, ecnet, literal_ecnet, model_cam

seed_everything(config.seed)
device = get_device()
print(f"mode: {config.mode} | mdnet_utils {mdnet_utils.__version__} | torch {torch.__version__} | "
      f"python {platform.python_version()}")
sns.set_theme(style="whitegrid", context="notebook")


# %% [markdown]
# ## 1. Eq. (10), read two ways
#
# The residual block adds, $y_{l+1} = y_l + F_l(y_l)$. The ensemble-connection concatenates along the channels:
#
# $$\text{(10)}\quad y_{l+1} = F_l(y_l) \oplus y_l .$$
#
# **Read literally**, every block concatenates, so the stream keeps every member separately and grows by
# the width of each residual, block after block, as in a DenseNet (`literal_ecnet`). Where a block halves
# the resolution, the carried copy of $y_l$ must be pooled to fit (we use a 2×2 average; a choice of ours).
#
# **As released** (the authors' Torch7 "EcNet", the network of the paper's CIFAR table; `ecnet`): only the
# *first* block of each stage concatenates, its residual with a strided 1×1 projection of its input; the other
# blocks of the stage are ordinary identity-add blocks at the doubled width; stage 3 runs at half its nominal
# width. So the released network is a residual network with a concatenation at each stage transition. The
# module docstring of `mdnet_utils/models/ecnet.py` gives the whole arithmetic.
#
# **Picture.** The last stage of each network this notebook compares, drawn from the built networks
# (`mdnet_utils.diagrams.ecnet_stage`, channel counts on a 64-pixel tile). In the literal EcNet-11-6 the block
# concatenates its branch to its input (pooled to the new resolution), so the width grows. In the released
# EcNet-20-4 the stage's first block concatenates its branch with a strided 1×1 projection $P_l$ of its input;
# the next block's branch reads all of the stage's channels and its residual is *added* to all of them, so
# after the transition the two concatenated halves are mixed again.

# %%
diagrams.ecnet_stage("literal")    # a Figure: shown once, as the cell's value

# %%
diagrams.ecnet_stage("released")

# %% [markdown]
# Here is the bookkeeping, block by block, for a small instance of each:

# %%
# NBVAL_CHECK_OUTPUT
def bookkeeping(model):
    rows = [{"block": r.index, "connection": r.connection, "shortcut": r.shortcut, "stride": r.stride,
             "in": r.in_channels, "F_l": r.branch_channels, "out": r.out_channels} for r in channel_table(model)]
    return pd.DataFrame(rows).to_string(index=False)

print("released EcNet-20-2 (n = 2 blocks a stage):")
print(bookkeeping(ecnet(20, 2, len(CLASSES))))
print("\nliteral Eq. (10), depth 20, widen 1:")
print(bookkeeping(literal_ecnet(20, 1, len(CLASSES))))

# %% [markdown]
# ### Parameter counts against the paper
#
# The paper's CIFAR table lists EcNet-110-4 at 1.8M and EcNet-56-12 at 8.0M parameters (CIFAR-10 head).
# A faithful rebuild must land on the same counts; the authors' own training log prints 7,918,362 for
# EcNet-56-12:

# %%
# NBVAL_CHECK_OUTPUT
for depth, k, paper in [(110, 4, "1.8M"), (56, 12, "8.0M")]:
    n = sum(p.numel() for p in ecnet(depth, k, 10).parameters())
    print(f"EcNet-{depth}-{k}: {n:,} parameters (paper's table: {paper})")
assert sum(p.numel() for p in ecnet(56, 12, 10).parameters()) == 7_918_362   # the released training log

# %% [markdown]
# The paper's CIFAR table, for reference (test error %, from 200 GPU epochs of CIFAR training: **not**
# reproduced here, and not comparable with anything measured on our tiles):
#
# | network | parameters | CIFAR-10 | CIFAR-100 |
# |---|---|---|---|
# | pre-act ResNet-164 | 1.7M | 5.46 | 24.33 |
# | pre-act ResNet-1001 | 10.2M | 4.92 | 22.71 |
# | WRN-40-4 | 8.7M | 4.53 | 21.18 |
# | EcNet-110-4 | 1.8M | 4.91 | 22.53 |
# | EcNet-56-12 | 8.0M | 4.43 | 19.94 |
#
# ## 2. Four networks on our tiles
#
# Same data, same recipe (the references' recipe of notebook 01: 30 epochs on all 3,024 training tiles, AdamW
# one-cycle, stride-2 stem, the checkpoint of the best validation accuracy kept), three seeds each, four
# heads on the ensemble: the pre-activation **ResNet-32** (shared classifier, notebook 01), the **decoupled
# ResNet-32** (notebook 04's per-member BN–ReLU variant), a **literal** ensemble-connection net (depth 11, widen 6) and the released
# **EcNet-20-4**, MDNet's image model in notebooks 06 and 07. The budgets are comparable, not equal:
# concatenation is costly on a CPU, so both EcNets are smaller than ResNet-32 (the table below prints their
# parameters and measured time per epoch).

# %%
root = make_synthetic_dataset(config.dataset_dir, n_images=config.n_images, seed=config.seed)
names = {"ResNet-32": "resnet-32", "decoupled ResNet-32": "resnet-32-decoupled",
         "literal EcNet-11-6": "literal-ecnet-11-6", "EcNet-20-4": "ecnet-20-4"}
refs = {label: reference.metas(name) for label, name in names.items()}    # the JSONs: histories, figures
seeds = sorted(refs["EcNet-20-4"])
nets = {label: {s: reference.load(name, seed=s)[0] for s in seeds} for label, name in names.items()}
print(f"{len(nets)} reference models, seeds {seeds}")

# %%
# Time per epoch, measured the same way for all four: 3 training steps of a 64-tile batch.
xb = torch.rand(64, 3, config.image_size, config.image_size, device=device)
yb = torch.randint(0, len(CLASSES), (64,), device=device)
steps_per_epoch = (3024 + 63) // 64                          # the references' epoch: all training tiles

def seconds_per_epoch(model):
    model = copy.deepcopy(model).train()                      # a copy: training mode moves batch-norm statistics
    opt = torch.optim.SGD(model.parameters(), lr=0.0)        # lr 0: time the step, change nothing
    for i in range(4):
        if i == 1:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(); loss.backward(); opt.step()
    return (time.perf_counter() - start) / 3 * steps_per_epoch

test = ReportDataset(root, "test")
lesioned = [i for i in range(len(test)) if test.entries[i]["label"] in (CLASSES.index("low grade"), CLASSES.index("high grade"))]
xs = torch.stack([test[i]["image"] for i in lesioned])
masks = torch.stack([test[i]["masks"]["lesion"][0] for i in lesioned]) > 0.5

rows = []
for label, by_seed in nets.items():
    for seed, model in by_seed.items():
        meta = refs[label][seed]
        row = {"net": label, "seed": seed, "test accuracy": meta["test"]["accuracy"],
               "training loss": meta["history"][-1]["train_loss"]}
        if hasattr(model, "fc"):                              # a GAP + linear head: CAM (Eq. 7) applies
            with torch.no_grad():
                maps = model_cam(model, xs, classes=model(xs).argmax(1))
            scores = localisation_scores(maps, masks)
            row |= {"CAM mass in lesion": float(scores["mass_inside"].nanmean()),
                    "CAM pointing game": float(scores["pointing_game"].nanmean())}
        rows.append(row)
per_seed = pd.DataFrame(rows).set_index(["net", "seed"])
table = per_seed.groupby("net", sort=False).agg(["mean", "std"])
table[("parameters", "")] = [sum(p.numel() for p in by_seed[0].parameters()) for by_seed in nets.values()]
table[("s / epoch (measured)", "")] = [seconds_per_epoch(by_seed[0]) for by_seed in nets.values()]
chance = float(localisation_scores(torch.ones_like(masks, dtype=torch.float), masks)["mass_inside"].nanmean())
print(f"chance for the CAM mass in the lesion: {chance:.3f}; the decoupled head has no single CAM (NaN)")
print(per_seed.round(3).to_string())
print("\nmean and sd over the seeds\n" + table.to_string(float_format="{:.3f}".format))
for label in ("literal EcNet-11-6", "EcNet-20-4"):                # CAM localisation against ResNet-32's
    for score in ("CAM mass in lesion", "CAM pointing game"):
        d = reference.difference(list(per_seed.loc[label, score]), list(per_seed.loc["ResNet-32", score]))
        print(f"{label} - ResNet-32, {score}: {d['difference']:+.3f} (sd {d['sd_a']:.3f} and {d['sd_b']:.3f}): "
              f"{'measurable' if d['measurable'] else 'not measurable at this scale'}")

# %%
# NBVAL_CHECK_OUTPUT
# The comparisons, each against ResNet-32, by the course's rule (reference.difference), from the shipped JSONs
for label in list(names)[1:]:
    a = [refs[label][s]["test"]["accuracy"] for s in seeds]
    b = [refs["ResNet-32"][s]["test"]["accuracy"] for s in seeds]
    d = reference.difference(a, b)
    print(f"{label:19s} - ResNet-32, test accuracy: {100 * d['difference']:+.2f} points "
          f"(sd {100 * d['sd_a']:.2f} and {100 * d['sd_b']:.2f}): "
          f"{'measurable' if d['measurable'] else 'not measurable at this scale'}")

# %%
fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4))
for (label, metas), color in zip(refs.items(), sns.color_palette("tab10")):
    c = seed_curves(metas, "val_accuracy")              # per epoch: mean, min and max over the seeds
    a.plot(c.index, 1 - c["mean"], color=color, lw=2, label=label)
    a.fill_between(c.index, 1 - c["max"], 1 - c["min"], color=color, alpha=0.12)
a.set_xlabel("epoch"); a.set_ylabel("validation error"); a.set_yscale("log"); a.legend(fontsize=8)
a.set_title(f"validation error (mean of {len(seeds)} seeds; band: lowest to highest)")
for (label, row), color in zip(table.iterrows(), sns.color_palette("tab10")):
    b.errorbar(row[("parameters", "")], row[("test accuracy", "mean")], yerr=row[("test accuracy", "std")],
               fmt="o", color=color, ms=4 + row[("s / epoch (measured)", "")] / 5, capsize=4)
    b.annotate(label, (row[("parameters", "")], row[("test accuracy", "mean")]), fontsize=8, xytext=(5, 5),
               textcoords="offset points")
b.set_xscale("log"); b.set_xlabel("parameters"); b.set_ylabel("test accuracy (mean ± sd)")
b.set_title("accuracy against size (marker size: time per epoch)")
plt.show()


# %% [markdown]
# **What this does and does not say.** Over three seeds each, the four networks read the diagnosis of our
# tiles equally well: a test accuracy of 0.948 to 0.957 on the mean, and no network's difference from ResNet-32
# is measurable (ResNet-32's own seeds have a standard deviation of 1.32 points). The validation curves end inside each other's
# bands. The measured time per epoch shows the price of concatenation on a CPU: EcNet-20-4 has about half of
# ResNet-32's parameters and takes about twice its time per epoch. The paper's claim was made on CIFAR with
# 200 GPU epochs and much larger networks (the table above); on a task this easy the ensemble-connection has
# little room to show an advantage in accuracy, and we neither claim one nor refute it. What it does show:
# both readings of Eq. (10) are trainable networks with a plain GAP + linear head, so their CAMs (Eq. 7) come
# for free. In the literal EcNet that head is a decoupled classifier (Eq. 9): every block's output reaches it
# in channels of its own. (The head's BN–ReLU acts channel by channel, so each member is normalised and gated on
# its own: the per-member form of notebook 04, not the one shared BN–ReLU of Eq. (9) exactly; a concatenation
# leaves no sum to share one.) In the released EcNet the head is not a decoupled classifier: the identity-add
# blocks after each transition mix the two concatenated halves again, so the head no longer sees the members
# apart. (The decoupled ResNet-32, notebook 04's per-member variant, has one head per member, each after its
# own BN–ReLU, so it has no single CAM: NaN in the table; summing its members' maps would give one, an exercise.)
#
# The CAMs do differ, measurably and in two directions. Both EcNets put more of their CAM's mass inside the
# lesion than ResNet-32 (0.634 ± 0.014 and 0.611 ± 0.009 against 0.571 ± 0.010; chance 0.297), but their
# maximum lands in the lesion less often (pointing game 0.894 ± 0.018 and 0.852 ± 0.024 against
# 0.955 ± 0.009). More mass inside and the peak outside more often: the two scores measure different things,
# and MDNet's attention, built on EcNet-20-4's CAM in notebooks 06 and 07, inherits both.

# %% [markdown]
# ## Summary
#
# - Eq. (10) concatenates a block's residual with its input instead of adding them; a linear head over the
#   concatenation is then a decoupled classifier (Eq. 9), in the literal reading. In the released EcNet the
#   identity-add blocks after each transition mix the concatenated halves again.
# - Read literally, every block concatenates and the width grows block by block; the authors' released EcNet
#   concatenates only at stage transitions (residual ⊕ strided 1×1 projection), with identity-add blocks in between.
# - Our EcNet matches the released one to the parameter: 7,918,362 for EcNet-56-12 (the authors' log), 1,841,818
#   for EcNet-110-4 (the table's 1.8M).
# - On our tiles all four networks reach the same test accuracy within the spread of three seeds (0.948 to
#   0.957 on the mean); the paper's CIFAR numbers are a reference we do not reproduce.
# - The EcNets' CAMs put measurably more mass inside the lesion than ResNet-32's, and their maxima land in it
#   measurably less often.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **The literal net's growth.** From the bookkeeping table, write the number of output channels of block $l$
#    of the literal net as a formula. How many parameters would a literal net of depth 110 have?
# 2. **Where to concatenate.** Build an EcNet variant that concatenates in the *last* block of each stage instead
#    of the first. Which members does its head then see separately?
# 3. **Decoupled EcNet.** Read the released EcNet's final feature as two members (the last stage's concatenated
#    parts) and use `DecoupledHead.from_linear` to split its head. Which part carries more of the logit?
# 4. **A fair budget.** Train `ecnet(29, 4)` (about ResNet-32's size) with the same recipe. Is the time worth it here?

# %% [markdown]
# ### Exercise A · An ensemble-connection block
#
# Write `concat_forward(block, y)`, the forward pass of a `LiteralConcatBlock`, Eq. (10): $y_{l+1} = F_l(y_l) \oplus h(y_l)$,
# from `block.branch` ($F_l$) and `block.h` (the identity, or a 2×2 average where the block halves the resolution),
# concatenated along the channels with $F_l$'s channels first. The check refuses a call to the block itself.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def concat_forward(block, y):
    """Eq. (10): y_{l+1} = F_l(y_l) (+) h(y_l), concatenated along the channels, F_l first."""
    return torch.cat([block.branch(y), block.h(y)], dim=1)


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_concat_forward

check_concat_forward(concat_forward)


# %% [markdown]
# ### Exercise B · The literal net's growth
#
# Write `literal_channels(depth, widen_factor)`: the number of output channels of every block of
# `literal_ecnet(depth, widen_factor)`, in order, from the rule alone: a 16-channel stem, then three stages of
# $n = (\text{depth} - 2) / 9$ blocks, each block concatenating $16k$, $32k$ or $64k$ new channels (stage 1, 2, 3) to its
# input. (This is Exercise 1's formula, checked.)

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def literal_channels(depth, widen_factor):
    """Channels after each literal ensemble-connection block: every block adds its stage's growth."""
    n = (depth - 2) // 9
    channels, out = 16, []
    for growth in (16 * widen_factor, 32 * widen_factor, 64 * widen_factor):
        for _ in range(n):
            channels += growth
            out.append(channels)
    return out


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_literal_channels

check_literal_channels(literal_channels)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. What does $\oplus$ in Eq. (10) do that $+$ in Eq. (3) does not?
#
#    <details><summary>Answer</summary>
#
#    It keeps $F_l(y_l)$ and $y_l$ in separate channels, so a later linear head can weigh them separately.
#
#    </details>
#
# 2. Where does the authors' released EcNet concatenate, and where does it add?
#
#    <details><summary>Answer</summary>
#
#    It concatenates at the first block of each stage (the residual and a strided 1×1 projection) and adds inside the stages.
#
#    </details>
#
# 3. Why does the literal reading grow so fast, and what keeps the released net's size in check?
#
#    <details><summary>Answer</summary>
#
#    Every block adds its branch's width; the released net concatenates three times only and runs stage 3 at half its nominal width.
#
#    </details>
#
# 4. How do you know our EcNet is the released one?
#
#    <details><summary>Answer</summary>
#
#    Not from the parameter counts alone: matching counts are necessary, not sufficient (another layout can have the same count). They do match to the parameter (7,918,362 for EcNet-56-12, the count the authors' own log prints), and the layout follows the released code block by block (the bookkeeping table: where it concatenates, the strided 1×1 projection, stage 3 at half width). A stronger test would load the authors' trained weights, or compare outputs with their code on the same input.
#
#    </details>

# %% [markdown]
# ## References
#
# - Z. Zhang, Y. Xie, F. Xing, M. McGough, L. Yang. *MDNet: A Semantically and Visually Interpretable Medical
#   Image Diagnosis Network.* CVPR 2017 (arXiv:1707.02485), Section 3.1 and Table 1.
# - The authors' released image model: github.com/zizhaozhang/mdnet-cvpr2017 (`cnn/models/ecnet.lua`, training logs).
# - G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger. *Densely Connected Convolutional Networks.* CVPR 2017.
# - K. He, X. Zhang, S. Ren, J. Sun. *Identity Mappings in Deep Residual Networks.* ECCV 2016.
