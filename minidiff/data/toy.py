"""2D toy datasets for diffusion models, two of them with an exact density.

    x0 = sample("gmm8", 1000)                    # (1000, 2) float32
    p = density("gmm8")                          # GaussianMixture: log_prob, score, noised
    p.noised(alpha_bar).score(x_t)               # the exact score of q(x_t) at ᾱ_t

Every dataset is scaled to roughly unit spread (coordinates within about [-3, 3]),
so that a small MLP and the standard schedules (β_1 = 1e-4 .. β_T = 0.02, or cosine)
work without rescaling. Sampling is deterministic given a `torch.Generator`.

| name           | what                                            | exact density        |
| -------------- | ----------------------------------------------- | -------------------- |
| "swiss_roll"   | a 2D spiral, (t cos t, t sin t)/7 plus noise     | no                   |
| "moons"        | two interleaved half circles plus noise         | no                   |
| "gmm8"         | 8 Gaussians on a circle of radius 2, σ = 0.2     | `GaussianMixture`    |
| "checkerboard" | uniform on the 8 black squares of a 4×4 board   | `Checkerboard`       |

The mixture is the one toy distribution whose *noised* versions are known in closed
form: if x_0 ~ Σ_k w_k N(μ_k, σ_k² I) and x_t = √ᾱ x_0 + √(1−ᾱ) ε, then
x_t ~ Σ_k w_k N(√ᾱ μ_k, (ᾱ σ_k² + 1 − ᾱ) I)   (eq. T1),
so its score ∇ log q(x_t) is exact at every noise level (lesson 06).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch

DATASETS = ("swiss_roll", "moons", "gmm8", "checkerboard")

# The standard 8-Gaussian mixture: means on a circle of radius 2, std 0.2 each.
GMM8_RADIUS = 2.0
GMM8_STD = 0.2


# ---------------------------------------------------------------- argument checks


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n must be a positive int (the number of samples), got {n!r}")
    return int(n)


def _device_of(generator: torch.Generator | None) -> torch.device:
    # torch.rand(..., generator=g) needs the generator's device; without one, the CPU.
    return generator.device if generator is not None else torch.device("cpu")


def _check_points(x, dim: int, what: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (N, {dim}), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{what} must have shape (N, {dim}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}; use x.float()")
    return x


class EntropyEstimate(NamedTuple):
    """A Monte Carlo estimate (nats) with its standard error; unpacks as (value, stderr)."""

    value: float
    stderr: float


# ---------------------------------------------------------------- Gaussian mixture


class GaussianMixture:
    """p(x) = Σ_k w_k N(x; μ_k, σ_k² I), an isotropic Gaussian mixture in D dimensions.

    log p(x) = logsumexp_k [ log w_k − D/2 · log(2π σ_k²) − |x − μ_k|² / (2σ_k²) ]     (eq. T2)
    ∇_x log p(x) = Σ_k r_k(x) (μ_k − x) / σ_k²,   r_k(x) = w_k N(x; μ_k, σ_k²I) / p(x)  (eq. T3)

    means: (K, D); std: a float or (K,); weights: (K,) or None (uniform), normalised to sum 1.
    Parameters are stored in float64; log_prob and score compute in float64 on x's device
    and return x's dtype, so autograd through log_prob works.
    """

    def __init__(self, means, std, weights=None):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, D) with K ≥ 1, got {tuple(means.shape)}")
        K = means.shape[0]
        std = torch.as_tensor(std, dtype=torch.float64)
        if std.ndim == 0:
            std = std.expand(K).clone()
        if std.shape != (K,):
            raise ValueError(f"std must be a float or have shape ({K},) (one per component), got {tuple(std.shape)}")
        if not torch.isfinite(std).all() or (std <= 0).any():
            raise ValueError("every std must be positive and finite")
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape ({K},), got {tuple(weights.shape)}")
        if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be non-negative, finite, and not all zero")
        self.means = means
        self.std = std
        self.weights = weights / weights.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.means.shape[0]}, D={self.dim})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = μ_k + σ_k ε with k ~ Categorical(w), ε ~ N(0, I). Returns (n, D) float32."""
        n = _check_n(n)
        device = _device_of(generator)
        k = torch.multinomial(self.weights.to(device), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, device=device, dtype=torch.float64)
        x = self.means.to(device)[k] + self.std.to(device)[k, None] * eps
        return x.float()

    def _component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x; μ_k, σ_k² I), shape (N, K), float64."""
        x = _check_points(x, self.dim).double()
        mu, var = self.means.to(x.device), self.std.to(x.device) ** 2
        sq = ((x[:, None, :] - mu[None]) ** 2).sum(-1)  # |x − μ_k|², (N, K)
        log_norm = -0.5 * self.dim * torch.log(2 * math.pi * var)
        return torch.log(self.weights.to(x.device)) + log_norm - sq / (2 * var)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) by eq. T2 (logsumexp, so no underflow far from the modes). Shape (N,)."""
        return torch.logsumexp(self._component_log_probs(x), dim=1).to(x.dtype)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """r_k(x) = p(k | x), shape (N, K), rows sum to 1."""
        return torch.softmax(self._component_log_probs(x), dim=1).to(x.dtype)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """∇_x log p(x) = Σ_k r_k(x) (μ_k − x) / σ_k²  (eq. T3), in closed form. Shape (N, D)."""
        r = torch.softmax(self._component_log_probs(x), dim=1)  # (N, K), float64
        xd = x.double()
        mu, var = self.means.to(x.device), self.std.to(x.device) ** 2
        s = (r[:, :, None] * (mu[None] - xd[:, None, :]) / var[None, :, None]).sum(1)
        return s.to(x.dtype)

    def noised(self, alpha_bar) -> "GaussianMixture":
        """The law of x_t = √ᾱ x_0 + √(1−ᾱ) ε, x_0 ~ p, ε ~ N(0, I), for ᾱ in (0, 1]  (eq. T1):
        the mixture with means √ᾱ μ_k, variances ᾱ σ_k² + 1 − ᾱ, and the same weights."""
        ab = float(alpha_bar)
        if not 0.0 < ab <= 1.0:
            raise ValueError(f"alpha_bar must lie in (0, 1] (it is ᾱ_t), got {ab}")
        std = torch.sqrt(ab * self.std**2 + (1.0 - ab))
        return GaussianMixture(math.sqrt(ab) * self.means, std, self.weights)

    def noised_score(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """∇ log q_t(x_t) with a different ᾱ per row: alpha_bar a float or a tensor of shape (N,).

        Same as `self.noised(alpha_bar[i]).score(x_t[i:i+1])` row by row, computed in one go
        (eq. T1 inserted into eq. T3), for training batches whose rows sit at random t.
        """
        x = _check_points(x_t, self.dim, "x_t")
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64, device=x.device)
        ab = ab.expand(x.shape[0]) if ab.ndim == 0 else ab
        if ab.shape != (x.shape[0],):
            raise ValueError(f"alpha_bar must be a float or have shape ({x.shape[0]},), got {tuple(ab.shape)}")
        if (ab <= 0).any() or (ab > 1).any():
            raise ValueError("every alpha_bar must lie in (0, 1]")
        xd = x.double()
        mu = ab.sqrt()[:, None, None] * self.means.to(x.device)[None]  # (N, K, D)
        var = ab[:, None] * self.std.to(x.device)[None] ** 2 + (1 - ab[:, None])  # (N, K)
        sq = ((xd[:, None, :] - mu) ** 2).sum(-1)
        logits = torch.log(self.weights.to(x.device)) - 0.5 * self.dim * torch.log(var) - sq / (2 * var)
        r = torch.softmax(logits, dim=1)
        return (r[:, :, None] * (mu - xd[:, None, :]) / var[:, :, None]).sum(1).to(x.dtype)

    def mean(self) -> torch.Tensor:
        """E[x] = Σ_k w_k μ_k, shape (D,), float64."""
        return self.weights @ self.means

    def cov(self) -> torch.Tensor:
        """Cov[x] = Σ_k w_k (σ_k² I + μ_k μ_kᵀ) − E[x] E[x]ᵀ, shape (D, D), float64."""
        m = self.mean()
        second = (self.weights[:, None, None] * self.means[:, :, None] * self.means[:, None, :]).sum(0)
        second = second + (self.weights * self.std**2).sum() * torch.eye(self.dim, dtype=torch.float64)
        return second - torch.outer(m, m)

    def entropy(self, n: int = 100_000, generator: torch.Generator | None = None) -> EntropyEstimate:
        """H = −E_p[log p(x)], estimated by Monte Carlo over n samples (a mixture has no closed
        form). Returns (value, stderr) in nats, stderr = std(log p(x_i)) / √n."""
        x = self.sample(_check_n(n), generator).double()
        lp = self.log_prob(x)
        stderr = lp.std().item() / math.sqrt(n) if n > 1 else float("inf")
        return EntropyEstimate(-lp.mean().item(), stderr)


