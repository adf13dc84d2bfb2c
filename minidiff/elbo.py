"""The variational bound (ELBO) of a diffusion model, in nats (lesson 03).

DDPM (Ho et al. 2020) eq. 5 bounds the negative log-likelihood of one example x_0:

    −log p_θ(x_0) ≤ L = L_T + Σ_{t=2..T} L_{t−1} + L_0
        L_T     = KL(q(x_T | x_0) ‖ p(x_T))                      (prior; no parameters)
        L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))  (t = 2..T)
        L_0     = −log p_θ(x_0 | x_1)                            (decoder)

with p_θ(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I) and an ε-model:

    μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) · ε_θ(x_t, t)) / √α_t            (eq. 11)
    L_{t−1} = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) · ‖ε − ε_θ‖² + C_t               (eq. 12)

`vlb_terms` evaluates every term for a batch and an `eps_model(x_t, t)`;
`nats_to_bits_per_dim` turns the result into the unit papers report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .forward import add_noise, q_posterior_mean_var
from .schedules import NoiseSchedule, extract

SIGMA2_KINDS = ("beta", "beta_tilde")


# -- validation helpers -----------------------------------------------------------------
def _tensor(name: str, x) -> torch.Tensor:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.tensor(float(x), dtype=torch.float64)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (or a float), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}: use {name}.float()")
    return x


def _schedule(schedule) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}: "
                        "build one with NoiseSchedule.make('linear', T)")
    return schedule


def _timesteps_from_one(t) -> None:
    t = torch.as_tensor(t)
    if not t.is_floating_point() and t.numel() and (t < 1).any():
        raise ValueError(f"t must lie in 1..T here (at t = 0 there is no noise to remove); got min {int(t.min())}")


def _same_shape(a_name, a, b_name, b) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{b_name} has shape {tuple(b.shape)} but {a_name} has {tuple(a.shape)}: they must match")


# -- Gaussian KL and likelihoods ----------------------------------------------------------
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


# -- from ε to x_0 and to the reverse mean ------------------------------------------------
def predict_x0_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """x_0 from x_t and the noise in it, eq. 4 solved for x_0:  x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t."""
    _schedule(schedule)
    x_t, eps = _tensor("x_t", x_t), _tensor("eps", eps)
    _same_shape("x_t", x_t, "eps", eps)
    abar = schedule.alphas_cumprod  # coefficients in float64 before extract casts them to x_t's dtype
    return extract(1 / abar.sqrt(), t, x_t) * x_t - extract(((1 - abar) / abar).sqrt(), t, x_t) * eps


def predict_mean_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """The reverse mean of an ε-model (DDPM eq. 11), for t in 1..T:

        μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) · ε) / √α_t

    With the true noise ε it equals the posterior mean μ̃_t(x_t, x_0) of eq. 7.
    """
    _schedule(schedule)
    x_t, eps = _tensor("x_t", x_t), _tensor("eps", eps)
    _same_shape("x_t", x_t, "eps", eps)
    _timesteps_from_one(t)
    s = schedule
    # 1 − ᾱ_t in float64 first: in float32, ᾱ_1 = 0.9999 leaves ~3 digits of 1 − ᾱ_1.
    eps_coef = torch.zeros_like(s.betas)
    eps_coef[1:] = s.betas[1:] / (1 - s.alphas_cumprod[1:]).sqrt()
    return (x_t - extract(eps_coef, t, x_t) * eps) / extract(s.alphas.sqrt(), t, x_t)


# -- the reverse variances and the weights of eq. 12 -------------------------------------------
def reverse_variances(schedule: NoiseSchedule, sigma2="beta") -> torch.Tensor:
    """σ_t² of p_θ(x_{t−1} | x_t) for t = 0..T (float64, length T + 1; entry 0 is unused and 0).

    "beta":        σ_t² = β_t, optimal when x_0 ~ N(0, I) (DDPM §3.2).
    "beta_tilde":  σ_t² = β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, optimal when x_0 is one point.
                   β̃_1 = 0 would make the decoder a delta, so σ_1² = β_1 here too
                   (DDPM's code uses β̃_2 at t = 1 instead).
    a tensor:      your own σ_t², length T + 1, returned as float64.
    """
    _schedule(schedule)
    if isinstance(sigma2, torch.Tensor):
        sigma2 = sigma2.detach().to("cpu", torch.float64).flatten()
        if sigma2.numel() != schedule.T + 1:
            raise ValueError(f"sigma2 must hold T + 1 = {schedule.T + 1} values (σ_0² .. σ_T²), got {sigma2.numel()}")
        if not torch.isfinite(sigma2[1:]).all() or (sigma2[1:] <= 0).any():
            raise ValueError("sigma2[1:] must be positive, finite variances (σ_t² for t = 1..T)")
        return sigma2
    if sigma2 == "beta":
        return schedule.betas.clone()
    if sigma2 == "beta_tilde":
        abar = schedule.alphas_cumprod
        out = torch.zeros_like(schedule.betas)
        out[1:] = (1 - abar[:-1]) / (1 - abar[1:]) * schedule.betas[1:]
        out[1] = schedule.betas[1]
        return out
    raise ValueError(f"sigma2 must be one of {SIGMA2_KINDS} or a tensor of T + 1 variances, got {sigma2!r}")


def eps_mse_weight(schedule: NoiseSchedule, t, sigma2="beta") -> torch.Tensor:
    """λ_t in L_{t−1} = λ_t ‖ε − ε_θ‖² + C_t (DDPM eq. 12), for t in 1..T (float64, shape of t):

        λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t))

    sigma2: "beta", "beta_tilde" or a tensor of T + 1 variances (see `reverse_variances`).
    The same λ_1 weighs the Gaussian decoder L_0 = −log N(x_0; μ_θ(x_1, 1), σ_1²).
    """
    _schedule(schedule)
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
    _schedule(schedule)
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
