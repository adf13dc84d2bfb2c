"""The one sampling loop, and DDPM's reverse step (lesson 04; every later sampler plugs in).

Every sampler in minidiff is a `step` function driven by `simulate`, as in MIT 6.S184's
`Simulator.simulate` and diffusers' `scheduler.step`:

    x = x_T
    for (t, t_next) in consecutive pairs of `timesteps`:
        x = step(x, t, t_next)

DDPM (here), DDIM (`ddim`), annealed Langevin and predictor–corrector (`langevin`) and
guided sampling (`guidance`) differ only in their timesteps and their `step`.

DDPM's step is Algorithm 2 of Ho et al. (2020): x_T ~ N(0, I), then for t = T, ..., 1

    x_{t−1} = 1/√α_t · ( x_t − β_t / √(1 − ᾱ_t) · ε_θ(x_t, t) ) + σ_t z,   z ~ N(0, I)   (Algorithm 2, line 4)

with z = 0 at t = 1 (the last step returns the mean), and σ_t² one of

    "beta":        σ_t² = β_t                                      (DDPM §3.2; the default)
    "beta_tilde":  σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t    (DDPM eq. 7; diffusers' "fixed_small")

(`forward.reverse_variances` holds both tables). The mean is DDPM eq. 11; with clipping it is the
posterior mean μ̃_t(x̂_0, x_t) of DDPM eq. 7 at the model's x̂_0 (DDPM eq. 15), clamped to the
data range. Both are the same number when nothing is clipped.

Shape-generic: x_t may be (B, 2) points or (B, C, H, W) images, and `eps_model` is any callable
`eps_model(x_t, t) -> tensor shaped like x_t`, t a LongTensor (B,) in 1..T.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .forward import predict_mean_from_eps, predict_x0, q_posterior_mean_var, reverse_variances
from .schedules import extract
from .utils import batch_shape, check_float, check_prediction, check_schedule, check_timesteps, progress, randn


def simulate(step: Callable, x: torch.Tensor, timesteps: Sequence, *, return_trajectory: bool = False,
             trajectory_stride: int = 1, show_progress: bool = False, desc: str = "sampling"):
    """The one sampling loop: x ← step(x, t, t_next) for each consecutive pair of `timesteps`.

    timesteps: the times (ints for DDPM/DDIM, noise levels for annealed Langevin), first to last.
    return_trajectory: also return the states as a CPU tensor (K, *x.shape): the start, every
        `trajectory_stride`-th state after it, and always the last one.
    """
    if trajectory_stride < 1:
        raise ValueError(f"trajectory_stride must be ≥ 1, got {trajectory_stride}")
    n = len(timesteps) - 1
    traj = [x.cpu()] if return_trajectory else []
    for i in progress(range(n), desc=desc, disable=not show_progress, leave=False):
        x = step(x, timesteps[i], timesteps[i + 1])
        if return_trajectory and ((i + 1) % trajectory_stride == 0 or i + 1 == n):
            traj.append(x.cpu())
    return (x, torch.stack(traj)) if return_trajectory else x


def ddpm_step(
    schedule,
    eps,
    x_t: torch.Tensor,
    t,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    sigma2: str = "beta",
    clip_denoised: float | None = None,
) -> torch.Tensor:
    """One reverse step x_t → x_{t−1} (Algorithm 2, line 4).

    eps:      the model's ε prediction (a tensor shaped like x_t), or the model itself,
              a callable eps(x_t, t) that is then called with t as a LongTensor (B,).
    t:        an int in 1..T (the whole batch at one step) or a LongTensor (B,).
    noise:    the z to add (shaped like x_t); drawn from `generator` when None.
              Rows with t = 1 get no noise (z = 0), as in Algorithm 2.
    sigma2:   "beta" (σ_t² = β_t, the default) or "beta_tilde" (σ_t² = β̃_t).
    clip_denoised: if set, clamp x̂_0 to [−c, c] before forming the mean (c = 1 for images).
    """
    s = check_schedule(schedule)
    check_float("x_t", x_t)
    t = check_timesteps(t, x_t, 1, s.T)
    if callable(eps) and not isinstance(eps, torch.Tensor):
        eps = eps(x_t, t)
    check_prediction("the ε prediction", eps, x_t)
    # 1. the mean of p_θ(x_{t−1} | x_t)
    if clip_denoised is None:
        mean = predict_mean_from_eps(s, x_t, t, eps)  # DDPM eq. 11
    else:
        x0 = predict_x0(s, x_t, t, eps).clamp(-clip_denoised, clip_denoised)  # DDPM eq. 15, clipped
        mean, _ = q_posterior_mean_var(s, x0, x_t, t)  # DDPM eq. 7
    # 2. add σ_t z, except at t = 1
    if noise is None:
        noise = randn(x_t.shape, generator, x_t.device, x_t.dtype)
    elif noise.shape != x_t.shape:
        raise ValueError(f"noise must be shaped like x_t {tuple(x_t.shape)}, got {tuple(noise.shape)}")
    sigma = extract(reverse_variances(s, sigma2), t, x_t).sqrt()
    last = (t == 1).reshape(-1, *([1] * (x_t.dim() - 1)))
    return mean + torch.where(last, torch.zeros_like(sigma), sigma) * noise


def trajectory_timesteps(T: int, stride: int = 1) -> list[int]:
    """The t of each saved state in `ddpm_sample(..., return_trajectory=True)`: T, T−stride, ..., 0."""
    ts = list(range(T, -1, -stride))
    return ts if ts[-1] == 0 else ts + [0]


@torch.no_grad()
def ddpm_sample(
    schedule,
    eps_model: Callable,
    shape,
    device=None,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    sigma2: str = "beta",
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
    s = check_schedule(schedule)
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = batch_shape(shape)

    def step(x, t, t_next):
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        return ddpm_step(s, eps_model(x, tt), x, tt, generator=generator, sigma2=sigma2, clip_denoised=clip_denoised)

    x_T = randn(shape, generator, device)
    return simulate(step, x_T, list(range(s.T, -1, -1)), return_trajectory=return_trajectory,
                    trajectory_stride=trajectory_stride, show_progress=show_progress)
