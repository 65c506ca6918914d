"""The exercise checks: they pass the notebooks' solutions (tests/test_student.py), and every one of them
fails on a typical mistake, saying which case and what is wrong (here)."""
import itertools

import numpy as np
import pytest
import torch

from mdnet_utils import exercises
from mdnet_utils.data import CLASSES, FEATURES, GRADES
from mdnet_utils.exercises import CHECKS
from mdnet_utils.exercises.core import CheckResult


def _score(grades):
    return sum(GRADES[f].index(grades[f]) for f in FEATURES)


def _pad(pad_always_zero=False, as_float=False):
    def pad(seqs, pad_id):
        fill = 0 if pad_always_zero else pad_id
        tokens = torch.full((len(seqs), max(map(len, seqs))), fill, dtype=torch.float if as_float else torch.long)
        for r, s in enumerate(seqs):
            tokens[r, :len(s)] = torch.tensor(s)
        return tokens, torch.tensor([len(s) for s in seqs])
    return pad


def _paths(reverse):
    def paths(x, mats):
        n = len(mats)
        out = [torch.zeros_like(x) for _ in range(n + 1)]
        for taken in itertools.product((0, 1), repeat=n):
            v = x
            for i in (reversed(range(n)) if reverse else range(n)):
                v = mats[i] @ v if taken[i] else v
            out[sum(taken)] = out[sum(taken)] + v
        return out
    return paths


def _gradient(include_direct):
    def split(x_l, branches, grad_L):
        x = x_l.clone().requires_grad_(True)
        v, total = x, 0
        for f in branches:
            r = f(v)
            total, v = total + r, v + r
        through, = torch.autograd.grad(v if include_direct else total, x, grad_outputs=grad_L)
        return grad_L, through
    return split


def _log_likelihood(with_pads=False, off_by_one=False):
    def ll(logits, tokens, pad_id):
        targets = tokens[:, :-1] if off_by_one else tokens[:, 1:]
        logp = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        return logp.sum(1) if with_pads else (logp * (targets != pad_id)).sum(1)
    return ll


def _entry(**change):
    def entry(case_id, files, reports, label):
        e = {"id": case_id, "image_path": files, "report": reports[0], "reports": reports}
        if label is not None:
            e["label"] = label
        e.update({k: v(case_id, files, reports, label) for k, v in change.items()})
        return {k: v for k, v in e.items() if v is not None}
    return entry


def _split_tiles(patients, seed):
    return list(np.random.default_rng(seed).choice(["train", "val", "test"], size=len(patients), p=[.7, .15, .15]))


_ONE_GENERATOR = np.random.default_rng(0)


def _split_unseeded(patients, seed):
    """The seed ignored, one generator shared by every call: each call splits differently."""
    distinct = sorted(set(patients))
    order = _ONE_GENERATOR.permutation(len(distinct))
    of = {distinct[i]: ("val" if r < 0.15 * len(distinct) else "test" if r < 0.3 * len(distinct) else "train")
          for r, i in enumerate(order)}
    return [of[p] for p in patients]


def _refused(block, x):
    return block(x)


def _raw_projection(block, x):
    a = block.relu(block.bn1(x))
    residual = block.conv2(block.relu(block.bn2(block.conv1(a))))
    return (x if block.downsample is None else block.downsample(x)) + residual


def _post_activation(block, x):
    a = block.relu(block.bn1(x))
    residual = block.conv2(block.relu(block.bn2(block.conv1(a))))
    return torch.relu((x if block.downsample is None else block.downsample(a)) + residual)


def _mass(relu=True, zero_map=0.0):
    def mass(s, m):
        s = torch.relu(s) if relu else s
        return zero_map if s.sum() == 0 else float((s * m).sum() / s.sum())
    return mass


def _argmax_hit(s, m):
    return float(m.flatten()[torch.relu(s).flatten().argmax()])


