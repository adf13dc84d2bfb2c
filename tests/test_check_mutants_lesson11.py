"""Lesson 11's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson10.py: one known-wrong function per class of
mistake (a wrong formula, a hard-coded constant, a detached gradient, a dtype lost, a missing argument check)."""

import pytest
import torch
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import vdm
from minidiff.course.checks import lesson11

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson11.continuous_diffusion_loss, (vdm.continuous_diffusion_loss,)),
    (lesson11.discrete_diffusion_loss, (vdm.discrete_diffusion_loss,)),
    (lesson11.monotone_log_snr, (vdm.monotone_log_snr,)),
]


def _col(v, x):
    return v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


# ---------------------------------------------------------------- 1. continuous_diffusion_loss
def _cont(gamma, eps_model, x, t, eps, *, half=0.5, swap=False, var=False, cond_t=False, detach=False,
          mean=False, const=False, checks=True):
    if checks:
        if (t < 0).any() or (t > 1).any():
            raise ValueError("t outside [0, 1]")
    tt = t.detach().requires_grad_(True)
    g = gamma(tt)
    (dg,) = torch.autograd.grad(g.sum(), tt, create_graph=not detach)
    if const:
        dg = torch.full_like(dg, gamma.gamma_1 - gamma.gamma_0)
    if checks and (dg <= 0).any():
        raise ValueError("γ must increase with t")
    a, s = torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()
    if swap:
        a, s = s, a
    if var:
        a, s = a**2, s**2
    z = _col(a, x) * x + _col(s, x) * eps
    err = (eps - eps_model(z, t if cond_t else g)).pow(2).flatten(1)
    err = err.mean(1) if mean else err.sum(1)
    return half * dg.to(err.dtype) * err


def cont_no_half(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, half=1.0)


def cont_swapped(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, swap=True)


def cont_variances(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, var=True)


def cont_model_at_t(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, cond_t=True)


def cont_detached_slope(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, detach=True)


def cont_mean_over_dims(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, mean=True)


def cont_constant_slope(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, const=True)


def cont_no_checks(gamma, eps_model, x, t, eps):
    return _cont(gamma, eps_model, x, t, eps, checks=False)


MUTANTS += [
    ("11 cont: no ½", lesson11.continuous_diffusion_loss, (cont_no_half,), "a factor ½ is missing", True),
    ("11 cont: α, σ swapped", lesson11.continuous_diffusion_loss, (cont_swapped,), "α and σ are swapped", True),
    ("11 cont: variances", lesson11.continuous_diffusion_loss, (cont_variances,), "stds, not variances", True),
    ("11 cont: model at t", lesson11.continuous_diffusion_loss, (cont_model_at_t,), "not eps_model(z_t, t)", True),
    ("11 cont: γ′ detached", lesson11.continuous_diffusion_loss, (cont_detached_slope,), "create_graph=True", True),
    ("11 cont: mean over dims", lesson11.continuous_diffusion_loss, (cont_mean_over_dims,), "not the mean", True),
    ("11 cont: γ′ = γ_1 − γ_0", lesson11.continuous_diffusion_loss, (cont_constant_slope,), "take it by autograd", True),
    ("11 cont: no argument checks", lesson11.continuous_diffusion_loss, (cont_no_checks,), "γ must increase", False),
]


# ---------------------------------------------------------------- 2. discrete_diffusion_loss
def _disc(gamma, eps_model, x, i, T, eps, *, no_T=False, exp=False, flip=False, after=False, hard_T=None,
          snr=False, checks=True, as_float32=False):
    if checks and ((i < 1).any() or (i > T).any()):
        raise ValueError("i outside 1..T")
    T = hard_T or T
    t = i.to(x.dtype) / T
    s = (i + 1).to(x.dtype) / T if after else (i - 1).to(x.dtype) / T
    g_t, g_s = gamma(t), gamma(s)
    if checks and (g_t <= g_s).any():
        raise ValueError("γ must increase with t")
    a, sg = torch.sigmoid(-g_t).sqrt(), torch.sigmoid(g_t).sqrt()
    z = _col(a, x) * x + _col(sg, x) * eps
    err = (eps - eps_model(z, g_t)).pow(2).flatten(1).sum(1)
    if snr:
        w = torch.exp(-g_s) - torch.exp(-g_t)
    else:
        w = torch.exp(g_t - g_s) if exp else torch.expm1(g_s - g_t) if flip else torch.expm1(g_t - g_s)
    out = (0.5 if no_T else 0.5 * T) * w.to(err.dtype) * err
    return out.float() if as_float32 else out


