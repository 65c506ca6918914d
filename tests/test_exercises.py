"""The exercise checks: they pass the notebooks' solutions (tests/test_student.py), and every one of them
fails on a typical mistake, saying which case and what is wrong (here)."""
import itertools

import numpy as np
import pytest
import torch

from mdnet_utils import exercises
from mdnet_utils.data import CLASSES, FEATURES, GRADES
from mdnet_utils.data.vocab import SPECIALS, tokenize
from mdnet_utils.exercises import CHECKS
from mdnet_utils.exercises.core import CheckResult
from tests.decoding_mistakes import beam_search, decoder_step, mistaken


def _score(grades):
    return sum(GRADES[f].index(grades[f]) for f in FEATURES)


def _vocabulary(splits=("train",), first_report_only=False, alphabetical=False, min_count_strict=False):
    def vocabulary(annotation, min_count):
        counts = {}
        for split in splits:
            for e in annotation[split]:
                for r in e["reports"][:1] if first_report_only else e["reports"]:
                    for t in tokenize(r):
                        counts[t] = counts.get(t, 0) + 1
        kept = [w for w, c in counts.items() if (c > min_count if min_count_strict else c >= min_count)]
        return list(SPECIALS) + sorted(kept, key=(lambda w: w) if alphabetical else (lambda w: (-counts[w], w)))
    return vocabulary


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


