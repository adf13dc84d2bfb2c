"""The machinery behind every check cell.

A lesson's check module defines one function per exercise:

    @exercise("01", "linear_betas", points=2)
    def linear_betas(t: Tester, fn):
        out = t.call(fn, 1000)                    # runs learner code safely
        t.tensor(out, shape=(1000,))              # shape, dtype, NaN
        t.close(out[0], 1e-4, "beta_1 is beta_start", hint="t starts at 1")

and the notebook calls `check.linear_betas(linear_betas)`. The check prints one
line on success; on failure it says which test failed, what was expected, what
came back, and a hint. Learner code that raises, returns NaN, has the wrong shape
or never ends (a per-call time limit) gets a message; the kernel never crashes.

When $MINIDIFF_GRADE_LOG names a file, each result is also appended to it as one
JSON line: that is how `minidiff.course.grader` reads scores out of a notebook run.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

REGISTRY: dict[str, list["Exercise"]] = {}
PASSED: dict[str, bool] = {}  # exercise name -> did its last check pass every test? (read by notebook.use)
DEFAULT_TIME_LIMIT = float(os.environ.get("MINIDIFF_CHECK_TIMEOUT", 60))


class Abort(Exception):
    """Stops an exercise's remaining tests (the learner's code could not run)."""


class _TimeUp(BaseException):
    # BaseException so that a learner's bare `except Exception` cannot swallow it.
    pass


@dataclass
class Result:
    lesson: str
    exercise: str
    points: float
    score: float = 0.0
    status: str = "ok"  # ok | failed | error | not attempted
    passed: int = 0
    total: int = 0
    messages: list[str] = field(default_factory=list)


@contextmanager
def _time_limit(seconds: float):
    """SIGALRM-based limit; a no-op where signals can't be used (Windows, threads)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or not seconds:
        yield
        return

    def _raise(signum, frame):
        raise _TimeUp()

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _fmt(x) -> str:
    """Short, readable rendering of what was expected or what came back."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.numel() == 1:
            return f"{x.item():.6g}"
        flat = x.flatten()[:4].tolist()
        body = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat)
        more = ", ..." if x.numel() > 4 else ""
        return f"tensor of shape {tuple(x.shape)} [{body}{more}]"
    if isinstance(x, np.ndarray):
        return _fmt(torch.as_tensor(x))
    if isinstance(x, float):
        return f"{x:.6g}"
    return repr(x)


class Tester:
    """Collects the results of one exercise's tests."""

    def __init__(self, result: Result, time_limit: float):
        self.result = result
        self.time_limit = time_limit

    # -- recording -----------------------------------------------------------
    def _record(self, ok: bool, what: str, detail: str = "", hint: str = "") -> bool:
        self.result.total += 1
        if ok:
            self.result.passed += 1
        else:
            msg = f"✗ {what}"
            if detail:
                msg += f"\n    {detail}"
            if hint:
                msg += f"\n    Hint: {hint}"
            self.result.messages.append(msg)
        return ok

    def check(self, ok: bool, what: str, detail: str = "", hint: str = "") -> bool:
        """A boolean test: `what` says what should hold."""
        return self._record(bool(ok), what, detail, hint)

    def raises(self, fn: Callable, args: tuple, exc, what: str, hint: str) -> bool:
        """Does fn(*args) raise `exc`? (Call it after fn already ran on good input, so it does not hang.)"""
        try:
            fn(*args)
        except exc:
            return self.check(True, what)
        except Exception as e:  # learner code may raise anything
            return self.check(False, what, f"raised {type(e).__name__}: {e}", hint=hint)
        return self.check(False, what, "no error was raised", hint=hint)

    # -- running learner code ------------------------------------------------
    def call(self, fn: Callable, *args, **kwargs):
        """Run the learner's function; turn every way it can go wrong into a message."""
        name = getattr(fn, "__name__", "your function")
        if not callable(fn):
            self.result.status = "error"
            self._record(False, f"expected a function, got {type(fn).__name__}")
            raise Abort
        try:
            with _time_limit(self.time_limit):
                return fn(*args, **kwargs)
        except NotImplementedError:
            self.result.status = "not attempted"
            self.result.messages.append(
                f"{name} still raises NotImplementedError: replace the stub with your code."
            )
            raise Abort
        except _TimeUp:
            self.result.status = "error"
            self._record(
                False,
                f"{name} did not finish within {self.time_limit:g} s",
                hint="look for a loop whose condition never changes, or a loop over far too many items",
            )
            raise Abort
        except Exception as e:  # learner code may raise anything
            self.result.status = "error"
            where = traceback.extract_tb(e.__traceback__)[-1]
            self._record(
                False,
                f"{name} raised {type(e).__name__}: {e}",
                detail=f"(line {where.lineno} of {where.name})",
                hint="run the function on the example inputs in the exercise text and read the traceback",
            )
            raise Abort

    # -- common tests ----------------------------------------------------------
    def tensor(self, out, shape=None, dtype=None, what: str = "the result") -> bool:
        """Is `out` a finite tensor of the right shape (and dtype)? Aborts if not a tensor."""
        if not isinstance(out, torch.Tensor):
            self._record(
                False,
                f"{what} should be a torch.Tensor",
                f"got {type(out).__name__}",
                hint="return a tensor (torch.*), not a list, float or numpy array",
            )
            raise Abort
        ok = True
        if shape is not None and tuple(out.shape) != tuple(shape):
            ok = self._record(
                False,
                f"{what} has the wrong shape",
                f"expected {tuple(shape)}, got {tuple(out.shape)}",
                hint="check broadcasting over the batch: index with t, then reshape to (B, 1, ...)",
            )
            raise Abort
        if dtype is not None and out.dtype != dtype:
            ok = self._record(False, f"{what} has dtype {out.dtype}", f"expected {dtype}",
                              hint="keep the dtype of the inputs; avoid mixing numpy and torch")
        if out.is_floating_point() and not torch.isfinite(out).all():
            n = int((~torch.isfinite(out)).sum())
            return self._record(
                False,
                f"{what} contains {n} NaN/inf values",
                hint="look for a division by zero (1 - ᾱ_t is 0 at t = 0) or a sqrt/log of a negative number",
            )
        return ok and self._record(True, f"{what} is a finite tensor of the right shape")

    def close(self, got, expected, what: str, hint: str = "", rtol: float = 1e-5, atol: float = 1e-7) -> bool:
        """Numerical agreement within tolerances."""
        g = torch.as_tensor(got).detach().cpu().double()
        e = torch.as_tensor(expected).detach().cpu().double()
        if g.shape != e.shape and g.numel() != e.numel():
            return self._record(False, what, f"expected shape {tuple(e.shape)}, got {tuple(g.shape)}", hint)
        g = g.reshape(e.shape)
        ok = bool(torch.allclose(g, e, rtol=rtol, atol=atol))
        detail = ""
        if not ok:
            err = (g - e).abs()
            i = int(torch.nan_to_num(err, nan=math.inf).flatten().argmax())
            detail = (
                f"expected {_fmt(e)}, got {_fmt(g)}"
                + (f" (worst at flat index {i}: expected {e.flatten()[i].item():.6g}, got {g.flatten()[i].item():.6g})"
                   if e.numel() > 1 else "")
            )
        return self._record(ok, what, detail, hint)


