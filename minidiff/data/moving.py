"""Moving digits: short videos of one MNIST digit bouncing around a 32×32 canvas (lesson 17).

    data = MovingDigits.from_mnist("train")          # the digits, shrunk to 16×16 once
    videos, labels, tracks = data.sample(64, generator)
    # videos (64, 1, F, 32, 32) in [-1, 1], labels (64,) the digit class, tracks (64, F, 2)

A video tensor is (B, C, F, H, W): batch, channels, frames, height, width (the layout of
Ho et al. 2022 and of diffusers' video U-Nets). Each video is made in three stages:

    1. a digit: an MNIST image shrunk 28 → 16 pixels (antialiased), its ink in [0, 1]
    2. a track: the digit's centre of mass moves in a straight line, p_k = p_0 + k·v
       (k = 0..F−1), and reflects at the walls low ≤ p ≤ high of each axis (`bounce_track`)
    3. the frames: the digit shifted so that its centre of mass sits exactly on p_k
       (a bilinear, sub-pixel shift: it moves the centre of mass by exactly the shift)

so the centre of mass of every real frame lies on a straight line with reflections: the
motion statistic of `minidiff.video` measures how far generated videos stray from that.
Everything is generated on the fly from a seeded `torch.Generator` (a batch of 128 videos
takes tens of milliseconds on one CPU thread), so nothing is cached.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..utils import check_positive_int

CANVAS = 32  # frames are CANVAS × CANVAS pixels
PATCH = 16  # the digit is shrunk to PATCH × PATCH (an MNIST digit's 28 × 28 box)
FRAMES = 4  # frames per video (few: each frame costs as much as an image)
LOW, HIGH = 8.0, 23.0  # the walls for the centre of mass (pixel coordinates 0..31, centre 15.5)
SPEED = (1.5, 3.0)  # pixels per frame, drawn uniformly; the direction uniformly on the circle


def _check_tracks(name: str, x, last: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2 or x.shape[1] != last:
        raise ValueError(f"{name} must be a float tensor of shape (B, {last}), "
                         f"got {getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    return x


def bounce_track(start: torch.Tensor, velocity: torch.Tensor, frames: int = FRAMES,
                 low: float = LOW, high: float = HIGH) -> torch.Tensor:
    """Positions (B, frames, 2) of points that start at `start` (B, 2), move by `velocity` (B, 2)
    per frame and reflect at the walls `low` and `high` (on both axes).

    Reflection is a triangle wave: with L = high − low and u = (p_0 + k·v − low) mod 2L,

        p_k = low + L − |L − u|

    (u ≤ L: still on the way out, low + u; u > L: bounced back, low + 2L − u). It handles any
    number of bounces at once, with no loop over the frames.
    """
    _check_tracks("start", start, 2)
    _check_tracks("velocity", velocity, 2)
    check_positive_int("frames", frames)
    if not high > low:
        raise ValueError(f"need low < high for the walls, got low={low}, high={high}")
    k = torch.arange(frames, dtype=start.dtype, device=start.device)
    free = start[:, None, :] + k[None, :, None] * velocity[:, None, :]  # 1. straight line, no walls
    L = high - low
    u = torch.remainder(free - low, 2 * L)  # 2. where we are in one period out and back
    return low + L - (L - u).abs()  # 3. fold the way back onto the way out


def digit_patches(images: torch.Tensor) -> torch.Tensor:
    """MNIST images (N, 1, 28, 28) in [−1, 1] → ink (N, PATCH, PATCH) in [0, 1] (antialiased shrink)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"images must be MNIST images (N, 1, 28, 28) in [-1, 1], got {tuple(getattr(images, 'shape', ()))}")
    ink = (images.float() + 1) / 2
    small = F.interpolate(ink, size=(PATCH, PATCH), mode="bilinear", antialias=True, align_corners=False)
    return small[:, 0].clamp(0, 1)


def center_of_mass(ink: torch.Tensor) -> torch.Tensor:
    """(row, column) centre of mass (..., 2) of non-negative images (..., H, W), in pixel coordinates."""
    H, W = ink.shape[-2:]
    rows = torch.arange(H, dtype=ink.dtype, device=ink.device)
    cols = torch.arange(W, dtype=ink.dtype, device=ink.device)
    mass = ink.sum((-2, -1)).clamp(min=1e-8)
    return torch.stack([(ink.sum(-1) * rows).sum(-1) / mass, (ink.sum(-2) * cols).sum(-1) / mass], -1)


