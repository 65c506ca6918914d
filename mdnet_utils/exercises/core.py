"""What every exercise check shares: run the learner's function on fixed cases, print one clear verdict.

A check is a function ``check_<name>(learner_function)`` written with the ``@check`` decorator. Its body
calls the learner's function through ``call`` (so that an exception names the case that raised it) and
says what is wrong with ``expect`` / ``expect_close``; it returns a short description of what passed.
The decorator turns that into a printed verdict and a ``CheckResult``:

    ✓ check_conclusion: passed (324 cases: every grade combination, in and out of focus)
    ✗ check_conclusion: grades {...}, in focus: expected 'low grade' (S = 4), got 'high grade'
    ✗ check_conclusion: not written yet (my_conclusion still raises NotImplementedError)

A check never raises because of the learner's code: "Run All" in the student edition goes past an
unfinished exercise and the cell says what to do.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch

PASS, FAIL = "✓", "✗"


class Wrong(Exception):
    """One case failed; the message says which case and what exactly is wrong."""


class _NotYet(Exception):
    """The learner's function is still the stub."""


@dataclass
class CheckResult:
    """The verdict of one check. True when it passed; the message has already been printed."""

    name: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        # The verdict was printed once; showing the object again in a notebook would only repeat it.
        pass


def _name_of(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def check(body: Callable[..., str]) -> Callable[[Callable], CheckResult]:
    """Turn ``body(learner, ...) -> description of what passed`` into a check that prints its verdict."""
    name = body.__name__

    @functools.wraps(body)
    def run(learner: Callable, *args, **kwargs) -> CheckResult:
        with torch.random.fork_rng(devices=[]):   # the cases seed torch; the learner's notebook keeps its stream
            passed, message = _verdict(body, learner, args, kwargs)
        result = CheckResult(name, passed, f"{PASS if passed else FAIL} {name}: {message}")
        print(result.message)
        return result

    return run


def _verdict(body: Callable[..., str], learner: Callable, args, kwargs) -> tuple[bool, str]:
    if not callable(learner):
        return False, f"expected your function, got {type(learner).__name__} {learner!r:.60}"
    try:
        return True, f"passed ({body(learner, *args, **kwargs)})"
    except _NotYet:
        return False, (f"not written yet ({_name_of(learner)} still raises NotImplementedError: "
                       "replace the stub with your code and run this cell again)")
    except Wrong as err:
        return False, str(err)
    except Exception as err:  # e.g. a result of an unexpected type that a later comparison trips over
        return False, f"your function's result could not be checked ({type(err).__name__}: {err})"


def call(fn: Callable, *args, case: str) -> Any:
    """The learner's ``fn(*args)``; an exception it raises becomes a verdict that names ``case``."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise _NotYet() from None
    except Wrong:
        raise
    except Exception as err:  # the learner's bug, reported, never re-raised
        raise Wrong(f"{case}: your function raised {type(err).__name__}: {err}") from None


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Wrong(message)


def _shape(t) -> tuple:
    return tuple(t.shape)


def expect_tensor(got: Any, case: str, *, shape: tuple | None = None) -> torch.Tensor:
    """``got`` must be a tensor (of ``shape`` if given)."""
    expect(isinstance(got, torch.Tensor), f"{case}: expected a torch.Tensor, got {type(got).__name__}")
    if shape is not None:
        expect(_shape(got) == tuple(shape), f"{case}: expected shape {tuple(shape)}, got {_shape(got)}")
    return got


def expect_close(got: Any, want: torch.Tensor, case: str, *, atol: float = 1e-5, rtol: float = 1e-5,
                 hint: Callable[[torch.Tensor], str | None] | None = None) -> None:
    """``got`` must be a tensor of ``want``'s shape and values; ``hint(got)`` may name a known mistake."""
    got = expect_tensor(got, case, shape=_shape(want))
    g, w = got.detach().to(torch.float64), want.detach().to(torch.float64)
    if torch.allclose(g, w, atol=atol, rtol=rtol):
        return
    diff = (g - w).abs()
    where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
    known = hint(got) if hint is not None else None
    message = (f"{case}: wrong values (largest difference {diff.max().item():.3g} at index {where}: "
               f"expected {w[where].item():.6g}, got {g[where].item():.6g})")
    raise Wrong(message + (f"; {known}" if known else ""))


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    """True when ``a`` has ``b``'s shape and values (for recognising known mistakes in hints)."""
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(
        a.detach().to(torch.float64), b.detach().to(torch.float64), atol=atol, rtol=1e-5)
