"""Lesson 09's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants.py: one known-wrong function per class of mistake
(a wrong formula, a hard-coded default, a (B, 1) reshape that only fits points, a dtype lost, a crash)."""

import pytest
import torch
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import likelihood, sde
from minidiff.course.checks import lesson09
from minidiff.utils import randn

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson09.vp_sde, (sde.vp_sde, sde.vp_marginal)),
    (lesson09.pf_ode_drift, (sde.pf_ode_drift,)),
    (lesson09.euler_maruyama_step, (sde.euler_maruyama_step,)),
    (lesson09.heun_step, (sde.heun_step,)),
    (lesson09.hutchinson_divergence, (likelihood.hutchinson_divergence,)),
]


def _col(v, x):
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def _t(t, x):
    return torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])


# ---------------------------------------------------------------- 1. vp_sde / vp_marginal
def vp_sde_no_half(x, t, beta_min=0.1, beta_max=20.0):
    beta = _col(beta_min + _t(t, x) * (beta_max - beta_min), x)
    return -beta * x, beta.sqrt()


def vp_sde_defaults(x, t, beta_min=0.1, beta_max=20.0):
    return sde.vp_sde(x, t)


def marginal_rectangle(x0, t, beta_min=0.1, beta_max=20.0):
    t = _t(t, x0)
    integral = _col((beta_min + t * (beta_max - beta_min)) * t, x0)
    return torch.exp(-0.5 * integral) * x0, torch.sqrt(1 - torch.exp(-integral))


def marginal_variance(x0, t, beta_min=0.1, beta_max=20.0):
    mean, std = sde.vp_marginal(x0, t, beta_min, beta_max)
    return mean, std**2


def marginal_points_only(x0, t, beta_min=0.1, beta_max=20.0):  # (B, 1) columns: a crash on images
    t = _t(t, x0)
    integral = (beta_min * t + 0.5 * (beta_max - beta_min) * t**2)[:, None]
    return torch.exp(-0.5 * integral) * x0, torch.sqrt(1 - torch.exp(-integral))


MUTANTS += [
    ("09 vp_sde: drift without ½", lesson09.vp_sde, (vp_sde_no_half, sde.vp_marginal), "the ½ is missing", True),
    ("09 vp_sde: β_min, β_max hard-coded", lesson09.vp_sde, (vp_sde_defaults, sde.vp_marginal), "not the defaults", True),
    ("09 vp_marginal: ∫β as β(t)·t", lesson09.vp_sde, (sde.vp_sde, marginal_rectangle), "the area under a line", True),
    ("09 vp_marginal: variance for std", lesson09.vp_sde, (sde.vp_sde, marginal_variance), "the std is its square root",
     True),
    ("09 vp_marginal: (B, 1) reshape", lesson09.vp_sde, (sde.vp_sde, marginal_points_only), "(B, 1, 1, …)", True),
]


# ---------------------------------------------------------------- 2. pf_ode_drift
def _pf(sde_, eps_model, x, t, t_model=None, g2=0.5):
    tt = _t(t, x)
    g = sde_.diffusion(tt, x)
    score = -eps_model(x, tt * sde_.T if t_model is None else t_model(tt)) / _col(sde_.std(tt), x).to(x.dtype)
    return sde_.drift(x, tt) - g2 * g**2 * score


def pf_model_at_t(sde_, eps_model, x, t):
    return _pf(sde_, eps_model, x, t, t_model=lambda tt: tt)


def pf_full_g2(sde_, eps_model, x, t):
    return _pf(sde_, eps_model, x, t, g2=1.0)


def pf_float32_sigma(sde_, eps_model, x, t):  # σ_t cast to float32: float64 images come back float32
    tt = _t(t, x)
    g = sde_.diffusion(tt, x)
    score = -eps_model(x, tt * sde_.T) / _col(sde_.std(tt), x).float()
    return (sde_.drift(x, tt) - 0.5 * g**2 * score).float()


