"""Training and scoring report generators (MDNet and the Show-Attend-Tell baseline), stage by stage.

The schedule (the authors' later code; the CVPR paper does not publish one, see equations.md):

1. ``"diagnosis"``  pre-train the image model on the diagnosis: the course's recipe of notebooks 01-05
                    (``train.fit_diagnosis``), so the networks trained there are reused;
2. ``"decoder"``    train the language model with the image model frozen: every training tile is encoded
                    once (eval mode), then only the decoder learns, from all five reports of each tile;
3. ``"end_to_end"`` train everything with L_words + 0.1 L_class (``models.mdnet.mdnet_loss``), tiles
                    augmented by flips and right-angle turns (no report depends on a tile's orientation).

Both language stages take batches of tiles and learn from every reference report of each tile at once
(the image is encoded once and its features repeated), AdamW with a one-cycle schedule (the authors used
RMSProp; we keep the course's one optimiser), gradients clipped to norm 5 (usual for LSTMs). Budgets are
epochs, so results are the same on every machine. Each stage's result is cached in ``runs/`` keyed by the
data, the settings and the weights it started from, so notebook 07 reuses what notebook 06 trained.

Scores (``evaluate_reports``): diagnosis accuracy; the teacher-forced word loss (not a performance
measure: the model is handed the true previous words) kept apart from the free-running report scores
(``metrics.caption_scores`` of greedy or beam-search reports against all reference reports); the clinical
score (``metrics.clinical_scores``); attention localisation for the words that name a finding
(``localisation.attention_localisation``).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mdnet_utils.data.dataset import ReportDataset, build_vocab, pad_sequences
from mdnet_utils.data.vocab import Vocabulary
from mdnet_utils.models.decoder import word_loss
from mdnet_utils.models.mdnet import Encoded, ReportGenerator, mdnet, mdnet_loss, resnet_sat
from mdnet_utils.train import to_input, augment, cached_fit, fingerprint, fit_diagnosis

__all__ = ["ReportTiles", "load_report_tiles", "encode_tiles", "fit_reports", "Generated", "generate_reports",
           "evaluate_reports", "teacher_forced_loss", "rank_by_query", "report_generator", "MODELS", "STAGES"]

STAGES = ("diagnosis", "decoder", "end_to_end")
#: The two report generators of the course: builder, and the name of its image model in runs/diagnosis.
MODELS = {"mdnet": (mdnet, "EcNet-20-4"), "resnet-sat": (resnet_sat, "ResNet-32")}


@dataclass
class ReportTiles:
    """A split in memory: ``images`` (N, 3, H, W) uint8, ``labels`` (N,), ``grades`` (N, 5) (indices, -1
    unknown), ``tokens`` (N, R, T) (R reports a tile, ``<bos> ... <eos>``, padded), ``masks`` name -> (N, 1, H, W)
    bool, ``ids`` and ``reports`` (the R reference texts of each tile)."""
    images: torch.Tensor
    labels: torch.Tensor
    grades: torch.Tensor
    tokens: torch.Tensor
    masks: dict[str, torch.Tensor]
    ids: list[str]
    reports: list[list[str]]

    def __len__(self) -> int:
        return len(self.ids)

    def references(self) -> dict[str, list[str]]:
        return dict(zip(self.ids, self.reports))

    def truth(self) -> dict[str, dict]:
        """The ground truth of the clinical score, one entry per tile."""
        from mdnet_utils.metrics import clinical_truth
        return {i: clinical_truth(g.tolist(), int(y)) for i, g, y in zip(self.ids, self.grades, self.labels)}


def load_report_tiles(root: str | os.PathLike, split: str, vocab: Vocabulary, *, limit: int | None = None,
                      image_size: int | None = None, max_len: int | None = None) -> ReportTiles:
    """Read a split (its first ``limit`` tiles) into memory, images resized to ``image_size`` (antialiased
    bilinear; None keeps them), reports cut to ``max_len`` tokens (with a warning). Tiles must share one
    number of reports R (else the smallest is used). Cases with several views give images (N, V, 3, H, W)."""
    transform = None if image_size is None else (lambda x: resize_image(x, image_size))
    ds = ReportDataset(root, split, transform, vocab=vocab)
    n = len(ds) if limit is None else min(limit, len(ds))
    items = [ds[i] for i in range(n)]
    r = min(len(it["reports"]) for it in items)
    seqs = [[vocab.encode(rep) for rep in it["reports"][:r]] for it in items]
    if max_len is not None:
        cut = sum(len(s) > max_len for reps in seqs for s in reps)
        if cut:
            warnings.warn(f"{cut} reports of split {split!r} are longer than max_len={max_len} tokens and were "
                          "truncated.", stacklevel=2)
        seqs = [[s if len(s) <= max_len else s[:max_len - 1] + [vocab.eos_id] for s in reps] for reps in seqs]
    tokens = pad_sequences([s for reps in seqs for s in reps], vocab.pad_id)[0].view(n, r, -1)
    names = set.intersection(*(set(it["masks"]) for it in items))
    return ReportTiles(
        images=torch.stack([(it["image"] * 255).round().to(torch.uint8) for it in items]),
        labels=torch.tensor([it["label"] for it in items]),
        grades=torch.stack([it["grades"] for it in items]),
        tokens=tokens,
        masks={k: torch.stack([it["masks"][k] > 0.5 for it in items]) for k in sorted(names)},
        ids=[it["id"] for it in items],
        reports=[it["reports"][:r] for it in items])


def resize_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """A float (3, H, W) image in [0, 1] resized to (3, size, size), antialiased bilinear (unchanged if it fits)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x.unsqueeze(0), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batch_tokens(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """(b, R, T) -> (b R, T'), T' cut to the longest report of the batch (padding costs LSTM steps)."""
    flat = tokens.flatten(0, 1)
    length = int((flat != pad_id).sum(1).max())
    return flat[:, :length]


@torch.no_grad()
def encode_tiles(model: ReportGenerator, images: torch.Tensor, batch_size: int = 128) -> Encoded:
    """The image model's half for uint8 tiles, in eval mode, on the model's device."""
    model.eval()
    device = _device(model)
    parts = [model.encode(to_input(images[i:i + batch_size], device))
             for i in range(0, len(images), batch_size)]
    return Encoded(*(torch.cat([getattr(p, k) for p in parts]) for k in ("class_logits", "features", "cam")),
                   parts[0].grid)


def fit_reports(model: ReportGenerator, train: ReportTiles, *, stage: str, epochs: int, batch_size: int = 32,
                lr: float = 2e-3, class_weight: float = 0.1, attention_weight: float = 0.0,
                reports_per_tile: int | None = None, weight_decay: float = 1e-4, seed: int = 0,
                evaluate: Callable[[ReportGenerator], dict] | None = None,
                progress: bool | str = True) -> list[dict]:
    """Stage ``"decoder"`` (image model frozen) or ``"end_to_end"`` of the schedule, in place.

    ``batch_size`` counts tiles (each brings its R reports); ``class_weight`` weighs the diagnosis loss of the
    end-to-end stage, ``attention_weight`` the optional doubly stochastic regulariser (``mdnet_loss``).
    ``reports_per_tile``: learn from that many of each tile's R reports per step, drawn afresh every time
    (None: all R). The findings are the same in every report of a tile, only the wording differs, so fewer
    reports cost the image model little signal and save decoder steps. Returns one record per epoch: mean word loss
    (teacher forced, training tiles), mean class loss in the end-to-end stage, and ``evaluate``'s dict.
    """
    if stage not in ("decoder", "end_to_end"):
        raise ValueError(f"stage={stage!r}: fit_reports trains 'decoder' or 'end_to_end'.")
    if epochs < 1:
        raise ValueError(f"epochs={epochs}: need at least 1.")
    gen = torch.Generator().manual_seed(seed)
    params = list((model.decoder if stage == "decoder" else model).parameters())
    encoded = encode_tiles(model, train.images) if stage == "decoder" else None
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    history = []
    bar = tqdm(range(epochs), desc=progress if isinstance(progress, str) else stage, disable=not progress)
    for epoch in bar:
        order = torch.randperm(len(train), generator=gen)
        losses = train_epoch(model, train, order, stage=stage, optimizer=opt, scheduler=sched, gen=gen,
                             batch_size=batch_size, class_weight=class_weight, attention_weight=attention_weight,
                             reports_per_tile=reports_per_tile, encoded=encoded)
        record = {"epoch": epoch + 1, **losses}
        if evaluate is not None:
            record.update(evaluate(model))
        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k != "epoch"})
        history.append(record)
    return history


