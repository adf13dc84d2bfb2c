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

Scoring (the grading rule, also in AUTHORING.md): every test is *decisive* (a value checked
against a closed form, the reference or an autograd gradient; also anything that stops the
exercise: a crash, a time-out, a result of the wrong type or shape) or *incidental* (a dtype,
an error the function should raise, a call count, ...). Decisive tests weigh 3, incidental
ones 1, and the score is the weighted fraction passed times the points; once any decisive
test fails, that is multiplied by 1/3. So a wrong formula never earns more than a third of
an exercise's points, and a right formula with a slip elsewhere keeps most of them.

When $MINIDIFF_GRADE_LOG names a file, each result is also appended to it as one
JSON line: that is how `minidiff.course.grader` reads scores out of a notebook run.
"""

from __future__ import annotations

import json
import linecache
import math
import os
import re
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


# -- how an exercise is scored (the "grading rule"; AUTHORING.md and the grader's docstring say it in prose) --
DECISIVE_WEIGHT = 3.0  # a decisive test (a value) counts three times as much as an incidental one (shape, dtype, ...)
WRONG_VALUE_FACTOR = 1 / 3  # once any decisive test fails, the exercise earns at most this fraction of its points


def exercise_score(result: "Result") -> float:
    """Points earned: the weighted fraction of tests passed, times a third once a decisive test failed."""
    if result.status == "not attempted" or not result.weight:
        return 0.0
    fraction = result.weight_passed / result.weight
    if result.decisive_failed:
        fraction *= WRONG_VALUE_FACTOR
    return result.points * fraction


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
    weight: float = 0.0  # the summed weights of the tests that ran ...
    weight_passed: float = 0.0  # ... and of those that passed
    decisive_failed: int = 0  # how many decisive tests failed (any: the score is scaled by WRONG_VALUE_FACTOR)


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


def _describe(x) -> str:
    """One argument of a call, as a learner would want to see it in a crash report."""
    if isinstance(x, torch.Tensor):
        return f"tensor {str(x.dtype).replace('torch.', '')} {tuple(x.shape)}"
    if isinstance(x, (int, float, bool, str)) or x is None:
        return repr(x)
    if isinstance(x, (tuple, list)) and len(x) <= 4 and all(isinstance(v, (int, torch.Tensor)) for v in x):
        inner = ", ".join(_describe(v) for v in x)
        return f"({inner})" if isinstance(x, tuple) else f"[{inner}]"
    return type(x).__name__


# -- why learner code crashed: the line, and the likely cause ---------------------------------
BROADCAST_HINT = (
    "a shape mismatch while broadcasting. A per-example value (one number per row, indexed by t or σ) must be "
    "reshaped to (B, 1, 1, …), with x.dim() − 1 ones, to broadcast over any rank: v.reshape(-1, *([1] * (x.dim() − 1))); "
    "a (B, 1) reshape or v[:, None] only fits (B, D) points. minidiff.schedules.extract(values, t, x) does it"
)
_CAUSES = [  # (pattern in "ExceptionType: message", kind, hint); the first match wins
    (r"size of tensor a \(\d+\) must match the size of tensor b|not broadcastable|The expanded size of the tensor"
     r"|must match the existing size|shape mismatch: value tensor", "shape", BROADCAST_HINT),
    (r"Expected all tensors to be on the same device|[Dd]evice mismatch|on different devices|found at least two devices",
     "device", "a device mismatch: make new tensors on the input's device (device=x.device, or torch.zeros_like(x), "
               "randn_like(x)) and move the schedule's tables with .to(x.device)"),
    (r"received an invalid combination of arguments|got an invalid combination of arguments", "signature",
     "a torch function got arguments it does not take: compare the call on that line with its signature (the "
     "generator, dtype and device go by keyword: torch.randn(shape, generator=generator, dtype=x.dtype))"),
    (r"tensors used as indices must be long|only integers, slices|indices must be long", "dtype",
     "a dtype mismatch: index tables with an integer tensor; t must stay a LongTensor (t.long()), not a float"),
    (r"expected scalar type|[Ee]xpected .*dtype|dtype|scalar type|Double|Float|Half|BFloat16|can't be cast to the desired output",
     "dtype", "a dtype mismatch: the schedule's tables are float64, the data float32 and t int64; cast with "
              ".to(x.dtype) where they meet (extract(values, t, x) does it for schedule tables)"),
    (r"index -?\d+ is out of bounds for dimension \d+ with size \d+|index out of range|out of bounds", "index",
     "an index past the end of a tensor. The schedule's tables have T + 1 entries, indexed by t = 0..T: index "
     "them with t itself (not t + 1), and draw t in 1..T"),
    (r"mat1 and mat2 shapes|shapes cannot be multiplied|is invalid for input of size|Sizes of tensors must match"
     r"|[Dd]imension out of range|too many indices|same number of dimensions|number of dims|Expected .*size",
     "shape", "a shape mismatch: the arguments' shapes are listed above; print the .shape of the tensors on that "
              "line and compare them"),
    (r"not enough values to unpack|too many values to unpack", "shape",
     "you unpack a shape into a fixed number of names (B, C, H, W = x.shape): the exercise promises any rank, so "
     "take B = x.shape[0] and keep the rest as it is"),
    (r"does not require grad and does not have a grad_fn", "grad",
     "the result is detached from the autograd graph: no .item(), .detach(), torch.tensor(...) or torch.no_grad() "
     "on the way from the model's output to the loss"),
    (r"modified by an inplace operation|a leaf Variable that requires grad is being used in an in-place", "grad",
     "an in-place edit (x += ..., x[...] = ...) of a tensor that autograd needs: write x = x + ... instead"),
    (r"Can't call numpy\(\) on Tensor that requires grad", "grad", "stay in torch (or .detach() before .numpy())"),
    (r"missing \d+ required positional argument|unexpected keyword argument|takes \d+ positional arguments? but"
     r"|got multiple values for argument", "signature",
     "keep the exercise's signature (names, order and defaults of the arguments): the check calls your function "
     "with the arguments listed above"),
    (r"^NameError", "name", "a name your code uses is not defined where it runs: import or define it (and run the "
                            "cells above)"),
    (r"'(int|float)' object has no attribute|object of type '(int|float)' has no len", "type",
     "a Python number where your code expects a tensor: an int t (or a float σ, w) is allowed too; "
     "torch.as_tensor(...) turns it into a tensor first"),
    (r"Boolean value of Tensor with more than one value is ambiguous", "type",
     "an `if` on a tensor of many values: use torch.where(...) per row, or (...).any() / (...).all()"),
    (r"only one element tensors can be converted|a Tensor with \d+ elements cannot be converted", "type",
     "a Python function of one number (math.log, math.sqrt, float(), .item()) met a tensor of many values: use the "
     "torch version (torch.log, torch.sqrt) and keep it a tensor"),
    (r"must be Tensor, not|unsupported operand type|can't convert|not supported between instances"
     r"|expected Tensor as element", "type",
     "a list, numpy array, None or Python number met a tensor: work with torch tensors throughout"),
    (r"^ZeroDivisionError", "value", "a division by zero in Python arithmetic"),
    (r"At least one of 'min' or 'max' must not be None", "value",
     "clamp(None, None): an optional bound (clip_denoised=None) reached clamp; clip only when it is not None"),
]


def _crash_cause(error: BaseException) -> tuple[str, str]:
    """(kind, hint) for an exception raised inside learner code: shape, dtype, device, ... or ("", "")."""
    text = f"{type(error).__name__}: {error}"
    for pattern, kind, hint in _CAUSES:
        if re.search(pattern, text):
            return kind, hint
    return "", ""


_LIBRARY = tuple(os.path.dirname(m.__file__) + os.sep for m in (torch, np, os)) + (
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep,  # minidiff/
)


def _learner_line(error: BaseException) -> str:
    """Where in the learner's code `error` came from: "line 3 of add_noise:  <the line>", for the innermost
    traceback frame outside torch, numpy, the standard library and minidiff ("" if there is none).
    Lines count from the first line of the function's definition (its decorator, if it has one)."""
    frames = [(f, n) for f, n in traceback.walk_tb(error.__traceback__)
              if not os.path.abspath(f.f_code.co_filename).startswith(_LIBRARY)]
    if not frames:
        return ""
    frame, lineno = frames[-1]
    code = frame.f_code
    text = linecache.getline(code.co_filename, lineno, frame.f_globals).strip()
    return f"at line {lineno - code.co_firstlineno + 1} of {code.co_name}" + (f":  {text}" if text else "")


