"""Scores, score matching, and the bridge between scores and ε-prediction (lesson 06).

The score of a density p is the gradient of its log, a vector field pointing uphill:

    s(x) = ∇_x log p(x)

Two ways of adding Gaussian noise appear in the literature, and the score of the
noise kernel is simple in both:

    VE (NCSN):  x̃   = x_0 + σ z                     ∇ log q_σ(x̃ | x_0) = −(x̃ − x_0)/σ² = −z/σ   (Vincent 2011)
    VP (DDPM):  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε        ∇ log q_t(x_t | x_0) = −ε / √(1 − ᾱ_t)         (DDPM eq. 4)

Denoising score matching (Vincent 2011) trains s_θ(x̃, σ) to regress that conditional
score; its minimiser is the score of the *marginal* q_σ(x̃) (Vincent 2011). With the weighting
λ(σ) = σ² of Song & Ermon (2019, eq. 6) the loss is

    ℓ(θ; σ) = ½ σ² E ‖ s_θ(x̃, σ) + (x̃ − x_0)/σ² ‖² = ½ E ‖ σ s_θ(x̃, σ) + z ‖²          (Song & Ermon 2019)

and if the network is written s_θ = −ε_θ / σ this is ½ E ‖ z − ε_θ ‖²: DDPM's L_simple.
So an ε-model is a score model, and `eps_to_score` / `score_to_eps` convert (DDPM eq. 4).

The two noisings are one family: x̃ = x_t / √ᾱ_t with σ² = (1 − ᾱ_t)/ᾱ_t    .
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .data.toy import GaussianMixture
from .mlp import EpsMLP
from .schedules import extract
from .utils import check_float, check_schedule

# ---------------------------------------------------------------- exact scores


def mixture_score(x: torch.Tensor, means: torch.Tensor, std, weights=None) -> torch.Tensor:
    """∇_x log Σ_k w_k N(x; μ_k, σ_k² I) = Σ_k r_k(x) (μ_k − x) / σ_k²

    with responsibilities r_k(x) = w_k N(x; μ_k, σ_k² I) / p(x), computed by a softmax over
    log w_k − D/2 log σ_k² − ‖x − μ_k‖²/(2σ_k²) (the 2π cancels). x: (N, D); means: (K, D);
    std: float or (K,); weights: (K,) or None (uniform). Same as `GaussianMixture(...).score(x)`.
    """
    return GaussianMixture(means, std, weights).score(x)


def ve_noised(mixture: GaussianMixture, sigma: float) -> GaussianMixture:
    """The law of x̃ = x_0 + σ z for x_0 from a Gaussian mixture, z ~ N(0, I):
    Σ_k w_k N(μ_k, (σ_k² + σ²) I) — the variances add . Its `.score` is exact."""
    sigma = float(sigma)
    if not sigma >= 0:
        raise ValueError(f"sigma must be a non-negative float, got {sigma}")
    return GaussianMixture(mixture.means, torch.sqrt(mixture.std**2 + sigma**2), mixture.weights)


# ---------------------------------------------------------------- ε ↔ score


def _sigma_t(schedule, t, x: torch.Tensor) -> torch.Tensor:
    """√(1 − ᾱ_t), shaped (B, 1, ...) against x; t = 0 (no noise) has no score and is refused."""
    check_schedule(schedule)
    if (torch.as_tensor(t) < 1).any():
        raise ValueError("t must lie in 1..T: at t = 0 there is no noise and −ε/√(1 − ᾱ_0) divides by 0")
    return (1.0 - extract(schedule.alphas_cumprod, t, x)).sqrt()


def eps_to_score(schedule, eps: torch.Tensor, t) -> torch.Tensor:
    """s(x_t, t) = −ε / √(1 − ᾱ_t)  (DDPM eq. 4), for t in 1..T (an int or a LongTensor (B,))."""
    check_float("eps", eps)
    return -eps / _sigma_t(schedule, t, eps)


def score_to_eps(schedule, score: torch.Tensor, t) -> torch.Tensor:
    """ε = −√(1 − ᾱ_t) · s(x_t, t), the inverse of `eps_to_score`."""
    check_float("score", score)
    return -_sigma_t(schedule, t, score) * score


def score_fn_from_eps(schedule, eps_model):
    """Wrap an ε-model as a score model s(x_t, t) = −ε_θ(x_t, t) / √(1 − ᾱ_t)  (DDPM eq. 4)."""
    check_schedule(schedule)

    def score_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return eps_to_score(schedule, eps_model(x_t, t), t)

    return score_fn


def ve_sigmas_of(schedule) -> torch.Tensor:
    """σ_t = √((1 − ᾱ_t)/ᾱ_t) for t = 0..T (float64, length T + 1): the VE noise level
    of x_t / √ᾱ_t . σ_0 = 0; for DDPM's linear schedule σ_T ≈ 157."""
    check_schedule(schedule)
    abar = schedule.alphas_cumprod
    return ((1.0 - abar) / abar).sqrt()