def disc_no_T(gamma, eps_model, x, i, T, eps):
    return _disc(gamma, eps_model, x, i, T, eps, no_T=True)


def disc_exp(gamma, eps_model, x, i, T, eps):
    return _disc(gamma, eps_model, x, i, T, eps, exp=True)


def disc_flipped(gamma, eps_model, x, i, T, eps):
    return _disc(gamma, eps_model, x, i, T, eps, flip=True)


def disc_s_after(gamma, eps_model, x, i, T, eps):
    return _disc(gamma, eps_model, x, i, T, eps, after=True)


def disc_T_1000(gamma, eps_model, x, i, T, eps):
    return _disc(gamma, eps_model, x, i, T, eps, hard_T=1000)


def disc_snr_difference(gamma, eps_model, x, i, T, eps):
    return _disc(gamma, eps_model, x, i, T, eps, snr=True)


def disc_float32(gamma, eps_model, x, i, T, eps):
    return _disc(gamma, eps_model, x, i, T, eps, as_float32=True)


MUTANTS += [
    ("11 disc: no T", lesson11.discrete_diffusion_loss, (disc_no_T,), "factor T", True),
    ("11 disc: exp for expm1", lesson11.discrete_diffusion_loss, (disc_exp,), "the −1 is missing", True),
    ("11 disc: sign flipped", lesson11.discrete_diffusion_loss, (disc_flipped,), "the sign is flipped", True),
    ("11 disc: s = (i + 1)/T", lesson11.discrete_diffusion_loss, (disc_s_after,), "(i + 1)/T", True),
    ("11 disc: T = 1000 hard-coded", lesson11.discrete_diffusion_loss, (disc_T_1000,), "use the T you are given", True),
    ("11 disc: SNR(s) − SNR(t) on ε", lesson11.discrete_diffusion_loss, (disc_snr_difference,), "not SNR(s) − SNR(t)", True),
    ("11 disc: float32 result", lesson11.discrete_diffusion_loss, (disc_float32,), "float64", False),
]


# ---------------------------------------------------------------- 3. monotone_log_snr
def _mono(net, t, *, absw=True, rescale=True, tanh=False, mean=True, pin=True, hard_ends=False, detach=False):
    ends = torch.tensor([0.0, 1.0], dtype=t.dtype)
    tt = torch.cat([t, ends])[:, None]
    w1, w2, b2, w3 = net.w1, net.w2, net.b2, net.w3
    if detach:
        w1, w2, b2, w3 = (p.detach() for p in (w1, w2, b2, w3))
    if absw:
        w1, w2, w3 = w1.abs(), w2.abs(), w3.abs()
    inp = 2 * tt - 1 if rescale else tt
    phi = torch.tanh(inp * w2 + b2) if tanh else 2 * (torch.sigmoid(inp * w2 + b2) - 0.5)
    g = tt[:, 0] * w1 + phi @ w3 / (w3.numel() if mean else 1)
    if not pin:
        return g[:-2]
    g0, g1 = (-13.3, 5.0) if hard_ends else (net.gamma_0, net.gamma_1)
    return g0 + (g1 - g0) * (g[:-2] - g[-2]) / (g[-1] - g[-2])


def mono_no_abs(net, t):
    return _mono(net, t, absw=False)


def mono_no_rescale(net, t):
    return _mono(net, t, rescale=False)


def mono_tanh(net, t):
    return _mono(net, t, tanh=True)


def mono_sum(net, t):
    return _mono(net, t, mean=False)


def mono_hard_ends(net, t):
    return _mono(net, t, hard_ends=True)


def mono_detached(net, t):
    return _mono(net, t, detach=True)


MUTANTS += [
    ("11 mono: no |·|", lesson11.monotone_log_snr, (mono_no_abs,), "take |·| of every weight", True),
    ("11 mono: t not rescaled", lesson11.monotone_log_snr, (mono_no_rescale,), "2t − 1", True),
    ("11 mono: tanh(h)", lesson11.monotone_log_snr, (mono_tanh,), "tanh(h/2)", True),
    ("11 mono: sum over features", lesson11.monotone_log_snr, (mono_sum,), "number of features K", True),
    ("11 mono: ends hard-coded", lesson11.monotone_log_snr, (mono_hard_ends,), "net.gamma_0, net.gamma_1", True),
    ("11 mono: weights detached", lesson11.monotone_log_snr, (mono_detached,), "gradient", True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula, slips_keep_points=True)