class Tester:
    """Collects the results of one exercise's tests.

    Every test is decisive (a value: a closed form, the reference's output, a gradient, a moment)
    or incidental (a shape, a dtype, an error raised, a call count); see `exercise_score`.
    `crash_hints` maps a crash kind ("shape", "dtype", "device", "index", ...) to an exercise's own
    hint for a crash of that kind inside the learner's code.
    """

    def __init__(self, result: Result, time_limit: float):
        self.result = result
        self.time_limit = time_limit
        self.crash_hints: dict[str, str] = {}

    # -- recording -----------------------------------------------------------
    def _record(self, ok: bool, what: str, detail: str = "", hint: str = "", decisive: bool = False) -> bool:
        weight = DECISIVE_WEIGHT if decisive else 1.0
        self.result.total += 1
        self.result.weight += weight
        if ok:
            self.result.passed += 1
            self.result.weight_passed += weight
        else:
            self.result.decisive_failed += decisive
            msg = f"✗ {what}"
            if detail:
                msg += f"\n    {detail}"
            if hint:
                msg += f"\n    Hint: {hint}"
            self.result.messages.append(msg)
        return ok

    def check(self, ok: bool, what: str, detail: str = "", hint: str = "", decisive: bool = False) -> bool:
        """A boolean test: `what` says what should hold. decisive=True when it tests a value."""
        return self._record(bool(ok), what, detail, hint, decisive)

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
        """Run the learner's function; turn every way it can go wrong into a message.

        A crash names the line of the learner's code it came from, the arguments of the call,
        and the likely cause (shape, dtype, device, index, signature, ...)."""
        name = getattr(fn, "__name__", "your function")
        if not callable(fn):
            self.result.status = "error"
            self._record(False, f"expected a function, got {type(fn).__name__}", decisive=True)
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
                decisive=True,
            )
            raise Abort
        except Exception as e:  # learner code may raise anything
            self.result.status = "error"
            message = str(e).strip().split("\n")[0]  # torch's messages can list every overload on further lines
            message = message if len(message) <= 300 else message[:299] + "…"
            self._record(False, f"{name} raised {type(e).__name__}: {message}", detail=self._where(e, name, args, kwargs),
                         hint=self._crash_hint(e), decisive=True)
            raise Abort

    def _where(self, error: BaseException, name: str, args: tuple, kwargs: dict) -> str:
        call = ", ".join([_describe(a) for a in args] + [f"{k}={_describe(v)}" for k, v in kwargs.items()])
        where = _learner_line(error)
        return (where + "\n    " if where else "") + f"called as {name}({call})"

    def _crash_hint(self, error: BaseException) -> str:
        kind, hint = _crash_cause(error)
        hint = self.crash_hints.get(kind, hint)
        if not hint:
            return "run your function on the arguments above and read the traceback from the line shown"
        return hint

    # -- common tests ----------------------------------------------------------
    def tensor(self, out, shape=None, dtype=None, what: str = "the result", dtype_hint: str = "") -> bool:
        """Is `out` a finite tensor of the right shape (and dtype)? Aborts if not a tensor or the wrong shape.
        A wrong shape is decisive (nothing else can be tested), a wrong dtype incidental; dtype_hint
        replaces the usual hint for a wrong dtype (which assumes the inputs had the expected dtype)."""
        if not isinstance(out, torch.Tensor):
            self._record(
                False,
                f"{what} should be a torch.Tensor",
                f"got {type(out).__name__}",
                hint="return a tensor (torch.*), not a list, float or numpy array"
                     + (": .item() and float() turn a tensor into a Python number" if isinstance(out, float) else ""),
                decisive=True,
            )
            raise Abort
        ok = True
        if shape is not None and tuple(out.shape) != tuple(shape):
            self._record(False, f"{what} has the wrong shape", f"expected {tuple(shape)}, got {tuple(out.shape)}",
                         hint=_shape_hint(tuple(out.shape), tuple(shape)), decisive=True)
            raise Abort
        if dtype is not None and out.dtype != dtype:
            ok = self._record(False, f"{what} has dtype {out.dtype}", f"expected {dtype}",
                              hint=dtype_hint or _dtype_hint(out.dtype, dtype))
        if out.is_floating_point() and not torch.isfinite(out).all():
            n = int((~torch.isfinite(out)).sum())
            return self._record(
                False,
                f"{what} contains {n} NaN/inf values",
                hint="look for a division by zero (1 − ᾱ_t is 0 at t = 0) or a sqrt/log of a negative number",
                decisive=True,
            )
        return ok and self._record(True, f"{what} is a finite tensor of the right shape")

    def close(self, got, expected, what: str, hint: str = "", rtol: float = 1e-5, atol: float = 1e-7,
              decisive: bool = True, rows=None) -> bool:
        """Numerical agreement within tolerances. On a mismatch the hint first names what the
        difference looks like (a flipped sign, a constant factor, only some rows wrong, ...).
        rows: a label per row of `expected` ("t = 1", ...) for the "only some rows" message."""
        g = torch.as_tensor(got).detach().cpu().double()
        e = torch.as_tensor(expected).detach().cpu().double()
        if g.shape != e.shape and g.numel() != e.numel():
            return self._record(False, what, f"expected shape {tuple(e.shape)}, got {tuple(g.shape)}",
                                _shape_hint(tuple(g.shape), tuple(e.shape)) + ("; " + hint if hint else ""), decisive)
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
            pattern = _pattern(g, e, rtol, atol, rows)
            if pattern:
                hint = pattern + (" — " + hint if hint else "")
        return self._record(ok, what, detail, hint, decisive)


