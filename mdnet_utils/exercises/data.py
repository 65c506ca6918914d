"""Checks for the data notebooks: 00 (the conclusion rule, the training split's vocabulary) and 08 (a split by
patient, each process's share of an epoch)."""
from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import torch

from mdnet_utils.data.grades import FEATURES, GRADES, abnormality_score, conclusion
from mdnet_utils.data.vocab import SPECIALS, Vocabulary
from mdnet_utils.exercises.core import call, check, expect
from mdnet_utils.training.distributed import Distributed

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
def check_training_vocabulary(fn) -> str:
    """Notebook 00, Exercise B. ``fn(annotation, min_count) -> list of tokens``: the vocabulary a report generator
    may learn, id by id: the four specials, then the words of the train split's reports (every reference report
    of an entry) seen at least ``min_count`` times, most frequent first, ties alphabetically (what
    ``training_vocab`` builds: the same ids on every build, nothing of val or test)."""
    def entry(*reports):
        return {"reports": list(reports), "report": reports[0]}

    annotations = {
        "one report an entry": {"train": [entry("the nuclei are small."), entry("the nuclei are large.")],
                                "val": [entry("mitoses are rare.")], "test": [entry("nucleoli are prominent.")]},
        "five reports an entry": {"train": [entry("there is mild crowding.", "crowding is mild.",
                                                  "mild crowding is seen.", "the crowding is mild.",
                                                  "nuclei show mild crowding.")],
                                  "val": [entry("there is severe crowding.")], "test": []},
        "ties and repeats": {"train": [entry("b a c a b d."), entry("c e e d; a.")],
                             "val": [], "test": [entry("z z z z z.")]},
    }
    n = 0
    for name, annotation in annotations.items():
        for min_count in (1, 2):
            case = f"{name}, min_count={min_count}"
            texts = [r for e in annotation["train"] for r in e["reports"]]
            want = Vocabulary.build(texts, min_count=min_count).itos
            got = call(fn, json.loads(json.dumps(annotation)), min_count, case=case)
            expect(isinstance(got, (list, tuple)) and all(isinstance(t, str) for t in got),
                   f"{case}: expected a list of tokens (strings), got {type(got).__name__}")
            got = list(got)
            expect(got[:4] == list(SPECIALS), f"{case}: the first four ids are the specials {list(SPECIALS)}, "
                                              f"got {got[:4]}")
            leaked = sorted(set(got) - set(want))
            expect(not leaked, f"{case}: {leaked} should not be in the vocabulary"
                               + (" (val and test stay unseen: words only they use must become <unk>)"
                                  if any(t in r for t in leaked for split in ("val", "test")
                                         for e in annotation[split] for r in e["reports"]) else
                                  f" (seen fewer than {min_count} times)" if min_count > 1 else ""))
            missing = [t for t in want if t not in got]
            expect(not missing, f"{case}: missing {missing}" + (" (count every reference report of an entry, not "
                                                                 "only the first)" if name == "five reports an entry"
                                                                 else ""))
            expect(got == want, f"{case}: expected the order {want[4:]}, got {got[4:]} (most frequent first, "
                                f"ties alphabetically: the same ids on every build)")
            n += 1
    return f"{n} cases: three annotations, min_count 1 and 2"


# ------------------------------------------------------------------------------------------ notebook 08

@check
def check_patient_split(fn) -> str:
    """Notebook 08, Exercise A. ``fn(patients, seed) -> splits``: one of "train", "val", "test" per tile, every
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


@check
def check_process_share(fn) -> str:
    """Notebook 08, Exercise B. ``fn(n, seed, epoch, world, rank) -> list of case indices``: the cases process
    ``rank`` of ``world`` trains on in ``epoch``, as the engine draws them (``Distributed.order``: a
    ``DistributedSampler``), so that a resumed run, and a run on several processes, sees the same batches."""
    n = 0
    for cases, world in ((10, 1), (10, 2), (11, 2), (13, 4), (8, 4)):
        for seed, epoch in ((0, 0), (0, 1), (5, 1000)):
            for rank in range(world):
                case = f"n={cases}, seed={seed}, epoch={epoch}, world={world}, rank={rank}"
                want = Distributed(rank=rank, world=world).order(cases, seed=seed, epoch=epoch).tolist()
                torch.manual_seed(1234 + rank)  # a draw from the global generator differs from call to call here
                got = call(fn, cases, seed, epoch, world, rank, case=case)
                again = call(fn, cases, seed, epoch, world, rank, case=case)
                expect(isinstance(got, (list, tuple)) or isinstance(got, torch.Tensor),
                       f"{case}: expected a list of case indices, got {type(got).__name__}")
                got, again = [int(i) for i in got], [int(i) for i in again]
                expect(got == again, f"{case}: two calls gave two orders: draw from a generator seeded with seed "
                                     f"+ epoch, never from the global one (a resumed run would see other batches)")
                expect(len(got) == len(want), f"{case}: expected {len(want)} cases, got {len(got)}"
                       + (" (with several processes, drop the tail that would not give every process the same "
                          "number: they step together)" if world > 1 and cases % world else ""))
                expect(got == want, f"{case}: expected {want}, got {got}" + (
                    " (process r takes positions r, r + world, r + 2 world, ... of the shuffled order: then the "
                    "k-th batches of all processes together are the k-th batch of one process)" if world > 1 else
                    " (shuffle with torch.randperm and a torch.Generator seeded with seed + epoch)"))
            n += 1
    return f"{n} epochs: 1, 2 and 4 processes, ragged tails, three seeds and epochs"
