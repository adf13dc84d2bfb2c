"""Latent diffusion: encode → diffuse → decode (lesson 15; Rombach et al. 2022).

    training   z_0 = s · μ(x)            (the frozen autoencoder's posterior mean, no gradient)
               loss = v_loss(schedule, v_θ, z_0)      (lesson 05's recipe, unchanged, on z instead of x)
    sampling   z_0 ~ DDIM(ε_θ) from z_T ~ N(0, I)     (any sampler of the course)
               x = D(z_0 / s)                          (decode, clip to [−1, 1])

s is the scale factor of `minidiff.autoencoder.latent_scale`: the forward process
x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε is designed for data of about unit variance, and s makes the
latents so.

Contents: `encode_latents`, `decode_latents`, `latent_loss`, `latent_sample`,
`check_autoencoder_match` (a latent model's card names the sha256 of its autoencoder).
"""

from __future__ import annotations

from typing import Callable

import torch

from .autoencoder import Autoencoder
from .ddim import ddim_step, ddim_timesteps
from .sampling import simulate
from .utils import batch_shape, check_float, check_schedule, randn
from .vpred import v_loss


def _check_scale(scale) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"scale must be a positive number (the latent scale factor), got {scale!r}")
    return float(scale)


@torch.no_grad()
def encode_latents(autoencoder: Autoencoder, x: torch.Tensor, scale: float = 1.0, batch_size: int = 1000) -> torch.Tensor:
    """z_0 = scale · μ(x) for images x (N, C, H, W), in batches, without gradients."""
    scale = _check_scale(scale)
    check_float("x", x)
    return torch.cat([autoencoder.encode(x[i:i + batch_size])[0] * scale for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def decode_latents(autoencoder: Autoencoder, z: torch.Tensor, scale: float = 1.0, batch_size: int = 1000) -> torch.Tensor:
    """x = D(z / scale), clipped to the image range [−1, 1], in batches, without gradients."""
    scale = _check_scale(scale)
    check_float("z", z)
    return torch.cat([autoencoder.decode(z[i:i + batch_size] / scale).clamp(-1, 1) for i in range(0, z.shape[0], batch_size)])


def latent_loss(schedule, model: Callable, x0: torch.Tensor, generator: torch.Generator | None = None, *,
                autoencoder: Autoencoder, scale: float, loss: Callable = v_loss) -> torch.Tensor:
    """The diffusion loss of images x0 (B, C, H, W) in latent space: encode with the frozen
    autoencoder (posterior mean, no gradient), multiply by `scale`, then `loss` (default
    `minidiff.vpred.v_loss`) on the latents. `functools.partial(latent_loss, schedule,
    autoencoder=ae, scale=s)` is a `loss_fn` for `minidiff.training.train`."""
    scale = _check_scale(scale)
    check_float("x0", x0)
    with torch.no_grad():
        z0 = autoencoder.encode(x0)[0] * scale  # 1. z_0 = s · μ(x_0), no gradient into the autoencoder
    return loss(schedule, model, z0, generator)  # 2. the pixel-space loss, on z_0


@torch.no_grad()
def latent_sample(schedule, eps_model: Callable, autoencoder: Autoencoder, scale: float, shape, steps: int = 50,
                  eta: float = 0.0, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Images from a latent diffusion model: DDIM (`steps` jumps, `eta`) on latents of `shape`
    (B, c, h, w) from z_T ~ N(0, I), then x = D(z_0 / scale) clipped to [−1, 1]."""
    s = check_schedule(schedule)
    scale = _check_scale(scale)
    shape = batch_shape(shape)
    if len(shape) != 4 or shape[1] != autoencoder.latent_channels:
        raise ValueError(f"shape must be latents (B, {autoencoder.latent_channels}, h, w), got {shape}")
    device = torch.device(device) if device is not None else torch.device("cpu")

    def step(z, t, t_prev):  # 1. one DDIM jump on the latents
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        return ddim_step(s, eps_model(z, tt), z, tt, t_prev, eta=eta, generator=generator)

    z_T = randn(shape, generator, device)  # 2. z_T ~ N(0, I)
    z0 = simulate(step, z_T, ddim_timesteps(s.T, steps) + [0])  # 3. z_T → z_0
    return autoencoder.decode(z0 / scale).clamp(-1, 1)  # 4. x = D(z_0 / s)


def check_autoencoder_match(latent_card: dict, autoencoder_card: dict) -> None:
    """Refuse a latent diffusion model paired with an autoencoder other than the one it was
    trained on: its card records that autoencoder's sha256 ("autoencoder": {"sha256": ...})."""
    want = (latent_card.get("autoencoder") or {}).get("sha256")
    got = autoencoder_card.get("sha256")
    if not want:
        raise ValueError(f"the card of {latent_card.get('name', 'this latent model')!r} names no autoencoder sha256: "
                         "it is not a latent diffusion checkpoint")
    if want != got:
        raise ValueError(f"{latent_card.get('name', 'this latent model')!r} was trained on the latents of the autoencoder "
                         f"with sha256 {want[:16]}…, but {autoencoder_card.get('name', 'this autoencoder')!r} hashes to "
                         f"{str(got)[:16]}…: its latents mean something else. Load the autoencoder named in the card "
                         f"({(latent_card.get('autoencoder') or {}).get('name', '?')}).")
