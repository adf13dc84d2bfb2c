"""Sample-quality distances between two point clouds (lesson 04; used by the benchmarks).

Energy distance (Székely & Rizzo 2013), for samples x_1..x_n ~ P and y_1..y_m ~ Q:

    D_E(P, Q) = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖  ≥ 0,  = 0 iff P = Q         (eq. M1)

Squared maximum mean discrepancy with a Gaussian kernel k(a, b) = exp(−‖a − b‖² / (2h²)),
summed over a few bandwidths h so that no single length scale has to be chosen:

    MMD²(P, Q) = E k(X, X') + E k(Y, Y') − 2 E k(X, Y)                              (eq. M2)

Both are estimated with V-statistics: every average runs over all pairs, including
i = j, so the estimate is always ≥ 0. Its price is a small positive bias. Two independent
samples of the *same* distribution give a positive distance of order 1/n: the **floor**
(`floor`). A model is as good as this test can tell when its distance to fresh data is
near the floor; `distance / floor` is the number we report (`quality`). The ratio
depends on n (the floor shrinks like 1/n while a real difference between P and Q does
not), so always report n with it: at larger n the test sees smaller differences.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

MMD_BANDWIDTHS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def _points(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, D) with N ≥ 1, got {tuple(x.shape)}: flatten images with x.flatten(1)")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}: use {name}.float()")
    return x.detach().double()


def _pair(x, y):
    x, y = _points("x", x), _points("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} but y on {y.device}: move them with .to(device)")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x and y must be finite: a sampler that diverged produced NaN/inf")
    return x, y


def _mean_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).mean()


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """D_E of eq. M1 between point clouds x (n, D) and y (m, D), V-statistic (≥ 0), float64."""
    x, y = _pair(x, y)
    return float(2 * _mean_dist(x, y) - _mean_dist(x, x) - _mean_dist(y, y))


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths=MMD_BANDWIDTHS) -> float:
    """MMD² of eq. M2 with k = Σ_h exp(−‖a − b‖² / (2h²)) over `bandwidths`, V-statistic (≥ 0)."""
    x, y = _pair(x, y)

    def k(a, b):
        d2 = torch.cdist(a, b).pow_(2)
        return sum(torch.exp(d2 * (-0.5 / (h * h))).mean() for h in bandwidths)

    return float(k(x, x) + k(y, y) - 2 * k(x, y))


def floor(
    sample: Callable,
    n: int,
    distance: Callable = energy_distance,
    repeats: int = 5,
    generator: torch.Generator | None = None,
) -> float:
    """The distance between two independent data samples of size n, averaged over `repeats`.

    sample: a function (n, generator) -> (n, D) tensor, e.g.
            `lambda n, g: minidiff.data.sample("gmm8", n, g)`.
    A perfect model's samples sit at this value on average; report `distance / floor`.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    values = [distance(sample(n, generator), sample(n, generator)) for _ in range(repeats)]
    return sum(values) / len(values)


def distance_to_data(
    samples: torch.Tensor,
    sample: Callable,
    distance: Callable = energy_distance,
    chunk: int | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """The mean distance between chunks of `samples` and fresh data of the chunk's size.

    samples are split into consecutive chunks of `chunk` rows (default: one chunk of all);
    each is compared with its own fresh data sample. Averaging over chunks averages out the
    noise of *both* sides, so `distance_to_data(samples, sample, chunk=c) / floor(sample, c)`
    is near 1 for a perfect model, with a spread that shrinks like 1/√(number of chunks).
    """
    samples = _points("samples", samples)
    n = samples.shape[0]
    chunk = n if chunk is None else int(chunk)
    if not 1 <= chunk <= n:
        raise ValueError(f"chunk must be in 1..{n} (the number of samples), got {chunk}")
    values = [
        distance(samples[lo : lo + chunk], sample(chunk, generator).to(samples.device).double())
        for lo in range(0, n - chunk + 1, chunk)
    ]
    return sum(values) / len(values)


class Quality(NamedTuple):
    """A sample-quality report: distance to fresh data, the data floor, their ratio, chunk size."""

    distance: float
    floor: float
    ratio: float
    n: int


def quality(
    samples: torch.Tensor,
    sample: Callable,
    chunk: int = 500,
    distance: Callable = energy_distance,
    floor_repeats: int = 200,
    generator: torch.Generator | None = None,
) -> Quality:
    """distance_to_data / floor at chunk size `chunk` (≈ 1 for a perfect model; report n = chunk).

    The floor is noisy (on gmm8 one pair's distance is mostly the luck of the 8 mode counts),
    hence the many floor repeats; with 8000 samples (16 chunks of 500) the ratio of a perfect
    model is 1 ± about 0.15.
    """
    d = distance_to_data(samples, sample, distance, chunk, generator)
    f = floor(sample, chunk, distance, floor_repeats, generator)
    return Quality(d, f, d / f, chunk)
