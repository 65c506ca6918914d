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
# proves that our ResNet-18 *is* torchvision's, writes the training loop out in the open, and compares residual
# networks with their plain twins: trained live for a few epochs, and as reference models trained to the end over
# three seeds.
#
# ### What you will learn
# - the residual block as an equation: Eq. (1)–(2) (post-activation, He et al. 2015) and Eq. (3) (pre-activation, He et al. 2016);
# - what every block does to a tensor's shape, in a CIFAR-style net and an ImageNet-style net;
# - that `mdnet_utils.models.resnet18` loads torchvision's weights and computes the same function;
# - the training loop in the open: a dozen lines (batches, augmentation, forward, loss, backward, step, schedule)
#   that give the package engine's weights bit for bit;
# - the degradation problem: why a deeper plain network trains *worse*, and what the shortcut changes.
#
# *Equations covered: (1)–(3).*
#
# ### Prerequisites
# Notebook 00 (the data). PyTorch basics: `nn.Conv2d`, `nn.BatchNorm2d`, a training loop.
#
# ### Runtime
# On a 2-core laptop CPU: **~1.5 min** in full mode (most of it two short live training runs, each printing its time;
# the four networks compared are reference models shipped in `checkpoints/`, read, not trained), **~20 s** in fast
# mode (`MDNET_FAST=1`, for tests only). Measured by `make run` and `make runtimes` (`notebooks/runtimes.json`).

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
import torchvision
from torch import nn

import mdnet_utils
from mdnet_utils import config, diagrams, get_device, reference, seed_everything
from mdnet_utils.data import CLASSES, make_synthetic_dataset
from mdnet_utils.data.loading import TensorCases, load_tiles
from mdnet_utils.evaluation.figures import reference_figures, reference_split
from mdnet_utils.evaluation.seeds import mean_and_sd, seed_curves
from mdnet_utils.models import BasicBlock, PreActBasicBlock, build_model, cifar_resnet, resnet18
from mdnet_utils.models.stream import read_stream, residual_blocks
from mdnet_utils.training.engine import train

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
# Two blocks follow from these equations, drawn below from the package's code (each box is a layer its branch
# $F_l$ runs, in that order): the original, post-activation block of He et al. (2015) on the left, and on the
# right the pre-activation block of He et al. (2016), where $f$ is the identity too (Eq. (3), section 2).

# %%
diagrams.residual_block()

# %% [markdown]
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

    def F(self, x):   # the residual branch F_l: conv-BN-ReLU-conv-BN
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))

    def h(self, x):   # the shortcut: the identity, or the projection where the shape changes
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x):
        return torch.relu(self.F(x) + self.h(x))   # Eq. (1), then f = ReLU: Eq. (2)


# %% [markdown]
# **Check.** Three implementations of the same block: ours, the package's `BasicBlock`, and torchvision's
# `BasicBlock`, written independently of both. torchvision's gets random weights and, so that a batch norm
# left out or put in the wrong place cannot hide, random batch-norm statistics and affine maps (a fresh one in
# eval mode computes the identity); the other two load its `state_dict` with `strict=True` (same names, same
# shapes). Then each term of Eqs. (1)–(2) of the package's block, its `branch` ($F_l$) and its `h`, must equal
# ours, and all three blocks must give the same $x_{l+1}$.

