"""Lesson 12's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson10.py: one known-wrong function per class of
mistake (a wrong formula, the time reversed, a hard-coded default, a reshape that only fits points, a slip)."""

import pytest
import torch
import torch.nn.functional as Fn
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import flow
from minidiff.course.checks import lesson12
from minidiff.sampling import simulate

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson12.flow_loss, (flow.flow_loss,)),
    (lesson12.from_velocity, (flow.from_velocity,)),
    (lesson12.euler_sample, (flow.euler_sample,)),
    (lesson12.reflow_pairs, (flow.reflow_pairs,)),
]


def _col(t, x):
    return t.reshape(-1, *([1] * (x.dim() - 1)))


# ---------------------------------------------------------------- 1. flow_loss
def _loss(x0, generator, eps, path="right", target="velocity", t_kind="uniform", reduce="mean", detach=False,
          column=False, ignore_eps=False):
    B = x0.shape[0]
    if t_kind == "uniform":
        t = torch.rand(B, generator=generator, dtype=x0.dtype)
    else:
        t = torch.randn(B, generator=generator, dtype=x0.dtype).abs().clamp(max=1)
    if eps is None or ignore_eps:
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
    tc = t.reshape(-1, 1) if column else _col(t, x0)
    x_t = (1 - tc) * x0 + tc * eps if path == "right" else tc * x0 + (1 - tc) * eps
    goal = {"velocity": eps - x0, "flipped": x0 - eps, "eps": eps}[target]
    return x_t, t, goal, reduce, detach


def make_loss(**kw):
    def flow_loss(v_model, x0, generator=None, eps=None):
        x_t, t, goal, reduce, detach = _loss(x0, generator, eps, **kw)
        v = v_model(x_t, t)
        if detach:
            v = v.detach()
        if reduce == "sum":
            return ((v - goal) ** 2).flatten(1).sum(1).mean()
        return Fn.mse_loss(v, goal)

    return flow_loss


MUTANTS += [
    ("12 loss: target x_0 − ε", lesson12.flow_loss, (make_loss(target="flipped"),), "not x_0 − ε", True),
    ("12 loss: target ε", lesson12.flow_loss, (make_loss(target="eps"),), "not the noise ε", True),
    ("12 loss: time reversed", lesson12.flow_loss, (make_loss(path="reversed"),), "t = 0 is x_0", True),
    ("12 loss: t normal", lesson12.flow_loss, (make_loss(t_kind="normal"),), "uniform on [0, 1]", True),
    ("12 loss: sum over coordinates", lesson12.flow_loss, (make_loss(reduce="sum"),), "average over the coordinates", True),
    ("12 loss: detached", lesson12.flow_loss, (make_loss(detach=True),), "detached from the model", True),
    ("12 loss: (B, 1) reshape", lesson12.flow_loss, (make_loss(column=True),), "flow_loss raised", True),
    ("12 loss: given eps ignored", lesson12.flow_loss, (make_loss(ignore_eps=True),), "draw ε only when eps is None", True),
]


# ---------------------------------------------------------------- 2. from_velocity
def make_from_v(mistake):
    def from_velocity(path, x_t, v, t):
        a, b, da, db = path.coefficients(t, x_t)
        det = a * db + da * b if mistake == "det_sign" else a * db - da * b
        if mistake == "straight_only":
            det = torch.ones_like(det)
        x0 = (db * x_t - b * v) / det
        eps = (a * v - da * x_t) / det
        score = {"var": -eps / b**2, "no_b": -eps}.get(mistake, -eps / b)
        if mistake == "swap":
            return eps, x0, score
        return x0, eps, score

    return from_velocity


MUTANTS += [
    ("12 from_v: det sign", lesson12.from_velocity, (make_from_v("det_sign"),), "with a minus", True),
    ("12 from_v: det = 1", lesson12.from_velocity, (make_from_v("straight_only"),), "the 1 of the straight path", True),
    ("12 from_v: score −ε/b²", lesson12.from_velocity, (make_from_v("var"),), "not −ε / b²", True),
    ("12 from_v: score −ε", lesson12.from_velocity, (make_from_v("no_b"),), "divide by", True),
    ("12 from_v: x_0 and ε swapped", lesson12.from_velocity, (make_from_v("swap"),), "swapped", True),
]


# ---------------------------------------------------------------- 3. euler_sample
def make_euler(mistake):
    @torch.no_grad()
    def euler_sample(v_model, noise, steps):
        n = 10 if mistake == "fixed_steps" else steps
        times = [1 - i / n for i in range(n)] + [0.0]
        if mistake == "forward":
            times = times[::-1]

        def step(x, t, t_next):
            at = t_next if mistake == "end_slope" else t
            tb = at if mistake == "float_t" else torch.full((x.shape[0],), at, dtype=x.dtype)
            return x + (t_next - t) * v_model(x, tb)

        return simulate(step, noise, times)

    return euler_sample


MUTANTS += [
    ("12 euler: t from 0 to 1", lesson12.euler_sample, (make_euler("forward"),), "from t = 1", True),
    ("12 euler: slope at t'", lesson12.euler_sample, (make_euler("end_slope"),), "the step's start", True),
    ("12 euler: steps hard-coded", lesson12.euler_sample, (make_euler("fixed_steps"),), "5 steps call the model 5 times", True),
    ("12 euler: t a float", lesson12.euler_sample, (make_euler("float_t"),), "float tensor of shape (B,)", False),
]


# ---------------------------------------------------------------- 4. reflow_pairs
def make_pairs(mistake):
    def reflow_pairs(v_model, n, shape=(2,), steps=100, generator=None):
        eps = torch.randn((n, *shape), generator=generator)
        k = 100 if mistake == "default_steps" else steps
        if mistake == "forward":
            with torch.no_grad():
                times = [i / k for i in range(k + 1)]
                x0 = simulate(lambda x, a, b: flow.euler_step(v_model, x, a, b), eps, times)
        elif mistake == "grad":
            x0 = simulate(lambda x, a, b: flow.euler_step(v_model, x, a, b), eps, flow.flow_timesteps(k))
        else:
            x0 = flow.euler_sample(v_model, eps, k)
        return (eps, x0) if mistake == "swap" else (x0, eps)

    return reflow_pairs


MUTANTS += [
    ("12 pairs: forward in time", lesson12.reflow_pairs, (make_pairs("forward"),), "from t = 1 (noise) down to t = 0", True),
    ("12 pairs: steps ignored", lesson12.reflow_pairs, (make_pairs("default_steps"),), "not 100", True),
    ("12 pairs: swapped", lesson12.reflow_pairs, (make_pairs("swap"),), "data end first", True),
    ("12 pairs: not detached", lesson12.reflow_pairs, (make_pairs("grad"),), "detached", False),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula, slips_keep_points=True)
