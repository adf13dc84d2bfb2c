"""DDPM ancestral sampling (lesson 04; reused by lessons 05 and 08).

Algorithm 2 of Ho et al. (2020): x_T ~ N(0, I), then for t = T, ..., 1

    x_{t−1} = 1/√α_t · ( x_t − β_t / √(1 − ᾱ_t) · ε_θ(x_t, t) ) + σ_t z,   z ~ N(0, I)   (line 4)

with z = 0 at t = 1 (the last step returns the mean), and σ_t² one of

    "beta":        σ_t² = β_t                                  (DDPM §3.2; the default)
    "beta_tilde":  σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t  (eq. 7; diffusers' "fixed_small")

Ho et al. found both give similar samples. β_t is the default here because it is also the
default of lesson 03's bound (`elbo.vlb_terms(sigma2="beta")`), and on the 2D toys it gives
the much better ELBO (lesson 04).

The mean is the posterior mean μ̃_t(x̂_0, x_t) of eq. 7 evaluated at the model's guess
x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ) / √ᾱ_t (eq. 11 rearranged). Both forms are the same
number; the second allows clipping x̂_0 to the data range (images live in [-1, 1]).

Shape-generic: x_t may be (B, 2) points or (B, C, H, W) images, and `eps_model` is any
callable `eps_model(x_t, t) -> tensor shaped like x_t` with t a LongTensor (B,) in 1..T
(a network, an EMA copy, a classifier-free-guidance wrapper, an exact score).
"""

from __future__ import annotations

from typing import Callable

import torch

from .forward import _float, _schedule
from .notebook import progress
from .schedules import extract

VARIANCES = ("beta", "beta_tilde")


def _batch_shape(shape) -> tuple:
    """`shape` as a tuple whose first entry, the batch size, is positive (every sampler's x_T)."""
    shape = tuple(shape)
    if not shape or shape[0] < 1:
        raise ValueError(f"shape must start with a positive batch size, got {shape}")
    return shape


def _randn(shape, generator: torch.Generator | None, device, dtype=torch.float32) -> torch.Tensor:
    # Draw on the generator's device, then move: results then depend only on the seed,
    # and a CPU generator still works for CUDA sampling.
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def _timesteps(t, x_t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, device=x_t.device)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps (torch.long), got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(x_t.shape[0])
    if t.shape != (x_t.shape[0],):
        raise ValueError(f"t must be an int or have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
    return t.long()


def posterior_variance(schedule, t, x_t: torch.Tensor, variance: str = "beta") -> torch.Tensor:
    """σ_t² of the reverse step, shaped (B, 1, ...): β_t ("beta") or β̃_t ("beta_tilde", eq. 7)."""
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    beta = extract(schedule.betas, t, x_t)
    if variance == "beta":
        return beta
    abar_t = extract(schedule.alphas_cumprod, t, x_t)
    abar_prev = extract(schedule.alphas_cumprod, t - 1, x_t)
    return (1 - abar_prev) / (1 - abar_t) * beta


def predict_x0(schedule, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t: eq. 4 solved for x_0."""
    abar = extract(schedule.alphas_cumprod, _timesteps(t, x_t), x_t)
    return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


def ddpm_step(
    schedule,
    eps,
    x_t: torch.Tensor,
    t,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    variance: str = "beta",
    clip_denoised: float | None = None,
) -> torch.Tensor:
    """One reverse step x_t → x_{t−1} (Algorithm 2, line 4).

    eps:      the model's ε prediction (a tensor shaped like x_t), or the model itself,
              a callable eps(x_t, t) that is then called with t as a LongTensor (B,).
    t:        an int in 1..T (the whole batch at one step) or a LongTensor (B,).
    noise:    the z to add (shaped like x_t); drawn from `generator` when None.
              Rows with t = 1 get no noise (z = 0), as in Algorithm 2.
    variance: "beta" (σ_t² = β_t, the default) or "beta_tilde" (σ_t² = β̃_t, diffusers' "fixed_small").
    clip_denoised: if set, clamp x̂_0 to [−c, c] before forming the mean (c = 1 for images).
    """
    s = _schedule(schedule)
    _float("x_t", x_t)
    t = _timesteps(t, x_t)
    if (t < 1).any() or (t > s.T).any():
        raise ValueError(f"t must lie in 1..T = 1..{s.T}; got min {int(t.min())}, max {int(t.max())}")
    if callable(eps) and not isinstance(eps, torch.Tensor):
        eps = eps(x_t, t)
    if not isinstance(eps, torch.Tensor) or eps.shape != x_t.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"the ε prediction must be a tensor shaped like x_t {tuple(x_t.shape)}, got {got}")
    alpha = extract(s.alphas, t, x_t)
    beta = extract(s.betas, t, x_t)
    abar = extract(s.alphas_cumprod, t, x_t)
    if clip_denoised is None:
        mean = (x_t - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()  # Algorithm 2, line 4
    else:
        x0 = ((x_t - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-clip_denoised, clip_denoised)
        abar_prev = extract(s.alphas_cumprod, t - 1, x_t)
        mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0 + (alpha.sqrt() * (1 - abar_prev) / (1 - abar)) * x_t  # eq. 7
    if noise is None:
        noise = _randn(x_t.shape, generator, x_t.device, x_t.dtype)
    elif noise.shape != x_t.shape:
        raise ValueError(f"noise must be shaped like x_t {tuple(x_t.shape)}, got {tuple(noise.shape)}")
    sigma = posterior_variance(s, t, x_t, variance).sqrt()
    last = (t == 1).reshape(-1, *([1] * (x_t.dim() - 1)))
    return mean + torch.where(last, torch.zeros_like(sigma), sigma) * noise


def trajectory_timesteps(T: int, stride: int = 1) -> list[int]:
    """The t of each saved state in `ddpm_sample(..., return_trajectory=True)`: T, T−stride, ..., 0."""
    ts = list(range(T, -1, -stride))
    return ts if ts[-1] == 0 else ts + [0]


@torch.no_grad()
def ddpm_sample(
    eps_model: Callable,
    schedule,
    shape,
    device=None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    variance: str = "beta",
    clip_denoised: float | None = None,
    trajectory_stride: int = 1,
    show_progress: bool = False,
):
    """Algorithm 2: x_T ~ N(0, I), then T reverse steps `ddpm_step`; returns x_0 of `shape`.

    eps_model: any callable eps_model(x_t, t) with t a LongTensor (B,) (B = shape[0]).
    generator: makes the samples reproducible (its device may differ from `device`).
    return_trajectory: also return the states x_T, ..., x_0 as a CPU tensor of shape
        (len(trajectory_timesteps(T, stride)), *shape), keeping every `trajectory_stride`-th
        state (use a stride for images: T × B × C × H × W floats add up quickly).
    """
    s = _schedule(schedule)
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = _batch_shape(shape)
    if trajectory_stride < 1:
        raise ValueError(f"trajectory_stride must be ≥ 1, got {trajectory_stride}")
    x = _randn(shape, generator, device)  # x_T ~ N(0, I)
    keep = set(trajectory_timesteps(s.T, trajectory_stride)) if return_trajectory else set()
    traj = [x.cpu()] if s.T in keep else []
    for t in progress(range(s.T, 0, -1), desc="sampling", disable=not show_progress, leave=False):
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        x = ddpm_step(s, eps_model(x, tt), x, tt, generator=generator, variance=variance, clip_denoised=clip_denoised)
        if t - 1 in keep:
            traj.append(x.cpu())
    if return_trajectory:
        return x, torch.stack(traj)
    return x
