"""Lesson 13's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a third of
the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions pass every test.
Same layout as tests/test_check_mutants_lesson10.py: one known-wrong function per class of mistake."""

import math

import pytest
import torch
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import anomaly, editing, inpaint
from minidiff.course.checks import lesson13
from minidiff.ddim import ddim_step
from minidiff.forward import add_noise, predict_x0

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson13.repaint_step, (inpaint.repaint_step,)),
    (lesson13.sdedit_start, (editing.sdedit_start,)),
    (lesson13.tweedie_denoise, (editing.tweedie_denoise,)),
    (lesson13.auroc, (anomaly.auroc,)),
]


def randn(x, generator):
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


# ---------------------------------------------------------------- 1. repaint_step
def _repaint(schedule, eps_model, x, t, t_next, known, mask, eta=1.0, generator=None, mistake=None):
    if t_next > t:
        ab, ab_next = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[t_next].item()
        z = randn(x, generator)
        if mistake == "as_x0":
            return math.sqrt(ab_next) * x + math.sqrt(1 - ab_next) * z
        if mistake == "variance":
            return math.sqrt(ab_next / ab) * x + (1 - ab_next / ab) * z
        if mistake == "float64":
            ratio = schedule.alphas_cumprod[torch.tensor([t_next])] / schedule.alphas_cumprod[torch.tensor([t])]
            return ratio.sqrt() * x + (1 - ratio).sqrt() * z
        return math.sqrt(ab_next / ab) * x + math.sqrt(1 - ab_next / ab) * z
    tt = torch.full((x.shape[0],), t, dtype=torch.long)
    x_new = ddim_step(schedule, eps_model(x, tt), x, tt, t_next, eta=1.0 if mistake == "eta" else eta, generator=generator)
    known_t = add_noise(schedule, known, randn(x, generator), t if mistake == "at_t" else t_next)
    if mistake == "inverted":
        return (1 - mask) * known_t + mask * x_new
    return mask * known_t + (1 - mask) * x_new


def repaint_inverted(*a, **k):
    return _repaint(*a, **k, mistake="inverted")


def repaint_at_t(*a, **k):
    return _repaint(*a, **k, mistake="at_t")


def repaint_eta_ignored(*a, **k):
    return _repaint(*a, **k, mistake="eta")


def repaint_as_x0(*a, **k):
    return _repaint(*a, **k, mistake="as_x0")


def repaint_variance(*a, **k):
    return _repaint(*a, **k, mistake="variance")


def repaint_float64(*a, **k):
    return _repaint(*a, **k, mistake="float64")


MUTANTS += [
    ("13 repaint: mask inverted", lesson13.repaint_step, (repaint_inverted,), "the mask is 1 where the pixel is *known*", True),
    ("13 repaint: known noised to t", lesson13.repaint_step, (repaint_at_t,), "noise the known pixels to t_next", True),
    ("13 repaint: eta ignored", lesson13.repaint_step, (repaint_eta_ignored,), "pass your eta", True),
    ("13 repaint: jump from x as x_0", lesson13.repaint_step, (repaint_as_x0,), "x_t is not x_0", True),
    ("13 repaint: variance for std", lesson13.repaint_step, (repaint_variance,), "not by the variance", True),
    ("13 repaint: float64 jump", lesson13.repaint_step, (repaint_float64,), "float64", False),
]


# ---------------------------------------------------------------- 2. sdedit_start
def _sd(schedule, guide, strength, noise, mistake=None):
    if mistake != "no_checks":
        if not 0 < strength <= 1:
            raise ValueError("strength must lie in (0, 1]")
        if guide.min() < -1 or guide.max() > 1:
            raise ValueError("guide must lie in [-1, 1]")
    T = 1000 if mistake == "T1000" else schedule.T
    t0 = int(strength * T) if mistake == "floor" else int(round(strength * T))
    t0 = max(1, t0) if mistake != "no_clamp" else t0
    ab = schedule.alphas_cumprod[t0].item()
    if mistake == "no_sqrt":
        return ab * guide + (1 - ab) * noise, t0
    return math.sqrt(ab) * guide + math.sqrt(1 - ab) * noise, t0


