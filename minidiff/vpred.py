"""v-prediction and min-SNR-γ loss weights: the recipe of the shipped MNIST U-Nets (lesson 05's recipe section).

DDPM's network predicts the noise ε. Salimans & Ho (2022, "Progressive Distillation", §4 and
Appendix D) predict the "velocity" instead, a rotation of (x_0, ε) by the angle φ_t with
cos φ_t = √ᾱ_t, sin φ_t = √(1 − ᾱ_t):

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε          (DDPM eq. 4)
    v_t = √ᾱ_t ε − √(1 − ᾱ_t) x_0          (the velocity dx_t/dφ_t)

The two are an orthonormal pair, so each of (x_0, ε) is read back from (x_t, v):

    x_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v           ε = √(1 − ᾱ_t) x_t + √ᾱ_t v

Near t = T an ε-model must output almost exactly x_t (ε ≈ x_t when ᾱ_T ≈ 0), and x̂_0 =
(x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t divides its tiny error by √ᾱ_t ≈ 0. A v-model's target there is
−x_0, a well-posed job, and its x̂_0 has no division. benchmarks/recipes.md measures the gain.

Min-SNR-γ (Hang et al. 2023, eq. 8): weight each timestep's x_0-error by min(SNR_t, γ) so that
the many easy, high-SNR steps stop dominating the gradient. A v-loss already weighs the x_0-error
by SNR_t + 1, so its min-SNR weight is min(SNR_t, γ) / (SNR_t + 1).

`EpsFromV` wraps a v-model as an ε-model: every sampler of the course (DDPM, DDIM, guidance)
then uses it unchanged.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .forward import add_noise
from .losses import sample_timesteps
from .schedules import extract
from .utils import check_float, check_prediction, check_schedule, check_timesteps, randn


def velocity(schedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v_t = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022, §4); diffusers calls it `get_velocity`."""
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * noise - extract((1.0 - abar).sqrt(), t, x0) * x0


def eps_from_v(schedule, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ε̂ = √(1 − ᾱ_t) x_t + √ᾱ_t v̂: what a v-model's output means to an ε-sampler."""
    abar = schedule.alphas_cumprod
    return extract((1.0 - abar).sqrt(), t, x_t) * x_t + extract(abar.sqrt(), t, x_t) * v


def x0_from_v(schedule, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v̂."""
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x_t) * x_t - extract((1.0 - abar).sqrt(), t, x_t) * v


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction: str = "v") -> torch.Tensor:
    """Min-SNR-γ loss weight (Hang et al. 2023, eq. 8) for an ε-loss, min(SNR, γ)/SNR, or a
    v-loss, min(SNR, γ)/(SNR + 1): both equal min(SNR, γ) on the x_0-error."""
    clipped = snr.clamp(max=gamma)
    return clipped / snr if prediction == "eps" else clipped / (snr + 1.0)


def v_loss(schedule, v_model: Callable, x0: torch.Tensor, generator: torch.Generator | None = None,
           min_snr_gamma: float | None = None) -> torch.Tensor:
    """The v-prediction loss on one batch x0 (B, ...): mean over the batch of w_t ‖v_t − v_θ(x_t, t)‖²,
    w_t = 1, or the min-SNR-γ weight when `min_snr_gamma` is set. The same draws as `ddpm_loss`."""
    check_schedule(schedule)
    check_float("x0", x0)
    t = sample_timesteps(schedule, x0.shape[0], x0.device, generator)  # 1. t ~ U{1..T}
    noise = randn(x0.shape, generator, x0.device, x0.dtype)  # 2. ε ~ N(0, I)
    x_t = add_noise(schedule, x0, noise, t)  # 3. x_t (DDPM eq. 4)
    v = check_prediction("v_model(x_t, t)", v_model(x_t, t), x_t)
    per_image = F.mse_loss(v, velocity(schedule, x0, noise, t), reduction="none").flatten(1).mean(1)  # 4. ‖v − v_θ‖²
    if min_snr_gamma is not None:  # 5. min-SNR-γ weights (Hang et al. 2023, eq. 8)
        per_image = per_image * min_snr_weight(schedule.snr.to(x0.device)[t], min_snr_gamma).to(per_image)
    return per_image.mean()


class EpsFromV(torch.nn.Module):
    """A v-prediction network seen as an ε-model: forward(x_t, t, *args) = eps_from_v(v_net(x_t, t, *args)).
    `net` stays reachable (e.g. for its weights); `num_classes` is passed through for guidance."""

    def __init__(self, net: torch.nn.Module, schedule):
        super().__init__()
        check_schedule(schedule)
        self.net, self.schedule = net, schedule
        self.num_classes = getattr(net, "num_classes", None)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        t = check_timesteps(t, x_t)
        v = check_prediction("the v-network's output", self.net(x_t, t, *args, **kwargs), x_t)
        return eps_from_v(self.schedule, x_t, v, t)