def _same_values(a, b, rtol: float, atol: float) -> bool:
    """Do a and b hold the same numbers (any shapes with equal size)? False if they can't be compared."""
    try:
        a = torch.as_tensor(a).detach().cpu().double()
        b = torch.as_tensor(b).detach().cpu().double()
        return a.numel() == b.numel() and bool(torch.allclose(a.reshape(b.shape), b, rtol=rtol, atol=atol))
    except (TypeError, RuntimeError, ValueError):
        return False


def diagnose(t: Tester, got, expected, what: str, mistakes: dict, hint: str = "", rtol: float = 1e-5, atol: float = 1e-7) -> bool:
    """`t.close`, but when `got` equals the output of a known mistake the hint names that mistake.

    mistakes: {hint: the output that mistake produces}. A mistake whose output equals the
    right answer on these inputs is skipped (it can't be told apart here).
    """
    for mistake_hint, wrong in mistakes.items():
        if not _same_values(expected, wrong, rtol, atol) and _same_values(got, wrong, rtol, atol):
            hint = mistake_hint
            break
    return t.close(got, expected, what, hint=hint, rtol=rtol, atol=atol)


@dataclass
class Exercise:
    lesson: str
    name: str
    points: float
    test: Callable


def _report(result: Result) -> None:
    tag = f"[{result.lesson}/{result.exercise}]"
    if result.status == "not attempted":
        print(f"⏳ {tag} not attempted yet (0/{result.points:g} points)")
        for m in result.messages:
            print("   " + m)
    elif result.passed == result.total and result.status == "ok":
        print(f"✅ {tag} all {result.total} tests passed ({result.points:g}/{result.points:g} points)")
    else:
        print(f"❌ {tag} {result.passed} of {result.total} tests passed ({result.score:.2g}/{result.points:g} points)")
        for m in result.messages:
            print("   " + m.replace("\n", "\n   "))


def _log(result: Result) -> None:
    path = os.environ.get("MINIDIFF_GRADE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(result.__dict__) + "\n")


def exercise(lesson: str, name: str, points: float = 1.0, time_limit: float | None = None):
    """Register a check. The decorated function becomes `check(learner_obj, ...)`."""

    def wrap(test: Callable):
        def run_check(*learner_objs, quiet: bool = False, **kwargs) -> Result:
            result = Result(lesson=lesson, exercise=name, points=points)
            tester = Tester(result, time_limit or DEFAULT_TIME_LIMIT)
            torch_state = torch.get_rng_state()
            torch.manual_seed(1234)  # checks use their own random inputs...
            try:
                test(tester, *learner_objs, **kwargs)
            except Abort:
                pass
            except Exception as e:  # a bug in the check itself must not kill the kernel
                result.status = "error"
                tester._record(False, f"the check itself failed: {type(e).__name__}: {e}",
                               hint="this may mean your function returns something unexpected")
            finally:
                torch.set_rng_state(torch_state)  # ...and leave the lesson's random stream alone
            if result.status == "ok" and result.passed < result.total:
                result.status = "failed"
            if result.status != "not attempted" and result.total:
                result.score = points * result.passed / result.total
            PASSED[name] = result.status == "ok" and result.passed == result.total > 0
            if not quiet:
                _report(result)
            _log(result)
            return None if not quiet else result

        run_check.__name__ = name
        run_check.__doc__ = test.__doc__
        REGISTRY.setdefault(lesson, [])
        REGISTRY[lesson] = [e for e in REGISTRY[lesson] if e.name != name]
        REGISTRY[lesson].append(Exercise(lesson, name, points, run_check))
        return run_check

    return wrap