def _shape_hint(got: tuple, want: tuple) -> str:
    """Name what a wrong shape most likely comes from."""
    if len(want) == 0 and len(got) >= 1:
        return "the loss is one number: average over the batch too (.mean() of everything, or F.mse_loss)"
    if len(got) > len(want):
        return ("your result has more dimensions than the input: a (B,) or (B, 1) per-example value broadcast "
                "against the whole batch. Reshape it to (B, 1, 1, …) with x.dim() − 1 ones (extract(values, t, x))")
    if len(got) < len(want):
        return "your result lost a dimension: a sum or mean over a dimension that should stay, or a squeeze"
    if math.prod(got) == math.prod(want):
        return "the right number of values in the wrong shape: check the order of the dimensions (a transpose, cat along the wrong dim)"
    return "check broadcasting over the batch: index with t, then reshape to (B, 1, ...) with x.dim() − 1 ones"


def _dtype_hint(got: torch.dtype, want: torch.dtype) -> str:
    if got == torch.float64 and want == torch.float32:
        return ("float32 inputs came back float64: a float64 tensor (the schedule's tables are float64) met your "
                "float32 data. Cast it with .to(x.dtype) first (extract(values, t, x) does it)")
    if got == torch.float32 and want == torch.float64:
        return ("float64 inputs came back float32: something was cast to float32 on the way (.float(), "
                "torch.tensor(...) or torch.randn(...) without dtype=, torch.float32 written out); keep the input's dtype")
    if not got.is_floating_point and want.is_floating_point:
        return f"an integer result ({got}): some arithmetic ran on integer tensors; make them float first"
    return f"keep the dtype of the inputs ({want}); avoid mixing numpy and torch"