def gmm8(radius: float = GMM8_RADIUS, std: float = GMM8_STD) -> GaussianMixture:
    """The standard 8-Gaussian mixture: μ_k = r (cos 2πk/8, sin 2πk/8), σ = 0.2, w_k = 1/8.
    Exactly the distribution of `sample("gmm8", n)`."""
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, std)


# ---------------------------------------------------------------- checkerboard


class Checkerboard:
    """Uniform on the black squares of a `squares × squares` board of side `side` per square,
    centred on the origin. Square (i, j) (i, j = 0..squares−1, x from the left, y from the
    bottom) is black when i + j is even. With A = (number of black squares) · side²,

        p(x) = 1/A on the black squares, 0 elsewhere;  log p(x) = −log A or −∞    (eq. T4)
        H = −E log p = log A  (exact).

    Squares are half-open, [a, a + side), so every point belongs to exactly one.
    The default 4×4 board of unit squares spans [-2, 2]²: A = 8, H = log 8.
    """

    # Samples stay this fraction of a square away from its edges, so that float32 rounding
    # can never move a sample onto a white square (log_prob = −∞). The bias is negligible.
    EDGE = 1e-5

    def __init__(self, squares: int = 4, side: float = 1.0):
        if isinstance(squares, bool) or not isinstance(squares, numbers.Integral) or squares < 1:
            raise ValueError(f"squares must be a positive int, got {squares!r}")
        if not side > 0:
            raise ValueError(f"side must be positive, got {side!r}")
        self.squares, self.side = int(squares), float(side)
        i, j = torch.meshgrid(torch.arange(self.squares), torch.arange(self.squares), indexing="ij")
        black = (i + j) % 2 == 0
        self.black_cells = torch.stack([i[black], j[black]], dim=1)  # (M, 2) cell indices
        self.area = self.black_cells.shape[0] * self.side**2
        self.half_width = self.squares * self.side / 2

    @property
    def dim(self) -> int:
        return 2

    def __repr__(self) -> str:
        return f"Checkerboard(squares={self.squares}, side={self.side})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pick a black square uniformly (they have equal area), then a uniform point in it."""
        n = _check_n(n)
        device = _device_of(generator)
        cells = self.black_cells.to(device)
        idx = torch.randint(len(cells), (n,), generator=generator, device=device)
        u = torch.rand(n, 2, generator=generator, device=device, dtype=torch.float64)
        u = self.EDGE + (1 - 2 * self.EDGE) * u
        x = (cells[idx].double() + u) * self.side - self.half_width
        return x.float()

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """−log A on a black square, −∞ elsewhere (eq. T4). Shape (N,), x's dtype."""
        x = _check_points(x, 2)
        cell = torch.floor((x.double() + self.half_width) / self.side)  # (N, 2) square indices
        inside = ((cell >= 0) & (cell < self.squares)).all(dim=1)
        black = inside & (cell.sum(dim=1) % 2 == 0)
        out = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)
        out[black] = -math.log(self.area)
        return out

    def entropy(self) -> float:
        """H = log A (exact): the entropy of a uniform density is the log of its support's area."""
        return math.log(self.area)


