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
# # 01 · ResNet from the ground up
#
# MDNet's image model is a residual network with one new kind of skip connection. Before we can
# change the skip connection we need the original, built by hand and checked against the real thing.
# This notebook builds residual blocks from equations (1) to (3), assembles them into networks,
# proves that our ResNet-18 *is* torchvision's, and trains a residual network against its plain twin.
#
# ### What you will learn
# - the residual block as an equation: Eq. (1)–(2) (post-activation, He et al. 2015) and Eq. (3) (pre-activation, He et al. 2016);
# - what every block does to a tensor's shape, in a CIFAR-style net and an ImageNet-style net;
# - that `mdnet_utils.models.resnet18` loads torchvision's weights and computes the same function;
# - the degradation problem: why a deeper plain network trains *worse*, and what the shortcut changes.
#
# *Equations covered: (1)–(3).*
#
# ### Prerequisites
# Notebook 00 (the data). PyTorch basics: `nn.Conv2d`, `nn.BatchNorm2d`, a training loop.
#
# ### Runtime
# A few minutes on a 2-core CPU in full mode, most of it training four small networks (the training cell
# prints each one's time; plain-32 is the slowest); about **1 minute** in fast mode (`MDNET_FAST=1`, for tests only).

# %%
# Setup: the same first cell in every notebook.
import platform
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torchvision
from torch import nn

import mdnet_utils
from mdnet_utils import config, get_device, seed_everything
from mdnet_utils.data import CLASSES, make_synthetic_dataset
from mdnet_utils.data.loading import load_tiles
from mdnet_utils.models import BasicBlock, PreActBasicBlock, cifar_resnet, resnet18
from mdnet_utils.models.stream import read_stream, residual_blocks
from mdnet_utils.training.recipes import diagnosis_net

seed_everything(config.seed)
device = get_device()
print(f"mode: {config.mode} | mdnet_utils {mdnet_utils.__version__} | torch {torch.__version__} | "
      f"torchvision {torchvision.__version__} | python {platform.python_version()}")
sns.set_theme(style="whitegrid", context="notebook")


# %% [markdown]
# ## 1. The residual block: Eqs. (1) and (2)
#
# A residual block computes a **residual** $F_l$ of its input $x_l$ and adds it to a **shortcut** $h(x_l)$;
# an activation $f$ follows:
#
# $$\text{(1)}\quad y_l = F_l(x_l) + h(x_l), \qquad\qquad \text{(2)}\quad x_{l+1} = f(y_l).$$
#
# In the original ResNet (He et al. 2015), $F_l$ is conv3×3 – BN – ReLU – conv3×3 – BN, $f$ is a ReLU,
# and $h$ is the identity, except where the block halves the resolution and changes the width: there
# $h$ is a strided 1×1 convolution with BN (the "projection shortcut"). We write it from scratch, in
# the fewest lines that say exactly that:

# %%
class MyBasicBlock(nn.Module):
    # Eqs. (1)-(2), post-activation: x_{l+1} = ReLU(F(x_l) + h(x_l))
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        residual = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))   # F_l(x_l)
        shortcut = x if self.downsample is None else self.downsample(x)        # h(x_l)
        return torch.relu(residual + shortcut)                                 # f(y_l)


# %% [markdown]
# **Check.** Our hand-written block and the package's `BasicBlock` have the same parameter names, so one
# loads the other's weights; they must then compute the same function. And the package block must
# satisfy (1)–(2) term by term: its output is $f(F_l(x_l) + h(x_l))$ with its own `branch` ($F_l$) and `h`.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
x = torch.randn(2, 16, 32, 32)
for stride, c_out in [(1, 16), (2, 32)]:
    ours, theirs = MyBasicBlock(16, c_out, stride).eval(), BasicBlock(16, c_out, stride).eval()
    ours.load_state_dict(theirs.state_dict())                      # strict: same names, same shapes
    y_l = theirs.branch(x) + theirs.h(x)                           # Eq. (1)
    assert torch.allclose(theirs(x), torch.relu(y_l), atol=1e-6)   # Eq. (2), f = ReLU
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)           # the hand-written block is the package's
    print(f"stride {stride}: {tuple(x.shape)} -> {tuple(theirs(x).shape)}, "
          f"shortcut = {'identity' if theirs.downsample is None else '1x1 conv + BN'}: equal")

