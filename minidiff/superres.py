"""Super-resolution by conditional diffusion (lesson 19; SR3, Saharia et al. 2021).

SR3 learns p(x_0 | x_lr): a high-resolution digit x_0 (28×28) given a low-resolution one x_lr
(7×7 or 14×14). The network sees the low-resolution digit the simplest way possible, SR3's way:
upsampled to 28×28 with bicubic interpolation and concatenated to x_t as an extra input channel:

    c      = bicubic(x_lr)  ∈ R^{1×28×28}                        (`lowres_condition`)
    input  = [x_t ; c]      ∈ R^{2×28×28}                         (`SRUNet.forward`)
    loss   = lesson 05's v-loss with v_θ(x_t, t) := v_θ([x_t ; c], t)   (`sr_loss`, reusing vpred.v_loss)
    sample = DDIM over the library's one loop, c fixed along the chain (`sr_sample`)

The low-resolution digits for training are made from the 28×28 ones by averaging k×k blocks
(`downsample`, k = 2 or 4): each low-res pixel is the mean of the pixels it covers. One model
learns both factors: the condition itself says how blurry the input is.

Contents: `downsample`, `lowres_condition`, `degrade`, `SRUNet`, `sr_loss`, `sr_sample`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ddim import ddim_sample
from .unet import UNet
from .utils import check_float, check_positive_int, check_schedule, randint
from .vpred import v_loss

SIZE = 28  # the high resolution
LOW_SIZES = (7, 14)  # the low resolutions one shipped model learns (factors 4 and 2)


def _check_images(name: str, x, size: int | None = None) -> torch.Tensor:
    """x must be a float tensor (B, 1, H, W), square, with H = size when size is given."""
    check_float(name, x)
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3]:
        raise ValueError(f"{name} must be square one-channel images (B, 1, H, H), got shape {tuple(x.shape)}")
    if size is not None and x.shape[2] != size:
        raise ValueError(f"{name} must be {size}×{size} images, got {x.shape[2]}×{x.shape[3]}")
    return x


def _check_low_size(h: int) -> int:
    if h not in LOW_SIZES:
        raise ValueError(f"the low-resolution digit must be one of {' or '.join(f'{s}×{s}' for s in LOW_SIZES)} "
                         f"(28 = 4·7 = 2·14), got {h}×{h}")
    return h


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """The low-resolution digit: each of its size×size pixels is the mean of a (28/size)² block of x."""
    _check_images("x", x, SIZE)
    k = SIZE // _check_low_size(size)
    return F.avg_pool2d(x, k)


def lowres_condition(x_lr: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """The conditioning channel c: x_lr (B, 1, h, h), h ∈ {7, 14}, upsampled to size×size by bicubic
    interpolation and clamped to the pixel range [−1, 1] (bicubic overshoots at sharp edges).
    This is also the bicubic baseline that super-resolution must beat."""
    _check_images("x_lr", x_lr)
    _check_low_size(x_lr.shape[2])
    return F.interpolate(x_lr, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def degrade(x0: torch.Tensor, low_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A training pair's inputs from 28×28 digits x0 (B, 1, 28, 28): the low-resolution digit
    x_lr = downsample(x0, low_size) (B, 1, h, h) and the condition c = lowres_condition(x_lr) (B, 1, 28, 28)."""
    x_lr = downsample(x0, low_size)
    return x_lr, lowres_condition(x_lr)


class SRUNet(nn.Module):
    """v_θ([x_t ; c], t): lesson 05's U-Net with two input channels, the noisy digit and the condition.

    The U-Net returns as many channels as it takes; the first is the prediction for x_t, the second
    is unused (no loss reaches it). Built from keyword arguments so that `checkpoints.load_checkpoint`
    can rebuild it from its card's config.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64), num_res_blocks: int = 1, attention: bool = True):
        super().__init__()
        self.unet = UNet(2, tuple(channels), num_res_blocks, attention)
        self.config = dict(channels=list(self.unet.channels), num_res_blocks=num_res_blocks, attention=attention)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        _check_images("x_t", x_t, SIZE)
        _check_images("cond", cond, SIZE)
        if cond.shape[0] != x_t.shape[0]:
            raise ValueError(f"cond holds {cond.shape[0]} images but x_t holds {x_t.shape[0]}: one condition per image")
        return self.unet(torch.cat([x_t, cond.to(x_t.dtype)], dim=1), t)[:, :1]


def sr_loss(schedule, model, x0: torch.Tensor, generator: torch.Generator | None = None,
            low_sizes=LOW_SIZES) -> torch.Tensor:
    """The SR3 training loss on a batch of 28×28 digits x0 (B, 1, 28, 28):

    1. each image draws a low resolution h from `low_sizes`; x_lr = downsample(x0, h)
    2. c = lowres_condition(x_lr)
    3. lesson 05's v-loss on x0, the network called as v_θ([x_t ; c], t)   (vpred.v_loss)
    """
    check_schedule(schedule)
    _check_images("x0", x0, SIZE)
    sizes = [_check_low_size(h) for h in low_sizes]
    pick = randint(len(sizes), (x0.shape[0],), generator, x0.device)  # 1.
    cond = torch.zeros_like(x0)
    for i, h in enumerate(sizes):  # 2. one bicubic call per resolution
        rows = pick == i
        if rows.any():
            cond[rows] = degrade(x0[rows], h)[1]
    return v_loss(schedule, lambda x_t, t: model(x_t, t, cond), x0, generator)  # 3.


@torch.no_grad()
def sr_sample(schedule, eps_model, x_lr: torch.Tensor, steps: int = 20, eta: float = 0.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Super-resolve x_lr (B, 1, h, h), h ∈ {7, 14}: DDIM (`steps` jumps, η = eta, x̂_0 clipped to [−1, 1])
    with ε_θ(x_t, t, c) and the condition c = lowres_condition(x_lr) held fixed. eps_model is the
    ε-view of an SRUNet (`checkpoints.load_eps_model(name, SRUNet)`). Returns (B, 1, 28, 28)."""
    check_positive_int("steps", steps)
    cond = lowres_condition(x_lr)
    return ddim_sample(schedule, lambda x_t, t: eps_model(x_t, t, cond), cond.shape, steps=steps, eta=eta,
                       device=cond.device, generator=generator, clip_denoised=1.0)