def checkerboard(squares: int = 4, side: float = 1.0) -> Checkerboard:
    """The standard checkerboard: 4×4 unit squares on [-2, 2]², 8 black, density 1/8 on them.
    Exactly the distribution of `sample("checkerboard", n)`."""
    return Checkerboard(squares, side)


# ---------------------------------------------------------------- datasets without a density


def swiss_roll(n: int, noise: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """x = (t cos t, t sin t) / 7 + noise · ε,  t = 1.5π (1 + 2u),  u ~ U[0, 1),  ε ~ N(0, I).

    (sklearn's make_swiss_roll projected to 2D.) /7 gives each coordinate a std of about 1;
    points lie in about [-2, 2.5]. `noise` is in these scaled units.
    """
    n = _check_n(n)
    device = _device_of(generator)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator, device=device, dtype=torch.float64))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 7
    x = x + noise * torch.randn(n, 2, generator=generator, device=device, dtype=torch.float64)
    return x.float()


def moons(n: int, noise: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Two interleaved half circles (sklearn's make_moons), centred and scaled by 1.5:
    upper (cos θ, sin θ), lower (1 − cos θ, 1/2 − sin θ), θ ~ U[0, π), each with probability 1/2;
    then x ← 1.5 (x − (1/2, 1/4)) + noise · ε. Points lie in about [-2.7, 2.7] × [-1.5, 1.5].
    """
    n = _check_n(n)
    device = _device_of(generator)
    theta = math.pi * torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    upper = torch.rand(n, generator=generator, device=device) < 0.5
    a = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    b = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], dim=1)
    x = torch.where(upper[:, None], a, b)
    x = 1.5 * (x - torch.tensor([0.5, 0.25], dtype=torch.float64, device=device))
    x = x + noise * torch.randn(n, 2, generator=generator, device=device, dtype=torch.float64)
    return x.float()


# ---------------------------------------------------------------- by name


def _check_name(name) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return name


def sample(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n points of the named toy dataset (one of DATASETS), as an (n, 2) float32 tensor.

    Deterministic given `generator`; without one, uses torch's global RNG (seeded by
    `minidiff.course.notebook.setup`). Samples land on the generator's device (CPU by default).
    """
    _check_name(name)
    n = _check_n(n)
    if name == "swiss_roll":
        return swiss_roll(n, generator=generator)
    if name == "moons":
        return moons(n, generator=generator)
    return density(name).sample(n, generator)


def density(name: str) -> GaussianMixture | Checkerboard:
    """The exact density object of a dataset: GaussianMixture for "gmm8", Checkerboard for
    "checkerboard". Swiss roll and moons have no closed-form density: ValueError."""
    _check_name(name)
    if name == "gmm8":
        return gmm8()
    if name == "checkerboard":
        return checkerboard()
    with_density = ", ".join(d for d in DATASETS if d in ("gmm8", "checkerboard"))
    raise ValueError(
        f"dataset {name!r} has no closed-form density (its points are a noisy curve); "
        f"datasets with an exact density: {with_density}"
    )
