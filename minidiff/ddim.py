"""DDIM sampling (Song, Meng & Ermon 2020, "Denoising Diffusion Implicit Models") (lesson 05).

A model trained with L_simple only ever learned ε_θ(x_t, t); nothing forces us to undo the
forward process one step at a time. DDIM jumps from t to any earlier t_prev:

    x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t                                   (eq. 9)
    x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 − ᾱ_{t_prev} − σ²) ε_θ(x_t, t) + σ z          (eq. 12)
    σ = η · √((1 − ᾱ_{t_prev}) / (1 − ᾱ_t)) · √(1 − ᾱ_t / ᾱ_{t_prev})               (eq. 16)

η = 0: deterministic (the same x_T always gives the same image; few steps suffice).
η = 1 with t_prev = t − 1: exactly DDPM's ancestral step with σ_t² = β̃_t (tests check this).

Timesteps: `ddim_timesteps(T, steps)` spaces `steps` values evenly from T down to about T/steps;
the last jump goes to t_prev = 0, where ᾱ_0 = 1 and x_0 = x̂_0.
"""

from __future__ import annotations

from typing import Callable

import torch

from .forward import _float, _schedule
from .notebook import progress
from .sampling import _randn, _timesteps
from .schedules import extract


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
    """One DDIM jump x_t → x_{t_prev} (eqs. 9, 12, 16) for 0 ≤ t_prev < t ≤ T.

    eps: the ε prediction (tensor shaped like x_t) or the model, called as eps(x_t, t).
    clip_denoised = c clamps x̂_0 to [−c, c] and recomputes ε from it, so the step stays consistent.
    """
    s = _schedule(schedule)
    _float("x_t", x_t)
    t, t_prev = _timesteps(t, x_t), _timesteps(t_prev, x_t)
    if (t < 1).any() or (t > s.T).any() or (t_prev < 0).any() or (t_prev >= t).any():
        raise ValueError(f"need 0 ≤ t_prev < t ≤ T = {s.T}: DDIM jumps back in time")
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0 (0: deterministic DDIM, 1: DDPM-like), got {eta}")
    if callable(eps) and not isinstance(eps, torch.Tensor):
        eps = eps(x_t, t)
    if not isinstance(eps, torch.Tensor) or eps.shape != x_t.shape:
        raise ValueError(f"the ε prediction must be a tensor shaped like x_t {tuple(x_t.shape)}")
    abar = extract(s.alphas_cumprod, t, x_t)
    abar_prev = extract(s.alphas_cumprod, t_prev, x_t)
    x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()  # eq. 9
    if clip_denoised is not None:
        x0 = x0.clamp(-clip_denoised, clip_denoised)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()  # eq. 16
    x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps  # eq. 12
    if eta > 0:
        if noise is None:
            noise = _randn(x_t.shape, generator, x_t.device, x_t.dtype)
        x_prev = x_prev + sigma * noise
    return x_prev


@torch.no_grad()
def ddim_sample(
    eps_model: Callable,
    schedule,
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
    s = _schedule(schedule)
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = tuple(shape)
    ts = ddim_timesteps(s.T, steps)
    x = _randn(shape, generator, device)
    traj = [x.cpu()]
    for i in progress(range(len(ts)), desc="DDIM", disable=not show_progress, leave=False):
        t = torch.full((shape[0],), ts[i], device=device, dtype=torch.long)
        t_prev = torch.full_like(t, ts[i + 1] if i + 1 < len(ts) else 0)
        x = ddim_step(s, eps_model(x, t), x, t, t_prev, eta=eta, generator=generator, clip_denoised=clip_denoised)
        if return_trajectory:
            traj.append(x.cpu())
    if return_trajectory:
        return x, torch.stack(traj)
    return x
