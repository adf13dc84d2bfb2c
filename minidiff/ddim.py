"""DDIM sampling (Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models") (lesson 05).

A model trained with L_simple only ever learned ε_θ(x_t, t); nothing forces us to undo the
forward process one step at a time. DDIM jumps from t to any earlier t_prev:

    x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t                                   (DDIM eq. 9)
    x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 − ᾱ_{t_prev} − σ²) ε_θ(x_t, t) + σ z          (DDIM eq. 12)
    σ = η · √((1 − ᾱ_{t_prev}) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_{t_prev})               (DDIM eq. 16)

η = 0: deterministic (the same x_T always gives the same image; few steps suffice).
η = 1 with t_prev = t − 1: exactly DDPM's ancestral step with σ_t² = β̃_t (tests check this).

Timesteps: `ddim_timesteps(T, steps)` spaces `steps` values evenly from T down to about T/steps;
the last jump goes to t_prev = 0, where ᾱ_0 = 1 and x_0 = x̂_0.
"""

from __future__ import annotations

from typing import Callable

import torch

from .forward import predict_x0
from .sampling import simulate
from .schedules import extract
from .utils import batch_shape, check_float, check_prediction, check_schedule, check_timesteps, randn


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """`steps` timesteps T = τ_1 > τ_2 > ... > τ_S ≥ 1, evenly spaced: τ_i = round(T − (i − 1)·T/S).
    With steps = T this is T, T−1, ..., 1 (every step)."""
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in 1..T = 1..{T}, got {steps!r}")
    return [int(round(T - i * T / steps)) for i in range(steps)]


def ddim_step(
    schedule,
    eps,
    x_t: torch.Tensor,
    t,
    t_prev,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_denoised: float | None = None,
) -> torch.Tensor:
    """One DDIM jump x_t → x_{t_prev} (DDIM eqs. 9, 12, 16) for 0 ≤ t_prev < t ≤ T.

    eps: the ε prediction (tensor shaped like x_t) or the model, called as eps(x_t, t).
    clip_denoised = c clamps x̂_0 to [−c, c] and recomputes ε from it, so the step stays consistent.
    """
    s = check_schedule(schedule)
    check_float("x_t", x_t)
    t, t_prev = check_timesteps(t, x_t), check_timesteps(t_prev, x_t)
    if (t < 1).any() or (t > s.T).any() or (t_prev < 0).any() or (t_prev >= t).any():
        raise ValueError(f"need 0 ≤ t_prev < t ≤ T = {s.T}: DDIM jumps back in time")
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0 (0: deterministic DDIM, 1: DDPM-like), got {eta}")
    if callable(eps) and not isinstance(eps, torch.Tensor):
        eps = eps(x_t, t)
    check_prediction("the ε prediction", eps, x_t)
    abar = extract(s.alphas_cumprod, t, x_t)
    abar_prev = extract(s.alphas_cumprod, t_prev, x_t)
    # 1. the predicted x_0 (DDIM eq. 9), optionally clipped, with ε made consistent with it
    x0 = predict_x0(s, x_t, t, eps)
    if clip_denoised is not None:
        x0 = x0.clamp(-clip_denoised, clip_denoised)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    # 2. the noise scale σ (DDIM eq. 16)
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    # 3. x_{t_prev} = √ᾱ_{t_prev} x̂_0 + "direction pointing to x_t" + σ z (DDIM eq. 12)
    x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        if noise is None:
            noise = randn(x_t.shape, generator, x_t.device, x_t.dtype)
        x_prev = x_prev + sigma * noise
    return x_prev


@torch.no_grad()
def ddim_sample(
    schedule,
    eps_model: Callable,
    shape,
    steps: int = 50,
    eta: float = 0.0,
    device=None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    clip_denoised: float | None = None,
    show_progress: bool = False,
):
    """x_T ~ N(0, I), then DDIM jumps through `ddim_timesteps(T, steps)` and finally to t = 0.

    Same interface as `minidiff.sampling.ddpm_sample`: eps_model(x_t, t) with t a LongTensor (B,).
    return_trajectory: also return the steps + 1 states x_T, ..., x_0 as a CPU tensor
    (steps + 1, *shape) — a short trajectory, handy for animations.
    """
    s = check_schedule(schedule)
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = batch_shape(shape)

    def step(x, t, t_prev):
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        return ddim_step(s, eps_model(x, tt), x, tt, t_prev, eta=eta, generator=generator, clip_denoised=clip_denoised)

    x_T = randn(shape, generator, device)
    return simulate(step, x_T, ddim_timesteps(s.T, steps) + [0], return_trajectory=return_trajectory,
                    show_progress=show_progress, desc="DDIM")
