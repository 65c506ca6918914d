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
# # 08 · Your own data
#
# The notebooks trained MDNet on the course's synthetic tiles. This one is about what comes after the course:
# the same model on *your* images and reports, from the command line, on a laptop or on many GPUs. We build a
# small data set in the layout report-generation papers use (R2Gen's `annotation.json`), in a report style the
# model has never seen, with two images per case as in IU X-Ray; convert a data set in the MDNet authors' own
# layout; train through the command line with its progress bar; evaluate; write diagnosis cards for new images,
# including real histology images that ship with scikit-image; and see how the same command scales out with
# `torchrun`.
#
# ### What you will learn
# - the `annotation.json` layout (R2Gen: IU X-Ray, MIMIC-CXR) and the authors' BCIDR/NMI layout, and how to convert one into the other;
# - to train, resume, evaluate, report and plot with `python -m mdnet_utils ...` (also installed as `mdnet`), and what a run folder holds;
# - what changes without labels (no class loss; an unconditioned attention) and with two views per case (feature maps fused);
# - how `torchrun` runs the same training on several processes, CPUs or GPUs, and how closely it follows one process.
#
# *Equations covered: (1)–(6), (10)–(13): the EcNet learned through the word loss alone, and the language model.
# Without labels there is no class score to train (Eqs. 7-9), and Eq. (14) runs with c = 0: no diagnosis steers
# the attention.*
#
# ### Prerequisites
# Notebook 07 (what MDNet is and how it is scored). No trained network is reused: everything here is trained
# through the command line.
#
# ### Runtime
# On a 2-core laptop CPU: **~4 min** in full mode, most of it the 20 training epochs of section 2 (their total is printed there,
# in seconds on this machine), **~1.5 min** in fast mode (`MDNET_FAST=1`, for tests only). Measured by `make run` and
# `make runtimes` (`notebooks/runtimes.json`).

# %%
# Setup: the same first cell in every notebook.
import json
import platform
import shutil
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Image, display
from PIL import Image as PILImage

import mdnet_utils
from mdnet_utils import config, get_device, seed_everything
from mdnet_utils.data import ReportDataset, make_synthetic_dataset
from mdnet_utils.data.adapters import convert_bcidr_folder, detect_layout, export_r2gen
from mdnet_utils.training.runs import load_run

seed_everything(config.seed)
device = get_device()
print(f"mode: {config.mode} | mdnet_utils {mdnet_utils.__version__} | torch {torch.__version__} | "
      f"python {platform.python_version()}")
sns.set_theme(style="whitegrid", context="notebook")
PY = sys.executable          # the commands below run with this kernel's Python
WORK = Path(config.runs_dir) / "your-own-data" / config.mode
WORK.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. The layout: `annotation.json`
#
# Report-generation code (R2Gen, Chen et al. 2020, and most work since) reads one JSON file with a list of cases
# per split, each with an `id`, its `report` and a list of `image_path`s under `images/`:
#
# ```json
# {"train": [{"id": "CXR2384_IM-0942", "report": "The heart size and pulmonary vascularity appear within normal limits. ...",
#             "image_path": ["CXR2384_IM-0942/0.png", "CXR2384_IM-0942/1.png"], "split": "train"}, ...],
#  "val": [...], "test": [...]}
# ```
#
# IU X-Ray cases have two images (frontal and lateral), MIMIC-CXR cases one. The course's synthetic data is in
# this layout already, with extras MDNet can use when they exist: `label` (the diagnosis), `reports` (several
# reference reports), `grades` and `mask_path`. Anything in this layout works with every command below.
#
# As "your data" we export the course's tiles as a plain R2Gen data set: two views per case (the second a mirror
# image, standing in for a lateral view), **no labels**, and reports in a different, free-text style
# (`export_r2gen`, style "findings"), so nothing of the course's report grammar is left to lean on.

# %%
source = make_synthetic_dataset(config.data_dir / "synthetic-n720-s64-seed0", n_images=720, seed=config.seed)
mine = config.data_dir / "your-own-data-r2gen"
if not (mine / "annotation.json").exists():
    export_r2gen(source, mine, style="findings", views=2)
