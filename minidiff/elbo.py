"""The variational bound (ELBO) of a diffusion model, in nats (lesson 03).

DDPM (Ho et al. 2020) eq. 5 bounds the negative log-likelihood of one example x_0:

    −log p_θ(x_0) ≤ L = L_T + Σ_{t=2..T} L_{t−1} + L_0
        L_T     = KL(q(x_T | x_0) ‖ p(x_T))                      (prior; no parameters)
        L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))  (t = 2..T)
        L_0     = −log p_θ(x_0 | x_1)                            (decoder)

with p_θ(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I) and an ε-model:

    μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) · ε_θ(x_t, t)) / √α_t            (DDPM eq. 11)
    L_{t−1} = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) · ‖ε − ε_θ‖² + C_t               (DDPM eq. 12)

`vlb_terms` evaluates every term for a batch and an `eps_model(x_t, t)`;
`nats_to_bits_per_dim` turns the result into the unit papers report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .forward import add_noise, predict_mean_from_eps, q_posterior_mean_var, reverse_variances
from .schedules import NoiseSchedule, extract
from .utils import check_float, check_schedule


def _tensor(name: str, x) -> torch.Tensor:
    """A float tensor, or a Python number made into a float64 tensor (the KLs take either)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.tensor(float(x), dtype=torch.float64)
    return check_float(name, x)


def gaussian_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """KL(N(mean1, var1) ‖ N(mean2, var2)) elementwise, in nats (variances, not stds or logs):

        KL = ½ [ log(var2 / var1) + (var1 + (mean1 − mean2)²) / var2 − 1 ]

    Inputs broadcast against each other. For a diagonal Gaussian, sum the result over dims.
    """
    mean1, var1, mean2, var2 = (_tensor(n, x) for n, x in
                                (("mean1", mean1), ("var1", var1), ("mean2", mean2), ("var2", var2)))
    for name, v in (("var1", var1), ("var2", var2)):
        if (v <= 0).any():
            raise ValueError(f"{name} must be a positive variance; got min {v.min().item():.3g}. "
                             "Did you pass a log-variance? Use var = logvar.exp(), or std ** 2.")
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def gaussian_log_likelihood(x, mean, var) -> torch.Tensor:
    """log N(x; mean, var) elementwise, in nats:  −½ [log(2π var) + (x − mean)² / var]."""
    x, mean, var = _tensor("x", x), _tensor("mean", mean), _tensor("var", var)
    if (var <= 0).any():
        raise ValueError(f"var must be a positive variance; got min {var.min().item():.3g}")
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mean) ** 2 / var)