MUTANTS += [
    ("13 sdedit: int() truncates", lesson13.sdedit_start, (lambda s, g, st, n: _sd(s, g, st, n, "floor"),), "nearest integer", True),
    ("13 sdedit: t_0 = 0 allowed", lesson13.sdedit_start, (lambda s, g, st, n: _sd(s, g, st, n, "no_clamp"),), "at least 1", True),
    ("13 sdedit: T = 1000 hard-coded", lesson13.sdedit_start, (lambda s, g, st, n: _sd(s, g, st, n, "T1000"),), "schedule's T", True),
    ("13 sdedit: no square roots", lesson13.sdedit_start, (lambda s, g, st, n: _sd(s, g, st, n, "no_sqrt"),), "square roots", True),
    ("13 sdedit: no argument checks", lesson13.sdedit_start, (lambda s, g, st, n: _sd(s, g, st, n, "no_checks"),),
     ("0 < strength ≤ 1", "[-1, 1]"), False),
]


# ---------------------------------------------------------------- 3. tweedie_denoise
def _tw(schedule, eps_model, y, sigma, mistake=None):
    t = editing.matching_t(schedule, sigma)
    if mistake == "vp_std":
        t = int(((1 - schedule.alphas_cumprod[1:]).sqrt() - sigma).abs().argmin()) + 1
    ab = schedule.alphas_cumprod[t]
    x_t = y if mistake == "no_scale" else math.sqrt(ab.item()) * y
    tt = torch.full((y.shape[0],), t, dtype=torch.long)
    eps = eps_model(x_t, tt)
    if mistake == "no_divide":
        return x_t - math.sqrt(1 - ab.item()) * eps
    if mistake == "float64":
        return predict_x0(schedule, x_t.double(), tt, eps.double())
    return predict_x0(schedule, x_t, tt, eps)


MUTANTS += [
    ("13 tweedie: input not scaled", lesson13.tweedie_denoise, (lambda s, m, y, sg: _tw(s, m, y, sg, "no_scale"),),
     "feed it √ᾱ_t · y", True),
    ("13 tweedie: σ as the VP std", lesson13.tweedie_denoise, (lambda s, m, y, sg: _tw(s, m, y, sg, "vp_std"),), "not √(1 − ᾱ_t)", True),
    ("13 tweedie: no division", lesson13.tweedie_denoise, (lambda s, m, y, sg: _tw(s, m, y, sg, "no_divide"),), "division by √ᾱ_t", True),
    ("13 tweedie: float64 result", lesson13.tweedie_denoise, (lambda s, m, y, sg: _tw(s, m, y, sg, "float64"),), "float32", False),
]


# ---------------------------------------------------------------- 4. auroc
def auroc_pairs(tie, reverse=False):
    def f(a, b):
        if reverse:
            a, b = b, a
        return float(((b[None, :] > a[:, None]).double() + tie * (b[None, :] == a[:, None]).double()).mean())

    return f


def auroc_ranks_no_average(a, b):
    both = torch.cat([a, b]).double()
    ranks = torch.empty_like(both)
    ranks[both.argsort(stable=True)] = torch.arange(1, both.numel() + 1, dtype=torch.float64)
    return float((ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


MUTANTS += [
    ("13 auroc: reversed", lesson13.auroc, (auroc_pairs(0.5, reverse=True),), "the *anomaly*", True),
    ("13 auroc: ties count 0", lesson13.auroc, (auroc_pairs(0.0),), "a tie counts ½, not 0", True),
    ("13 auroc: ties count 1", lesson13.auroc, (auroc_pairs(1.0),), "a tie counts ½, not 1", True),
    ("13 auroc: ranks of ties not averaged", lesson13.auroc, (auroc_ranks_no_average,), "average of their ranks", True),
    ("13 auroc: a list", lesson13.auroc, (lambda a, b: [anomaly.auroc(a, b)],), "return a float", True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula, slips_keep_points=True)
