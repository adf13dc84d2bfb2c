"""Image-to-image with a diffusion model: SDEdit, and denoising real noisy images (lesson 13).

SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential
Equations", §3): to turn a rough guide image x^g (a scribble, or a digit to be changed) into a realistic
one, noise it part of the way, to t_0 = s·T with a strength s ∈ (0, 1], and run the reverse chain from
there:

    x_{t_0} = √ᾱ_{t_0} x^g + √(1 − ᾱ_{t_0}) ε          (DDPM eq. 4)        then  x_{t_0} → ... → x_0

Small s keeps the guide (faithful, but a scribble stays a scribble); s = 1 forgets it (realistic, but
any digit). The paper's trade-off curve is realism against faithfulness as s sweeps.

Denoising: an image y = x + σ n with Gaussian noise of known std σ (n ~ N(0, I), pixels in [−1, 1])
*is* a diffusion state: x_t / √ᾱ_t = x_0 + σ_t ε (the σ view of lesson 10), so y is x_t / √ᾱ_t at the t
whose σ_t = √((1 − ᾱ_t)/ᾱ_t) equals σ. Then

    x_t = √ᾱ_t y,        x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t   (DDPM eq. 15)

is Tweedie's formula, the posterior mean E[x_0 | y] (Efron 2011): one network call, the best estimate in
mean squared error, hence the best PSNR, and blurry where the answer is uncertain. Running the reverse
chain from t instead draws a sample of p(x_0 | y): sharp, but it may invent a stroke.

    check_strength, sdedit_start, sdedit       SDEdit: noise the guide to s·T, then denoise (DDIM steps)
    matching_t                                 the integer t whose σ_t is nearest to σ
    tweedie_denoise, chain_denoise             one-step posterior mean; the reverse chain from t
    psnr                                       peak signal-to-noise ratio on the [−1, 1] scale
    draw_polyline                              a thick stroke drawn in code: SDEdit's guide
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .ddim import ddim_step, ddim_timesteps
from .forward import add_noise, predict_x0
from .samplers import sigmas_from_schedule
from .sampling import simulate
from .utils import check_float, check_image_range, check_positive_int, check_schedule, randn

# ---------------------------------------------------------------- SDEdit


def check_strength(strength) -> float:
    """The SDEdit strength s as a float in (0, 1]; a ValueError otherwise."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
        raise ValueError(f"strength must be a number in (0, 1] (t_0 = strength · T), got {strength!r}")
    return float(strength)


def sdedit_start(schedule, guide: torch.Tensor, strength: float, noise: torch.Tensor) -> tuple[torch.Tensor, int]:
    """SDEdit's starting point: t_0 = max(1, round(s·T)) and x_{t_0} = √ᾱ_{t_0} x^g + √(1 − ᾱ_{t_0}) ε.

    guide: images in [−1, 1]; noise: ε shaped like guide. Returns (x_{t_0}, t_0).
    """
    s = check_schedule(schedule)
    strength = check_strength(strength)
    check_image_range("guide", guide)
    t0 = max(1, int(round(strength * s.T)))
    return add_noise(s, guide, noise, t0), t0


def _levels_below(T: int, t0: int, steps: int) -> list[int]:
    """t0, then the levels of ddim_timesteps(T, steps) below it, then 0: a full-length chain cut at t0."""
    return [t0] + [t for t in ddim_timesteps(T, steps) if t < t0] + [0]


@torch.no_grad()
def sdedit(schedule, eps_model: Callable, guide: torch.Tensor, strength: float, steps: int = 50, eta: float = 0.0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """SDEdit: noise `guide` to t_0 = s·T (`sdedit_start`) and run DDIM (η = `eta`) down to t = 0.

    steps: the levels of the *whole* chain (T → 0); a strength s uses about s·steps of them.
    eps_model: any ε-model (e.g. `guidance.guided_model(net, y, w)` for a class-conditional edit).
    """
    s = check_schedule(schedule)
    check_positive_int("steps", steps)
    x, t0 = sdedit_start(s, guide, strength, randn(guide.shape, generator, guide.device, guide.dtype))

    def step(x, t, t_next):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        return ddim_step(s, eps_model(x, tt), x, tt, t_next, eta=eta, generator=generator)

    return simulate(step, x, _levels_below(s.T, t0, steps), desc="SDEdit")


# ---------------------------------------------------------------- denoising


def matching_t(schedule, sigma: float) -> int:
    """The t in 1..T whose σ_t = √((1 − ᾱ_t)/ᾱ_t) is nearest to σ (in log σ)."""
    s = check_schedule(schedule)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number (the noise std on the [-1, 1] scale), got {sigma!r}")
    sig = sigmas_from_schedule(s)[1:]
    return int((sig.log() - math.log(sigma)).abs().argmin()) + 1


def tweedie_denoise(schedule, eps_model: Callable, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x_0 | y] for y = x_0 + σ n in one network call (Tweedie's formula, DDPM eq. 15):
    t = matching_t(σ), x_t = √ᾱ_t y, x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t."""
    s = check_schedule(schedule)
    check_float("y", y)
    t = matching_t(s, sigma)
    x_t = math.sqrt(s.alphas_cumprod[t].item()) * y
    tt = torch.full((y.shape[0],), t, device=y.device, dtype=torch.long)
    with torch.no_grad():
        return predict_x0(s, x_t, tt, eps_model(x_t, tt))


@torch.no_grad()
def chain_denoise(schedule, eps_model: Callable, y: torch.Tensor, sigma: float, steps: int = 50, eta: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample of p(x_0 | y): x_t = √ᾱ_t y at t = matching_t(σ), then DDIM (η = 1: ancestral) down to 0."""
    s = check_schedule(schedule)
    check_float("y", y)
    t = matching_t(s, sigma)
    x = math.sqrt(s.alphas_cumprod[t].item()) * y

    def step(x, t, t_next):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        return ddim_step(s, eps_model(x, tt), x, tt, t_next, eta=eta, generator=generator)

    return simulate(step, x, _levels_below(s.T, t, steps), desc="denoising chain")


def psnr(x: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(range² / MSE) in dB (range 2 for [−1, 1] pixels)."""
    check_float("x", x)
    check_float("reference", reference)
    if x.shape != reference.shape:
        raise ValueError(f"x has shape {tuple(x.shape)} but reference has {tuple(reference.shape)}: they must match")
    mse = (x - reference).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp(min=1e-12))


def draw_polyline(points, size: int = 28, width: float = 1.6) -> torch.Tensor:
    """A white stroke of half-width `width` pixels through `points` [(row, col), ...] (pixel coordinates) on a
    black background: a (1, 1, size, size) float32 image in [−1, 1], edges softened over one pixel."""
    pts = torch.as_tensor(points, dtype=torch.float32)
    if pts.dim() != 2 or pts.shape[1] != 2 or pts.shape[0] < 2:
        raise ValueError(f"points must be at least two (row, col) pairs, got shape {tuple(pts.shape)}")
    rr, cc = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    p = torch.stack([rr, cc], -1).reshape(-1, 1, 2)  # (H·W, 1, 2)
    a, b = pts[:-1][None], pts[1:][None]  # each segment a → b
    ab = b - a
    u = (((p - a) * ab).sum(-1) / ab.pow(2).sum(-1).clamp(min=1e-9)).clamp(0, 1)  # nearest point on the segment
    dist = (p - (a + u[..., None] * ab)).norm(dim=-1).min(1).values.reshape(size, size)
    return ((width + 0.5 - dist).clamp(0, 1) * 2 - 1).reshape(1, 1, size, size)