def shift_images(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move images (N, H, W) by `shift` (N, 2) pixels (rows, columns), bilinearly, zeros outside.

    out(i, j) = in(i − s_row, j − s_col), linearly interpolated: mass and centre of mass move
    exactly with the shift (as long as no ink leaves the frame).
    """
    N, H, W = images.shape
    rows = torch.arange(H, dtype=images.dtype, device=images.device)[None, :, None] - shift[:, 0, None, None]
    cols = torch.arange(W, dtype=images.dtype, device=images.device)[None, None, :] - shift[:, 1, None, None]
    # grid_sample wants (x, y) = (column, row) in [-1, 1]; align_corners=True maps -1, 1 to the pixel centres 0, W − 1
    grid = torch.stack([2 * cols.expand(N, H, W) / (W - 1) - 1, 2 * rows.expand(N, H, W) / (H - 1) - 1], -1)
    return F.grid_sample(images[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]


def render(patches: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
    """Videos (B, 1, F, CANVAS, CANVAS) in [−1, 1] of the digits `patches` (B, PATCH, PATCH) whose
    centre of mass follows `tracks` (B, F, 2)."""
    B, Fr, _ = tracks.shape
    canvas = patches.new_zeros(B, CANVAS, CANVAS)
    o = (CANVAS - PATCH) // 2
    canvas[:, o:o + PATCH, o:o + PATCH] = patches  # the digit in the middle of the canvas
    shift = tracks - center_of_mass(canvas)[:, None, :]  # (B, F, 2): where each frame puts the centre of mass
    frames = shift_images(canvas.repeat_interleave(Fr, 0), shift.reshape(B * Fr, 2))
    return (2 * frames - 1).reshape(B, 1, Fr, CANVAS, CANVAS)


def random_motion(n: int, generator: torch.Generator | None = None, low: float = LOW, high: float = HIGH,
                  speed: tuple[float, float] = SPEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Random starts (n, 2), uniform between the walls, and velocities (n, 2) of uniform direction
    and a speed uniform in `speed` (pixels per frame)."""
    start = low + (high - low) * torch.rand(n, 2, generator=generator)
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    s = speed[0] + (speed[1] - speed[0]) * torch.rand(n, generator=generator)
    return start, torch.stack([s * angle.sin(), s * angle.cos()], -1)


class MovingDigits:
    """Bouncing-digit videos made on the fly from a set of digits (N, PATCH, PATCH) and labels (N,)."""

    def __init__(self, patches: torch.Tensor, labels: torch.Tensor, frames: int = FRAMES):
        if not isinstance(patches, torch.Tensor) or patches.dim() != 3 or patches.shape[1:] != (PATCH, PATCH):
            raise ValueError(f"patches must be (N, {PATCH}, {PATCH}) digit ink, got {tuple(getattr(patches, 'shape', ()))}")
        if not isinstance(labels, torch.Tensor) or labels.shape != (patches.shape[0],):
            raise ValueError(f"labels must be a tensor of shape ({patches.shape[0]},), got {tuple(getattr(labels, 'shape', ()))}")
        self.patches, self.labels = patches.float(), labels.long()
        self.frames = check_positive_int("frames", frames)

    @classmethod
    def from_mnist(cls, split: str = "train", frames: int = FRAMES, root=None) -> "MovingDigits":
        from .mnist import mnist_images

        images, labels = mnist_images(split, root)
        return cls(digit_patches(images), labels, frames)

    def __len__(self) -> int:
        return self.patches.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None):
        """(videos (n, 1, F, 32, 32), labels (n,), tracks (n, F, 2)): random digits, starts and velocities.
        With `labels` (n,), each video shows a random digit of that class."""
        check_positive_int("n", n)
        if labels is None:
            idx = torch.randint(len(self), (n,), generator=generator)
        else:
            if not isinstance(labels, torch.Tensor) or labels.shape != (n,):
                raise ValueError(f"labels must be a tensor of shape ({n},), got {tuple(getattr(labels, 'shape', ()))}")
            idx = torch.empty(n, dtype=torch.long)
            for c in labels.unique().tolist():
                pool = (self.labels == c).nonzero()[:, 0]
                if pool.numel() == 0:
                    raise ValueError(f"no digit of class {c} in this set")
                where = (labels == c).nonzero()[:, 0]
                idx[where] = pool[torch.randint(pool.numel(), (where.numel(),), generator=generator)]
        start, velocity = random_motion(n, generator)
        tracks = bounce_track(start, velocity, self.frames)
        return render(self.patches[idx], tracks), self.labels[idx], tracks

    def batches(self, batch_size: int, generator: torch.Generator | None = None, device="cpu"):
        """A function `() -> (videos, labels)` of fresh random batches, for `training.train(batches=...)`."""
        def draw():
            videos, labels, _ = self.sample(batch_size, generator)
            return videos.to(device), labels.to(device)

        return draw
