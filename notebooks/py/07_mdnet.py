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
# # 07 · MDNet: a diagnosis, a report, and where it looked for every word
#
# Everything comes together: the EcNet image model of Part II diagnoses the tile, and the attention LSTM
# of notebook 06 writes the report while looking where the diagnosis points. We train the whole MDNet in
# its three stages, one cell each, compare it with a Show-Attend-Tell baseline on a pre-activation ResNet,
# and then use what makes MDNet interpretable: per-word attention overlays, a diagnosis card per tile,
# retrieval of images by a symptom description, and an explorer to look around.
#
# ### What you will learn
# - MDNet's three-stage training: the image model on the diagnosis, the language model with the image model frozen, then end to end with $L_{words} + 0.1\,L_{class}$ and the CAM's gradient stopped;
# - to compare two report generators on diagnosis, report scores, clinical scores and attention localisation in one table, against chance and the data's own ceiling;
# - to read per-word attention overlays (thresholded at 0.3 × max, the authors' drawing, the default of `mdnet_utils.visualise.threshold_map`) and a diagnosis card;
# - retrieval by symptom description: ranking images by the likelihood of a phrase, scored by precision@k.
#
# *Equations covered: (1)–(14), all of them in one network.*
#
# ### Prerequisites
# Notebook 06 (its trained language models are reused from `runs/` when it has run).
#
# ### Runtime
# On a 2-core CPU: several minutes in full mode when notebooks 01, 05 and 06 have run, most of it stage 3, which
# is trained here for both models (its cell prints the seconds each model took on this machine); about 40 seconds
# in fast mode (`MDNET_FAST=1`, for tests only).

# %%
# Setup: the same first cell in every notebook.
import platform
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display

import mdnet_utils
from mdnet_utils import config, get_device, seed_everything
from mdnet_utils.data import CLASSES, FEATURES, make_synthetic_dataset
from mdnet_utils.data.dataset import build_vocab
from mdnet_utils.data.loading import load_report_tiles
from mdnet_utils.evaluation.localisation import finding_words
from mdnet_utils.evaluation.metrics import (caption_scores, consistency, java_available, leave_one_out_scores,
                                            report_agreement)
from mdnet_utils.evaluation.reports import evaluate_reports, generate_reports
from mdnet_utils.evaluation.retrieval import rank_by_query
from mdnet_utils.training.recipes import report_generator
from mdnet_utils.visualise import attention_strip, diagnosis_card, show_overlay

seed_everything(config.seed)
device = get_device()
print(f"mode: {config.mode} | mdnet_utils {mdnet_utils.__version__} | torch {torch.__version__} | "
      f"python {platform.python_version()}")
sns.set_theme(style="whitegrid", context="notebook")
# The figures here are mostly tiles, photographs in effect: as JPEG they take a fifth of the space of PNG.
# %config InlineBackend.figure_formats = ["jpeg"]

# %% [markdown]
# ## 1. The three stages
#
# The CVPR paper trains MDNet but does not publish its schedule; the authors' later code (2019) does, and we
# follow it (`report_generator`, shared with notebook 06, each stage cached in `runs/`):
#
# 1. **Image model on the diagnosis**: the course's recipe of notebooks 01-05 (EcNet-20-4 for MDNet, ResNet-32
#    for the baseline, 8 epochs);
# 2. **Language model, image model frozen**: 4 epochs on every training tile's five reports (notebook 06);
# 3. **End to end**: 4 epochs of $L = L_{words} + 0.1\,L_{class}$ (two of the five reports of each tile a step: the
#    findings are the same in all five, only the wording differs), the word loss reaching into the image model,
#    the attention conditioned on the CAM of the predicted class with its gradient stopped.
#
# One cell per stage; each call loads what earlier stages (or notebooks) already trained.

# %%
root = make_synthetic_dataset(config.dataset_dir, n_images=config.n_images, seed=config.seed)
vocab = build_vocab(root)
test = load_report_tiles(root, "test", vocab)
KINDS = {"mdnet": "MDNet (EcNet-20-4, Eq. 14)", "resnet-sat": "baseline (ResNet-32, Show-Attend-Tell)"}
models, histories = {}, {}
for kind in KINDS:  # stage 1
    models[kind], _, histories[kind] = report_generator(kind, root=root, config=config, device=device, until="diagnosis")
    print(f"stage 1, {kind}: test accuracy after pre-training {histories[kind]['diagnosis'][-1]['test_acc']:.3f}")

