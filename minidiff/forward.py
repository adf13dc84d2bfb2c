"""The forward (noising) process q (lesson 02).

    q(x_t | x_{t−1}) = N(√α_t · x_{t−1}, β_t I)                       (DDPM eq. 2)
    q(x_t | x_0)     = N(√ᾱ_t · x_0, (1 − ᾱ_t) I)                     (DDPM eq. 4)
    q(x_{t−1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I)                   (DDPM eqs. 6–7)
        μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t
        β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t

Every function takes the schedule first, then tensors of shape (B, ...), then the
timesteps t: an int, or a LongTensor of shape (B,), one per batch element.
Variances come back as tensors shaped (B, 1, ...) that broadcast against x.
"""

from __future__ import annotations

import torch

from .schedules import NoiseSchedule, extract
from .utils import check_float, check_same_device, check_same_shape, check_schedule


def _at_least_1(t) -> None:
    # t = 0 is "no noise yet": there is no x_{−1} to step from or to condition on.
    if (torch.as_tensor(t) < 1).any():
        raise ValueError("this needs timesteps t ≥ 1 (t counts from 1 to T, as in the paper)")


def q_step(schedule: NoiseSchedule, x_prev: torch.Tensor, t, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One forward step, a sample of q(x_t | x_{t−1}) (DDPM eq. 2): √α_t x_{t−1} + √β_t ε, for t ≥ 1."""
    check_schedule(schedule)
    check_float("x_prev", x_prev)
    _at_least_1(t)
    noise = torch.randn_like(x_prev) if noise is None else check_float("noise", noise)
    check_same_shape("noise", noise, "x_prev", x_prev)
    check_same_device(x_prev, noise)
    # sqrt in float64 before extract casts to x's dtype (see add_noise)
    return extract(schedule.alphas.sqrt(), t, x_prev) * x_prev + extract(schedule.betas.sqrt(), t, x_prev) * noise


def q_mean_var(schedule: NoiseSchedule, x0: torch.Tensor, t):
    """Mean and variance of q(x_t | x_0) (DDPM eq. 4): (√ᾱ_t x_0, 1 − ᾱ_t)."""
    check_schedule(schedule)
    check_float("x0", x0)
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * x0, extract(1.0 - abar, t, x0)


def add_noise(schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """A sample of q(x_t | x_0) in one jump (DDPM eq. 4): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

    Named after diffusers' `scheduler.add_noise(original_samples, noise, timesteps)`
    (whose timesteps count from 0: their timestep i is our t = i + 1).
    """
    check_schedule(schedule)
    check_float("x0", x0)
    check_float("noise", noise)
    check_same_shape("noise", noise, "x0", x0)
    check_same_device(x0, noise)
    # 1 − ᾱ_t in float64 first: in float32, ᾱ_1 = 0.9999 keeps only ~3 digits of 1 − ᾱ_1.
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * x0 + extract((1.0 - abar).sqrt(), t, x0) * noise


def q_posterior_mean_var(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t):
    """Mean μ̃_t and variance β̃_t of q(x_{t−1} | x_t, x_0) (DDPM eqs. 6–7), for t ≥ 1.

    At t = 1, ᾱ_0 = 1 gives μ̃_1 = x_0 and β̃_1 = 0: knowing x_0, x_0 is certain.
    """
    check_schedule(schedule)
    check_float("x0", x0)
    check_float("x_t", x_t)
    check_same_shape("x0", x0, "x_t", x_t)
    check_same_device(x0, x_t)
    _at_least_1(t)
    coef_x0, coef_xt, var = _posterior_coefficients(schedule)
    return extract(coef_x0, t, x_t) * x0 + extract(coef_xt, t, x_t) * x_t, extract(var, t, x_t)


def _posterior_coefficients(s: NoiseSchedule):
    """The two coefficients of μ̃_t and β̃_t for every t = 1..T, in float64.

    Computed on the whole schedule before indexing by t, so that the cancellation in
    1 − ᾱ_t (ᾱ_1 = 0.9999) happens in float64 rather than in the images' float32.
    Entry 0 is unused (t ≥ 1); it is set to the t → 0 limit (μ̃ = x_0, β̃ = 0).
    """
    abar, abar_prev = s.alphas_cumprod[1:], s.alphas_cumprod[:-1]
    beta, alpha = s.betas[1:], s.alphas[1:]
    coef_x0 = abar_prev.sqrt() * beta / (1 - abar)
    coef_xt = alpha.sqrt() * (1 - abar_prev) / (1 - abar)
    var = (1 - abar_prev) / (1 - abar) * beta
    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    return torch.cat([one, coef_x0]), torch.cat([zero, coef_xt]), torch.cat([zero, var])


# -- from a noise prediction back to x_0, and the reverse variances ----------------------------


def predict_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """x̂_0 from x_t and the noise in it, DDPM eq. 4 solved for x_0 (DDPM eq. 15):

        x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t

    Coefficients are formed in float64 before `extract` casts them to x_t's dtype.
    """
    check_schedule(schedule)
    check_float("x_t", x_t)
    check_float("eps", eps)
    check_same_shape("x_t", x_t, "eps", eps)
    abar = schedule.alphas_cumprod
    return extract(1 / abar.sqrt(), t, x_t) * x_t - extract(((1 - abar) / abar).sqrt(), t, x_t) * eps


def predict_mean_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """The reverse mean of an ε-model (DDPM eq. 11), for t in 1..T:

        μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) · ε) / √α_t

    With the true noise ε it equals the posterior mean μ̃_t(x_t, x_0) of DDPM eq. 7.
    """
    check_schedule(schedule)
    x_t, eps = check_float("x_t", x_t), check_float("eps", eps)
    check_same_shape("x_t", x_t, "eps", eps)
    _at_least_1(t)
    s = schedule
    # 1 − ᾱ_t in float64 first: in float32, ᾱ_1 = 0.9999 leaves ~3 digits of 1 − ᾱ_1.
    eps_coef = torch.zeros_like(s.betas)
    eps_coef[1:] = s.betas[1:] / (1 - s.alphas_cumprod[1:]).sqrt()
    return (x_t - extract(eps_coef, t, x_t) * eps) / extract(s.alphas.sqrt(), t, x_t)


SIGMA2_KINDS = ("beta", "beta_tilde")


def reverse_variances(schedule: NoiseSchedule, sigma2="beta") -> torch.Tensor:
    """σ_t² of the reverse step p_θ(x_{t−1} | x_t) for t = 0..T (float64, length T + 1; entry 0 is 0).

    "beta":        σ_t² = β_t, optimal when x_0 ~ N(0, I) (DDPM §3.2).
    "beta_tilde":  σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (DDPM eq. 7), optimal when x_0 is
                   one point (diffusers' "fixed_small"). β̃_1 = 0 would make the decoder
                   p_θ(x_0 | x_1) a delta, so σ_1² = β_1 here; samplers add no noise at t = 1 anyway.
    a tensor:      your own σ_t², length T + 1, returned as float64.
    """
    check_schedule(schedule)
    if isinstance(sigma2, torch.Tensor):
        sigma2 = sigma2.detach().to("cpu", torch.float64).flatten()
        if sigma2.numel() != schedule.T + 1:
            raise ValueError(f"sigma2 must hold T + 1 = {schedule.T + 1} values (σ_0² .. σ_T²), got {sigma2.numel()}")
        if not torch.isfinite(sigma2[1:]).all() or (sigma2[1:] <= 0).any():
            raise ValueError("sigma2[1:] must be positive, finite variances (σ_t² for t = 1..T)")
        return sigma2
    if sigma2 == "beta":
        return schedule.betas.clone()
    if sigma2 == "beta_tilde":
        abar = schedule.alphas_cumprod
        out = torch.zeros_like(schedule.betas)
        out[1:] = (1 - abar[:-1]) / (1 - abar[1:]) * schedule.betas[1:]
        out[1] = schedule.betas[1]
        return out
    raise ValueError(f"sigma2 must be one of {SIGMA2_KINDS} or a tensor of T + 1 variances, got {sigma2!r}")
