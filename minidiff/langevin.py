"""Sampling with a score: Langevin dynamics, annealed Langevin, predictor–corrector (lesson 07).

Unadjusted Langevin dynamics (Welling & Teh 2011; Song & Ermon 2019, eq. 4), with step size δ:

    x_{k+1} = x_k + (δ/2) ∇_x log p(x_k) + √δ z_k,     z_k ~ N(0, I)                  (eq. 7.1)

Convention: δ multiplies the *noise variance*; the drift gets δ/2. (Song et al. 2021's code
writes x + ε ∇log p + √(2ε) z: the same update with ε = δ/2.) As δ → 0 and k → ∞ the
x_k are distributed as p; in practice a finite chain only explores the mode it started near.

Annealed Langevin (Song & Ermon 2019, Algorithm 1) runs the chain on a sequence of noised
densities q_{σ_1}, …, q_{σ_L} with σ_1 > … > σ_L, n steps each, with step sizes

    δ_i = ε · σ_i² / σ_L²                                                           (eq. 7.4)

so that every level takes steps of the same size relative to its own noise.

Predictor–corrector (Song et al. 2021, Algorithm 1 with the VP corrector of Algorithm 5):
a DDPM ancestral step x_t → x_{t−1} (the predictor), then Langevin steps at level t − 1
whose size follows the signal-to-noise rule  ‖(δ/2) s‖ / ‖√δ z‖ = r  (the corrector, eq. 7.5).

Every function is shape-generic: x may be (B, 2) points or (B, C, H, W) images.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from .forward import _float, _schedule
from .notebook import progress
from .sampling import _batch_shape, _randn, ddpm_sample, ddpm_step
from .schedules import NoiseSchedule

# ---------------------------------------------------------------- plain Langevin


def _check_step(name: str, step) -> torch.Tensor | float:
    if isinstance(step, torch.Tensor):
        if not step.is_floating_point() or (step <= 0).any():
            raise ValueError(f"{name} must be positive (a float or a float tensor), got {step}")
        return step
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
        raise ValueError(f"{name} must be a positive float, got {step!r}")
    return float(step)


def langevin_step(
    x: torch.Tensor,
    score: torch.Tensor,
    step_size,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One unadjusted Langevin step (eq. 7.1):  x + (δ/2) · score + √δ · z,  z ~ N(0, I).

    x, score: tensors of the same shape (score = ∇ log p evaluated at x).
    step_size: δ > 0, a float or a tensor broadcastable against x (e.g. (B, 1) per row).
    noise: the z to use (shaped like x); drawn from `generator` when None.
    """
    _float("x", x)
    _float("score", score)
    if score.shape != x.shape:
        raise ValueError(f"score has shape {tuple(score.shape)} but x has {tuple(x.shape)}: score must be ∇ log p at x")
    step_size = _check_step("step_size", step_size)
    if noise is None:
        noise = _randn(x.shape, generator, x.device, x.dtype)
    elif noise.shape != x.shape:
        raise ValueError(f"noise must be shaped like x {tuple(x.shape)}, got {tuple(noise.shape)}")
    root = step_size.sqrt() if isinstance(step_size, torch.Tensor) else step_size**0.5
    return x + 0.5 * step_size * score + root * noise


def langevin_sample(
    score_fn: Callable,
    x0: torch.Tensor,
    n_steps: int,
    step_size,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    trajectory_stride: int = 1,
):
    """Run `n_steps` Langevin steps (eq. 7.1) from x0 with a fixed step size δ.

    score_fn: any callable score_fn(x) -> ∇ log p(x), shaped like x (an exact score such as
        `GaussianMixture.score`, or `lambda x: model(x, sigma)`).
    Returns x after n_steps, or (x, trajectory) with trajectory of shape
    (1 + n_steps // trajectory_stride, *x0.shape) on the CPU, starting with x0.
    The chain is detached after every step: no autograd graph builds up.
    """
    _float("x0", x0)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}")
    x = x0.detach()
    traj = [x.cpu()]
    for k in range(1, n_steps + 1):
        x = langevin_step(x, score_fn(x), step_size, generator).detach()
        if return_trajectory and k % trajectory_stride == 0:
            traj.append(x.cpu())
    return (x, torch.stack(traj)) if return_trajectory else x


