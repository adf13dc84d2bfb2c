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


def _same_device(*tensors: torch.Tensor) -> None:
    devices = {x.device for x in tensors if isinstance(x, torch.Tensor)}
    if len(devices) > 1:
        raise ValueError(f"tensors are on different devices {sorted(map(str, devices))}: move them with .to(device)")


def _float(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}: use {name}.float()")
    return x


def _schedule(schedule) -> NoiseSchedule:
    # Duck-typed, so that a schedule made before an importlib.reload still works.
    if not all(hasattr(schedule, a) for a in ("betas", "alphas", "alphas_cumprod")):
        raise TypeError(
            f"schedule must be a minidiff NoiseSchedule, got {type(schedule).__name__}: "
            "make one with NoiseSchedule.make('linear', T)"
        )
    return schedule


def _same_shape(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {tuple(a.shape)} but {b_name} has {tuple(b.shape)}: they must match")


def _at_least_1(t) -> None:
    # t = 0 is "no noise yet": there is no x_{−1} to step from or to condition on.
    if (torch.as_tensor(t) < 1).any():
        raise ValueError("this needs timesteps t ≥ 1 (t counts from 1 to T, as in the paper)")


def q_step(schedule: NoiseSchedule, x_prev: torch.Tensor, t, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One forward step, a sample of q(x_t | x_{t−1}) (eq. 2): √α_t x_{t−1} + √β_t ε, for t ≥ 1."""
    _schedule(schedule)
    _float("x_prev", x_prev)
    _at_least_1(t)
    noise = torch.randn_like(x_prev) if noise is None else _float("noise", noise)
    _same_shape("noise", noise, "x_prev", x_prev)
    _same_device(x_prev, noise)
    # sqrt in float64 before extract casts to x's dtype (see add_noise)
    return extract(schedule.alphas.sqrt(), t, x_prev) * x_prev + extract(schedule.betas.sqrt(), t, x_prev) * noise


def q_mean_var(schedule: NoiseSchedule, x0: torch.Tensor, t):
    """Mean and variance of q(x_t | x_0) (eq. 4): (√ᾱ_t x_0, 1 − ᾱ_t)."""
    _schedule(schedule)
    _float("x0", x0)
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * x0, extract(1.0 - abar, t, x0)


def add_noise(schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t) -> torch.Tensor:
    """A sample of q(x_t | x_0) in one jump (eq. 4): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

    Named after diffusers' `scheduler.add_noise(original_samples, noise, timesteps)`
    (whose timesteps count from 0: their timestep i is our t = i + 1).
    """
    _schedule(schedule)
    _float("x0", x0)
    _float("noise", noise)
    _same_shape("noise", noise, "x0", x0)
    _same_device(x0, noise)
    # 1 − ᾱ_t in float64 first: in float32, ᾱ_1 = 0.9999 keeps only ~3 digits of 1 − ᾱ_1.
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * x0 + extract((1.0 - abar).sqrt(), t, x0) * noise


def q_posterior_mean_var(schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t):
    """Mean μ̃_t and variance β̃_t of q(x_{t−1} | x_t, x_0) (eqs. 6–7), for t ≥ 1.

    At t = 1, ᾱ_0 = 1 gives μ̃_1 = x_0 and β̃_1 = 0: knowing x_0, x_0 is certain.
    """
    _schedule(schedule)
    _float("x0", x0)
    _float("xt", xt)
    _same_shape("x0", x0, "xt", xt)
    _same_device(x0, xt)
    _at_least_1(t)
    coef_x0, coef_xt, var = _posterior_coefficients(schedule)
    return extract(coef_x0, t, xt) * x0 + extract(coef_xt, t, xt) * xt, extract(var, t, xt)


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
