"""Lesson 10's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson09.py: one known-wrong function per class of
mistake (a wrong formula, a hard-coded default, a (B, 1) reshape that only fits points, a dtype lost, a slip)."""

import math

import pytest
import torch
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import samplers
from minidiff.course.checks import lesson10

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson10.karras_sigmas, (samplers.karras_sigmas,)),
    (lesson10.denoise, (samplers.denoise,)),
    (lesson10.karras_heun_step, (samplers.karras_heun_step,)),
    (lesson10.dpmpp_2m_update, (samplers.dpmpp_2m_update,)),
]


# ---------------------------------------------------------------- 1. karras_sigmas
def karras_no_zero(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    return samplers.karras_sigmas(steps, sigma_min, sigma_max, rho)[:-1]


def karras_over_n(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    i = torch.arange(steps, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + i / steps * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)])


def karras_rho_power(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    s = (sigma_max**rho + ramp * (sigma_min**rho - sigma_max**rho)) ** (1 / rho)
    return torch.cat([s, s.new_zeros(1)])


def karras_defaults(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    return samplers.karras_sigmas(steps, sigma_min, sigma_max) if rho != 1.0 else samplers.karras_sigmas(steps, sigma_min, sigma_max, rho)


def karras_float32(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    return samplers.karras_sigmas(steps, sigma_min, sigma_max, rho).float()


def karras_no_checks(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    s = (sigma_max ** (1 / abs(rho or 1)) + ramp * (sigma_min ** (1 / abs(rho or 1)) - sigma_max ** (1 / abs(rho or 1)))) ** abs(rho or 1)
    return torch.cat([s, s.new_zeros(1)])


MUTANTS += [
    ("10 karras: no σ_N = 0", lesson10.karras_sigmas, (karras_no_zero,), "append σ_N = 0", True),
    ("10 karras: i/N", lesson10.karras_sigmas, (karras_over_n,), "i/(N − 1), not i/N", True),
    ("10 karras: σ^ρ spacing", lesson10.karras_sigmas, (karras_rho_power,), "not in σ^ρ", True),
    ("10 karras: ρ hard-coded", lesson10.karras_sigmas, (karras_defaults,), "use the ρ you are given", True),
    ("10 karras: float32", lesson10.karras_sigmas, (karras_float32,), "float64", False),
    ("10 karras: no argument checks", lesson10.karras_sigmas, (karras_no_checks,), "sigma_min < sigma_max", False),
]


# ---------------------------------------------------------------- 2. denoise
def _sig(sigma, x):
    return torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])


def denoise_no_scale(schedule, eps_model, x, sigma):
    sigma = _sig(sigma, x)
    eps = eps_model(x, samplers.sigma_to_t(schedule, sigma))
    return x - sigma.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype) * eps


def denoise_sigma_as_t(schedule, eps_model, x, sigma):
    sigma = _sig(sigma, x)
    col = lambda v: v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)  # noqa: E731
    return x - col(sigma) * eps_model(x / col((1 + sigma**2).sqrt()), sigma)


def denoise_vp_std(schedule, eps_model, x, sigma):
    sigma = _sig(sigma, x)
    col = lambda v: v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)  # noqa: E731
    eps = eps_model(x / col((1 + sigma**2).sqrt()), samplers.sigma_to_t(schedule, sigma))
    return x - col(sigma / (1 + sigma**2).sqrt()) * eps


def denoise_points_only(schedule, eps_model, x, sigma):
    sigma = _sig(sigma, x)
    eps = eps_model(x / (1 + sigma**2).sqrt().to(x.dtype)[:, None], samplers.sigma_to_t(schedule, sigma))
    return x - sigma.to(x.dtype)[:, None] * eps


def denoise_float64(schedule, eps_model, x, sigma):
    sigma = _sig(sigma, x)
    col = lambda v: v.reshape(-1, *([1] * (x.dim() - 1)))  # noqa: E731  (no .to(x.dtype): float64 leaks out)
    return x - col(sigma) * eps_model(x / col((1 + sigma**2).sqrt()), samplers.sigma_to_t(schedule, sigma))