# ---------------------------------------------------------------- annealed Langevin


def _levels_from(sigmas, timesteps, device):
    """(noise variances σ_i², model conditioning per level) for a VE list or a VP schedule."""
    if isinstance(sigmas, NoiseSchedule) or hasattr(sigmas, "alphas_cumprod"):
        s = _schedule(sigmas)
        if timesteps is None:
            stride = max(1, s.T // 100)
            timesteps = list(range(s.T, 0, -stride))
            timesteps += [] if timesteps[-1] == 1 else [1]
        ts = torch.as_tensor(timesteps, dtype=torch.long).flatten()
        if ts.numel() < 1 or (ts < 1).any() or (ts > s.T).any() or (ts[1:] >= ts[:-1]).any():
            raise ValueError(f"timesteps must be decreasing integers in 1..T = 1..{s.T}")
        var = (1.0 - s.alphas_cumprod[ts]).float()  # σ_t² = 1 − ᾱ_t of q(x_t | x_0)
        return var, ts, s.alphas_cumprod[ts].float()
    sig = torch.as_tensor(sigmas, dtype=torch.float32).flatten()
    if sig.numel() < 1 or (sig <= 0).any() or (sig[1:] >= sig[:-1]).any():
        raise ValueError("sigmas must be a 1-D sequence of positive, strictly decreasing noise levels σ_1 > … > σ_L")
    return sig**2, sig, None


@torch.no_grad()
def annealed_langevin_sample(
    score_model: Callable,
    sigmas,
    shape,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    device=None,
    generator: torch.Generator | None = None,
    x_init: torch.Tensor | None = None,
    denoise: bool = True,
    timesteps=None,
    return_trajectory: bool = False,
    show_progress: bool = False,
):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): for i = 1..L, run
    `n_steps_each` steps of eq. 7.1 on the level-i noised density with δ_i = ε σ_i²/σ_L² (eq. 7.4).

    Two kinds of levels:
    * `sigmas` a decreasing 1-D sequence σ_1 > … > σ_L (VE, NCSN): `score_model(x, sigma)` is
      called with sigma a float tensor (B,). Default start: x ~ N(0, σ_1² I).
    * `sigmas` a `NoiseSchedule` (VP, DDPM): `score_model` is an ε-model eps_model(x_t, t), read
      as the score −ε_θ/√(1 − ᾱ_t) of q_t (eq. 6.9); levels are `timesteps` (decreasing ints in
      1..T; default every ⌈T/100⌉-th from T down to 1) and σ_t² = 1 − ᾱ_t. Default start: N(0, I).
    step_lr: ε of eq. 7.4.  denoise: finish with Tweedie's formula at the last level,
      x ← x + σ_L² s(x, σ_L) (VE) or x̂_0 = (x + (1 − ᾱ_t) s)/√ᾱ_t (VP), which removes the
      noise of the last level (Song & Ermon 2020; Jolicoeur-Martineau et al. 2021).
    return_trajectory: also return the states before level 1 and after each level,
      a CPU tensor of shape (L + 1, *shape) (before the final denoising).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = _batch_shape(shape)
    if isinstance(n_steps_each, bool) or not isinstance(n_steps_each, int) or n_steps_each < 1:
        raise ValueError(f"n_steps_each must be a positive int, got {n_steps_each!r}")
    _check_step("step_lr", step_lr)
    var, cond, abar = _levels_from(sigmas, timesteps, device)
    vp = abar is not None
    B = shape[0]

    def score_at(x, i):
        c = cond[i].to(device).expand(B)
        if vp:
            return -score_model(x, c) / var[i].sqrt()  # eq. 6.9
        return score_model(x, c)

    if x_init is None:
        x = _randn(shape, generator, device) * (1.0 if vp else var[0].sqrt().item())
    else:
        _float("x_init", x_init)
        if tuple(x_init.shape) != shape:
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {shape}")
        x = x_init.to(device)
    traj = [x.cpu()]
    for i in progress(range(len(var)), desc="annealed Langevin", disable=not show_progress, leave=False):
        delta = step_lr * (var[i] / var[-1]).item()  # eq. 7.4
        for _ in range(n_steps_each):
            x = langevin_step(x, score_at(x, i), delta, generator)
        if return_trajectory:
            traj.append(x.cpu())
    if denoise:
        x = x + var[-1].item() * score_at(x, len(var) - 1)  # Tweedie: E[x_0 | x] (VE) or √ᾱ E[x_0 | x_t] (VP)
        if vp:
            x = x / abar[-1].sqrt().item()
    return (x, torch.stack(traj)) if return_trajectory else x