def train_epoch(model: ReportGenerator, train: ReportTiles, order: torch.Tensor, *, stage: str, optimizer, scheduler,
                gen: torch.Generator, batch_size: int, class_weight: float = 0.1, attention_weight: float = 0.0,
                reports_per_tile: int | None = None, encoded: Encoded | None = None,
                wrapped: nn.Module | None = None, autocast: bool = False) -> dict[str, float]:
    """One pass over ``train`` in the given ``order`` (tile indices), one optimizer step per batch.

    ``stage``: ``"diagnosis"`` (the image model on the class loss alone), ``"decoder"`` (image model frozen, in
    eval mode; ``encoded`` may hold the tiles already encoded) or ``"end_to_end"``. ``gen`` draws the
    augmentation and the reports picked. ``wrapped`` is what to call instead of ``model`` (a
    DistributedDataParallel wrapper); ``autocast`` runs the forward pass in bfloat16. Returns the mean losses.
    """
    device = _device(model)
    net = wrapped or model
    params = [p for group in optimizer.param_groups for p in group["params"]]
    model.train()
    if stage == "decoder":
        model.image_model.eval()  # frozen means its batch-norm statistics too
    sums, n = {}, 0
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        tokens = train.tokens[idx]
        if reports_per_tile is not None and reports_per_tile < tokens.shape[1]:
            pick = torch.rand(tokens.shape[:2], generator=gen).argsort(dim=1)[:, :reports_per_tile]
            tokens = tokens.gather(1, pick.unsqueeze(2).expand(-1, -1, tokens.shape[2]))
        tokens = _batch_tokens(tokens).to(device)
        labels = train.labels[idx].to(device)
        labels = labels if bool((labels >= 0).all()) else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            if stage == "decoder":  # no augmentation: the frozen stage sees the tiles as they are
                out = (model.decode_teacher_forced(encoded[idx.to(encoded.features.device)], tokens)
                       if encoded is not None else net(to_input(train.images[idx], device), tokens, stage=stage))
                loss, parts = mdnet_loss(out, tokens, None, attention_weight=attention_weight)
            elif stage == "diagnosis":
                if labels is None:
                    raise ValueError("the diagnosis stage needs a label for every training image.")
                out = net(augment(to_input(train.images[idx], device), gen), None, stage=stage)
                loss = nn.functional.cross_entropy(out["class_logits"].float(), labels)
                parts = {"class": float(loss.detach())}
            else:
                out = net(augment(to_input(train.images[idx], device), gen), tokens)
                loss, parts = mdnet_loss(out, tokens, labels, class_weight=class_weight,
                                         attention_weight=attention_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        scheduler.step()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v * len(idx)
        n += len(idx)
    return {f"{k}_loss": v / n for k, v in sums.items()}


@dataclass
class Generated:
    """Free-running output for a set of tiles: ``class_logits`` (N, C), ``cam`` (N, positions), ``texts``,
    ``words`` (the tokens of each report as strings), ``alphas`` (one (L_i, positions) map per report: row j is
    where the model looked while writing word j), ``finished`` (N,) and the feature ``grid``."""
    class_logits: torch.Tensor
    cam: torch.Tensor
    texts: list[str]
    words: list[list[str]]
    alphas: list[torch.Tensor]
    finished: torch.Tensor
    grid: tuple[int, int]


@torch.no_grad()
def generate_reports(model: ReportGenerator, images: torch.Tensor, vocab: Vocabulary, *, beam_size: int = 1,
                     max_len: int = 60, length_penalty: float = 0.0, batch_size: int = 128) -> Generated:
    """Diagnose and write a report for each uint8 tile (greedy for ``beam_size=1``, else beam search)."""
    logits, cams, words, alphas, finished, grid = [], [], [], [], [], None
    device = _device(model)
    for i in range(0, len(images), batch_size):
        enc, dec = model.generate(to_input(images[i:i + batch_size], device), max_len=max_len,
                                  beam_size=beam_size, length_penalty=length_penalty)
        logits.append(enc.class_logits.cpu())
        cams.append(enc.cam.cpu())
        words += [[vocab.itos[t] for t in seq] for seq in dec.tokens]
        alphas += [a.cpu() for a in dec.alphas]
        finished.append(dec.finished.cpu())
        grid = enc.grid
    texts = [vocab.decode([vocab.stoi[w] for w in ws]) for ws in words]
    return Generated(torch.cat(logits), torch.cat(cams), texts, words, alphas, torch.cat(finished), grid)


@torch.no_grad()
def teacher_forced_loss(model: ReportGenerator, tiles: ReportTiles, batch_size: int = 64) -> float:
    """Mean word loss with the true previous words given: a training signal, not a performance score."""
    model.eval()
    device = _device(model)
    total, count = 0.0, 0
    for i in range(0, len(tiles), batch_size):
        tokens = _batch_tokens(tiles.tokens[i:i + batch_size]).to(device)
        out = model(to_input(tiles.images[i:i + batch_size], device), tokens)
        n = int((tokens[:, 1:] != 0).sum())
        total += float(word_loss(out["word_logits"], tokens)) * n
        count += n
    return total / count


def evaluate_reports(model: ReportGenerator, tiles: ReportTiles, vocab: Vocabulary, *,
                     generated: Generated | None = None, beam_size: int = 1, max_len: int = 60,
                     meteor: bool | None = False) -> dict:
    """Every score of Part III on ``tiles``: {"diagnosis", "teacher-forced loss", "report", "clinical",
    "attention"}. ``generated`` reuses reports already written for these tiles. ``meteor`` as in
    ``caption_scores``, but off by default here (15 s of Java a call); None: whenever Java is there."""
    from mdnet_utils.localisation import attention_localisation
    from mdnet_utils.metrics import caption_scores, clinical_scores

    gen = generated or generate_reports(model, tiles.images, vocab, beam_size=beam_size, max_len=max_len)
    hyps = dict(zip(tiles.ids, gen.texts))
    labelled = tiles.labels >= 0
    return {
        "diagnosis": float((gen.class_logits.argmax(1) == tiles.labels)[labelled].float().mean()),
        "teacher-forced loss": teacher_forced_loss(model, tiles),
        "report": caption_scores(tiles.references(), hyps, meteor=meteor),
        "clinical": clinical_scores(hyps, tiles.truth()),
        "attention": attention_localisation(gen.alphas, gen.words, tiles.masks, grid=gen.grid),
    }


def report_generator(kind: str, *, root: str | os.PathLike, config, device: torch.device | None = None,
                     until: str = "decoder", progress: bool = True) -> tuple[ReportGenerator, Vocabulary, dict]:
    """A course report generator (``"mdnet"`` or ``"resnet-sat"``) trained through stage ``until``.

    The course's recipe, shared by notebooks 06 and 07: the image model pre-trained on the diagnosis as in
    notebooks 01-05 (``fit_diagnosis``: EcNet-20-4 for MDNet, ResNet-32 for the baseline); then
    ``config.pick(4, 1)`` epochs of the decoder (lr 3e-3) on all training tiles (``config.pick(None, 256)``: all of
    them in full mode); then ``config.pick(4, 1)`` end-to-end epochs (lr 2e-3, two of each tile's reports a step). Each stage is cached in
    ``runs/reports/``. Returns the model (in eval mode), the vocabulary and each stage's history.
    """
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}: choose one of {', '.join(MODELS)}.")
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}: choose one of {', '.join(STAGES)}.")
    build, cnn_name = MODELS[kind]
    device = device or torch.device("cpu")
    vocab = build_vocab(root)
    torch.manual_seed(config.seed)  # the image model is built first: the same start as notebooks 01 and 05
    model = build(len(vocab), image_size=config.image_size).to(device)
    histories = {"diagnosis": fit_diagnosis(model.image_model, cnn_name, root=root, config=config, device=device,
                                            progress=progress)}
    if until == "diagnosis":
        return model.eval(), vocab, histories
    train = load_report_tiles(root, "train", vocab, limit=config.pick(full=None, fast=256))
    data_key = fingerprint(train.images, train.tokens)
    for stage, epochs, lr, reports in (("decoder", config.pick(full=4, fast=1), 3e-3, None),
                                       ("end_to_end", config.pick(full=4, fast=1), 2e-3, 2)):
        settings = {"stage": stage, "epochs": epochs, "lr": lr, "batch_size": 32, "seed": config.seed,
                    **({"reports_per_tile": reports} if reports else {})}
        key = {"tag": "reports-v1", "model": kind, "data": data_key, "start": _weights_fingerprint(model), **settings}
        path = Path(config.runs_dir) / "reports" / f"{kind}-{stage}-{config.mode}.pt"
        histories[stage] = cached_fit(path, model, key, lambda s=settings: fit_reports(
            model, train, **s, progress=f"{kind}: {stage}" if progress else False))
        if stage == until:
            break
    return model.eval(), vocab, histories