annotation = json.loads((mine / "annotation.json").read_text())
print("layout:", detect_layout(mine), "|", {split: len(cases) for split, cases in annotation.items()})
print(json.dumps(annotation["train"][0], indent=1))

# %%
# NBVAL_CHECK_OUTPUT
case = ReportDataset(mine, "train")[0]
print("a case holds", tuple(case["image"].shape)[0], "views of", tuple(case["image"].shape)[1:],
      "| label:", case["label"], "(-1: none) | grades known:", bool((case["grades"] >= 0).any()))

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
for k, entry in enumerate(annotation["train"][:2]):
    for v, path in enumerate(entry["image_path"]):
        axes[2 * k + v].imshow(PILImage.open(mine / "images" / path))
        axes[2 * k + v].set_title(f"{entry['id']} view {v + 1}", fontsize=9)
        axes[2 * k + v].axis("off")
plt.show()
for entry in annotation["train"][:2]:
    print(entry["id"], "|", entry["report"])

# %% [markdown]
# **The MDNet authors' layout.** Their released bladder data (BCIDR, and the 2019 NMI data) is a JSON of
# `{image name: {"caption": [five reports], "label": ...}}` beside a folder of images. `convert_bcidr_folder`
# turns such a folder into the layout above (a seeded split into train/val/test, every caption kept as a reference
# report, labels mapped to the four classes, images copied, written atomically). Here on a few tiles written out
# in that layout:

# %%
bcidr = WORK / "bcidr-example"
shutil.rmtree(bcidr, ignore_errors=True)
(bcidr / "Images").mkdir(parents=True)
captions = {}
for entry in json.loads((source / "annotation.json").read_text())["train"][:12]:
    name = Path(entry["image_path"][0]).name
    shutil.copy(source / "images" / entry["image_path"][0], bcidr / "Images" / name)
    captions[name] = {"caption": entry["reports"], "label": entry["label"]}
(bcidr / "data.json").write_text(json.dumps(captions))
print("layout:", detect_layout(bcidr))
converted = WORK / "bcidr-converted"
shutil.rmtree(converted, ignore_errors=True)
convert_bcidr_folder(bcidr, converted, seed=0)
# !{PY} -m mdnet_utils data --check {converted}

# %% [markdown]
# ## 2. Training from the command line
#
# ```
# python -m mdnet_utils train --data DIR --out RUN [--config FILE] [--model mdnet|resnet-sat] [--epochs E]
#                             [--batch-size B] [--lr LR] [--weight-decay WD] [--image-size S] [--seed K]
#                             [--min-count N] [--max-len T] [--bf16] [--resume] [--device DEV] [--num-workers W]
#                             [-v | -q] [--debug]
# ```
#
# trains MDNet (or the Show-Attend-Tell baseline) through the three stages of notebook 07, in epochs, with the
# course's recipe (`mdnet_utils.training.recipes.course_recipe("mdnet")`, on all of the training data).
# `--epochs E` is the total of the stages it trains, shared over them in the recipe's proportions (diagnosis 8,
# decoder 4, end to end 4); `--batch-size`, `--lr` and `--weight-decay` set every stage. `--config FILE` reads the settings from a JSON or
# YAML file with a `"model"` and a `"training"` section (a run's `config.json` is one); flags given beside it
# override it. The training cases are streamed from disk through a `DataLoader` (`--num-workers` processes read
# them), so memory does not grow with the data set. The run folder receives `config.json` (the model, the
# training recipe and the data, everything needed to rebuild the model) and `vocab.json` (words of the training
# reports seen at least `--min-count` times), `last.pt` after every epoch, `best.pt` (the best validation BLEU-4 so
# far), `metrics.jsonl` (one line per epoch: the epoch of the run, the stage and the epoch within it, the losses,
# the validation scores, the seconds) and `log.txt`. Checkpoints are state_dicts, loaded with `weights_only=True`.
# Messages go to stderr (`-v` adds debug messages, `-q` keeps warnings only), the run's notes also to `log.txt`. Our
# data has no labels, so the log says the class loss is off and the attention is unconditioned: Eq. (14) with
# $c = 0$, since there is no trained classifier whose CAM could steer it; the diagnosis stage is left out, and the
# `--epochs` are shared by the decoder and the end-to-end stage. Two views per case are encoded one by one and their
# feature maps averaged.