# ---------------------------------------------------------------- predictor–corrector

# The predictor uses the same reverse variance as lesson 04's sampler, so that n_corrector = 0
# reproduces `ddpm_sample` exactly (read from its signature, so the two cannot drift apart).
DDPM_VARIANCE = inspect.signature(ddpm_sample).parameters["variance"].default


def snr_step_size(score: torch.Tensor, noise: torch.Tensor, snr: float, alpha=1.0) -> torch.Tensor:
    """The corrector's step size δ from the signal-to-noise rule (eq. 7.5; Song et al. 2021, Algorithm 5):

        δ = 4 α (r ‖z‖ / ‖s‖)²,  so that  ‖(δ/2) s‖ / ‖√δ z‖ = r  (with α = 1),

    norms taken per sample over all data dimensions and averaged over the batch. (Their
    ε = 2α(r‖z‖/‖s‖)² in x + ε s + √(2ε) z; our δ = 2ε in eq. 7.1.) α = α_t for VP.
    Returns a 0-dim tensor.
    """
    s_norm = score.flatten(1).norm(dim=1).mean()
    z_norm = noise.flatten(1).norm(dim=1).mean()
    return 4.0 * alpha * (snr * z_norm / s_norm.clamp_min(1e-12)) ** 2


@torch.no_grad()
def pc_sample(
    eps_model: Callable,
    schedule,
    shape,
    device=None,
    n_corrector: int = 1,
    snr: float = 0.16,
    generator: torch.Generator | None = None,
    variance: str = DDPM_VARIANCE,
    return_trajectory: bool = False,
    show_progress: bool = False,
):
    """Predictor–corrector sampling for DDPM (Song et al. 2021, Algorithms 1 and 5, VP SDE).

    x_T ~ N(0, I); for t = T, …, 1:
        predictor: x ← ddpm_step(x, t)  (Algorithm 2 of Ho et al.; lands on level t − 1)
        corrector (if t − 1 ≥ 1), `n_corrector` times:
            s = −ε_θ(x, t−1)/√(1 − ᾱ_{t−1})  (eq. 6.9),  z ~ N(0, I),
            δ = snr_step_size(s, z, snr, α_{t−1}),  x ← x + (δ/2) s + √δ z  (eq. 7.1)
    n_corrector = 0 is exactly `ddpm_sample` (same `variance` default, same random numbers).
    Costs (1 + n_corrector) network calls per step.
    return_trajectory: also return x_T, …, x_0 (after each corrector), CPU, (T + 1, *shape).
    """
    s = _schedule(schedule)
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = _batch_shape(shape)
    if isinstance(n_corrector, bool) or not isinstance(n_corrector, int) or n_corrector < 0:
        raise ValueError(f"n_corrector must be a non-negative int, got {n_corrector!r}")
    if not snr > 0:
        raise ValueError(f"snr must be positive (Song et al. use 0.16 for images), got {snr!r}")
    x = _randn(shape, generator, device)  # x_T ~ N(0, I)
    traj = [x.cpu()]
    for t in progress(range(s.T, 0, -1), desc="PC sampling", disable=not show_progress, leave=False):
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        x = ddpm_step(s, eps_model(x, tt), x, tt, generator=generator, variance=variance)
        if t > 1:
            t_prev = tt - 1
            sigma = (1.0 - s.alphas_cumprod[t - 1]).sqrt().item()
            for _ in range(n_corrector):
                score = -eps_model(x, t_prev) / sigma  # eq. 6.9
                z = _randn(x.shape, generator, device, x.dtype)
                delta = snr_step_size(score, z, snr, s.alphas[t - 1].item())
                x = langevin_step(x, score, delta, noise=z)
        if return_trajectory:
            traj.append(x.cpu())
    return (x, torch.stack(traj)) if return_trajectory else x
