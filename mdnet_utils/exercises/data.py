"""Checks for the data notebooks: 00 (the conclusion rule, padding a batch of reports) and 08 (an
annotation.json entry of your own, a split by patient)."""
from __future__ import annotations

import itertools
import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mdnet_utils.data.dataset import ReportDataset, pad_sequences
from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES, abnormality_score, conclusion
from mdnet_utils.errors import DatasetError
from mdnet_utils.exercises.core import Wrong, call, check, expect, expect_tensor

SPLITS = ("train", "val", "test")
SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}


@check
def check_conclusion(fn) -> str:
    """Notebook 00, Exercise A. ``fn(grades, in_focus) -> conclusion``: the rule of section 2."""
    n = 0
    for combo in itertools.product(*(GRADES[f] for f in FEATURES)):
        grades = dict(zip(FEATURES, combo))
        for in_focus in (True, False):
            want = conclusion(grades, in_focus)
            got = call(fn, dict(grades), in_focus, case=f"grades {grades}, in_focus={in_focus}")
            focus = "in focus" if in_focus else "out of focus"
            expect(got == want, f"grades {grades}, {focus} (S = {abnormality_score(grades)}): "
                                f"expected {want!r}, got {got!r}")
            n += 1
    return f"{n} cases: every grade combination, in and out of focus"


@check
def check_pad_reports(fn) -> str:
    """Notebook 00, Exercise B. ``fn(sequences, pad_id) -> (tokens, lengths)``: what ``collate`` does to the
    token ids of a batch (pad to the longest with ``pad_id``; the true lengths beside)."""
    cases = {
        "three reports of lengths 4, 6, 2": [[1, 5, 6, 2], [1, 7, 8, 9, 10, 2], [1, 2]],
        "one report": [[1, 11, 12, 2]],
        "equal lengths": [[1, 3, 2], [1, 4, 2]],
        "the longest last": [[1, 2], [1, 3, 3, 3, 3, 3, 3, 2]],
    }
    for pad_id in (0, 99):
        for name, seqs in cases.items():
            case = f"{name}, pad_id={pad_id}"
            out = call(fn, [list(s) for s in seqs], pad_id, case=case)
            expect(isinstance(out, tuple) and len(out) == 2, f"{case}: expected a pair (tokens, lengths), got "
                                                             f"{type(out).__name__}")
            tokens, lengths = out
            want_tokens, want_lengths = pad_sequences(seqs, pad_id)
            expect_tensor(tokens, f"{case}, tokens", shape=tuple(want_tokens.shape))
            expect_tensor(lengths, f"{case}, lengths", shape=tuple(want_lengths.shape))
            expect(tokens.dtype == torch.long, f"{case}: tokens must be torch.long (they index an embedding), "
                                               f"got {tokens.dtype}")
            expect(torch.equal(lengths.long(), want_lengths), f"{case}: expected lengths {want_lengths.tolist()}, "
                                                              f"got {lengths.tolist()}")
            for row in range(len(seqs)):
                expect(torch.equal(tokens[row], want_tokens[row]),
                       f"{case}: row {row} should be {want_tokens[row].tolist()}, got {tokens[row].tolist()}")
    return "8 batches, two pad ids"


# ------------------------------------------------------------------------------------------ notebook 08

