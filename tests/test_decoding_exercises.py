"""Notebook 06's exercises B (one decoder step) and C (beam search): the right answers, written as a learner would
(tests/decoding_mistakes.py), pass their checks, so each typical mistake fed in tests/test_exercises.py differs from
a passing answer by that mistake alone."""
import torch

from tests.decoding_mistakes import beam_search, decoder_step
from mdnet_utils import exercises


def test_the_right_decoder_step_passes(capsys):
    assert exercises.check_decoder_step(decoder_step)
    assert capsys.readouterr().out.startswith("✓ check_decoder_step: passed")


def test_the_right_beam_search_passes_and_is_not_greedy(capsys):
    assert exercises.check_beam_search(beam_search)
    assert capsys.readouterr().out.startswith("✓ check_beam_search: passed")
    assert not exercises.check_beam_search(lambda *args: beam_search(*args, mistake="greedy"))


def test_the_checks_leave_the_learners_random_stream_alone():
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    exercises.check_decoder_step(decoder_step)
    exercises.check_beam_search(beam_search)
    assert torch.equal(torch.rand(2), expected)