# %% [markdown]
# ## 2. The pre-activation block: Eq. (3)
#
# He et al. (2016) asked what happens if both $h$ and $f$ are identities. Then (1) and (2) collapse into
#
# $$\text{(3)}\quad x_{l+1} = y_l = x_l + F_l(x_l).$$
#
# Nothing touches the sum any more: the ReLU after the addition moves *into* the branch, in front of
# each convolution, as BN–ReLU–conv ("pre-activation"). A block that keeps width and resolution then
# adds its residual to its input and does nothing else. Check it on the package's `PreActBasicBlock`,
# and check the consequence that makes the whole next notebook work: with its branch silenced,
# the block is exactly the identity.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
block = PreActBasicBlock(16, 16).eval()
x = torch.randn(2, 16, 32, 32)
assert torch.allclose(block(x), x + block.branch(x), atol=1e-6)   # Eq. (3)
print("Eq. (3): max |x_{l+1} - x_l - F_l(x_l)| < 1e-6:", bool((block(x) - x - block.branch(x)).abs().max() < 1e-6))
with torch.no_grad():
    block.conv2.weight.zero_()                                     # silence F_l: its last conv outputs 0
assert torch.equal(block(x), x)
print("branch silenced: the block is the identity")
first = next(m for m in block.modules() if isinstance(m, (nn.BatchNorm2d, nn.Conv2d)))
print("pre-activation: the block's first layer is", type(first).__name__)

# %% [markdown]
# **Picture.** What a block adds to what it reads: one channel of $x_l$, of $F_l(x_l)$, and of
# $x_{l+1} = x_l + F_l(x_l)$ for a real tile, in the second block of an (untrained) pre-activation ResNet-20.
# Pixel by pixel, $x_{l+1}$ is $x_l$ plus $F_l(x_l)$. (The channel shown is the one with the largest residual;
# at initialisation that residual is larger than the signal it is added to. Notebook 02 follows their sizes
# through a trained network.)

# %%
root = make_synthetic_dataset(config.dataset_dir, n_images=config.n_images, seed=config.seed)
test_images, test_labels, _ = load_tiles(root, "test")
tile = test_images[:1].float() / 255

torch.manual_seed(0)
net = cifar_resnet(20, preact=True, num_classes=len(CLASSES), stem_stride=2).eval()
with torch.no_grad():
    rec = read_stream(net, tile)[1]              # block 1 keeps its shape: Eq. (3) holds exactly
assert torch.allclose(rec.out, rec.x_in + rec.branch, atol=1e-6)
c = int(rec.branch[0].abs().mean((1, 2)).argmax())
maps = {"tile": tile[0].permute(1, 2, 0), "$x_l$": rec.x_in[0, c], "$F_l(x_l)$": rec.branch[0, c], "$x_{l+1}$": rec.out[0, c]}
fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
lim = float(rec.out[0, c].abs().max())
for ax, (name, m) in zip(axes, maps.items()):
    kw = {} if name == "tile" else {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}
    im = ax.imshow(m, interpolation="nearest", **kw)
    ax.set_title(name); ax.set_xticks([]); ax.set_yticks([])
fig.colorbar(im, ax=axes[1:], shrink=0.8)
plt.show()

# %% [markdown]
# ## 3. Shapes, block by block
#
# A CIFAR-style ResNet (He et al. 2015, §4.2) has a 3×3 stem, then three stages of $n$ blocks with
# widths 16, 32, 64 and strides 1, 2, 2: $6n + 2$ layers with basic blocks. Our tiles are 64×64, so we
# give the stem a stride of 2: the stages then see 32×32, exactly as on CIFAR. `read_stream` records every
# block's input, residual and output in one forward pass; here is the walk through ResNet-20 ($n = 3$):

# %%
# NBVAL_CHECK_OUTPUT
net = cifar_resnet(20, preact=True, num_classes=len(CLASSES), stem_stride=2).eval()
with torch.no_grad():
    records = read_stream(net, torch.zeros(1, 3, 64, 64))
rows = [{"block": r.name, "x_l": tuple(r.x_in.shape[1:]), "F_l(x_l)": tuple(r.branch.shape[1:]),
         "x_l+1": tuple(r.out.shape[1:]), "shortcut h": "identity" if blk.keeps_shape else "1x1 conv, stride 2"}
        for r, blk in zip(records, residual_blocks(net))]
print(pd.DataFrame(rows).to_string(index=False))
print(f"\n{len(records)} blocks x 2 convs + stem + classifier = {2 * len(records) + 2} layers; "
      f"{sum(p.numel() for p in net.parameters()):,} parameters")

