"""Checks for lesson 10, fast samplers in the σ view.

    from minidiff.course.checks import lesson10 as check
    check.karras_sigmas(karras_sigmas)          # σ_i evenly spaced in σ^(1/ρ), then σ_N = 0
    check.denoise(denoise)                      # D(x; σ) = x − σ ε_θ(x / √(1 + σ²), t(σ))
    check.karras_heun_step(karras_heun_step)    # Heun in σ, Euler on the last step to σ' = 0
    check.dpmpp_2m_update(dpmpp_2m_update)      # DPM-Solver++(2M): exact linear part, 2-step guess of D

Closed forms first (ρ = 1 is linear; a denoiser of a linear model; Heun on Gaussian data; DDIM when there is no
history), then minidiff's references on random inputs (points and images, float32 and float64, non-default
arguments). The outputs of known mistakes (the last σ = 0 missing, i/N for i/(N − 1), the model fed x instead of
x/√(1 + σ²) or σ instead of t, Euler only, the slope at the wrong σ, r upside down, ...) are recomputed here so that
a hint can name the mistake.
"""

from __future__ import annotations

import math

import torch

from ... import samplers as ref
from ...data.toy import GaussianMixture
from ...schedules import NoiseSchedule
from .core import Tester, diagnose, exercise


def _col(v, x):
    return torch.as_tensor(v, dtype=torch.float64).reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


# ---------------------------------------------------------------- 1. Karras σ levels