def _weights_fingerprint(model: nn.Module) -> str:
    """Which weights a stage starts from: a later stage retrains when an earlier one changed."""
    return fingerprint(*(v.float() for v in model.state_dict().values()))


def _sentence_start(words: list[str], feature: str) -> int | None:
    """Index of the first word of the first sentence of ``words`` about ``feature`` (None if none is)."""
    from mdnet_utils.localisation import finding_words

    hits = [pos for pos, f, _ in finding_words(words) if f == feature]
    if not hits:
        return None
    before = [k for k in range(hits[0]) if words[k] == "."]
    return before[-1] + 1 if before else 0


@torch.no_grad()
def rank_by_query(model: ReportGenerator, images: torch.Tensor, vocab: Vocabulary, query: str,
                  generated: Generated, *, batch_size: int = 128) -> torch.Tensor:
    """Retrieval by symptom description: a score per tile, log p(query | tile, its report up to there).

    ``query`` is one sentence of a report (e.g. "mitotic figures are frequent."). For each tile the model's
    own free-running report (``generated``, for the same tiles) supplies the words before the sentence
    about the query's feature, so the query is scored where a report would say it; a query about no single
    feature (or a whole report) is scored from the start. Rank tiles by the score, highest first.
    """
    from mdnet_utils.localisation import finding_words

    query_ids = vocab.encode(query, add_special=False)
    features = {f for _, f, _ in finding_words([vocab.itos[i] for i in query_ids])}
    feature = features.pop() if len(features) == 1 else None
    prefixes = []
    for words in generated.words:
        start = _sentence_start(words, feature) if feature else 0
        prefix = words if start is None else words[:start]
        prefixes.append([vocab.stoi[w] for w in prefix])
    device = _device(model)
    scores = []
    model.eval()
    for i in range(0, len(images), batch_size):
        enc = model.encode(to_input(images[i:i + batch_size], device))
        scores.append(model.query_log_likelihood(enc, prefixes[i:i + batch_size], query_ids).cpu())
    return torch.cat(scores)