# %% [markdown]
# ## 4. The real thing: our ResNet-18 is torchvision's
#
# ImageNet-style ResNets (He et al. 2015, Table 1) use a 7×7 stem with max-pooling and four stages
# of widths 64–512; ResNet-50 uses *bottleneck* blocks (1×1 reduce, 3×3, 1×1 expand, output 4× wider).
# `mdnet_utils.models.resnet18/34/50` are built from the same blocks as above, with torchvision's
# parameter names. The proof that they are the real networks: torchvision's state_dict loads with
# `strict=True`, and the two compute the same outputs.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
theirs = torchvision.models.resnet18().eval()
ours = resnet18().eval()
ours.load_state_dict(theirs.state_dict(), strict=True)
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    diff = (ours(x) - theirs(x)).abs().max().item()
assert diff < 1e-5
n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
assert n_ours == n_theirs
print(f"state_dict keys: {len(ours.state_dict())} = {len(theirs.state_dict())}; parameters: {n_ours:,} = {n_theirs:,}")
print(f"largest output difference: {'< 1e-5' if diff < 1e-5 else diff}")

# %% [markdown]
# ## 5. Why the shortcut matters: residual against plain
#
# He et al. (2015) started from an observation: a *deeper* plain network (no shortcuts) reached a
# *higher* training error than a shallower one, although it could in principle copy the shallow
# one and set its extra layers to the identity. This is the **degradation problem**: not overfitting,
# an optimisation problem. The shortcut makes "do nothing" the default of every block.
#
# We train four networks on the diagnosis of our tiles (four classes): ResNet-8 and ResNet-32, each
# with and without shortcuts (`plain=True` removes them and changes nothing else). We use the
# pre-activation blocks of Eq. (3), because notebook 02 unrolls them exactly; the 2015 paper's
# post-activation version is Exercise 1. Same data, same seed, same optimiser (AdamW, one-cycle), same number
# of epochs: the recipe is `mdnet_utils.training.recipes.diagnosis_net`. The trained networks are kept in
# `runs/` so that notebook 02 can take them apart without training them again.

# %%
nets, histories = {}, {}
for depth in (8, 32):
    for plain in (True, False):
        start = time.perf_counter()
        model, history = diagnosis_net(depth, plain=plain, root=root, config=config, device=device)
        name = f"{'plain' if plain else 'ResNet'}-{depth}"
        nets[name], histories[name] = model, history
        print(f"{name:10s} {sum(p.numel() for p in model.parameters()):>8,} parameters, "
              f"{len(history)} epochs, {time.perf_counter() - start:5.1f} s")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
style = {"plain": "--", "ResNet": "-"}
for name, hist in histories.items():
    h = pd.DataFrame(hist)
    kind, depth = name.split("-")
    kw = dict(ls=style[kind], lw=2, color="tab:red" if depth == "32" else "tab:blue", label=name)
    axes[0].plot(h.epoch, h.train_loss, **kw)
    axes[1].plot(h.epoch, 1 - h.train_acc, **kw)
    axes[2].plot(h.epoch, 1 - h.test_acc, **kw)
for ax, title in zip(axes, ["training loss", "training error (first 512 training tiles)", "test error"]):
    ax.set_title(title); ax.set_xlabel("epoch")
axes[0].legend()
plt.show()
table = pd.DataFrame({name: {"training loss": h[-1]["train_loss"], "training error": 1 - h[-1]["train_acc"],
                             "test error": 1 - h[-1]["test_acc"]} for name, h in histories.items()}).T
print(table.round(3).to_string())


# %% [markdown]
# **What to look for, and an honest reading.** The two plain networks tell the degradation story if
# plain-32 ends with a *higher training* loss and error than plain-8; the residual pair tells the cure if
# ResNet-32 does at least as well as ResNet-8. This run shows both. Plain-32 ends with twice plain-8's
# training loss (0.309 against 0.159) and a higher training error (0.098 against 0.057), and its loss curve
# lies above the other three from epoch 2 on. ResNet-32, with the same 32 layers, trains at least as well
# as both 8-layer networks (training loss 0.151, error 0.051). At 8 layers the shortcut buys nothing we can see:
# plain-8 ends slightly ahead of ResNet-8 (training error 0.057 against 0.074), a gap within what one seed
# can tell. The training and test error curves jump from epoch to epoch; only the last epochs settle.
# Our runs are tiny (a few epochs on about 1,500 tiles of 64×64, on a CPU), the paper's are 164 epochs on
# CIFAR with 20 to 110 layers, and each network here is one seed, so the effect is smaller and noisier than
# the paper's; try Exercise 2 for deeper plain networks, where the gap grows.