# %%
# NBVAL_CHECK_OUTPUT
def randomise_bn(module, seed):
    """The batch norms of ``module`` with random running statistics and affine maps; the module in eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
    return module.eval()


torch.manual_seed(0)
x = torch.randn(2, 16, 32, 32)
for stride, c_out in [(1, 16), (2, 32)]:
    projection = None if stride == 1 else nn.Sequential(nn.Conv2d(16, c_out, 1, stride, bias=False),
                                                        nn.BatchNorm2d(c_out))
    tv = randomise_bn(torchvision.models.resnet.BasicBlock(16, c_out, stride, downsample=projection), seed=stride)
    ours, theirs = MyBasicBlock(16, c_out, stride).eval(), BasicBlock(16, c_out, stride).eval()
    ours.load_state_dict(tv.state_dict())                           # strict: same names, same shapes
    theirs.load_state_dict(tv.state_dict())
    with torch.no_grad():
        assert torch.allclose(theirs.branch(x), ours.F(x), atol=1e-5)   # the package's F_l is ours
        assert torch.allclose(theirs.h(x), ours.h(x), atol=1e-5)        # and so is its h
        assert torch.allclose(ours(x), tv(x), atol=1e-5)                # Eqs. (1)-(2) against torchvision
        assert torch.allclose(theirs(x), tv(x), atol=1e-5)
    print(f"stride {stride}: {tuple(x.shape)} -> {tuple(tv(x).shape)}, shortcut "
          f"{'identity' if projection is None else '1x1 conv + BN'}: F_l and h equal ours, x_l+1 equal in all "
          f"three blocks (to 1e-5)")

# %% [markdown]
# ## 2. The pre-activation block: Eq. (3)
#
# He et al. (2016) asked what happens if both $h$ and $f$ are identities. Then (1) and (2) collapse into
#
# $$\text{(3)}\quad x_{l+1} = y_l = x_l + F_l(x_l).$$
#
# Nothing touches the sum any more: the ReLU after the addition moves *into* the branch, in front of
# each convolution, as BN–ReLU–conv ("pre-activation"). A block that keeps width and resolution then
# adds its residual to its input and does nothing else. Again from scratch, for the block that keeps its shape
# (where the shape changes, $h$ is a projection, and that block is Exercise A):

# %%
class MyPreActBlock(nn.Module):
    # Eq. (3), pre-activation: x_{l+1} = x_l + F(x_l), nothing after the sum
    def __init__(self, channels):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)

    def F(self, x):   # the residual branch F_l: BN-ReLU-conv-BN-ReLU-conv
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))

    def forward(self, x):
        return x + self.F(x)   # Eq. (3)


# %% [markdown]
# **Check.** The package's `PreActBasicBlock`, with random weights and batch norms, against ours with its
# weights: what the package's block adds to its input, $x_{l+1} - x_l$, must be our $F_l(x_l)$ (Eq. (3)). Then
# the consequence that makes the whole next notebook work, against the post-activation block for contrast:
# silence the branch (make its last layer output zeros) and the pre-activation block hands its input on
# unchanged, while the post-activation block hands on $\mathrm{ReLU}(x_l)$, which differs from $x_l$ wherever
# $x_l$ is negative.

# %%
# NBVAL_CHECK_OUTPUT
torch.manual_seed(0)
x = torch.randn(2, 16, 32, 32)
theirs = randomise_bn(PreActBasicBlock(16, 16), seed=3)
ours = MyPreActBlock(16).eval()
ours.load_state_dict(theirs.state_dict())                          # strict: same names, same shapes
with torch.no_grad():
    assert torch.allclose(theirs(x) - x, ours.F(x), atol=1e-5)     # Eq. (3): the package adds our F_l(x_l)
    assert torch.allclose(theirs(x), ours(x), atol=1e-5)
print("Eq. (3): the package's pre-activation block adds our F_l(x_l) to its input (to 1e-5)")

pre, post = theirs, randomise_bn(BasicBlock(16, 16), seed=4)
with torch.no_grad():
    pre.conv2.weight.zero_()                                       # F_l's last layer, a conv, outputs 0
    post.bn2.weight.zero_()                                        # F_l's last layer, a BN, outputs 0
    post.bn2.bias.zero_()
    print(f"branch silenced, pre-activation block:  x_l+1 == x_l: {torch.equal(pre(x), x)}")
    print(f"branch silenced, post-activation block: x_l+1 == x_l: {torch.equal(post(x), x)}, "
          f"x_l+1 == ReLU(x_l): {torch.equal(post(x), torch.relu(x))} "
          f"({(post(x) != x).float().mean():.0%} of the entries changed: the negative ones)")
assert torch.equal(pre(x), x) and torch.equal(post(x), torch.relu(x))

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
# We compare four networks on the diagnosis of our tiles (four classes): ResNet-8 and ResNet-32, each
# with and without shortcuts (`plain=True` removes them and changes nothing else). We use the
# pre-activation blocks of Eq. (3), because notebook 02 unrolls them exactly; the 2015 paper's
# post-activation version is Exercise 1.
#
# A comparison of two training runs needs more than one run a side: two seeds of the same network differ by
# about a point of test accuracy here. So the four networks are **reference models**: each trained three times
# (seeds 0, 1, 2) on all 3,024 training tiles with one recipe (AdamW, one-cycle schedule, 30 epochs, the
# checkpoint of the best validation accuracy kept), and shipped with the course in `checkpoints/`
# (`python -m mdnet_utils reference --list` names them all; training them again takes hours on a CPU). First,
# though, training itself.
#
# ### The training loop, in the open
#
# Every network of the course is trained by one loop, `mdnet_utils.training.engine.train`. Here it is written
# out, with the references' recipe (`reference.REGISTRY[name].recipe`), for a few steps:
#
# - **batches**: every epoch the training tiles in a new order, a permutation drawn from a generator seeded with
#   the seed plus the epoch (what the engine's `DistributedSampler` draws when there is one process), cut into
#   batches of 64; the pixels as floats in [0, 1];
# - **augmentation**: per batch, a mirror image half of the time, then a turn by a random multiple of 90°, both
#   drawn from one generator seeded once (no finding of the tiles depends on orientation);
# - **forward and loss**: the cross-entropy of the network's four logits against the labels;
# - **backward and step**: the gradient, then one step of AdamW (Adam with decoupled weight decay);
# - **schedule**: a one-cycle schedule over all the steps: the learning rate rises for the first quarter of them
#   to its peak, then anneals to almost zero (this recipe clips no gradient: the report generators' does,
#   Exercise B).
#
# We cut the recipe to two epochs of its first 256 tiles (8 steps) and train ResNet-8 from the weights the
# reference's seed 0 started from:

# %%
train_images, train_labels, _ = load_tiles(root, "train")
stage = reference.REGISTRY["resnet-8"].recipe.stages[0].replace(epochs=2, limit=256)
print(stage)
torch.manual_seed(config.seed)
model = build_model(reference.REGISTRY["resnet-8"].model)
engine_model = copy.deepcopy(model)                      # the same weights, for the engine (next cell)

n = min(stage.limit, len(train_images))                  # the stage trains on its first `limit` tiles
steps = stage.epochs * -(-n // stage.batch_size)         # batches per epoch (the last may be short), all epochs
optimizer = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=stage.weight_decay)
schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=stage.lr, total_steps=steps, pct_start=stage.warmup)
draws = torch.Generator().manual_seed(config.seed)       # the augmentation's coin flips and turns
model.train()
for epoch in range(stage.epochs):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + epoch))
    for i in range(0, n, stage.batch_size):
        idx = order[i:i + stage.batch_size]
        x, y = train_images[idx].float() / 255, train_labels[idx]
        if torch.rand((), generator=draws) < 0.5:
            x = x.flip(-1)                                                         # mirrored
        x = torch.rot90(x, int(torch.randint(0, 4, (), generator=draws)), dims=(-2, -1))   # turned
        loss = nn.functional.cross_entropy(model(x), y)                            # forward, loss
        optimizer.zero_grad()
        loss.backward()                                                            # backward
        optimizer.step()                                                           # step
        print(f"epoch {epoch + 1}, batch {i // stage.batch_size + 1}: loss {loss.item():.3f}, "
              f"learning rate {optimizer.param_groups[0]['lr']:.2e}")
        schedule.step()                                                            # schedule: the next rate

# %% [markdown]
# **Check.** The package's engine, `train`, from the same weights with the same stage and seed: every tensor of
# the two networks' state dicts (the weights, and the batch norms' running statistics) must be equal, bit for
# bit. Equal to the last bit because it is the same arithmetic in the same order; `tests/test_open_loop.py`
# shows that a loop that differs in one ingredient (one data order for every epoch, the turn drawn before the
# flip, no schedule, no weight decay) ends with other weights.

# %%
# NBVAL_CHECK_OUTPUT
train(engine_model, TensorCases(train_images, train_labels), [stage], seed=config.seed, progress=False)
ours, engines = model.state_dict(), engine_model.state_dict()
same = [torch.equal(ours[k], engines[k]) for k in ours]
print(f"after {steps} steps, the open loop and the engine: {sum(same)} of {len(same)} tensors of the state "
      f"dict equal bit for bit")
assert all(same) and list(ours) == list(engines)

# %% [markdown]
# ### Training live, with the engine
#
# Now the two 32-layer networks, trained live for a few epochs with the engine and the references' recipe.
# Only the number of epochs is cut, so the one-cycle schedule is compressed into them.

# %%
val_split = reference_split(root, "val", None, None)   # what the references are scored on every epoch
live_epochs = config.pick(full=3, fast=1)
live = {}
for name in ("resnet-32", "plain-32"):
    entry = reference.REGISTRY[name]
    torch.manual_seed(config.seed)                      # the weights are drawn as the reference's seed 0 were
    net = build_model(entry.model).to(device)
    start = time.perf_counter()
    history = train(net, TensorCases(train_images, train_labels), [entry.recipe.stages[0].replace(epochs=live_epochs)],
                    seed=config.seed, device=device, progress=False,
                    evaluate=lambda m: {f"val_{k}": v for k, v in reference_figures(m, val_split, None).items()})
    live[name] = pd.DataFrame(history)
    print(f"{name:9s} {sum(p.numel() for p in net.parameters()):>7,} parameters, {len(train_images)} training "
          f"tiles, {live_epochs} epochs, {time.perf_counter() - start:.0f} s on {device.type}: training loss "
          f"{history[-1]['train_loss']:.3f}, validation error {1 - history[-1]['val_accuracy']:.1%}")

# %% [markdown]
# **Picture.** Training loss and validation error per epoch of the four references: the line is the mean
# over the three seeds, the band spans the lowest and highest seed. The dots are the live runs above, a few
# epochs of a schedule compressed into them. (The training loss is the mean over each epoch's batches, of
# augmented tiles, as the model changes during the epoch.)

# %%
names = ["resnet-8", "plain-8", "resnet-32", "plain-32"]
refs = {name: reference.metas(name) for name in names}   # the JSONs of every shipped seed; no weights read
fig, axes = plt.subplots(1, 2, figsize=(14, 4.2))
for name, metas in refs.items():
    kind, depth = name.split("-")
    color = "tab:red" if depth == "32" else "tab:blue"
    for ax, key in zip(axes, ("train_loss", "val_accuracy")):
        c = seed_curves(metas, key)                     # per epoch: mean, min and max over the seeds
        if key == "val_accuracy":                       # an error, so that both panels fall
            c = c.assign(mean=1 - c["mean"], min=1 - c["max"], max=1 - c["min"])
        ax.plot(c.index, c["mean"], ls="--" if kind == "plain" else "-", lw=2, color=color,
                label=f"{name} ({len(metas)} seeds)")
        ax.fill_between(c.index, c["min"], c["max"], color=color, alpha=0.12)
for name, h in live.items():
    kw = dict(marker="o", ls="none", color="black", mfc="white" if name.startswith("plain") else "black")
    axes[0].plot(h.epoch, h.train_loss, label=f"{name}, live", **kw)
    axes[1].plot(h.epoch, 1 - h.val_accuracy, **kw)
for ax, title in zip(axes, ["training loss", "validation error"]):
    ax.set_title(title); ax.set_xlabel("epoch"); ax.set_yscale("log")
axes[0].legend()
plt.show()

# %% [markdown]
# **The check.** At the end of training, for each seed: the training loss of the last epoch (what degradation
# is about) and the test accuracy of the kept checkpoint. Then the course's rule for a comparison
# (`mdnet_utils.reference.difference`): a difference of the means is *measurable* when it exceeds the sum of
# the two standard deviations over seeds; otherwise no difference can be told at this scale. The table reads
# the shipped JSONs, so it is the same on every machine.

# %%
# NBVAL_CHECK_OUTPUT
final_loss = mean_and_sd(pd.DataFrame({name: {f"seed {s}": m["history"][-1]["train_loss"] for s, m in metas.items()}
                                       for name, metas in refs.items()}))
test_accuracy = pd.DataFrame({name: reference.seed_table(metas, ["accuracy"])["accuracy"]
                              for name, metas in refs.items()})
print("training loss, last epoch\n" + final_loss.round(3).to_string())
print("\ntest accuracy (%)\n" + (100 * test_accuracy).round(1).to_string())
val_error = pd.DataFrame({name: 1 - seed_curves(metas, "val_accuracy")["mean"] for name, metas in refs.items()})
print("\nvalidation error (%), mean over the seeds, at epochs 10, 20, 25 and 30\n"
      + (100 * val_error.loc[[10, 20, 25, 30]]).round(1).to_string())
per_seed = {"training loss": final_loss.drop(index=["mean", "sd"]),
            "test accuracy": test_accuracy.drop(index=["mean", "sd"])}
print()
for a, b, question in [("plain-32", "plain-8", "degradation"), ("resnet-32", "plain-32", "the shortcut at 32 layers"),
                       ("resnet-8", "plain-8", "the shortcut at 8 layers"), ("resnet-32", "resnet-8", "depth with shortcuts")]:
    for figure, table in per_seed.items():
        d = reference.difference(list(table[a]), list(table[b]))
        scale = 100 if figure == "test accuracy" else 1
        print(f"{question:26s} {a} - {b}, {figure}: {scale * d['difference']:+.3f} "
              f"(sd {scale * d['sd_a']:.3f} and {scale * d['sd_b']:.3f}): "
              f"{'measurable' if d['measurable'] else 'not measurable at this scale'}")

# %% [markdown]
# **What the references show.** Degradation is there, and measurable: plain-32 ends training with a higher
# training loss than plain-8 (0.132 against 0.090, mean of three seeds, far outside both spreads), its curve
# lies above the other three from epoch 3 on, and it is also the worst of the four on the test split (94.0 %
# against plain-8's 95.2 %, a difference larger than the two spreads). The shortcut removes it: ResNet-32,
# with the same 32 layers, ends at the training loss of the 8-layer networks (0.092), measurably below
# plain-32. At 8 layers the shortcut buys nothing we can measure (training loss 0.092 against 0.090, test
# accuracy 95.1 % against 95.2 %), and neither does depth with shortcuts: ResNet-32's seeds spread from 94.4 %
# to 97.1 % on the test split, wider than its lead over ResNet-8 (+0.617 points). ResNet-32's lead over plain-32
# on the test split (+1.698 points) is within the spread too. The effect we can measure is on *training*, which
# is what He et al. describe.
#
# Two more things the outputs show. The validation curves swing by tens of points while the learning rate
# is high and settle only as the one-cycle schedule anneals it (mean validation error 3.4-5.1 % at epoch 30,
# within a point of epoch 25 for all four): that is where the references' 30-epoch budget stops, but a
# schedule that anneals always ends flat, so whether a longer budget would gain more is a question this
# figure cannot answer (Exercise 5). And the live runs, their whole schedule squeezed into 3 epochs (the
# dots; their figures are printed under the training cell), end with training losses about three times the
# references' and validation errors two to three times theirs: most of the diagnosis is learned in the first epochs,
# the last few points take the rest. Our networks are small (8 and 32
# layers, 64×64 tiles, 30 epochs), the paper's are 20 to 110 layers on CIFAR for 164 epochs; Exercise 2 goes
# deeper, where the gap grows.

# %% [markdown]
# ## Summary
#
# - A residual block adds a learned correction to a shortcut: $y_l = F_l(x_l) + h(x_l)$, $x_{l+1} = f(y_l)$ (Eqs. 1–2).
# - With $h$ and $f$ identities (pre-activation), $x_{l+1} = x_l + F_l(x_l)$ (Eq. 3): a block with a
#   silent branch is exactly the identity, where a post-activation block would still apply its ReLU. Both
#   blocks, written from scratch, compute what the package's and torchvision's compute.
# - CIFAR-style nets stack $3n$ blocks in three stages; ImageNet-style ones four stages behind a 7×7 stem.
#   Our ResNet-18 loads torchvision's weights with `strict=True` and computes the same outputs.
# - Training is a dozen lines: batches in a seeded order, augmentation, forward, loss, backward, an AdamW step
#   and a one-cycle schedule; written in the open, they give the package engine's weights bit for bit.
# - Removing the shortcuts makes deeper networks harder to *train*, not just to generalise: over three seeds
#   of the shipped references, plain-32 ends training at a measurably higher loss than plain-8, and ResNet-32
#   does not (the degradation problem that motivated ResNet). On the test split, only plain-32's deficit is
#   measurable; the other differences are within the spread of the seeds.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **Post against pre.** Train the 2015 paper's post-activation networks,
#    `cifar_resnet(32, preact=False, plain=..., num_classes=4, stem_stride=2)`, with the live run's loop of section 5 and add them to the plot. Is pre-activation
#    easier to optimise here, as He et al. (2016) found at 1001 layers? Train two seeds each before you answer.
# 2. **Deeper plain nets.** Add plain-56 (`cifar_resnet(56, plain=True, num_classes=4, stem_stride=2)`), live, with
#    the same loop and number of epochs. How does its training loss compare with the live plain-32's? (It is slow:
#    try fewer tiles, for both.)
# 3. **Bottlenecks.** Build `cifar_resnet(29, block="bottleneck")` and print its shape walk-through. Where
#    does the 4× expansion happen, and why does the first block of stage 1 need a projection shortcut
#    although its stride is 1?
# 4. **Zero-init.** Set every block's last BN weight to zero at initialisation (so every block starts as
#    the identity) and retrain ResNet-32. What changes in the first epoch?
# 5. **Is 30 epochs enough?** Train ResNet-32 live for 10 epochs and for 20 (the loop of section 5, full
#    schedule each time), two seeds each, and compare their final validation errors with the references'
#    30-epoch figure. Where does a longer budget stop paying?

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
# ### Exercise B · A training step with gradient clipping
#
# The loop of section 5 takes every step the gradient gives. The report generators' recipes (notebook 06) cap
# it: after `backward`, if the norm of all the gradients together, $\|g\| = \sqrt{\sum_p \|g_p\|^2}$ over every
# parameter $p$, is above `max_norm`, every gradient is multiplied by `max_norm` $/ \|g\|$, so that the step
# keeps its direction and its length is capped; a shorter gradient is left as it is. Write
# `clipped_step(model, optimizer, schedule, x, y, max_norm)`: one step of the loop (forward, cross-entropy loss,
# backward, the clipping, the optimizer's step, the schedule's step) on a batch `x` (floats, augmented already)
# with labels `y`, clipping by hand, and return $\|g\|$ before clipping, as a float. The check refuses
# `nn.utils.clip_grad_norm_` (the engine's call, which the check compares you with: `run_epoch` with a
# `Stage(clip=max_norm)`), and runs three cases of three steps each: `max_norm` above every gradient's norm,
# below every one, and in between.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def clipped_step(model, optimizer, schedule, x, y, max_norm):
    """One training step with the gradients' global norm clipped to max_norm; returns the norm before clipping."""
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads)))   # one norm over all the parameters
    if norm > max_norm:                                             # only a longer gradient is shortened
        for g in grads:
            g.mul_(max_norm / norm)
    optimizer.step()
    schedule.step()
    return norm


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_clipped_step

check_clipped_step(clipped_step)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. What are $h$ and $f$ in a pre-activation block, and what do Eqs. (1)-(2) become?
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
#
# 5. The loop of section 5 gives the engine's weights bit for bit. What must it copy from the engine for that, besides the recipe's numbers?
#
#    <details><summary>Answer</summary>
#
#    Every random draw, in the same order and from the same seeds (each epoch's data order, the flip and the turn of each batch), and the same operations in the same order (the schedule stepped after the optimizer, once per batch): one draw out of order and the weights differ.
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