def discretized_gaussian_log_likelihood(x, mean, var, bins: int = 256) -> torch.Tensor:
    """log P(x) for data on `bins` evenly spaced levels in [−1, 1] (DDPM §3.3, eq. 13), elementwise.

    The decoder N(mean, var) is integrated over x's bin [x − δ, x + δ], δ = 1/(bins − 1);
    the end bins reach out to ∓∞, so the probabilities of all levels sum to 1.
    """
    x, mean, var = _tensor("x", x), _tensor("mean", mean), _tensor("var", var)
    if (x < -1 - 1e-6).any() or (x > 1 + 1e-6).any():
        raise ValueError("x must lie in [-1, 1] for the discretized decoder: scale images with x / 127.5 − 1")
    std = var.sqrt()
    delta = 1.0 / (bins - 1)
    upper = (x + delta - mean) / std
    lower = (x - delta - mean) / std
    log_cdf_upper = torch.special.log_ndtr(upper)  # bottom bin (x = −1): P(z ≤ upper)
    log_sf_lower = torch.special.log_ndtr(-lower)  # top bin (x = 1): P(z > lower)
    # clamp: far from the mean both CDFs round to the same float and the difference to 0
    mid = (torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp(min=1e-12).log()
    return torch.where(x < -1 + 1e-3, log_cdf_upper, torch.where(x > 1 - 1e-3, log_sf_lower, mid))


# -- the weights of DDPM eq. 12 -------------------------------------------
def eps_mse_weight(schedule: NoiseSchedule, t, sigma2="beta") -> torch.Tensor:
    """λ_t in L_{t−1} = λ_t ‖ε − ε_θ‖² + C_t (DDPM eq. 12), for t in 1..T (float64, shape of t):

        λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t))

    sigma2: "beta", "beta_tilde" or a tensor of T + 1 variances (see `reverse_variances`).
    The same λ_1 weighs the Gaussian decoder L_0 = −log N(x_0; μ_θ(x_1, 1), σ_1²).
    """
    check_schedule(schedule)
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps (torch.long), got dtype {t.dtype}")
    if t.numel() and ((t < 1).any() or (t > schedule.T).any()):
        raise ValueError(f"t must lie in 1..T = 1..{schedule.T}; got min {int(t.min())}, max {int(t.max())}")
    s2 = reverse_variances(schedule, sigma2)
    ti = t.cpu()
    beta, alpha, abar = schedule.betas[ti], schedule.alphas[ti], schedule.alphas_cumprod[ti]
    return (beta**2 / (2 * s2[ti] * alpha * (1 - abar))).to(t.device)


def nats_to_bits_per_dim(nats, dims: int):
    """Bits per dimension: nats / (D · ln 2). D counts every number in one example (C·H·W)."""
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive int (numbers per example, e.g. 2 or 1*28*28), got {dims!r}")
    if not isinstance(nats, (int, float, torch.Tensor)) or isinstance(nats, bool):
        raise TypeError(f"nats must be a number or a tensor, got {type(nats).__name__}")
    return nats / (dims * math.log(2.0))


# -- the whole bound ----------------------------------------------------------------------
@dataclass
class VLB:
    """Per-example terms of the bound, in nats.

    terms[:, k] is the paper's L_k: k = 0 the decoder −log p_θ(x_0 | x_1), k = 1..T−1 the
    KL terms, k = T the prior KL. With `n_t` sampling, unsampled KL columns hold 0 and
    sampled ones are scaled by (T − 1) / n_t, so that `total` stays an unbiased estimate.
    """

    terms: torch.Tensor  # (B, T + 1), float64
    dims: int

    @property
    def total(self) -> torch.Tensor:
        """The bound L per example, (B,) nats."""
        return self.terms.sum(dim=1)

    @property
    def bits_per_dim(self) -> torch.Tensor:
        return nats_to_bits_per_dim(self.total, self.dims)


def vlb_terms(schedule: NoiseSchedule, eps_model, x0: torch.Tensor, *, sigma2="beta",
              decoder: str = "gaussian", n_t: int | None = None, generator: torch.Generator | None = None,
              max_batch: int = 16384) -> VLB:
    """Every term of DDPM's bound (eq. 5) for each example of x0, given an ε-model.

    eps_model(x_t, t) -> ε_θ, with t a LongTensor (N,) in 1..T; called under no_grad on
    batches of at most `max_batch` (example, t) pairs. The expectation over x_t ~ q(x_t | x_0)
    uses one fresh noise sample per (example, t) (from `generator`, on x0's device); every
    KL and the decoder are then closed forms, computed in float64.
    n_t: None evaluates all T − 1 KL terms of every example (affordable for 2D data and T ≤ 1000);
    an int samples n_t of them per example (unbiased estimate of their sum, for big models).
    decoder: "gaussian" (continuous data) or "discretized" (256 levels in [−1, 1], DDPM eq. 13).
    """
    check_schedule(schedule)
    x0 = _tensor("x0", x0)
    if x0.dim() < 2 or x0.shape[0] < 1:
        raise ValueError(f"x0 must be a batch of shape (B, ...) with B ≥ 1, got {tuple(x0.shape)}")
    if not callable(eps_model):
        raise TypeError(f"eps_model must be callable as eps_model(x_t, t), got {type(eps_model).__name__}")
    if decoder not in ("gaussian", "discretized"):
        raise ValueError(f"decoder must be 'gaussian' or 'discretized', got {decoder!r}")
    if n_t is not None and (not isinstance(n_t, int) or not 1 <= n_t <= max(schedule.T - 1, 1)):
        raise ValueError(f"n_t must be None or an int in 1..T−1 = 1..{schedule.T - 1}, got {n_t!r}")
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
    s2 = reverse_variances(schedule, sigma2)
    B, T, dims = x0.shape[0], schedule.T, int(x0[0].numel())
    terms = torch.zeros(B, T + 1, dtype=torch.float64, device=x0.device)

    # L_T: both Gaussians are known, so this one is exact (no sampling).
    abar_T = schedule.alphas_cumprod[T].item()
    x0d = x0.double()
    terms[:, T] = gaussian_kl(math.sqrt(abar_T) * x0d, 1 - abar_T, 0.0, 1.0).flatten(1).sum(1)

    # The (example, t) pairs to evaluate: the decoder t = 1 always, KL terms t = 2..T all or n_t.
    examples, steps, weights = _pairs(B, T, n_t, generator, x0.device)
    with torch.no_grad():
        for lo in range(0, examples.numel(), max_batch):
            b, t, w = examples[lo:lo + max_batch], steps[lo:lo + max_batch], weights[lo:lo + max_batch]
            values = _pair_terms(schedule, eps_model, x0[b], t, s2, decoder, generator)
            terms.index_put_((b, t - 1), w * values, accumulate=True)
    return VLB(terms=terms, dims=dims)


def _pairs(B, T, n_t, generator, device):
    """Examples, timesteps and weights of the terms to evaluate, ordered by t (one t per model call)."""
    ex = torch.arange(B, device=device)
    decoder = (ex, torch.ones(B, dtype=torch.long, device=device), torch.ones(B, dtype=torch.float64, device=device))
    if T == 1:
        return decoder
    if n_t is None:
        t = torch.arange(2, T + 1, device=device).repeat_interleave(B)
        b = ex.repeat(T - 1)
        w = torch.ones(b.numel(), dtype=torch.float64, device=device)
    else:  # n_t distinct steps per example, uniformly: each KL term is included with probability n_t / (T − 1)
        u = torch.rand(B, T - 1, generator=generator, device=device)
        t = (u.argsort(dim=1)[:, :n_t] + 2).T.flatten()
        b = ex.repeat(n_t)
        w = torch.full((b.numel(),), (T - 1) / n_t, dtype=torch.float64, device=device)
    return torch.cat([decoder[0], b]), torch.cat([decoder[1], t]), torch.cat([decoder[2], w])


def _pair_terms(schedule, eps_model, x0, t, s2, decoder, generator):
    """L_{t−1} for each row of x0 with its own t (L_0 where t = 1), summed over dims, float64."""
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = add_noise(schedule, x0, noise, t)
    eps = eps_model(x_t, t)
    if not isinstance(eps, torch.Tensor) or eps.shape != x_t.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps_model(x_t, t) must return a tensor shaped like x_t {tuple(x_t.shape)}, got {got}")
    x0d, x_td = x0.double(), x_t.double()
    mean_theta = predict_mean_from_eps(schedule, x_td, t, eps.double())
    var_theta = extract(s2, t, x0d)
    out = torch.empty(x0.shape[0], dtype=torch.float64, device=x0.device)

    first = t == 1  # L_0 = −log p_θ(x_0 | x_1)
    if first.any():
        loglik = gaussian_log_likelihood if decoder == "gaussian" else discretized_gaussian_log_likelihood
        out[first] = -loglik(x0d[first], mean_theta[first], var_theta[first]).flatten(1).sum(1)
    rest = ~first  # L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))
    if rest.any():
        mean_q, var_q = q_posterior_mean_var(schedule, x0d[rest], x_td[rest], t[rest])
        out[rest] = gaussian_kl(mean_q, var_q, mean_theta[rest], var_theta[rest]).flatten(1).sum(1)
    return out
