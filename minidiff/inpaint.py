"""Inpainting with an unconditional diffusion model: replacement and RePaint's resampling (lesson 13).

We know some pixels of an image x (where the mask m is 1) and want the rest. A model trained on whole
images knows nothing about masks, yet it can fill the hole: run the reverse chain, and at every step
overwrite the known pixels with the *original* noised to the same t (DDPM eq. 4),

    x_{t_prev} ← m ⊙ (√ᾱ_{t_prev} x + √(1 − ᾱ_{t_prev}) ε)  +  (1 − m) ⊙ x_{t_prev}^{model}      (replacement)

(the "replacement" method: Song et al. 2021 use it for imputation; Lugmayr et al. 2022, §4.1).
The known part then always has the right marginal, but the unknown part was drawn from p(x_{t_prev} | x_t)
where x_t held *another* noise draw of the known pixels: the two halves never see each other's noise,
and the result is often inharmonious (a stroke that stops at the mask's edge).

RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic Models",
§4.2) harmonises them by *resampling*: after a step t → t_prev, diffuse the merged image
back up with the forward process and redo the step, r times. Jumping back j steps at once
(`jump_length`) lets the model see the merged image at a higher noise level. Going up from t to t' > t
is one forward jump of the Markov chain (DDPM eq. 2 composed):

    q(x_{t'} | x_t) = N(√(ᾱ_{t'}/ᾱ_t) x_t, (1 − ᾱ_{t'}/ᾱ_t) I)

Everything is a `step(x, t, t_next)` over `minidiff.sampling.simulate`; the down steps are DDIM's
(`minidiff.ddim.ddim_step`) with η = 1 by default, i.e. DDPM's ancestral step on a respaced
schedule, so that few steps (50 instead of T = 1000) suffice; RePaint's resampling is only a
different list of timesteps that goes up as well as down.

    check_mask                          argument check: a {0, 1} mask shaped like the images
    make_mask                           the lesson's masks: centre, half, random, stripe
    replace_known                       the known pixels noised to t, merged into x
    forward_jump                        q(x_{t'} | x_t) for t' > t
    repaint_timesteps                   the time list of RePaint (resamples r, jump length j)
    repaint_step                        one step of the list: down (reverse step + replacement) or up (forward jump)
    inpaint                             the whole sampler over `simulate`
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .ddim import ddim_step, ddim_timesteps
from .forward import add_noise
from .sampling import simulate
from .utils import check_float, check_image_range, check_positive_int, check_schedule, randn

MASKS = ("centre", "half", "random", "stripe")


# ---------------------------------------------------------------- arguments


def check_mask(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The mask as a float tensor in x's dtype: 1 where the pixel is known, 0 where it is to be filled.

    mask: bool, or float holding only 0 and 1, shaped like x (B, C, H, W) or like one image (1, C, H, W)
    (then shared by the batch).
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(f"mask must be bool or float (1 = known, 0 = to fill), got {mask.dtype}: use mask.bool()")
    if mask.dim() != x.dim() or mask.shape[1:] != x.shape[1:] or mask.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask must be shaped like the images {tuple(x.shape)} (or (1, {', '.join(map(str, x.shape[1:]))})), "
                         f"got {tuple(mask.shape)}")
    if mask.is_floating_point() and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must hold only 0 (to fill) and 1 (known); threshold a soft mask with mask > 0.5")
    return mask.to(device=x.device, dtype=x.dtype)


def make_mask(kind: str, size: int = 28, fraction: float = 0.5, generator: torch.Generator | None = None,
              n: int = 1) -> torch.Tensor:
    """A (n, 1, size, size) float mask, 1 = known pixel:

    "centre": a centred square hole covering about `fraction` of the pixels;
    "half":   the bottom half unknown (the top half is known);
    "random": each pixel unknown with probability `fraction` (its own draw for each of the n masks);
    "stripe": a horizontal band of rows through the middle unknown, about `fraction` of the rows.
    """
    if kind not in MASKS:
        raise ValueError(f"kind must be one of {MASKS}, got {kind!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    m = torch.ones(n, 1, size, size)
    if kind == "centre":
        side = int(round(size * math.sqrt(fraction)))
        lo = (size - side) // 2
        m[..., lo:lo + side, lo:lo + side] = 0
    elif kind == "half":
        m[..., size // 2:, :] = 0
    elif kind == "random":
        m = (torch.rand(n, 1, size, size, generator=generator) >= fraction).float()
    else:
        rows = int(round(size * fraction))
        lo = (size - rows) // 2
        m[..., lo:lo + rows, :] = 0
    return m


# ---------------------------------------------------------------- the two moves


def replace_known(schedule, x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor, t, noise: torch.Tensor) -> torch.Tensor:
    """m ⊙ x_known,t + (1 − m) ⊙ x with x_known,t = √ᾱ_t known + √(1 − ᾱ_t) noise (DDPM eq. 4); t = 0 puts
    the known pixels back exactly (ᾱ_0 = 1)."""
    mask = check_mask(mask, x)
    return mask * add_noise(schedule, known, noise, t) + (1 - mask) * x


def forward_jump(schedule, x_t: torch.Tensor, t, t_next, noise: torch.Tensor) -> torch.Tensor:
    """A sample of q(x_{t_next} | x_t) for t_next > t: √(ᾱ_{t_next}/ᾱ_t) x_t + √(1 − ᾱ_{t_next}/ᾱ_t) noise."""
    s = check_schedule(schedule)
    check_float("x_t", x_t)
    if not 0 <= t < t_next <= s.T:
        raise ValueError(f"a forward jump needs 0 ≤ t < t_next ≤ T = {s.T}, got t = {t}, t_next = {t_next}")
    ratio = (s.alphas_cumprod[t_next] / s.alphas_cumprod[t]).item()  # in float64, then a Python float
    return math.sqrt(ratio) * x_t + math.sqrt(1 - ratio) * noise


# ---------------------------------------------------------------- RePaint's time list


def repaint_timesteps(T: int, steps: int, resamples: int = 1, jump_length: int = 1) -> list[int]:
    """The times that RePaint visits (Lugmayr et al. 2022, §4.2): `ddim_timesteps(T, steps) + [0]` walked
    down, and at every `jump_length`-th level (counted from the end, t = 0 excluded) a jump back up
    `jump_length` levels followed by the walk down again, `resamples − 1` times.

    resamples = 1 is the plain list (the replacement method). A down move costs one network call, so the
    list has steps + (resamples − 1) · jump_length · (number of jump points) down moves.
    """
    check_positive_int("steps", steps)
    check_positive_int("resamples", resamples)
    check_positive_int("jump_length", jump_length)
    levels = ddim_timesteps(T, steps) + [0]
    S = len(levels) - 1
    jumps = {p: resamples - 1 for p in range(jump_length, S, jump_length) if (S - p) % jump_length == 0}
    out, p = [levels[0]], 0
    while p < S:
        p += 1
        out.append(levels[p])
        if jumps.get(p, 0) > 0:
            jumps[p] -= 1
            for _ in range(jump_length):
                p -= 1
                out.append(levels[p])
    return out


# ---------------------------------------------------------------- the step and the sampler


def repaint_step(schedule, eps_model: Callable, x: torch.Tensor, t: int, t_next: int, known: torch.Tensor,
                 mask: torch.Tensor, eta: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """One move along the time list.

    t_next < t (down): 1. the reverse step x_t → x_{t_next} (DDIM eqs. 9, 12, 16; η = 1 is DDPM's ancestral
                          step on the respaced schedule), then
                       2. the replacement: known pixels ← the original noised to t_next (DDPM eq. 4).
    t_next > t (up):   RePaint's resampling: a draw of q(x_{t_next} | x_t), the forward process.
    """
    if t_next > t:
        return forward_jump(schedule, x, t, t_next, randn(x.shape, generator, x.device, x.dtype))
    tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    x = ddim_step(schedule, eps_model(x, tt), x, tt, t_next, eta=eta, generator=generator)
    return replace_known(schedule, x, known, mask, t_next, randn(x.shape, generator, x.device, x.dtype))


@torch.no_grad()
def inpaint(schedule, eps_model: Callable, known: torch.Tensor, mask: torch.Tensor, steps: int = 50,
            resamples: int = 1, jump_length: int = 1, eta: float = 1.0, generator: torch.Generator | None = None,
            return_trajectory: bool = False):
    """Fill the pixels where mask = 0, keeping those where mask = 1 (equal to `known` at the end).

    known: (B, C, H, W) images in [−1, 1] (the values under mask = 0 are never read);
    mask:  bool or {0, 1} float, shaped like `known` or (1, C, H, W);
    steps: levels of the respaced chain; resamples = r and jump_length = j as in `repaint_timesteps`
           (r = 1 is the plain replacement method). Costs len(down moves) network calls.
    """
    s = check_schedule(schedule)
    check_image_range("known", known)
    m = check_mask(mask, known)
    known = known * m  # the hidden pixels must not leak into the result
    times = repaint_timesteps(s.T, steps, resamples, jump_length)
    x_T = randn(known.shape, generator, known.device, known.dtype)
    x_T = replace_known(s, x_T, known, m, times[0], randn(known.shape, generator, known.device, known.dtype))

    def step(x, t, t_next):
        return repaint_step(s, eps_model, x, t, t_next, known, m, eta=eta, generator=generator)

    return simulate(step, x_T, times, return_trajectory=return_trajectory, desc="RePaint")