MUTANTS += [
    ("09 pf_ode_drift: model at t, not t·T", lesson09.pf_ode_drift, (pf_model_at_t,), "t · sde.T", True),
    ("09 pf_ode_drift: g² of the reverse SDE", lesson09.pf_ode_drift, (pf_full_g2,), "½ g² s", True),
    ("09 pf_ode_drift: float32 σ_t", lesson09.pf_ode_drift, (pf_float32_sigma,), "float64 inputs came back float32", False),
]


# ---------------------------------------------------------------- 3. euler_maruyama_step
def _em(sde_, eps_model, x, t, t_next, generator=None, sign=1.0, noise_pow=0.5, crash=False):
    tt = _t(t, x)
    dt = float(t_next) - float(t)
    g = sde_.diffusion(tt, x)
    drift = sde_.drift(x, tt) - sign * g**2 * sde.score_from_eps(sde_, eps_model, x, tt)
    z = torch.randn(x.shape, generator) if crash else randn(x.shape, generator, x.device, x.dtype)
    return x + drift * dt + g * abs(dt) ** noise_pow * z


def em_plus(sde_, eps_model, x, t, t_next, generator=None):
    return _em(sde_, eps_model, x, t, t_next, generator, sign=-1.0)


def em_no_sqrt(sde_, eps_model, x, t, t_next, generator=None):
    return _em(sde_, eps_model, x, t, t_next, generator, noise_pow=1.0)


def em_positional_generator(sde_, eps_model, x, t, t_next, generator=None):
    return _em(sde_, eps_model, x, t, t_next, generator, crash=True)


MUTANTS += [
    ("09 euler_maruyama_step: f + g² s", lesson09.euler_maruyama_step, (em_plus,), "pushes away from the data", True),
    ("09 euler_maruyama_step: g |Δt| z", lesson09.euler_maruyama_step, (em_no_sqrt,), "not g |Δt| z", True),
    ("09 euler_maruyama_step: crash, generator by position", lesson09.euler_maruyama_step, (em_positional_generator,),
     ("z = torch.randn(x.shape, generator) if crash", "go by keyword"), True),
]


# ---------------------------------------------------------------- 4. heun_step
def heun_euler(drift, x, t, t_next):
    return x + (float(t_next) - float(t)) * drift(x, t)


def heun_same_t(drift, x, t, t_next):
    h = float(t_next) - float(t)
    d1 = drift(x, t)
    return x + 0.5 * h * (d1 + drift(x + h * d1, t))


MUTANTS += [
    ("09 heun_step: Euler only", lesson09.heun_step, (heun_euler,), "Euler's step", True),
    ("09 heun_step: d₂ at t", lesson09.heun_step, (heun_same_t,), "at the *end* of the step", True),
]


# ---------------------------------------------------------------- 5. hutchinson_divergence
def hutch_no_jacobian(fn, x, v):
    return fn(x), (v * v).flatten(1).sum(1)


def hutch_points_only(fn, x, v):  # .sum(1) without flatten: (B, H, W) for images
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        f = fn(x)
        (vjp,) = torch.autograd.grad(f, x, v)
    return f.detach(), (vjp * v).sum(1)


def hutch_no_enable_grad(fn, x, v):  # crashes under torch.no_grad()
    x = x.detach().requires_grad_(True)
    f = fn(x)
    (vjp,) = torch.autograd.grad(f, x, v)
    return f.detach(), (vjp * v).flatten(1).sum(1)


MUTANTS += [
    ("09 hutchinson: vᵀ v", lesson09.hutchinson_divergence, (hutch_no_jacobian,), "the Jacobian is missing", True),
    ("09 hutchinson: .sum(1) on images", lesson09.hutchinson_divergence, (hutch_points_only,), "more dimensions", True),
    ("09 hutchinson: no enable_grad", lesson09.hutchinson_divergence, (hutch_no_enable_grad,),
     ("(vjp,) = torch.autograd.grad(f, x, v)", "detached from the autograd graph"), True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula, slips_keep_points=True)