# %%
for kind in KINDS:  # stage 2
    models[kind], _, histories[kind] = report_generator(kind, root=root, config=config, device=device, until="decoder")
    print(f"stage 2, {kind}: word loss {histories[kind]['decoder'][-1]['words_loss']:.3f} (teacher forced)")

# %%
for kind in KINDS:  # stage 3
    start = time.perf_counter()
    models[kind], _, histories[kind] = report_generator(kind, root=root, config=config, device=device,
                                                        until="end_to_end")
    print(f"stage 3, {kind}: {time.perf_counter() - start:.0f} s (trained here, or loaded from runs/)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 3.5))
for kind, h in histories.items():
    words = [r["words_loss"] for r in h["decoder"] + h["end_to_end"]]
    axes[0].plot(range(1, len(words) + 1), words, "o-", label=KINDS[kind])
    axes[1].plot([r["class_loss"] for r in h["end_to_end"]], "o-", label=KINDS[kind])
axes[0].axvline(len(h["decoder"]) + 0.5, color="0.5", ls=":")
axes[0].text(len(h["decoder"]) + 0.6, axes[0].get_ylim()[1] * 0.95, "end to end", va="top", fontsize=9)
axes[0].set_xlabel("epoch (stage 2, then stage 3)"); axes[0].set_ylabel("word loss (teacher forced)")
axes[1].set_xlabel("epoch of stage 3"); axes[1].set_ylabel("class loss (x 0.1 in L)")
for ax in axes:
    ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. One table: diagnosis, reports, clinical content, attention
#
# Every score is computed on the test split from **free-running** (greedy) reports. Beside each, what it should
# be read against: for the report scores, the agreement of the synthetic references among themselves, scored
# like for like (notebook 06): each generated report against four of the tile's five references, averaged over
# the five choices of the one left out (`leave_one_out_scores`), and each reference against the other four,
# averaged over which one (`report_agreement(..., every_choice=True)`). METEOR (Java, 15 s a call) is scored as
# before, the generated reports against all five references and reference 1 against the other four: like for
# like it would take fifteen calls. Chance is the reference for the attention. The attention is scored for the
# words that name a finding (`finding_words`: a feature's keyword and its grade, e.g. "frequent mitoses"): the
# share of the word's attention mass inside the ground-truth mask (the lesion for nuclear features, the mitotic
# figures for mitosis words) and the pointing game, each against a uniform map. *Consistency* asks whether a
# report agrees with itself: the share of reports whose stated conclusion is the conclusion rule applied to the
# grades the same report states (`consistency`). Where Java is missing, METEOR is left out, never filled with a
# made-up 0.

# %%
meteor = java_available()
print("METEOR:", "computed (Java found)" if meteor else "left out: no Java on the PATH (pycocoevalcap's METEOR is a Java program)")
ceiling = report_agreement(test.reports, every_choice=True)
if meteor:
    ceiling["METEOR"] = report_agreement(test.reports, meteor=True)["METEOR"]
generated, scores = {}, {}
for kind, model in models.items():
    generated[kind] = generate_reports(model, test.images, vocab)
    scores[kind] = evaluate_reports(model, test, vocab, generated=generated[kind])
    hypotheses = dict(zip(test.ids, generated[kind].texts))
    scores[kind]["report, like for like"] = leave_one_out_scores(test.references(), hypotheses)
    if meteor:
        scores[kind]["report, like for like"]["METEOR"] = caption_scores(test.references(), hypotheses,
                                                                         meteor=True)["METEOR"]
    scores[kind]["consistency"] = consistency(generated[kind].texts)["consistency"]

def row(s):
    att = s["attention"]
    return {"diagnosis accuracy": s["diagnosis"], **s["report, like for like"],
            "clinical: features (mean)": s["clinical"]["features (mean)"],
            "clinical: worst feature": min(s["clinical"][f] for f in FEATURES),
            "clinical: conclusion": s["clinical"]["conclusion"], "consistency": s["consistency"],
            "attention in lesion": att["lesion"]["mass_inside"], "(uniform)": att["lesion"]["mass_inside_uniform"],
            "attention on mitoses": att["mitosis"]["mass_inside"],
            "(uniform) ": att["mitosis"]["mass_inside_uniform"],
            "pointing game, mitoses": att["mitosis"]["pointing_game"],
            "(uniform)  ": att["mitosis"]["pointing_game_uniform"]}

table = pd.DataFrame({KINDS[k]: row(s) for k, s in scores.items()})
table["synthetic references (each vs the other 4)"] = pd.Series(ceiling)
print(table.to_string(float_format="{:.3f}".format, na_rep="-"))

# %%
clinical = pd.DataFrame({KINDS[k]: s["clinical"] for k, s in scores.items()}).T
print("clinical score: each grade read back from the generated report (parse_report) against the tile's truth")
print(clinical.to_string(float_format="{:.3f}".format))

# %% [markdown]
# **The targets** this course set itself for MDNet, checked on this run (full mode is the one that counts):

# %%
s = scores["mdnet"]
lesion, mitosis = s["attention"]["lesion"], s["attention"]["mitosis"]
checks = [
    ("diagnosis accuracy >= 0.95", s["diagnosis"], s["diagnosis"] >= 0.95),
    (f"BLEU-4 like for like >= 0.9 x ceiling ({0.9 * ceiling['BLEU-4']:.3f})", s["report, like for like"]["BLEU-4"],
     s["report, like for like"]["BLEU-4"] >= 0.9 * ceiling["BLEU-4"]),
    ("every feature read correctly >= 0.90", min(s["clinical"][f] for f in FEATURES),
     min(s["clinical"][f] for f in FEATURES) >= 0.9),
    ("consistency >= 0.97", s["consistency"], s["consistency"] >= 0.97),
    ("attention on mitoses >= 2 x uniform", mitosis["ratio"], mitosis["ratio"] >= 2),
    ("attention in lesion >= 2 x uniform", lesion["ratio"], lesion["ratio"] >= 2),
]
for name, value, ok in checks:
    print(f"{'met    ' if ok else 'NOT met'}  {name:45s} {value:.3f}")
print(f"(the lesion covers {lesion['mass_inside_uniform']:.0%} of a tile on average: no map can put more than "
      f"{1 / lesion['mass_inside_uniform']:.2f} x uniform inside it)")


# %% [markdown]
# **What limits what.** The figures quoted here are those of the run committed with this notebook (full mode).
#
# - *Diagnosis* is the EcNet's: 93.1 % after stage 1, 96.5 % after stage 3, above the course's 95 % target. The
#   class loss enters stage 3 at only a tenth of the word loss, yet both image models gained in stage 3 (the
#   baseline's ResNet-32 from 94.6 % to 96.6 %); a likely reason is that the word loss reaching into the features
#   is about the grades, and the diagnosis follows from the grades. One seed each: read the gain, the margin over
#   the target and the 0.1 point between MDNet and the baseline as within what one seed can tell. The paper
#   reports MDNet ahead of its baselines; on the diagnosis, this run shows a tie.
# - *BLEU-4, like for like*: MDNet 0.699, the baseline 0.675, the synthetic references' own agreement 0.682.
#   MDNet above the references does not mean better than a pathologist: the model writes the most common
#   phrasing, which matches some reference more often than one reference's own wording does (notebook 06), and
#   ROUGE-L and CIDEr are above the references' for both models. MDNet is ahead of the baseline on every report
#   score, as in the paper, but by one to two and a half points of BLEU and ROUGE-L (CIDEr 2.337 against 2.187,
#   METEOR by less than one point): small margins for one seed.
# - *Consistency*: 96.5 % of MDNet's reports state the conclusion that the rule gives for the grades they state
#   themselves, 91.8 % of the baseline's; the 97 % target is not met. A report that contradicts itself is a
#   failure BLEU cannot see, and the clinical score sees it only against the truth.
# - *Clinical scores* are limited by what the image features carry. The image model was pre-trained on the
#   diagnosis, which depends on the sum of the grades; stage 3 lets the word loss reach into the features (MDNet's
#   mean of 0.82 is well above its value after stage 2 in notebook 06, pleomorphism, at 0.96, most of all), but a
#   grade word is one word in forty of the loss, and 4 epochs are few. Crowding, polarity and nucleoli stay between
#   0.7 and 0.8, and mitosis reaches 0.89: all four below the 90 % target. The baseline reads the grades less well
#   (mean 0.74), most of all pleomorphism (0.72 against 0.96). A grade reader trained on the grades directly
#   (notebook 00) reads crowding and polarity from the same tiles far better than these reports do, so that
#   information is in the pixels; nucleoli it reads hardly better, so they may be hard to see at 64 pixels at all.
# - *Attention on the lesion* cannot reach twice uniform: the lesion covers 62 % of a tile on average, so no map
#   can put more than 1.62 times uniform inside it. The target is reachable only for small findings, the mitotic
#   figures.
# - *MDNet's attention* (Eq. 14) sees the image only through the CAM of the diagnosis: it can move towards where
#   the diagnosis evidence is, but it has no way to find a particular mitotic figure, and here it does not (0.009
#   of its mass on the mitotic figures against 0.008 for a uniform map; the pointing game 0.005 against 0.008).
#   The baseline's attention scores every position by its content: its mitosis words put 0.039 of their attention
#   on the mitotic figures, about five times the uniform share (one seed: read the factor loosely), and its
#   pointing game scores 0.186 against 0.008. The content term that Eq. (14) leaves out is what localises small
#   findings (Exercise 3). Here our result departs from the paper, which presents its attention, Eq. (14), as an
#   improvement.

# %% [markdown]
# ## 3. Per-word attention, overlaid
#
# For several test tiles: the words of the generated report that name a finding, each with its attention map
# upsampled to the tile, cut at 0.3 of its maximum (`mdnet_utils.visualise.threshold_map`'s default) and overlaid (the authors' way of drawing it); the ground-truth
# mask of that finding outlined in yellow.

# %%
def finding_positions(words, feature=None):
    return [pos for pos, f, _ in finding_words(words) if feature is None or f == feature]

examples = [int(k) for k in torch.nonzero((test.labels == CLASSES.index("high grade"))
                                          & test.masks["mitosis"].flatten(1).any(1)).flatten()[:3]]
for kind in KINDS:
    g = generated[kind]
    fig, axes = plt.subplots(len(examples), 7, figsize=(15, 2.3 * len(examples)))
    for row_axes, i in zip(np.atleast_2d(axes), examples):
        show_overlay(row_axes[0], test.images[i], g.cam[i], g.grid, title="CAM", mask=test.masks["lesion"][i])
        mitosis_words = finding_positions(g.words[i], "mitosis")[:3]
        other = [p for p in finding_positions(g.words[i]) if p not in mitosis_words][:3]
        attention_strip(row_axes[1:4], test.images[i], g.words[i], g.alphas[i], g.grid, mitosis_words,
                        mask=test.masks["mitosis"][i])
        attention_strip(row_axes[4:], test.images[i], g.words[i], g.alphas[i], g.grid, other,
                        mask=test.masks["lesion"][i])
    fig.suptitle(f"{KINDS[kind]}: mitosis words (mitotic figures outlined), then nuclear words (lesion outlined)")
    plt.show()

# %% [markdown]
# ## 4. A diagnosis card per tile
#
# What a pathologist would see from MDNet: the tile, the predicted diagnosis with the classifier's confidence,
# the generated report, the CAM of the diagnosis, and the attention strip of the finding words.

# %%
g = generated["mdnet"]
probabilities = g.class_logits.softmax(1)
for i in examples[:2] + [int(torch.nonzero(test.labels == CLASSES.index("normal"))[0])]:
    k = int(probabilities[i].argmax())
    diagnosis_card(test.images[i], diagnosis=CLASSES[k], confidence=float(probabilities[i, k]), report=g.texts[i],
                   cam=g.cam[i], words=g.words[i], alphas=g.alphas[i], grid=g.grid,
                   positions=finding_positions(g.words[i]), truth=CLASSES[int(test.labels[i])],
                   mask=test.masks["lesion"][i])
    plt.show()

# %% [markdown]
# ## 5. Retrieval by symptom description
#
# The paper's other use of the language model: find the images that match a description. The score of an image
# is the likelihood of the query under the model, $\log p(\text{query} \mid I, \text{report so far})$ (Eq. 11 summed
# over the query's words only), with the query placed where a report would state it: after the sentences that
# the model's own report writes before that feature (`rank_by_query`). Precision@k: the share of the k best-ranked
# test tiles whose ground truth has the queried grade, against the share of all test tiles that have it.

# %%
QUERIES = {"mitotic figures are frequent.": ("mitosis", "frequent"),
           "there is severe pleomorphism of the nuclei.": ("pleomorphism", "severe"),
           "the polarity of the cells is completely lost.": ("polarity", "completely lost"),
           "nucleoli appear inconspicuous at high magnification.": ("nucleoli", "inconspicuous")}
from mdnet_utils.data.grades import GRADES
rows = {}
for query, (feature, grade) in QUERIES.items():
    relevant = test.grades[:, FEATURES.index(feature)] == GRADES[feature].index(grade)
    row = {"share of test tiles": float(relevant.float().mean())}
    for kind in KINDS:
        order = rank_by_query(models[kind], test.images, vocab, query, generated[kind]).argsort(descending=True)
        for k in (10, 50):
            row[f"{kind} P@{k}"] = float(relevant[order[:k]].float().mean())
    rows[query] = row
print(pd.DataFrame(rows).T.to_string(float_format="{:.2f}".format))

# %% [markdown]
# ## 6. Explore
#
# Pick a test tile and a word of its generated report to see where MDNet looked when writing it (drag the
# slider). Widgets need a live kernel; the static figure under the explorer shows the same for one tile, so the
# page also reads where widgets do not render (a rendered site, a PDF).

# %%
g = generated["mdnet"]
tile = widgets.IntSlider(value=examples[0], min=0, max=len(test) - 1, description="tile")
word = widgets.IntSlider(value=0, min=0, max=len(g.words[examples[0]]) - 1, description="word")

def show(tile_index, word_index):
    words = g.words[tile_index]
    word_index = min(word_index, len(words) - 1)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
    axes[0].imshow(test.images[tile_index].permute(1, 2, 0)); axes[0].axis("off"); axes[0].set_title("tile")
    show_overlay(axes[1], test.images[tile_index], g.alphas[tile_index][word_index], g.grid,
                 title=f"'{words[word_index]}'", mask=test.masks["mitosis"][tile_index])
    text = " ".join(f"[{w}]" if k == word_index else w for k, w in enumerate(words))
    fig.text(0.02, 0.0, "\n".join(text[i:i + 110] for i in range(0, len(text), 110)), fontsize=7, va="top")
    plt.show()

tile.observe(lambda change: setattr(word, "max", len(g.words[change["new"]]) - 1), names="value")
display(widgets.VBox([tile, word, widgets.interactive_output(show, {"tile_index": tile, "word_index": word})]))

# %%
i = examples[0]                                   # the static version: every word of one report
words = g.words[i]
cols = 10
rows_ = (len(words) + cols - 1) // cols
fig, axes = plt.subplots(rows_, cols, figsize=(16, 1.8 * rows_))
attention_strip(axes.flatten(), test.images[i], words, g.alphas[i], g.grid, list(range(len(words))),
                mask=test.masks["mitosis"][i])
fig.suptitle("MDNet: where it looked for every word of one report (mitotic figures outlined)")
plt.show()


# %% [markdown]
# ## Summary
#
# - MDNet = an EcNet that diagnoses + an LSTM that writes the report, its attention steered by the CAM of the
#   predicted class (Eq. 14); trained in three stages, the last end to end with $L_{words} + 0.1\,L_{class}$.
# - One table compares it with a Show-Attend-Tell baseline on a ResNet: diagnosis, free-running report scores
#   like for like against the synthetic references' own agreement, a clinical score read back from the reports,
#   the reports' consistency with themselves, and attention localisation against chance. The targets are printed above with the figures this run reached.
# - Per-word attention overlays, a diagnosis card and retrieval by symptom description are what make the model
#   inspectable; the attention is evidence of where the model looked, not proof of why it wrote a word.

# %% [markdown]
# ## Exercises
#
# The exercises marked with a letter come with an automatic check: write the function in the cell marked as the solution, then run the check cell below it; it prints a pass, or exactly what is wrong (which case, what was expected, what came back). Here the solutions are written out; in the student edition (`make student`) they are stubs for you to fill in. The numbered exercises are open-ended.
#
# 1. **True class or predicted class?** Retrain stage 3 with the CAM of the *true* class in Eq. (14) (a
#    `ReportGenerator.encode` variant taking labels). What happens at test time, where only the prediction exists?
# 2. **Let the gradient through.** Remove the `detach` from the CAM in `ReportGenerator.encode` and retrain stage 3.
#    Does the diagnosis change? The attention?
# 3. **Content in Eq. (14).** Add the baseline's content term to MDNet's attention,
#    $\mathrm{softmax}(W_{att}\tanh(W_h h_{t-1} + c) + w^T\tanh(W_a C(I)))$. Does the attention on mitoses improve?
# 4. **Longer stage 3.** Double the end-to-end epochs (the `end_to_end` stage of
#    `mdnet_utils.training.recipes.course_recipe("mdnet")`, with `epochs` doubled, run by
#    `mdnet_utils.training.engine.train`). Which clinical scores move, and what does that say about what limited them?
# 5. **A report as the query.** Rank the test tiles by the likelihood of a whole reference report of one tile.
#    Is that tile ranked first?

# %% [markdown]
# ### Exercise A · How much of the map lies in the lesion?
#
# Write `mass_inside_mask(saliency, mask)`: the share of a map's positive mass that lies inside a mask,
# $\sum s\,m / \sum s$ with $s = \mathrm{ReLU}(\text{saliency})$, for a map `(H, W)` and a boolean mask `(H, W)`; for
# a map with no positive mass at all, return the mask's area share (what a uniform map scores). Return a number.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def mass_inside_mask(saliency, mask):
    """The share of ReLU(saliency) inside the mask; the mask's area share when there is no mass."""
    s, m = torch.relu(saliency), mask.to(saliency.dtype)
    total = s.sum()
    if total == 0:
        return float(m.mean())
    return float((s * m).sum() / total)


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_mass_inside

check_mass_inside(mass_inside_mask)


# %% [markdown]
# ### Exercise B · The pointing game
#
# Write `pointing_game_hit(saliency, mask)`: 1.0 when the maximum of $\mathrm{ReLU}(\text{saliency})$ lies in the mask, 0.0
# when not; with several equal maxima (a constant map, for one), the share of them inside the mask. Return a number.

# %% tags=["solution"]
# Solution (the student edition has a stub here)
def pointing_game_hit(saliency, mask):
    """1.0 if the map's maximum lies in the mask; with ties, the share of maximal points inside."""
    s = torch.relu(saliency)
    at_max = s == s.max()
    return float((at_max & mask).sum() / at_max.sum())


# %% tags=["check"]
# NBVAL_CHECK_OUTPUT
from mdnet_utils.exercises import check_pointing_game

check_pointing_game(pointing_game_hit)

# %% [markdown] tags=["questionnaire"]
# ## Questionnaire
#
# A few questions to check your understanding before you go on; each answer is one or two sentences.
#
# 1. MDNet is trained in three stages. What is trained in each, and why not all at once from the start?
#
#    <details><summary>Answer</summary>
#
#    The image model first, then the language model on frozen features, then both end to end: a language model on random features would learn to ignore the image.
#
#    </details>
#
# 2. What does the loss of stage 3 combine, and with what weight?
#
#    <details><summary>Answer</summary>
#
#    $L = L_{words} + 0.1\,L_{class}$: the word loss plus the diagnosis loss, weighted by 0.1.
#
#    </details>
#
# 3. Why is attention measured on the *finding words* only?
#
#    <details><summary>Answer</summary>
#
#    Words such as 'the' or 'of' have nothing to point at; a finding word's attention should fall on the lesion or the mitoses.
#
#    </details>
#
# 4. How does retrieval by symptom description use the language model?
#
#    <details><summary>Answer</summary>
#
#    It ranks tiles by the log-likelihood the model gives the query sentence (Eq. 11), given each tile.
#
#    </details>

# %% [markdown]
# ## References
#
# - Z. Zhang, Y. Xie, F. Xing, M. McGough, L. Yang. *MDNet: A Semantically and Visually Interpretable Medical
#   Image Diagnosis Network.* CVPR 2017 (arXiv:1707.02485).
# - Z. Zhang et al. *Pathologist-level interpretable whole-slide cancer diagnosis with deep learning.* Nature Machine
#   Intelligence 2019 (the authors' later code: predicted-class CAM, the three-stage schedule, 0.3 × max overlays as in `mdnet_utils.visualise.threshold_map`).
# - K. Xu et al. *Show, Attend and Tell.* ICML 2015.
# - B. Zhou et al. *Learning Deep Features for Discriminative Localization* (CAM). CVPR 2016.
# - J. Zhang et al. *Top-down Neural Attention by Excitation Backprop* (the pointing game). ECCV 2016.
