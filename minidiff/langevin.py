"""Sampling with a score: Langevin dynamics, annealed Langevin, predictor–corrector (lesson 07).

Unadjusted Langevin dynamics (Welling & Teh 2011; Song & Ermon 2019, §2.2), with step size δ:

    x_{k+1} = x_k + (δ/2) ∇_x log p(x_k) + √δ z_k,     z_k ~ N(0, I)

Convention: δ multiplies the *noise variance*; the drift gets δ/2 (Song & Ermon write ε/2 and
√ε, the same). Song et al. 2021's code writes x + ε ∇log p + √(2ε) z: the same update with
ε = δ/2. As δ → 0 and k → ∞ the x_k are distributed as p; in practice a finite chain only
explores the mode it started near.

Annealed Langevin (Song & Ermon 2019, Algorithm 1) runs the chain on a sequence of noised
densities q_{σ_1}, …, q_{σ_L} with σ_1 > … > σ_L, n steps each, with step sizes

    δ_i = ε · σ_i² / σ_L²                                  (Song & Ermon 2019, Algorithm 1, line 3)

so that every level takes steps of the same size relative to its own noise.

Predictor–corrector (Song et al. 2021, Algorithm 1 with the VP corrector of Algorithm 5):
a DDPM ancestral step x_t → x_{t−1} (the predictor), then Langevin steps at level t − 1
whose size follows the signal-to-noise rule  ‖(δ/2) s‖ / ‖√δ z‖ = r  (the corrector).

An ε-model is read as a score through DDPM eq. 4: ∇ log q(x_t | x_0) = −ε / √(1 − ᾱ_t), so
s_θ(x_t, t) = −ε_θ(x_t, t) / √(1 − ᾱ_t) (`score.eps_to_score`).

All three samplers are a `step` driven by `sampling.simulate`. Every function is shape-generic:
x may be (B, 2) points or (B, C, H, W) images.
"""

from __future__ import annotations

from typing import Callable

import torch

from .sampling import ddpm_step, simulate
from .utils import batch_shape, check_float, check_positive_int, check_schedule, randn

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
    """One unadjusted Langevin step (Song & Ermon 2019, §2.2):  x + (δ/2) · score + √δ · z,  z ~ N(0, I).

    x, score: tensors of the same shape (score = ∇ log p evaluated at x).
    step_size: δ > 0, a float or a tensor broadcastable against x (e.g. (B, 1) per row).
    noise: the z to use (shaped like x); drawn from `generator` when None.
    """
    check_float("x", x)
    check_float("score", score)
    if score.shape != x.shape:
        raise ValueError(f"score has shape {tuple(score.shape)} but x has {tuple(x.shape)}: score must be ∇ log p at x")
    step_size = _check_step("step_size", step_size)
    if noise is None:
        noise = randn(x.shape, generator, x.device, x.dtype)
    elif noise.shape != x.shape:
        raise ValueError(f"noise must be shaped like x {tuple(x.shape)}, got {tuple(noise.shape)}")
    root = step_size.sqrt() if isinstance(step_size, torch.Tensor) else step_size**0.5
    return x + 0.5 * step_size * score + root * noise


def langevin_sample(
    score_fn: Callable,
    x0: torch.Tensor,
    steps: int,
    step_size,
    generator: torch.Generator | None = None,
    return_trajectory: bool = False,
    trajectory_stride: int = 1,
):
    """Run `steps` Langevin steps (Song & Ermon 2019, §2.2) from x0 with a fixed step size δ.

    score_fn: any callable score_fn(x) -> ∇ log p(x), shaped like x (an exact score such as
        `GaussianMixture.score`, or `lambda x: model(x, sigma)`).
    Returns x after `steps` steps, or (x, trajectory) with trajectory of shape
    (K, *x0.shape) on the CPU: x0, every `trajectory_stride`-th state, and the last one.
    The chain is detached after every step: no autograd graph builds up.
    """
    check_float("x0", x0)
    check_positive_int("steps", steps, allow_zero=True)

    def step(x, k, k_next):
        return langevin_step(x, score_fn(x), step_size, generator).detach()

    return simulate(step, x0.detach(), list(range(steps + 1)), return_trajectory=return_trajectory,
                    trajectory_stride=trajectory_stride, desc="Langevin")


# ---------------------------------------------------------------- annealed Langevin