# ---------------------------------------------------------------- noise levels and DSM


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """σ_1 > σ_2 > … > σ_n in geometric progression (Song & Ermon 2019, §4.2):
    σ_i = σ_max · (σ_min/σ_max)^((i−1)/(n−1)). Float32 tensor of length n."""
    if not (0 < sigma_min < sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int ≥ 2 (the number of noise levels), got {n!r}")
    return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64).float()


def _sigma_batch(sigma, x: torch.Tensor) -> torch.Tensor:
    """σ as a float tensor of shape (B,) on x's device (from a float or a (B,) tensor)."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.dim() == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float or have shape (B,) = ({x.shape[0]},), got {tuple(s.shape)}")
    if (s <= 0).any():
        raise ValueError("every sigma must be positive (σ = 0 means no noise: the score is undefined)")
    return s


def dsm_objective(score_model, x0: torch.Tensor, sigma, noise: torch.Tensor) -> torch.Tensor:
    """Denoising score matching with λ(σ) = σ² (Vincent 2011; Song & Ermon 2019, eq. 6):

        x̃ = x_0 + σ z,   loss = mean over the batch of ½ σ² ‖ s_θ(x̃, σ) + (x̃ − x_0)/σ² ‖²
                                                     = ½ ‖ σ s_θ(x̃, σ) + z ‖²      (Song & Ermon 2019)

    x0, noise: (B, ...); sigma: float or (B,), one level per row. The squared norm sums over
    the data dimensions. `score_model(x̃, sigma)` is called with sigma of shape (B,).
    """
    check_float("x0", x0)
    check_float("noise", noise)
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x0 has {tuple(x0.shape)}: they must match")
    s = _sigma_batch(sigma, x0)
    sb = s.reshape(-1, *([1] * (x0.dim() - 1)))
    x_tilde = x0 + sb * noise
    score = score_model(x_tilde, s)
    if not isinstance(score, torch.Tensor) or score.shape != x0.shape:
        got = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
        raise ValueError(f"score_model(x̃, σ) must return a tensor shaped like x0 {tuple(x0.shape)}, got {got}")
    return 0.5 * (sb * score + noise).pow(2).flatten(1).sum(1).mean()


def dsm_loss(sigmas, score_model, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Song & Ermon's (2019) denoising score matching on one batch: each row gets σ drawn uniformly from the
    levels `sigmas` (1-D), and z ~ N(0, I); returns `dsm_objective` (Song & Ermon 2019), a scalar.

    The argument order is `losses.ddpm_loss`'s (schedule, model, x0, generator), with the noise
    levels in the schedule's place, so `training.train(net, partial(dsm_loss, sigmas), data, steps)`
    trains a score network with the same loop as lesson 04."""
    check_float("x0", x0)
    sigmas = torch.as_tensor(sigmas, dtype=x0.dtype)
    if sigmas.dim() != 1 or sigmas.numel() < 1:
        raise ValueError(f"sigmas must be a 1-D tensor of noise levels, got shape {tuple(sigmas.shape)}")
    gdev = generator.device if generator is not None else x0.device
    idx = torch.randint(sigmas.numel(), (x0.shape[0],), generator=generator, device=gdev)
    noise = torch.randn(x0.shape, generator=generator, device=gdev, dtype=x0.dtype).to(x0.device)
    return dsm_objective(score_model, x0, sigmas.to(gdev)[idx].to(x0.device), noise)


# ---------------------------------------------------------------- a noise-conditional score network


class NoiseConditionalScore(nn.Module):
    """s_θ(x̃, σ) = −ε_θ(c_in(σ) x̃, c_noise(σ)) / σ, with ε_θ an `EpsMLP` (lesson 04)

    c_in(σ) = 1/√(1 + σ²) rescales x̃ = x_0 + σ z to unit size: it is exactly the VP point
    x_t with ᾱ = 1/(1 + σ²) . The output is divided by σ, because the true score of
    the noised data scales like 1/σ (Song & Ermon 2020, technique 3). With both, the DSM loss
    of Song & Ermon (2019) becomes ½‖z − ε_θ‖²: we train an ε-predictor, reading it as a score.
    c_noise(σ) = 100 · log σ feeds the noise level through the sinusoidal embedding.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, emb_dim: int = 32):
        super().__init__()
        self.eps_net = EpsMLP(dim=dim, hidden=hidden, depth=depth, emb_dim=emb_dim)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        check_float("x", x)
        s = _sigma_batch(sigma, x)
        sb = s.reshape(-1, *([1] * (x.dim() - 1)))
        eps = self.eps_net(x / torch.sqrt(1 + sb**2), 100.0 * torch.log(s))
        return -eps / sb


def relative_score_error(score: torch.Tensor, exact: torch.Tensor) -> float:
    """E‖s − s*‖² / E‖s*‖² over a batch: 0 is perfect, 1 is as bad as predicting 0."""
    return float((score - exact).pow(2).sum() / exact.pow(2).sum())
