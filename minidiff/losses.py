"""DDPM's training objective, L_simple (lesson 04; the U-Net of lesson 05 trains on it too).

    L_simple(θ) = E_{t, x_0, ε} ‖ ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t) ‖²      (DDPM eq. 14)

with t ~ Uniform{1..T}, x_0 ~ data, ε ~ N(0, I): Algorithm 1 of Ho et al. (2020).
We average over the coordinates as well as the batch (`F.mse_loss`), which only
divides the paper's sum by the data dimension.

A loss takes (schedule, model, x0, generator); `functools.partial(ddpm_loss, schedule)` is the
(model, batch, generator) function that `training.train` expects.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .forward import add_noise
from .utils import check_float, check_prediction, check_schedule, randint, randn


def sample_timesteps(schedule, batch_size: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """t ~ Uniform{1, ..., T}, a LongTensor of shape (batch_size,) (Algorithm 1, line 3)."""
    return randint(schedule.T + 1, (batch_size,), generator, device, low=1)


def ddpm_loss(schedule, eps_model: Callable, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """L_simple (DDPM eq. 14; Algorithm 1, lines 2–5) on one batch x0 of shape (B, ...).

    t ~ U{1..T}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4), loss = mean (ε − ε_θ(x_t, t))².
    Returns a scalar tensor; gradients flow into eps_model.
    """
    check_schedule(schedule)
    check_float("x0", x0)
    if x0.dim() < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must be a batch of shape (B, ...) with B ≥ 1, got {tuple(x0.shape)}")
    t = sample_timesteps(schedule, x0.shape[0], x0.device, generator)  # 1. t ~ U{1..T}
    noise = randn(x0.shape, generator, x0.device, x0.dtype)  # 2. ε ~ N(0, I)
    x_t = add_noise(schedule, x0, noise, t)  # 3. x_t (DDPM eq. 4)
    eps = check_prediction("eps_model(x_t, t)", eps_model(x_t, t), x_t)
    return F.mse_loss(eps, noise)  # 4. ‖ε − ε_θ‖² (DDPM eq. 14)