def _levels_from(sigmas, timesteps):
    """(noise variances σ_i², model conditioning per level, ᾱ per level or None) for a VE list
    of noise levels or a VP schedule."""
    if hasattr(sigmas, "alphas_cumprod"):
        s = check_schedule(sigmas)
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
    sigmas,
    score_model: Callable,
    shape,
    steps_each: int = 100,
    step_lr: float = 2e-5,
    device=None,
    generator: torch.Generator | None = None,
    x_init: torch.Tensor | None = None,
    denoise: bool = True,
    timesteps=None,
    return_trajectory: bool = False,
    show_progress: bool = False,
):
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1): for i = 1..L, run `steps_each`
    Langevin steps on the level-i noised density with δ_i = ε σ_i²/σ_L².

    Two kinds of levels:
    * `sigmas` a decreasing 1-D sequence σ_1 > … > σ_L (VE, NCSN): `score_model(x, sigma)` is
      called with sigma a float tensor (B,). Default start: x ~ N(0, σ_1² I).
    * `sigmas` a `NoiseSchedule` (VP, DDPM): `score_model` is an ε-model eps_model(x_t, t), read
      as the score −ε_θ/√(1 − ᾱ_t) of q_t; levels are `timesteps` (decreasing ints in
      1..T; default every ⌈T/100⌉-th from T down to 1) and σ_t² = 1 − ᾱ_t. Default start: N(0, I).
    step_lr: ε of Algorithm 1.  denoise: finish with Tweedie's formula at the last level,
      x ← x + σ_L² s(x, σ_L) (VE) or x̂_0 = (x + (1 − ᾱ_t) s)/√ᾱ_t (VP), which removes the
      noise of the last level (Song & Ermon 2020; Jolicoeur-Martineau et al. 2021).
    return_trajectory: also return the states before level 1 and after each level,
      a CPU tensor of shape (L + 1, *shape) (before the final denoising).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = batch_shape(shape)
    check_positive_int("steps_each", steps_each)
    _check_step("step_lr", step_lr)
    var, cond, abar = _levels_from(sigmas, timesteps)
    vp = abar is not None
    B = shape[0]

    def score_at(x, i):
        c = cond[i].to(device).expand(B)
        if vp:
            return -score_model(x, c) / var[i].sqrt()  # the ε-model read as a score
        return score_model(x, c)

    def step(x, i, i_next):  # `steps_each` Langevin steps at level i
        delta = step_lr * (var[i] / var[-1]).item()  # Song & Ermon 2019, Algorithm 1, line 3
        for _ in range(steps_each):
            x = langevin_step(x, score_at(x, i), delta, generator)
        return x

    if x_init is None:
        x = randn(shape, generator, device) * (1.0 if vp else var[0].sqrt().item())
    else:
        check_float("x_init", x_init)
        if tuple(x_init.shape) != shape:
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}, expected {shape}")
        x = x_init.to(device)
    out = simulate(step, x, list(range(len(var) + 1)), return_trajectory=return_trajectory,
                   show_progress=show_progress, desc="annealed Langevin")
    x, traj = out if return_trajectory else (out, None)
    if denoise:
        x = x + var[-1].item() * score_at(x, len(var) - 1)  # Tweedie: E[x_0 | x] (VE) or √ᾱ E[x_0 | x_t] (VP)
        if vp:
            x = x / abar[-1].sqrt().item()
    return (x, traj) if return_trajectory else x


# ---------------------------------------------------------------- predictor–corrector

def snr_step_size(score: torch.Tensor, noise: torch.Tensor, snr: float, alpha=1.0) -> torch.Tensor:
    """The corrector's step size δ from the signal-to-noise rule (Song et al. 2021, Algorithm 5):

        δ = 4 α (r ‖z‖ / ‖s‖)²,  so that  ‖(δ/2) s‖ / ‖√δ z‖ = r  (with α = 1),

    norms taken per sample over all data dimensions and averaged over the batch. (Their
    ε = 2α(r‖z‖/‖s‖)² in x + ε s + √(2ε) z; our δ = 2ε in the update above.) α = α_t for VP.
    Returns a 0-dim tensor.
    """
    s_norm = score.flatten(1).norm(dim=1).mean()
    z_norm = noise.flatten(1).norm(dim=1).mean()
    return 4.0 * alpha * (snr * z_norm / s_norm.clamp_min(1e-12)) ** 2


@torch.no_grad()
def pc_sample(
    schedule,
    eps_model: Callable,
    shape,
    device=None,
    corrector_steps: int = 1,
    snr: float = 0.16,
    generator: torch.Generator | None = None,
    sigma2: str = "beta",
    return_trajectory: bool = False,
    show_progress: bool = False,
):
    """Predictor–corrector sampling for DDPM (Song et al. 2021, Algorithms 1 and 5, VP SDE).

    x_T ~ N(0, I); for t = T, …, 1:
        predictor: x ← ddpm_step(x, t)  (Algorithm 2 of Ho et al.; lands on level t − 1)
        corrector (if t − 1 ≥ 1), `corrector_steps` times:
            s = −ε_θ(x, t−1)/√(1 − ᾱ_{t−1}),  z ~ N(0, I),
            δ = snr_step_size(s, z, snr, α_{t−1}),  x ← x + (δ/2) s + √δ z
    corrector_steps = 0 is exactly `ddpm_sample` (same σ_t² default, same random numbers).
    Costs (1 + corrector_steps) network calls per step.
    return_trajectory: also return x_T, …, x_0 (after each corrector), CPU, (T + 1, *shape).
    """
    s = check_schedule(schedule)
    device = torch.device(device) if device is not None else torch.device("cpu")
    shape = batch_shape(shape)
    check_positive_int("corrector_steps", corrector_steps, allow_zero=True)
    if not snr > 0:
        raise ValueError(f"snr must be positive (Song et al. use 0.16 for images), got {snr!r}")

    def step(x, t, t_next):
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        x = ddpm_step(s, eps_model(x, tt), x, tt, generator=generator, sigma2=sigma2)  # 1. predictor
        if t_next >= 1:  # 2. corrector at level t − 1
            sigma = (1.0 - s.alphas_cumprod[t_next]).sqrt().item()
            for _ in range(corrector_steps):
                score = -eps_model(x, tt - 1) / sigma
                z = randn(x.shape, generator, device, x.dtype)
                delta = snr_step_size(score, z, snr, s.alphas[t_next].item())
                x = langevin_step(x, score, delta, noise=z)
        return x

    x_T = randn(shape, generator, device)
    return simulate(step, x_T, list(range(s.T, -1, -1)), return_trajectory=return_trajectory,
                    show_progress=show_progress, desc="PC sampling")