_FACTORS = [(2.0, "twice the right answer: an extra factor 2, or a missing ½"),
            (0.5, "half the right answer: a missing factor 2, or an extra ½"),
            (math.sqrt(2), "√2 × the right answer: a standard deviation where a variance belongs, or the reverse?"),
            (1 / math.sqrt(2), "1/√2 × the right answer: a standard deviation where a variance belongs, or the reverse?")]


def _pattern(g: torch.Tensor, e: torch.Tensor, rtol: float, atol: float, rows=None) -> str:
    """A short name for how the float64 tensor g differs from e, if it differs in a recognisable way."""
    if not torch.isfinite(g).all():
        if torch.isfinite(e).all():
            return ("NaN/inf where the answer is finite: a 0/0, a log or sqrt of a number ≤ 0, or a division by "
                    "1 − ᾱ_0 = 0 (an index t − 1 or t = 0)")
        return ""
    if torch.allclose(g, -e, rtol=rtol, atol=atol) and not torch.allclose(e, torch.zeros_like(e), atol=atol):
        return "the sign is flipped: your result is −1 × the right answer"
    big = e.abs() > 1e3 * atol + 1e-12
    if big.any():
        ratio = g[big] / e[big]
        c = ratio.median().item()
        if abs(c - 1) > 1e-3 and torch.allclose(g, c * e, rtol=max(rtol, 1e-6), atol=atol):
            for value, text in _FACTORS:
                if abs(c - value) < 1e-3 * value:
                    return text
            if int(big.sum()) > 1:  # one number is always some multiple of another: say so only for many
                return f"your result is {c:.4g} × the right answer: a constant factor is off"
    d = g - e
    c = d.flatten().median().item()
    if e.numel() > 1 and abs(c) > atol and torch.allclose(d, torch.full_like(d, c), rtol=0, atol=atol + rtol * e.abs().max().item()):
        return f"your result is off by the same {c:+.4g} everywhere"
    if (e.dim() >= 2 or rows is not None) and e.shape[0] > 1:
        bad = ~torch.isclose(g, e, rtol=rtol, atol=atol).reshape(e.shape[0], -1).all(1)
        if 0 < int(bad.sum()) <= max(1, e.shape[0] // 2):
            labels = [rows[i] if rows is not None else f"row {i}" for i in bad.nonzero().flatten().tolist()]
            more = f" and {len(labels) - 4} more" if len(labels) > 4 else ""
            return f"only some rows are wrong ({', '.join(labels[:4])}{more}); the others are right"
    if torch.allclose(g, e, rtol=max(1e-3, 100 * rtol), atol=100 * atol):
        return ("right to about three digits only: part of the computation ran in float32 where float64 is needed, "
                "or a constant is rounded")
    return ""


def _same_values(a, b, rtol: float, atol: float) -> bool:
    """Do a and b hold the same numbers (any shapes with equal size)? False if they can't be compared."""
    try:
        a = torch.as_tensor(a).detach().cpu().double()
        b = torch.as_tensor(b).detach().cpu().double()
        return a.numel() == b.numel() and bool(torch.allclose(a.reshape(b.shape), b, rtol=rtol, atol=atol))
    except (TypeError, RuntimeError, ValueError):
        return False


def diagnose(t: Tester, got, expected, what: str, mistakes: dict, hint: str = "", rtol: float = 1e-5, atol: float = 1e-7,
             decisive: bool = True, rows=None) -> bool:
    """`t.close`, but when `got` equals the output of a known mistake the hint names that mistake.

    mistakes: {hint: the output that mistake produces}. A mistake whose output equals the
    right answer on these inputs is skipped (it can't be told apart here). With no known
    mistake matching, `t.close` still names a flipped sign, a constant factor or wrong rows.
    """
    mr, ma = max(rtol, 1e-5), max(atol, 1e-7)  # a mistake's output, recomputed here, may round differently
    for mistake_hint, wrong in mistakes.items():
        if not _same_values(expected, wrong, mr, ma) and _same_values(got, wrong, mr, ma):
            return t._record(False, what, f"expected {_fmt(torch.as_tensor(expected))}, got {_fmt(torch.as_tensor(got))}",
                             mistake_hint, decisive)
    return t.close(got, expected, what, hint=hint, rtol=rtol, atol=atol, decisive=decisive, rows=rows)


NO_GRAD_HINT = ("the loss is detached from the model: no gradient reaches its weights. Build the loss from the "
                "model's output with torch operations only: no .item(), .detach(), torch.tensor(...) or "
                "torch.no_grad() on the way")


def grad_close(t: Tester, loss, params, expected, what: str, mistakes: dict | None = None, hint: str = "",
               rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Decisive: does the learner's scalar `loss` have the gradient `expected` (a list, one tensor per
    parameter) w.r.t. `params`? expected comes from the reference loss on the same random draws."""
    params = list(params)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        return t.check(False, what, f"got {type(loss).__name__}", hint="return the loss as a one-element tensor",
                       decisive=True)
    if not loss.requires_grad or loss.grad_fn is None:
        return t.check(False, what, "the loss carries no autograd graph (loss.requires_grad is False)",
                       hint=NO_GRAD_HINT, decisive=True)
    grads = torch.autograd.grad(loss.reshape(()), params, allow_unused=True, retain_graph=True)
    missing = sum(g is None for g in grads)
    if missing:
        return t.check(False, what, f"{missing} of the model's {len(params)} parameter tensors get no gradient",
                       hint=NO_GRAD_HINT, decisive=True)
    got = torch.cat([g.detach().flatten() for g in grads])
    want = torch.cat([torch.as_tensor(g).detach().flatten() for g in expected])
    return diagnose(t, got, want, what, {"the loss is detached from the model: its gradient is zero": torch.zeros_like(want),
                                         **(mistakes or {})}, hint=hint, rtol=rtol, atol=atol)


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
        capped = " (a value test failed or the code stopped: at most a third of the points)" if result.decisive_failed else ""
        print(f"❌ {tag} {result.passed} of {result.total} tests passed ({result.score:.2g}/{result.points:g} points){capped}")
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
                               hint="this may mean your function returns something unexpected", decisive=True)
            finally:
                torch.set_rng_state(torch_state)  # ...and leave the lesson's random stream alone
            if result.status == "ok" and result.passed < result.total:
                result.status = "failed"
            result.score = exercise_score(result)
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
