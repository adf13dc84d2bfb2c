"""Short synthetic sounds with labels, made in code (lesson 16).

Three classes of clips of LENGTH = 4096 samples at SAMPLE_RATE = 8000 Hz (0.512 s), each with a
random pitch, loudness and decay drawn from a seeded generator, so the same seed gives the same
clips on every machine:

    0 "pluck"  a plucked string, Karplus–Strong (1983): a burst of noise, fed back through a delay
               of P = sr/f₀ samples and a two-tap average:  y[n] = d · ½ (y[n − P] + y[n − P − 1])
    1 "chirp"  a sine whose frequency glides from f₀ to f₁ (exponentially), under a soft envelope:
               y(τ) = env(τ) · sin 2π ∫₀^τ f(s) ds
    2 "drum"   a kick-like decay: a sine whose pitch drops quickly, plus a short noise click,
               under an exponential envelope exp(−τ/τ_d)

Every clip is scaled so that its peak |y| is a random loudness in [0.5, 0.95]: the data live
in [−1, 1], like the course's images. Shapes: clips (N, 1, LENGTH) float32, labels (N,) long.
"""

from __future__ import annotations

import math

import torch

from ..utils import check_float, check_positive_int

SAMPLE_RATE = 8000
LENGTH = 4096
CLASSES = ("pluck", "chirp", "drum")


def check_clips(name: str, x, sample_rate: int = SAMPLE_RATE, length: int = LENGTH) -> torch.Tensor:
    """x itself if it is a float batch (B, 1, length) of clips at `sample_rate`; a clear error otherwise."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"{name}: the lesson's clips are sampled at {SAMPLE_RATE} Hz, got sample_rate={sample_rate}: "
                         f"resample to {SAMPLE_RATE} Hz first (the models and metrics assume it)")
    check_float(name, x)
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, 1, {length}) (mono clips), got {tuple(x.shape)}")
    if x.shape[-1] != length:
        raise ValueError(f"{name} must hold {length} samples per clip ({length / SAMPLE_RATE:.3f} s at "
                         f"{SAMPLE_RATE} Hz), got {x.shape[-1]}")
    return x


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def karplus_strong(f0: torch.Tensor, decay: torch.Tensor, length: int = LENGTH, sample_rate: int = SAMPLE_RATE,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Plucked strings (Karplus & Strong 1983), one per entry of f0 (Hz) and decay (per period).

    1. P = round(sample_rate / f0): the delay line (the string's period in samples)
    2. y[0 .. P] = white noise in [−1, 1]: the pluck
    3. y[n] = decay · ½ (y[n − P] + y[n − P − 1]) for n > P: the two-tap average is a low-pass
       filter, so high harmonics die faster than low ones, as on a real string.
    Returns (B, length) float64.
    """
    check_float("f0", f0)
    check_float("decay", decay)
    if f0.dim() != 1 or decay.shape != f0.shape:
        raise ValueError(f"f0 and decay must both have shape (B,), got {tuple(f0.shape)} and {tuple(decay.shape)}")
    check_positive_int("length", length)
    B = f0.shape[0]
    P = torch.round(sample_rate / f0.double()).long()  # 1.
    if (P < 2).any() or (P + 1 >= length).any():
        raise ValueError(f"f0 must give a period between 2 and length − 2 samples, got f0 in "
                         f"[{float(f0.min()):.3g}, {float(f0.max()):.3g}] Hz")
    y = 2 * torch.rand(B, length, generator=generator, dtype=torch.float64) - 1  # 2. noise everywhere ...
    rows = torch.arange(B)
    d = decay.double()
    for n in range(int(P.min()) + 1, length):  # 3. ... overwritten after each string's first period
        new = d * 0.5 * (y[rows, n - P] + y[rows, n - P - 1])
        y[:, n] = torch.where(n > P, new, y[:, n])
    return y


def _chirps(n: int, g: torch.Generator, length: int) -> torch.Tensor:
    tau = torch.arange(length, dtype=torch.float64) / SAMPLE_RATE
    dur = length / SAMPLE_RATE
    f0, f1 = _uniform(n, 200, 700, g), _uniform(n, 900, 2500, g)
    up = torch.rand(n, generator=g) < 0.5  # glide up or down
    f0, f1 = torch.where(up, f0, f1), torch.where(up, f1, f0)
    k = torch.log(f1 / f0)[:, None] / dur  # f(τ) = f0 · exp(k τ)
    phase = 2 * math.pi * f0[:, None] * torch.expm1(k * tau) / k  # ∫ f
    attack = (tau / 0.02).clamp(max=1.0)
    release = ((dur - tau) / 0.05).clamp(max=1.0)
    return torch.sin(phase + 2 * math.pi * torch.rand(n, 1, generator=g, dtype=torch.float64)) * attack * release


def _drums(n: int, g: torch.Generator, length: int) -> torch.Tensor:
    tau = torch.arange(length, dtype=torch.float64) / SAMPLE_RATE
    f_end, f_start = _uniform(n, 45, 110, g), _uniform(n, 180, 350, g)
    t_pitch, t_decay = _uniform(n, 0.01, 0.04, g), _uniform(n, 0.06, 0.25, g)
    f = f_end[:, None] + (f_start - f_end)[:, None] * torch.exp(-tau / t_pitch[:, None])
    phase = 2 * math.pi * torch.cumsum(f, 1) / SAMPLE_RATE
    click = (2 * torch.rand(n, length, generator=g, dtype=torch.float64) - 1) * torch.exp(-tau / 0.004)
    return (torch.sin(phase) + 0.5 * click) * torch.exp(-tau / t_decay[:, None])


def make_clips(n_per_class: int, seed: int = 0, length: int = LENGTH) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled data set: (clips (3·n_per_class, 1, length) float32, labels (3·n_per_class,) long),
    class by class (pluck, chirp, drum), each clip peak-normalised to a random loudness in [0.5, 0.95]."""
    check_positive_int("n_per_class", n_per_class)
    check_positive_int("length", length)
    g = torch.Generator().manual_seed(seed)
    n = n_per_class
    pluck = karplus_strong(_uniform(n, 110, 440, g), _uniform(n, 0.985, 0.999, g), length, generator=g)
    clips = torch.cat([pluck, _chirps(n, g, length), _drums(n, g, length)])
    loud = _uniform(3 * n, 0.5, 0.95, g)
    clips = clips / clips.abs().amax(1, keepdim=True) * loud[:, None]
    labels = torch.arange(3).repeat_interleave(n)
    return clips.float()[:, None, :], labels