# check -> [(a typical mistake, a fragment its message must contain)]
MISTAKES = {
    "check_conclusion": [
        (lambda g, f: "insufficient information" if not f else  # low grade ending at S = 5, not 4
         "normal" if _score(g) == 0 else "low grade" if _score(g) <= 5 else "high grade", "(S = 5): expected 'high"),
        (lambda g, f: "normal" if _score(g) == 0 else "low grade" if _score(g) <= 4 else "high grade", "out of focus"),
    ],
    "check_pad_reports": [(_pad(pad_always_zero=True), "pad_id=99"), (_pad(as_float=True), "torch.long"),
                          (lambda seqs, pad_id: (seqs, [len(s) for s in seqs]), "expected a torch.Tensor")],
    "check_preact_forward": [(_refused, "called the block itself"), (_raw_projection, "pre-activated input"),
                             (_post_activation, "no activation after the sum")],
    "check_conv_output_size": [(lambda s, k, st, p: (s + 2 * p - k) / st + 1, "expected an int"),
                               (lambda s, k, st, p: (s - k) // st + 1, "expected")],
    "check_paths_by_length": [(_paths(reverse=True), "rightmost factor"),
                              (lambda x, mats: x, "expected a list of 2 tensors")],
    "check_gradient_split": [(_gradient(include_direct=True), "leave the direct term out"),
                             (lambda x, b, g: (torch.zeros_like(g), g), "the direct term")],
    "check_cam": [(lambda f, w: f.mean(1, keepdim=True) * w.sum(1)[None, :, None, None], "wrong values"),
                  (lambda f, w: torch.einsum("ck,bkhw->bc", w, f), "expected shape")],
    "check_logits_from_cam": [(lambda cam, b: cam.sum((2, 3)) + b, "GAP takes their mean"),
                              (lambda cam, b: cam.mean((2, 3)), "add the bias")],
    "check_decoupled_scores": [(lambda ms, ws, b: sum(m.mean((2, 3)) @ w.T for m, w in zip(ms, ws)), "bias"),
                               (lambda ms, ws, b: sum(m.sum((2, 3)) @ w.T for m, w in zip(ms, ws)) + b, "wrong values")],
    "check_split_linear": [(lambda fc, ch: list(torch.split(fc.weight, list(ch), dim=0)), "raised RuntimeError"),
                           (lambda fc, ch: [fc.weight[:, :k] for k in ch], "member 1's weight")],
    "check_concat_forward": [(lambda blk, y: torch.cat([blk.h(y), blk.branch(y)], 1), "come first"),
                             (lambda blk, y: blk.branch(y) + blk.h(y)[:, :blk.branch(y).shape[1]], "expected shape"),
                             (lambda blk, y: blk(y), "called the block itself")],
    "check_literal_channels": [
        (lambda d, k: list(itertools.accumulate(g * k for g in (16, 32, 64) for _ in range((d - 2) // 9))),
         "should output"),
        (lambda d, k: [16 + 16 * k * (i + 1) for i in range(3 * ((d - 2) // 9))], "should output")],
    "check_report_log_likelihood": [(_log_likelihood(with_pads=True), "padding targets"),
                                    (_log_likelihood(off_by_one=True), "tokens[:, t + 1]")],
    "check_context": [(lambda a, f: torch.einsum("bn,bkn->bk", a, f.transpose(2, 3).flatten(2)), "row by row"),
                      (lambda a, f: f.flatten(2).mean(-1), "wrong values")],
    "check_cam_attention": [(lambda h, c, wh, wa: torch.softmax(wa(torch.tanh(wh(h) + c)), -1), "standardise"),
                            (lambda h, c, wh, wa: torch.softmax(wh(h), -1), "wrong values")],
    "check_mass_inside": [(_mass(relu=False), "ReLU first"), (_mass(zero_map=0.0), "area share")],
    "check_pointing_game": [(_argmax_hit, "ties")],
    "check_cam_prior": [(lambda e, c, lam: torch.softmax(e + lam * c, -1), "standardise"),
                        (lambda e, c, lam: torch.softmax(e, -1) * torch.softmax(lam * c, -1), "wrong values")],
    "check_annotation_entry": [(_entry(image_path=lambda i, f, r, l: None, image=lambda i, f, r, l: f),
                                "the loader refused"),
                               (_entry(report=lambda i, f, r, l: " ".join(r)), "should be the first report"),
                               (_entry(label=lambda i, f, r, l: "cancer"), "the loader refused")],
    "check_patient_split": [(_split_tiles, "has tiles in"), (_split_unseeded, "different splits")],
}


def test_every_check_has_its_mistakes():
    assert sorted(MISTAKES) == sorted(name for names in CHECKS.values() for name in names)


@pytest.mark.parametrize("name,k", [(n, k) for n, ms in MISTAKES.items() for k in range(len(ms))])
def test_a_typical_mistake_fails_and_the_message_says_what_is_wrong(name, k, capsys):
    mistake, fragment = MISTAKES[name][k]
    result = getattr(exercises, name)(mistake)
    assert isinstance(result, CheckResult) and not result
    printed = capsys.readouterr().out
    assert printed.startswith(f"✗ {name}: ") and fragment in printed, printed


def test_not_written_yet_not_callable_and_raising_are_reported_not_raised(capsys):
    def stub(grades, in_focus):
        raise NotImplementedError

    def broken(grades, in_focus):
        return grades["colour"]

    assert not exercises.check_conclusion(stub)
    assert "not written yet (stub still raises NotImplementedError" in capsys.readouterr().out
    assert not exercises.check_conclusion(42)
    assert "expected your function, got int" in capsys.readouterr().out
    assert not exercises.check_conclusion(broken)
    assert "your function raised KeyError: 'colour'" in capsys.readouterr().out


def test_a_check_leaves_the_learners_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check_preact_forward(lambda block, x: x)
    assert torch.equal(torch.rand(3), expected)


def test_the_verdict_is_printed_once_and_the_result_is_truthy_on_a_pass(capsys):
    result = exercises.check_conv_output_size(lambda s, k, st, p: (s + 2 * p - k) // st + 1)
    assert result and result.passed and result.name == "check_conv_output_size"
    assert capsys.readouterr().out.count("✓ check_conv_output_size: passed") == 1
    assert CLASSES  # the data vocabulary the checks rely on is importable alongside