@check
def check_annotation_entry(fn) -> str:
    """Notebook 08, Exercise A. ``fn(case_id, image_files, reports, label) -> dict``: one entry of
    ``annotation.json`` that ``ReportDataset`` reads back (images are under ``images/``; ``label`` may be None)."""


    cases = [
        ("case-001", ["case-001/0.png"], ["no atypia. normal urothelium."], "normal"),
        ("case-002", ["case-002/0.png", "case-002/1.png"],
         ["severe pleomorphism. high grade.", "marked pleomorphism. high grade carcinoma."], "high grade"),
        ("case-003", ["case-003.png"], ["the tile is out of focus."], None),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        entries = []
        for case_id, files, reports, label in cases:
            for f in files:
                (root / "images" / f).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "images" / f)
            entry = call(fn, case_id, list(files), list(reports), label, case=f"case {case_id!r}")
            expect(isinstance(entry, dict), f"case {case_id!r}: expected a dict, got {type(entry).__name__}")
            try:
                json.dumps(entry)
            except TypeError as err:
                raise Wrong(f"case {case_id!r}: the entry cannot be written as JSON ({err})") from None
            entries.append(entry)
        (root / "annotation.json").write_text(json.dumps({"train": entries, "val": [], "test": []}))
        try:
            ds = ReportDataset(root, "train")
            items = [ds[i] for i in range(len(ds))]
        except DatasetError as err:
            raise Wrong(f"the loader refused your entries: {str(err).replace(str(root), '<root>')}") from None
        expect(len(items) == len(cases), f"expected {len(cases)} items, the loader read {len(items)}")
        for item, (case_id, files, reports, label) in zip(items, cases):
            where = f"case {case_id!r}"
            expect(item["id"] == case_id, f"{where}: the loader read id {item['id']!r}")
            expect(item["report"] == reports[0], f"{where}: 'report' should be the first report, {reports[0]!r}; "
                                                 f"the loader read {item['report']!r}")
            expect(item["reports"] == reports, f"{where}: 'reports' should list all {len(reports)} reports; "
                                               f"the loader read {len(item['reports'])}")
            want = -1 if label is None else CLASSES.index(label)
            expect(item["label"] == want, f"{where}: label {label!r} should read as {want}, the loader read "
                                          f"{item['label']} (leave 'label' out when there is none)")
            views = 1 if item["image"].dim() == 3 else item["image"].shape[0]
            expect(views == len(files), f"{where}: {len(files)} image(s) listed, the loader read {views}")
    return "3 cases, one and two views, with and without a label, read back by ReportDataset"


@check
def check_patient_split(fn) -> str:
    """Notebook 08, Exercise B. ``fn(patients, seed) -> splits``: one of "train", "val", "test" per tile, every
    patient's tiles in one split, about 70/15/15 of the patients, the same for the same seed."""
    rng = np.random.default_rng(7)
    cases = {
        "10 patients, 6 tiles each, in order": [f"p{i:02d}" for i in range(10) for _ in range(6)],
        "100 patients, 1 to 9 tiles each, shuffled": list(rng.permutation(
            [f"patient-{i}" for i in range(100) for _ in range(int(rng.integers(1, 10)))])),
        "40 patients, 3 tiles each, interleaved": [f"q{i % 40}" for i in range(120)],
    }
    for name, patients in cases.items():
        patients = [str(p) for p in patients]
        splits = call(fn, list(patients), 0, case=name)
        expect(isinstance(splits, (list, tuple)) and len(splits) == len(patients),
               f"{name}: expected a list of {len(patients)} split names (one per tile), got "
               f"{type(splits).__name__} of length {len(splits) if hasattr(splits, '__len__') else '?'}")
        unknown = set(splits) - set(SPLITS)
        expect(not unknown, f"{name}: unknown split name(s) {sorted(map(str, unknown))} (use train, val, test)")
        of = {}
        for p, s in zip(patients, splits):
            expect(of.setdefault(p, s) == s, f"{name}: patient {p!r} has tiles in {of[p]!r} and in {s!r}; "
                                             "split whole patients, or the test set sees the training patients")
        counts = Counter(of.values())
        for s in SPLITS:
            expect(counts[s] > 0, f"{name}: split {s!r} is empty")
        n = len(of)
        if n >= 40:
            for s in SPLITS:
                share = counts[s] / n
                expect(abs(share - SHARES[s]) <= 0.08, f"{name}: {share:.0%} of the patients are in {s!r}, "
                                                       f"expected about {SHARES[s]:.0%}")
        again = call(fn, list(patients), 0, case=f"{name}, called again")
        expect(list(again) == list(splits), f"{name}: two calls with seed 0 gave different splits; use a seeded "
                                            "generator (np.random.default_rng(seed)), never the global one")
    big = cases["100 patients, 1 to 9 tiles each, shuffled"]
    other = call(fn, list(map(str, big)), 1, case="seed 1")
    expect(list(other) != list(call(fn, list(map(str, big)), 0, case="seed 0")),
           "seeds 0 and 1 gave the same split of 100 patients: shuffle the patients with the seed")
    return "3 cohorts: whole patients, about 70/15/15, seeded"