# %% [markdown]
# ## Summary
#
# - A residual block adds a learned correction to a shortcut: $y_l = F_l(x_l) + h(x_l)$, $x_{l+1} = f(y_l)$ (Eqs. 1–2).
# - With $h$ and $f$ identities (pre-activation), $x_{l+1} = x_l + F_l(x_l)$ (Eq. 3): a block with a
#   silent branch is exactly the identity.
# - CIFAR-style nets stack $3n$ blocks in three stages; ImageNet-style ones four stages behind a 7×7 stem.
#   Our ResNet-18 loads torchvision's weights with `strict=True` and computes the same outputs.
# - Removing the shortcuts makes deeper networks harder to *train*, not just to generalise: the
#   degradation problem that motivated ResNet.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **Post against pre.** Train the 2015 paper's post-activation networks, `cifar_resnet(depth, preact=False, plain=...)`,
#    with the same budget and add them to the plot. Is pre-activation easier to optimise here, as He et al. (2016)
#    found at 1001 layers?
# 2. **Deeper plain nets.** Add plain-56 (`cifar_resnet(56, plain=True)`). How does its
#    training loss after the same number of epochs compare with plain-32 and plain-8? (It is slow: try
#    fewer tiles.)
# 3. **Bottlenecks.** Build `cifar_resnet(29, block="bottleneck")` and print its shape walk-through. Where
#    does the 4× expansion happen, and why does the first block of stage 1 need a projection shortcut
#    although its stride is 1?
# 4. **Zero-init.** Set every block's last BN weight to zero at initialisation (so every block starts as
#    the identity) and retrain ResNet-32. What changes in the first epoch?

# %% [markdown]
# ### Exercise A · A pre-activation block by hand
#
# Write `preact_forward(block, x)`, the forward pass of a `PreActBasicBlock` (Eq. 3), from its layers:
# `block.bn1`, `block.relu`, `block.conv1`, `block.bn2`, `block.conv2` and, where the block changes width or
# resolution, the projection `block.downsample` (otherwise `None`). The check refuses a call to the block
# itself, and tries blocks with an identity shortcut and with a strided projection. Mind what the projection
# reads: He et al.'s code projects the *pre-activated* input.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def preact_forward(block, x):
    """Eq. (3): x_{l+1} = h(x_l) + F_l(x_l), F_l = BN-ReLU-conv-BN-ReLU-conv; h projects BN-ReLU(x_l) if needed."""
    a = block.relu(block.bn1(x))                        # the shared pre-activation
    residual = block.conv2(block.relu(block.bn2(block.conv1(a))))
    shortcut = x if block.downsample is None else block.downsample(a)
    return shortcut + residual


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_preact_forward

check_preact_forward(preact_forward)


# %% [markdown]
# ### Exercise B · How big is the output?
#
# The shape walk of section 3 follows one formula. Write `conv_output_size(size, kernel, stride, padding)`: the
# side of a square convolution's output for an input of side `size` (an `int`). Then use it to predict the
# spatial sizes in section 3's table before you look.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def conv_output_size(size, kernel, stride, padding):
    """Side of a convolution's output: floor((size + 2 padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_conv_output_size

check_conv_output_size(conv_output_size)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. What are $h$ and $f$ in a pre-activation block, and what does Eq. (3) become?
#
#    <details><summary>Answer</summary>
#
#    Both are identities (where the shape is kept), so $x_{l+1} = x_l + F_l(x_l)$.
#
#    </details>
#
# 2. Why does a block with a silenced branch compute exactly the identity, and why does that matter?
#
#    <details><summary>Answer</summary>
#
#    With $F_l = 0$, Eq. (3) gives $x_{l+1} = x_l$: doing nothing is the default, so adding blocks cannot make the best reachable function worse; notebook 02 builds on it.
#
#    </details>
#
# 3. Where does a CIFAR-style ResNet need a projection shortcut?
#
#    <details><summary>Answer</summary>
#
#    Where a block changes width or halves the resolution (the first block of stages 2 and 3): there $h$ is a strided 1×1 convolution.
#
#    </details>
#
# 4. What is the degradation problem: overfitting or optimisation?
#
#    <details><summary>Answer</summary>
#
#    Optimisation: the deeper plain network has a *higher training* error, although it could copy the shallower one.
#
#    </details>

# %% [markdown]
# ## References
#
# - K. He, X. Zhang, S. Ren, J. Sun. *Deep Residual Learning for Image Recognition.* CVPR 2016 (arXiv:1512.03385).
# - K. He, X. Zhang, S. Ren, J. Sun. *Identity Mappings in Deep Residual Networks.* ECCV 2016 (arXiv:1603.05027).
# - Z. Zhang, Y. Xie, F. Xing, M. McGough, L. Yang. *MDNet: A Semantically and Visually Interpretable Medical
#   Image Diagnosis Network.* CVPR 2017 (arXiv:1707.02485).
# - torchvision's ResNet implementation, `torchvision.models.resnet`.