def _karras_wrong(steps, smin, smax, rho, mistake):
    i = torch.arange(steps, dtype=torch.float64)
    if mistake == "over_n":
        s = (smax ** (1 / rho) + i / steps * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    elif mistake == "rho_power":
        s = (smax**rho + i / (steps - 1) * (smin**rho - smax**rho)) ** (1 / rho)
    elif mistake == "geometric":
        s = smax * (smin / smax) ** (i / (steps - 1))
    else:
        s = (smax ** (1 / rho) + i / (steps - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    if mistake == "no_zero":
        return s
    if mistake == "ascending":
        return torch.cat([s.flip(0), s.new_zeros(1)])
    return torch.cat([s, s.new_zeros(1)])


@exercise("10", "karras_sigmas", points=2)
def karras_sigmas(t: Tester, fn):
    """steps + 1 float64 levels: (σ_max^(1/ρ) + i/(N−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for i < N, then 0."""
    out = t.call(fn, 5, 1.0, 9.0, 1.0)
    if isinstance(out, torch.Tensor) and out.shape == (5,):
        t.check(False, "karras_sigmas(5, ...) returns steps + 1 = 6 levels", "got 5",
                hint="append σ_N = 0 at the end: the last step denoises completely", decisive=True)
        return
    t.tensor(out, shape=(6,), dtype=torch.float64, what="karras_sigmas(5, 1, 9, rho=1)",
             dtype_hint="make the levels in float64 (torch.linspace(..., dtype=torch.float64))")
    diagnose(t, out, torch.tensor([9.0, 7.0, 5.0, 3.0, 1.0, 0.0], dtype=torch.float64),
             "ρ = 1: five levels evenly spaced from 9 down to 1, then 0",
             {"the fraction is i/(N − 1), not i/N: σ_{N−1} must be σ_min exactly": _karras_wrong(5, 1.0, 9.0, 1.0, "over_n"),
              "the levels run from σ_max *down* to σ_min, then 0": _karras_wrong(5, 1.0, 9.0, 1.0, "ascending")},
             hint="σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ", rtol=1e-6, atol=1e-9)
    # ρ = 7 (the default) and non-default levels
    for args in ((10, 0.002, 80.0, 7.0), (7, 0.05, 3.0, 3.0)):
        out = t.call(fn, *args)
        t.tensor(out, shape=(args[0] + 1,), what=f"karras_sigmas{args}")
        diagnose(t, out, ref.karras_sigmas(*args), f"karras_sigmas{args} matches minidiff.samplers.karras_sigmas",
                 {"raise the ρ-th *root* to the power ρ: spacing is even in σ^(1/ρ), not in σ^ρ":
                  _karras_wrong(*args, "rho_power"),
                  "that is geometric spacing (even in log σ, the ρ → ∞ limit): use the ρ you are given":
                  _karras_wrong(*args, "geometric"),
                  "the fraction is i/(N − 1), not i/N: σ_{N−1} must be σ_min exactly": _karras_wrong(*args, "over_n"),
                  "use the sigma_min, sigma_max and rho you are given, not the defaults 0.002, 80, 7":
                  ref.karras_sigmas(args[0]),
                  "use the ρ you are given, not the default 7": ref.karras_sigmas(*args[:3])},
                 hint="σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ for i = 0..N−1, then 0",
                 rtol=1e-6, atol=1e-9)
    out = t.call(fn, 1, 0.1, 2.0, 7.0)
    t.tensor(out, shape=(2,), what="karras_sigmas(1, ...): one step")
    t.close(out, torch.tensor([2.0, 0.0], dtype=torch.float64), "one step: [σ_max, 0]",
            hint="with N = 1 there is no i/(N − 1): the single level is σ_max", rtol=1e-6, atol=1e-9)
    for bad, what in (((5, 2.0, 1.0, 7.0), "sigma_min ≥ sigma_max"), ((5, 0.1, 1.0, 0.0), "rho ≤ 0"),
                      ((5, 0.1, 1.0, -2.0), "rho < 0")):
        t.raises(fn, bad, ValueError, f"{what} raises a ValueError",
                 hint="check the arguments first: raise ValueError('need sigma_min < sigma_max ...') / ('rho must be > 0')")


# ---------------------------------------------------------------- 2. the denoiser


class _LinearEps:
    """ε(x_t, t) = a(t) x_t + b(t): records what it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_t, t):
        self.calls.append((x_t, t))
        tt = torch.as_tensor(t, dtype=torch.float64)
        return _col(0.3 + tt / 2000, x_t) * x_t + _col(tt / 1000, x_t)


def _denoise_wrong(s, eps_model, x, sigma, mistake):
    sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
    tt = ref.sigma_to_t(s, sigma)
    c = _col(torch.sqrt(1 + sigma**2), x)
    x_t = x / c
    if mistake == "no_scale":
        x_t = x
    if mistake == "times_scale":
        x_t = x * c
    eps = eps_model(x_t, sigma if mistake == "sigma_as_t" else tt)
    if mistake == "vp_std":
        return x - _col(sigma / torch.sqrt(1 + sigma**2), x) * eps
    if mistake == "no_sigma":
        return x - eps
    return x - _col(sigma, x) * eps


@exercise("10", "denoise", points=2)
def denoise(t: Tester, fn):
    """D(x; σ) = x − σ ε_θ(x / √(1 + σ²), t(σ)): shapes, dtypes, the model's input and time."""
    s = NoiseSchedule.make("cosine", 1000)
    x = torch.randn(4, 2)
    sigma = torch.tensor([0.01, 0.5, 3.0, 40.0], dtype=torch.float64)
    model = _LinearEps()
    out = t.call(fn, s, model, x, sigma)
    t.tensor(out, shape=(4, 2), dtype=torch.float32, what="D(x; σ) for float32 points (4, 2)",
             dtype_hint="σ is float64: cast it to x's dtype (.to(x.dtype)) before multiplying, so D keeps x's dtype")
    calls = model.calls
    t.check(len(calls) == 1, "the model is called once", f"called {len(calls)} times",
            hint="one call of eps_model per denoiser evaluation: it is the expensive part")
    if calls:
        t.close(calls[0][1], ref.sigma_to_t(s, sigma), "the model's time is t(σ) = sigma_to_t(schedule, σ)",
                hint="the network was trained on t in 1..T, not on σ: call eps_model(x_t, sigma_to_t(schedule, sigma))",
                rtol=1e-6, atol=1e-6)
    mistakes = {"the network sees x_t = x / √(1 + σ²) (it was trained on √ᾱ x_0 + √(1 − ᾱ) ε), not x itself":
                _denoise_wrong(s, _LinearEps(), x, sigma, "no_scale"),
                "divide by √(1 + σ²), do not multiply: x_t = √ᾱ x with ᾱ = 1/(1 + σ²)":
                _denoise_wrong(s, _LinearEps(), x, sigma, "times_scale"),
                "the network was trained on t in 1..T: call it at sigma_to_t(schedule, σ), not at σ":
                _denoise_wrong(s, _LinearEps(), x, sigma, "sigma_as_t"),
                "in the σ variables x = x_0 + σ ε: subtract σ ε, not √(1 − ᾱ) ε (that is the VP std)":
                _denoise_wrong(s, _LinearEps(), x, sigma, "vp_std"),
                "the noise in x = x_0 + σ ε has std σ: subtract σ ε, not ε": _denoise_wrong(s, _LinearEps(), x, sigma, "no_sigma")}
    diagnose(t, out, ref.denoise(s, _LinearEps(), x, sigma), "D(x; σ) = x − σ ε_θ(x/√(1 + σ²), t(σ)) on points",
             mistakes, hint="x_t = x / √(1 + σ²), ε = eps_model(x_t, t(σ)), D = x − σ ε (σ reshaped to (B, 1, ...))",
             rtol=1e-5, atol=1e-6)
    # images, float64, a float σ, another schedule
    s2 = NoiseSchedule.make("linear", 200)
    imgs = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    out = t.call(fn, s2, _LinearEps(), imgs, 2.5)
    t.tensor(out, shape=(3, 1, 4, 4), dtype=torch.float64, what="D for float64 images (3, 1, 4, 4), σ = 2.5 (a float)")
    diagnose(t, out, ref.denoise(s2, _LinearEps(), imgs, 2.5),
             "images, a linear schedule with T = 200, σ a float: matches minidiff.samplers.denoise",
             {"the network sees x_t = x / √(1 + σ²), not x": _denoise_wrong(s2, _LinearEps(), imgs, 2.5, "no_scale")},
             hint="σ may be a float (one level for the batch) or a (B,) tensor; reshape it to (B, 1, 1, 1) for images",
             rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- 3. Heun in σ


class _Counted:
    def __init__(self, fn):
        self.fn, self.sigmas = fn, []

    def __call__(self, x, sigma):
        self.sigmas.append(float(torch.as_tensor(sigma, dtype=torch.float64).flatten()[0]))
        return self.fn(x, sigma)


def _heun_wrong(D, x, s, s_next, mistake):
    d = (x - D(x, s)) / s
    x_e = x + (s_next - s) * d
    if mistake == "euler" or s_next == 0:
        return x_e
    if mistake == "same_sigma":
        d2 = (x_e - D(x_e, s)) / s
    else:
        d2 = (x_e - D(x_e, s_next)) / s_next
    if mistake == "end_slope":
        return x + (s_next - s) * d2
    return x + (s_next - s) * 0.5 * (d + d2)


@exercise("10", "karras_heun_step", points=2)
def karras_heun_step(t: Tester, fn):
    """Heun in σ: d = (x − D(x; σ))/σ, Euler to σ', d' at σ', average; Euler alone when σ' = 0."""
    mix = GaussianMixture(torch.tensor([[0.5, -1.0], [-1.0, 0.3]]), 0.4)
    D = ref.mixture_denoiser(mix)
    x = 3.0 * torch.randn(6, 2, dtype=torch.float64)
    counted = _Counted(D)
    out = t.call(fn, counted, x, 3.0, 1.5)
    t.tensor(out, shape=(6, 2), dtype=torch.float64, what="a Heun step of float64 points, σ = 3 → 1.5")
    t.check(len(counted.sigmas) == 2 and sorted(counted.sigmas) == [1.5, 3.0],
            "two denoiser calls, at σ and at σ'", f"called at σ = {counted.sigmas}",
            hint="Heun evaluates the slope at the start (σ) and at the end of the Euler step (σ')")
    wrong = {"that is Euler's step: Heun then evaluates the slope at the end of it and averages the two":
             _heun_wrong(D, x, 3.0, 1.5, "euler"),
             "the second slope belongs at the *end* of the step: D(x̃; σ'), divided by σ'":
             _heun_wrong(D, x, 3.0, 1.5, "same_sigma"),
             "average the two slopes, (d + d')/2: using d' alone is not second order":
             _heun_wrong(D, x, 3.0, 1.5, "end_slope")}
    diagnose(t, out, ref.karras_heun_step(D, x, 3.0, 1.5), "σ = 3 → 1.5 on Gaussian-mixture data", wrong,
             hint="d = (x − D(x, σ))/σ; x̃ = x + (σ' − σ) d; d' = (x̃ − D(x̃, σ'))/σ'; x + (σ' − σ)(d + d')/2",
             rtol=1e-9, atol=1e-12)
    # the last step: σ' = 0
    counted = _Counted(D)
    out = t.call(fn, counted, x, 0.2, 0.0)
    t.tensor(out, shape=(6, 2), what="the last step, σ = 0.2 → 0",
             )
    t.close(out, D(x, 0.2), "the last step to σ' = 0 is Euler's, which lands on D(x; σ)",
            hint="at σ' = 0 the slope (x − D)/σ' divides by zero: return the Euler step when sigma_next == 0",
            rtol=1e-9, atol=1e-12)
    t.check(len(counted.sigmas) == 1, "one denoiser call on the last step", f"called at σ = {counted.sigmas}",
            hint="skip the second slope when sigma_next == 0")
    # float32 images and a simple linear denoiser
    imgs = torch.randn(2, 1, 3, 3)
    lin = lambda y, sigma: 0.5 * y  # noqa: E731
    out = t.call(fn, lin, imgs, 10.0, 4.0)
    t.tensor(out, shape=(2, 1, 3, 3), dtype=torch.float32, what="a step of float32 images (2, 1, 3, 3)")
    t.close(out, ref.karras_heun_step(lin, imgs, 10.0, 4.0), "images, σ = 10 → 4: matches minidiff.samplers.karras_heun_step",
            rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- 4. DPM-Solver++(2M)


def _dpm_wrong(x, d, s, s_next, old, s_prev, mistake):
    h = math.log(s / s_next)
    r = math.log(s_prev / s) / h
    if mistake == "r_inverted":
        r = 1 / r
    if mistake == "r_in_sigma":
        r = (s_prev - s) / (s - s_next)
    if mistake == "no_half":
        d_hat = (1 + 1 / r) * d - (1 / r) * old
    elif mistake == "first_order":
        d_hat = d
    else:
        d_hat = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
    if mistake == "exp_h":
        return math.exp(h) * x - math.expm1(h) * d_hat
    return (s_next / s) * x + (1 - s_next / s) * d_hat


@exercise("10", "dpmpp_2m_update", points=3)
def dpmpp_2m_update(t: Tester, fn):
    """x' = (σ'/σ) x + (1 − σ'/σ) D̂, D̂ = (1 + 1/(2r)) D − 1/(2r) D_prev, r = (λ − λ_prev)/h, λ = −log σ."""
    x = torch.randn(5, 2) * 2.0
    d, old = torch.randn(5, 2), torch.randn(5, 2)
    # no history: DDIM / first order
    out = t.call(fn, x, d, 2.0, 0.5)
    t.tensor(out, shape=(5, 2), dtype=torch.float32, what="the first step (no history), float32 points")
    t.close(out, 0.25 * x + 0.75 * d, "without history: x' = (σ'/σ) x + (1 − σ'/σ) D, the DDIM / Euler step",
            hint="e^(−h) = σ'/σ with h = λ' − λ = log(σ/σ'); x' = (σ'/σ) x − (e^(−h) − 1) D", rtol=1e-5, atol=1e-6)
    # with history
    args = (x, d, 2.0, 0.5, old, 6.0)
    out = t.call(fn, *args)
    t.tensor(out, shape=(5, 2), dtype=torch.float32, what="a 2M step, float32 points")
    wrong = {k: _dpm_wrong(x, d, 2.0, 0.5, old, 6.0, m) for k, m in (
        ("r = h_last / h = (λ − λ_prev)/(λ' − λ): you have it upside down", "r_inverted"),
        ("r is a ratio of steps in λ = −log σ, not in σ: r = log(σ_prev/σ) / log(σ/σ')", "r_in_sigma"),
        ("D̂ = (1 + 1/(2r)) D − 1/(2r) D_prev: the ½ is missing (that extrapolates too far)", "no_half"),
        ("the history is ignored: with old_denoised given, use D̂ = (1 + 1/(2r)) D − 1/(2r) D_prev", "first_order"),
        ("the coefficient of x is e^(−h) = σ'/σ with h = λ' − λ > 0 (λ = −log σ): a sign is flipped", "exp_h"))}
    diagnose(t, out, ref.dpmpp_2m_update(*args), "σ_prev = 6, σ = 2 → σ' = 0.5 with history: the 2M update", wrong,
             hint="h = log(σ/σ'), r = log(σ_prev/σ)/h, D̂ = (1 + 1/(2r)) D − D_prev/(2r), x' = (σ'/σ) x + (1 − σ'/σ) D̂",
             rtol=1e-5, atol=1e-6)
    # a constant denoiser: D̂ = D whatever r
    out = t.call(fn, x, d, 2.0, 0.5, d.clone(), 6.0)
    t.close(out, 0.25 * x + 0.75 * d, "when D_prev = D the extrapolation changes nothing: D̂ = D",
            hint="D̂ = D + (D − D_prev)/(2r): the weights must add up to 1", rtol=1e-5, atol=1e-6)
    # the last step, to σ' = 0, even with history: D̂ = D (h is infinite)
    out = t.call(fn, x, d, 0.5, 0.0, old, 2.0)
    t.tensor(out, shape=(5, 2), what="the last step σ = 0.5 → 0 with history")
    t.close(out, d, "the last step to σ' = 0 returns D itself (first order: h = ∞, r = 0)",
            hint="at sigma_next == 0, log(σ/σ') is infinite: use D̂ = D there", rtol=1e-5, atol=1e-6)
    # images in float64, other levels
    imgs, di, oi = (torch.randn(2, 1, 3, 3, dtype=torch.float64) for _ in range(3))
    out = t.call(fn, imgs, di, 0.7, 0.3, oi, 1.1)
    t.tensor(out, shape=(2, 1, 3, 3), dtype=torch.float64, what="a 2M step of float64 images")
    t.close(out, ref.dpmpp_2m_update(imgs, di, 0.7, 0.3, oi, 1.1),
            "images, σ_prev = 1.1, σ = 0.7 → 0.3: matches minidiff.samplers.dpmpp_2m_update", rtol=1e-9, atol=1e-12)