# %%
run = WORK / "mdnet"
epochs = config.pick(full=20, fast=2)
resume = "--resume" if (run / "last.pt").exists() else ""   # a finished run resumes to nothing: it just loads
# !{PY} -m mdnet_utils train --data {mine} --out {run} --epochs {epochs} --batch-size 32 {resume}
print((run / "log.txt").read_text())

# %%
history = pd.read_json(run / "metrics.jsonl", lines=True)
print(history.drop(columns=["seconds"]).to_string(index=False, float_format="{:.3f}".format))
print(f"total training time: {history.seconds.sum():.0f} s on this machine")

# %% [markdown]
# **Resuming is exact.** Each epoch's data order is drawn from the seed, the stage and the epoch number (a
# `DistributedSampler`'s shuffle, the same for one process as for several), and the random state, the stage's
# optimizer and its schedule are saved with every checkpoint, so a run that is interrupted and resumed ends with the
# same weights as one that was not. A resumed run keeps the settings saved in its `config.json`: repeating the flags
# that started it is fine, different ones are refused. The check, on the first two epochs: one run straight through,
# one stopped after each epoch and resumed.

# %%
# NBVAL_CHECK_OUTPUT
from mdnet_utils.training.runs import train_run
tiny = config.data_dir / "your-own-data-r2gen-tiny"   # a small copy keeps the checks quick
if not (tiny / "annotation.json").exists():
    export_r2gen(make_synthetic_dataset(config.data_dir / "synthetic-n72-s64-seed0", n_images=72, seed=config.seed),
                 tiny, style="findings", views=2)
small = dict(epochs=2, batch_size=8, progress=False)
for name in ("straight", "interrupted"):
    shutil.rmtree(WORK / name, ignore_errors=True)
train_run(tiny, WORK / "straight", **small)
train_run(tiny, WORK / "interrupted", **small, stop_after=1)
train_run(tiny, WORK / "interrupted", **small, resume=True)
a, b = (torch.load(WORK / name / "last.pt", weights_only=True)["state_dict"] for name in ("straight", "interrupted"))
print("interrupted + resumed == straight through:", all(torch.equal(a[k], b[k]) for k in a))

# %% [markdown]
# ## 3. Evaluating, and reading the learning curves
#
# `evaluate` scores the run's best model on a split with every Part III score the data supports: free-running
# report scores always; diagnosis accuracy and the clinical score only where there are labels and grades (here
# there are none); attention localisation only where there are masks. It prints a table and writes
# `RUN/scores-test.json`. `plot` draws the learning curves.

# %%
# !{PY} -m mdnet_utils evaluate --run {run} --data {mine} --split test

# %%
# !{PY} -m mdnet_utils plot {run}
display(Image(filename=str(run / "curves.png"), width=800))

# %% [markdown]
# These scores do not compare with notebook 07's, in either direction: here each case has one reference report
# instead of five (BLEU and ROUGE-L reward matching *any* reference), its style is free text whose sentences vary
# in wording and order (the two reports printed in section 1), there are no labels to steer the attention, the
# training is a fraction of the references', and CIDEr weighs every n-gram by how rare it is among the references
# of the split it scores, so it changes with the data set itself. The numbers of a run are what they are; the
# point here is the pipeline.
#
# ## 4. Reports for new images, and images the model has never seen the like of
#
# `report` writes, for each image, the diagnosis (when the run has labels), the generated report and a diagnosis
# card with the attention of the finding words. We give it two test tiles and two crops of a real
# immunohistochemistry image that ships with scikit-image (`skimage.data.immunohistochemistry`: a colon section
# stained for a protein, not H&E).

# %%
from skimage import data as skdata

inputs = WORK / "new-images"
inputs.mkdir(exist_ok=True)
ihc = skdata.immunohistochemistry()
for k, (y, x) in enumerate([(100, 120), (300, 280)]):
    PILImage.fromarray(ihc[y:y + 128, x:x + 128]).save(inputs / f"ihc_crop{k + 1}.png")