MUTANTS += [
    ("10 denoise: model fed x", lesson10.denoise, (denoise_no_scale,), "not x itself", True),
    ("10 denoise: model at σ", lesson10.denoise, (denoise_sigma_as_t,), "not at σ", True),
    ("10 denoise: VP std", lesson10.denoise, (denoise_vp_std,), "that is the VP std", True),
    ("10 denoise: (B, 1) reshape", lesson10.denoise, (denoise_points_only,), "(B, 1, 1, …)", True),
    ("10 denoise: float64 leaks", lesson10.denoise, (denoise_float64,), "keeps x's dtype", False),
]


# ---------------------------------------------------------------- 3. karras_heun_step
def heun_euler(denoiser, x, sigma, sigma_next):
    return samplers.karras_euler_step(denoiser, x, sigma, sigma_next)


def heun_same_sigma(denoiser, x, sigma, sigma_next):
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_e
    return x + (sigma_next - sigma) * 0.5 * (d + (x_e - denoiser(x_e, sigma)) / sigma)


def heun_no_last_step_case(denoiser, x, sigma, sigma_next):
    d = (x - denoiser(x, sigma)) / sigma
    x_e = x + (sigma_next - sigma) * d
    return x + (sigma_next - sigma) * 0.5 * (d + (x_e - denoiser(x_e, sigma_next)) / sigma_next)


MUTANTS += [
    ("10 heun: Euler only", lesson10.karras_heun_step, (heun_euler,), "that is Euler's step", True),
    ("10 heun: d' at σ", lesson10.karras_heun_step, (heun_same_sigma,), "at the *end* of the step", True),
    ("10 heun: divides by σ' = 0", lesson10.karras_heun_step, (heun_no_last_step_case,), "divides by zero", True),
]


# ---------------------------------------------------------------- 4. dpmpp_2m_update
def _dpm(x, denoised, sigma, sigma_next, old, sigma_prev, r_fn=None, half=True):
    if old is None or sigma_next == 0:
        d_hat = denoised
    else:
        h = math.log(sigma / sigma_next)
        r = r_fn(sigma_prev, sigma, sigma_next) if r_fn else math.log(sigma_prev / sigma) / h
        k = 1 / (2 * r) if half else 1 / r
        d_hat = (1 + k) * denoised - k * old
    return (sigma_next / sigma) * x + (1 - sigma_next / sigma) * d_hat


def dpm_r_inverted(x, denoised, sigma, sigma_next, old_denoised=None, sigma_prev=None):
    return _dpm(x, denoised, sigma, sigma_next, old_denoised, sigma_prev,
                r_fn=lambda sp, s, sn: math.log(s / sn) / math.log(sp / s))


def dpm_r_in_sigma(x, denoised, sigma, sigma_next, old_denoised=None, sigma_prev=None):
    return _dpm(x, denoised, sigma, sigma_next, old_denoised, sigma_prev, r_fn=lambda sp, s, sn: (sp - s) / (s - sn))


def dpm_no_half(x, denoised, sigma, sigma_next, old_denoised=None, sigma_prev=None):
    return _dpm(x, denoised, sigma, sigma_next, old_denoised, sigma_prev, half=False)


def dpm_first_order(x, denoised, sigma, sigma_next, old_denoised=None, sigma_prev=None):
    return _dpm(x, denoised, sigma, sigma_next, None, None)


def dpm_history_at_zero(x, denoised, sigma, sigma_next, old_denoised=None, sigma_prev=None):
    if old_denoised is None:
        return _dpm(x, denoised, sigma, sigma_next, None, None)
    h = math.log(sigma / sigma_next) if sigma_next > 0 else math.inf
    r = math.log(sigma_prev / sigma) / h
    d_hat = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised if r > 0 else denoised * math.nan
    return (sigma_next / sigma) * x + (1 - sigma_next / sigma) * d_hat


MUTANTS += [
    ("10 dpm++: r upside down", lesson10.dpmpp_2m_update, (dpm_r_inverted,), "upside down", True),
    ("10 dpm++: r in σ", lesson10.dpmpp_2m_update, (dpm_r_in_sigma,), "not in σ", True),
    ("10 dpm++: no ½", lesson10.dpmpp_2m_update, (dpm_no_half,), "the ½ is missing", True),
    ("10 dpm++: history ignored", lesson10.dpmpp_2m_update, (dpm_first_order,), "the history is ignored", True),
    ("10 dpm++: last step uses history", lesson10.dpmpp_2m_update, (dpm_history_at_zero,), "NaN", True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula, slips_keep_points=True)