def _share(seeded=True, with_epoch=True, chunks=False, drop_tail=True):
    def share(n, seed, epoch, world, rank):
        g = torch.Generator().manual_seed(seed + (epoch if with_epoch else 0))
        order = torch.randperm(n, generator=g if seeded else None).tolist()
        if world > 1 and drop_tail:
            order = order[:n // world * world]
        per = len(order) // world if drop_tail else -(-len(order) // world)
        return order[rank * per:(rank + 1) * per] if chunks else order[rank::world]
    return share


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



def _bn_affine(bn, y, batch=False, unbiased=False):
    """BN(y) = a * y + s per channel, a and s shaped to broadcast: running statistics, or the batch's."""
    mean, var = ((y.mean((0, 2, 3)), y.var((0, 2, 3), unbiased=unbiased)) if batch
                 else (bn.running_mean, bn.running_var))
    a = bn.weight / torch.sqrt(var + bn.eps)
    return a.view(1, -1, 1, 1), (bn.bias - a * mean).view(1, -1, 1, 1)


def _member_scores(shift="first", relu_each=False):
    def member_scores(members, bn, w):
        a, s = _bn_affine(bn, sum(members))
        parts = [a * m + (s if shift == "each" or (shift == "first" and i == 0) else 0) for i, m in enumerate(members)]
        gate = (a * sum(members) + s > 0).float()
        parts = [torch.relu(p) for p in parts] if relu_each else [gate * p for p in parts]
        return torch.stack([p.mean((2, 3)) @ w.T for p in parts], 1)
    return member_scores


def _eq9_head(running_always=False, unbiased=False, per_member_bn=False, bias_each=False):
    def eq9_head(members, bn, weights, bias):
        if per_member_bn:   # the variant: each member its own BN-ReLU
            return sum(torch.relu(bn(m)).mean((2, 3)) @ w.T for m, w in zip(members, weights)) + bias
        y = sum(members)
        a, s = _bn_affine(bn, y, batch=bn.training and not running_always, unbiased=unbiased)
        gate = (a * y + s > 0).float()
        scores = sum((gate * (a * m + (s if i == 0 else 0))).mean((2, 3)) @ w.T
                     for i, (m, w) in enumerate(zip(members, weights)))
        return scores + (len(members) if bias_each else 1) * bias
    return eq9_head


def _clipped(zero_grad=True, per_tensor=False, always=False, after_step=False, schedule=True, norm_after=False,
             library=False):
    def step(model, optimizer, sched, x, y, max_norm):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        if library:
            return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        grads = [p.grad for p in model.parameters()]
        norm = float(torch.sqrt(sum((g ** 2).sum() for g in grads)))
        if after_step:
            optimizer.step()
        for g in grads:
            if per_tensor:
                g.mul_(min(1.0, max_norm / float(g.norm())))
            elif always or norm > max_norm:
                g.mul_(max_norm / norm)
        if not after_step:
            optimizer.step()
        if schedule:
            sched.step()
        return min(norm, max_norm) if norm_after else norm
    return step


def _lesioned(skip=False, branch_kept=False, raw_projection=False, no_final=False, from_one=False, unscaled=False,
              error_rate=False, train_mode=False, in_place=False, with_lesion=False):
    def lesion_accuracy(model, images, labels, deleted):
        if with_lesion:
            with exercises.resnet.lesion(model, deleted):
                x = model.blocks(model.stem(images.float() / 255))
            return float((model.fc(model.final_act(x).mean((2, 3))).argmax(1) == labels).float().mean())
        if train_mode:
            model.train()
        with torch.no_grad():
            x = model.stem(images.float() / (1 if unscaled else 255))
            for i, block in enumerate(model.blocks):
                if (i + 1 if from_one else i) not in deleted:
                    x = block(x)
                elif in_place:
                    block.conv2.weight.zero_()
                    x = block(x)
                elif skip:
                    continue
                elif branch_kept:
                    x = block.branch(x)
                elif raw_projection and block.downsample is not None:
                    x = block.downsample(x)
                else:
                    x = block.h(x)
            x = x if no_final else model.final_act(x)
            right = float((model.fc(x.mean((2, 3))).argmax(1) == labels).float().mean())
        return 1 - right if error_rate else right
    return lesion_accuracy


# check -> [(a typical mistake, a fragment its message must contain)]
MISTAKES = {
    "check_conclusion": [
        (lambda g, f: "insufficient information" if not f else  # low grade ending at S = 5, not 4
         "normal" if _score(g) == 0 else "low grade" if _score(g) <= 5 else "high grade", "(S = 5): expected 'high"),
        (lambda g, f: "normal" if _score(g) == 0 else "low grade" if _score(g) <= 4 else "high grade", "out of focus"),
    ],
    "check_training_vocabulary": [(_vocabulary(splits=("train", "val", "test")), "must become <unk>"),
                                  (_vocabulary(first_report_only=True), "every reference report"),
                                  (_vocabulary(alphabetical=True), "most frequent first"),
                                  (_vocabulary(min_count_strict=True), "missing"),
                                  (lambda annotation, min_count: [w for e in annotation["train"]
                                                                  for r in e["reports"] for w in r.split()],
                                   "the first four ids are the specials")],
    "check_preact_forward": [(_refused, "called the block itself"), (_raw_projection, "pre-activated input"),
                             (_post_activation, "no activation after the sum")],
    "check_clipped_step": [(_clipped(zero_grad=False), "they accumulate"),
                           (_clipped(per_tensor=True), "one global norm"), (_clipped(always=True), "stays as it is"),
                           (_clipped(after_step=True), "not clipped before"),
                           (_clipped(schedule=False), "schedule.step()"),
                           (_clipped(norm_after=True), "before clipping"), (_clipped(library=True), "by hand")],
    "check_paths_by_length": [(_paths(reverse=True), "rightmost factor"),
                              (lambda x, mats: x, "expected a list of 2 tensors")],
    "check_gradient_split": [(_gradient(include_direct=True), "leave the direct term out"),
                             (lambda x, b, g: (torch.zeros_like(g), g), "the direct term")],
    "check_lesion_accuracy": [(_lesioned(skip=True), "raised RuntimeError"),
                              (_lesioned(branch_kept=True), "keeps its shortcut"),
                              (_lesioned(raw_projection=True), "pre-activated input"),
                              (_lesioned(no_final=True), "final BN-ReLU"), (_lesioned(from_one=True), "start at 0"),
                              (_lesioned(unscaled=True), "divide by 255"), (_lesioned(error_rate=True), "error rate"),
                              (_lesioned(train_mode=True), "training mode"),
                              (_lesioned(in_place=True), "changed the model"),
                              (_lesioned(with_lesion=True), "hooks on the blocks"),
                              (lambda model, images, labels, deleted: float((model(images.float() / 255).argmax(1)
                                                                             == labels).float().mean()),
                               "called the model itself")],
    "check_cam": [(lambda f, w: f.mean(1, keepdim=True) * w.sum(1)[None, :, None, None], "wrong values"),
                  (lambda f, w: torch.einsum("ck,bkhw->bc", w, f), "expected shape")],
    "check_member_scores": [(_member_scores(shift="none"), "shift s = beta - a * running_mean is missing"),
                            (_member_scores(relu_each=True), "set by the whole sum y"),
                            (_member_scores(shift="each"), "counts 2 times"),
                            (lambda ms, bn, w: torch.stack([torch.relu(bn(m)).mean((2, 3)) @ w.T for m in ms], 1),
                             "a BN-ReLU per member")],
    "check_decoupled_scores": [(lambda ms, ws, b: sum(m.mean((2, 3)) @ w.T for m, w in zip(ms, ws)), "bias"),
                               (lambda ms, ws, b: sum(m.sum((2, 3)) @ w.T for m, w in zip(ms, ws)) + b, "wrong values")],
    "check_eq9_head": [(_eq9_head(per_member_bn=True), "per-member BN-ReLU variant"),
                       (_eq9_head(running_always=True), "training mode here"),
                       (_eq9_head(unbiased=True), "biased variance"),
                       (_eq9_head(bias_each=True), "add the bias once")],
    "check_concat_forward": [(lambda blk, y: torch.cat([blk.h(y), blk.branch(y)], 1), "come first"),
                             (lambda blk, y: blk.branch(y) + blk.h(y)[:, :blk.branch(y).shape[1]], "expected shape"),
                             (lambda blk, y: blk(y), "called the block itself")],
    "check_literal_channels": [
        (lambda d, k: list(itertools.accumulate(g * k for g in (16, 32, 64) for _ in range((d - 2) // 9))),
         "should output"),
        (lambda d, k: [16 + 16 * k * (i + 1) for i in range(3 * ((d - 2) // 9))], "should output")],
    "check_report_log_likelihood": [(_log_likelihood(with_pads=True), "padding targets"),
                                    (_log_likelihood(off_by_one=True), "tokens[:, t + 1]")],
    "check_decoder_step": [(mistaken(decoder_step, "no context"), "never reached the LSTM"),
                           (mistaken(decoder_step, "attends with h_t"), "Eq. (14) reads h_{t-1}"),
                           (mistaken(decoder_step, "raw cam"), "standardise the CAM"),
                           (mistaken(decoder_step, "state swapped"), "the state is (h_{t-1}, c_{t-1})"),
                           (mistaken(decoder_step, "calls step"), "called decoder.step")],
    "check_beam_search": [(mistaken(beam_search, "no backpointers"), "follow the backpointers"),
                          (mistaken(beam_search, "state not reordered"), "(h, c) state of the beam it extends"),
                          (mistaken(beam_search, "beams mixed across images"), "rank each image's"),
                          (mistaken(beam_search, "finished beams not stopped"), "<eos> in the middle"),
                          (mistaken(beam_search, "greedy"), "expected the words")],
    "check_mass_inside": [(_mass(relu=False), "ReLU first"), (_mass(zero_map=0.0), "area share")],
    "check_pointing_game": [(_argmax_hit, "ties")],
    "check_cam_prior": [(lambda e, c, lam: torch.softmax(e + lam * c, -1), "standardise"),
                        (lambda e, c, lam: torch.softmax(e, -1) * torch.softmax(lam * c, -1), "wrong values")],
    "check_patient_split": [(_split_tiles, "has tiles in"), (_split_unseeded, "different splits")],
    "check_process_share": [(_share(seeded=False), "never from the global one"),
                            (_share(with_epoch=False), "epoch=1"), (_share(chunks=True), "r + world"),
                            (_share(drop_tail=False), "drop the tail")],
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
    result = exercises.check_paths_by_length(_paths(reverse=False))
    assert result and result.passed and result.name == "check_paths_by_length"
    assert capsys.readouterr().out.count("✓ check_paths_by_length: passed") == 1
    assert CLASSES  # the data vocabulary the checks rely on is importable alongside