for entry in annotation["test"][:2]:
    shutil.copy(mine / "images" / entry["image_path"][0], inputs / f"{entry['id']}.png")
cards = WORK / "cards"
shutil.rmtree(cards, ignore_errors=True)
images = " ".join(str(p) for p in sorted(inputs.glob("*.png")))
# !{PY} -m mdnet_utils report --run {run} {images} --out {cards}

# %%
for card in json.loads((cards / "reports.json").read_text()):
    display(Image(filename=str(cards / card["png"]), width=900))

# %% [markdown]
# **A caution the cards make visible.** The model writes a fluent report for the immunohistochemistry crops too:
# it has only ever seen one kind of tissue and one kind of report, and nothing in it can say "this is not what I
# was trained on". A generated report is evidence of what the model learned, not of what is in an image it was
# never trained for; real use needs out-of-distribution checks and a pathologist. The crops show it twice over:
# the report of the second crop is, but for its crowding ("moderate") and a shorter impression, the report of the
# first test tile (p0005_t00), and the first crop's report repeats itself, stating polarity twice ("nuclear
# polarity is partially lost. cell polarity is partially lost.") and "nucleoli are prominent" twice. A model
# given an image unlike its training data falls back on its most practised sentences, and strings them together
# less well. These cards also
# say so at the top: without labels $c = 0$ in Eq. (14), so no diagnosis steers their word maps; they come from
# the LSTM's state alone.
#
# ## 5. Scaling out: `torchrun`
#
# The same command runs on several processes with `torchrun`; each process takes its share of every global batch
# (`--batch-size` is the global batch, and the global batches are the ones a single process would see), gradients
# are averaged by `DistributedDataParallel` (gloo on CPUs, nccl on GPUs), and only the first process writes. On one machine with 4 GPUs, or on 2 machines:
#
# ```bash
# torchrun --nproc_per_node=4 -m mdnet_utils train --data DIR --out RUN --batch-size 128
# torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \
#          -m mdnet_utils train --data DIR --out RUN           # and node_rank=1 on the second machine
# ```
#
# Here, on the small copy, two CPU processes against one, same global batch, three epochs: the losses follow each
# other closely (relative differences of at most 0.0035 here), not exactly, because each process's batch norm sees
# only its half of the batch.

# %%
for name in ("one-process", "two-processes"):
    shutil.rmtree(WORK / name, ignore_errors=True)
args = f"--data {tiny} --epochs 3 --batch-size 8"
# !OMP_NUM_THREADS=1 {PY} -m mdnet_utils train {args} --out {WORK / 'one-process'} 2> /dev/null
torchrun = Path(PY).with_name("torchrun")
# !OMP_NUM_THREADS=1 {torchrun} --standalone --nproc_per_node=2 -m mdnet_utils train {args} --out {WORK / 'two-processes'} 2> /dev/null
compare = pd.DataFrame({name: pd.read_json(WORK / name / "metrics.jsonl", lines=True)["words_loss"]
                        for name in ("one-process", "two-processes")})
compare["relative difference"] = (compare["two-processes"] - compare["one-process"]).abs() / compare["one-process"]
print(compare.to_string(float_format="{:.4f}".format))


# %% [markdown]
# ## Summary
#
# - Any data set in R2Gen's `annotation.json` layout works with the course's commands; the MDNet authors' BCIDR/NMI
#   layout converts into it (`convert_bcidr_folder`), and the synthetic data exports to it (`export_r2gen`).
# - `train` runs MDNet's three stages from the command line into a run folder of state_dict checkpoints, and
#   `--resume` continues exactly; `evaluate`, `report` and `plot` read that folder.
# - Without labels, the class loss is off and the attention is unconditioned; with two views per case, the views'
#   feature maps are averaged.
# - `torchrun` runs the same command on several processes or GPUs, following a single process closely.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **Labels help?** Export the data again with `keep_labels=True` and train with the same budget. Compare the
#    report scores, and look at the attention in the cards now that a CAM steers it.
# 2. **One view or two.** Export with `views=1` and compare. Does the mirrored second view add anything? Why not?
# 3. **The baseline.** Train `--model resnet-sat` with the same budget and compare the two runs' `scores-test.json`.
# 4. **Your data.** Put a few of your own images and reports in the layout of section 1 and run `data --check` on it.
#    What does it report?

# %% [markdown]
# ### Exercise A · A split by patient
#
# Write `patient_split(patients, seed)`: given the patient of every tile (a list of strings, one per tile), return
# one of `"train"`, `"val"`, `"test"` per tile so that every patient's tiles are in one split, about 70/15/15 of the
# *patients* go to train/val/test, every split gets at least one patient, and the same seed gives the same split
# (shuffle the distinct patients with `np.random.default_rng(seed)`).

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def patient_split(patients, seed):
    """A seeded 70/15/15 split of the distinct patients; every tile follows its patient."""
    distinct = sorted(set(patients))
    order = np.random.default_rng(seed).permutation(len(distinct))
    n_val = max(1, round(0.15 * len(distinct)))
    n_test = max(1, round(0.15 * len(distinct)))
    split_of = {}
    for rank, i in enumerate(order):
        split_of[distinct[i]] = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
    return [split_of[p] for p in patients]


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_patient_split

check_patient_split(patient_split)

# %% [markdown]
# ### Exercise B · Each process's share of an epoch
#
# Section 2 resumes exactly and section 5 trains on two processes with the same global batch as one, because the
# order of an epoch's cases is never drawn from the global random stream. Write
# `process_share(n, seed, epoch, world, rank)`: the indices of the `n` training cases that process `rank` of `world` trains on in epoch `epoch`,
# in order, as the engine draws them: shuffle `range(n)` with a `torch.Generator` seeded with `seed + epoch`
# (`torch.randperm`); with several processes, every process takes the same number of cases (they step together)
# and the k-th batches of all processes together must be the k-th batch one process would take. The check
# compares with the engine's `DistributedSampler` and says which of these properties your order breaks.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def process_share(n, seed, epoch, world, rank):
    """Process rank's cases of epoch epoch: positions rank, rank + world, ... of a seeded shuffle, tail dropped."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    if world > 1:
        order = order[:n // world * world]         # every process the same number of cases
    return order[rank::world]


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_process_share

check_process_share(process_share)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. What does an entry of `annotation.json` need at the least, and what can it add for MDNet?
#
#    <details><summary>Answer</summary>
#
#    An `id`, a `report` and a list of `image_path`s; MDNet can use `label`, several `reports`, `grades` and `mask_path` when they exist.
#
#    </details>
#
# 2. Without labels, what happens to the class loss and to the attention?
#
#    <details><summary>Answer</summary>
#
#    The class loss is off and the attention is unconditioned (a zero CAM).
#
#    </details>
#
# 3. How is a case with two views fed to the model?
#
#    <details><summary>Answer</summary>
#
#    Each view goes through the image model and their feature maps are averaged.
#
#    </details>
#
# 4. What does `--resume` guarantee?
#
#    <details><summary>Answer</summary>
#
#    Training continues exactly where it stopped, from the state_dict checkpoints in the run folder.
#
#    </details>

# %% [markdown]
# ## References
#
# - Z. Chen, Y. Song, T.-H. Chang, X. Wan. *Generating Radiology Reports via Memory-driven Transformer* (R2Gen).
#   EMNLP 2020; its IU X-Ray and MIMIC-CXR `annotation.json` files.
# - D. Demner-Fushman et al. *Preparing a collection of radiology examinations for distribution and retrieval*
#   (IU X-Ray). JAMIA 2016.
# - Z. Zhang et al. *Pathologist-level interpretable whole-slide cancer diagnosis with deep learning.* Nature Machine
#   Intelligence 2019 (the BCIDR/NMI data layout).
# - PyTorch documentation: `torchrun` (elastic launch) and `DistributedDataParallel`.
# - S. van der Walt et al. *scikit-image: image processing in Python.* PeerJ 2014 (`skimage.data.immunohistochemistry`).
