"""Variational diffusion models: the log-SNR γ(t) as the one object, and the continuous-time ELBO (lesson 11).

Kingma, Salimans, Poole & Ho (2021), "Variational Diffusion Models" (VDM); official code: github.com/google-research/vdm
(model_vdm.py). VDM's notation, t ∈ [0, 1] (0 = data, 1 = noise), data x, latents z_t:

    z_t = α_t x + σ_t ε,   γ(t) = −log SNR(t),   σ_t² = sigmoid(γ(t)),   α_t² = sigmoid(−γ(t))   (variance preserving)

DDPM in these terms: ᾱ = α_t², SNR = ᾱ/(1 − ᾱ) (lesson 01's `schedules.snr`), and DDPM's step i is t = i/T.
Every model here is conditioned on γ_t itself, not on t: `eps_model(z_t, gamma_t)` returns ε̂ (VDM's score network
gets g_t = γ(t) too). The bound on −log P(x) of 8-bit data, in nats per example, has three terms:

    prior           KL(q(z_1 | x) ‖ N(0, I))                                                       `prior_kl`
    diffusion, T steps (s = (i − 1)/T, t = i/T, i ~ U{1..T}):
                    L_T = (T/2) E[(SNR(s) − SNR(t)) ‖x − x̂_θ(z_t; t)‖²]
                        = (T/2) E[expm1(γ(t) − γ(s)) ‖ε − ε̂_θ(z_t; γ_t)‖²]                      `discrete_diffusion_loss`
    diffusion, T → ∞ (t ~ U(0, 1)):
                    L_∞ = −½ E[SNR′(t) ‖x − x̂_θ(z_t; t)‖²] = ½ E[γ′(t) ‖ε − ε̂_θ(z_t; γ_t)‖²]   `continuous_diffusion_loss`
    reconstruction  −log p(x | z_0),  p(x_i | z_0) ∝ exp(−(z_0,i/α_0 − x_i)² / (2 σ_0²/α_0²)) over the 256 levels
                                                                                                   `reconstruction_nll`

(ε-form from the x-form: x − x̂ = (σ_t/α_t)(ε̂ − ε), so SNR(t) ‖x − x̂‖² = ‖ε − ε̂‖², and SNR(s)/SNR(t) = exp(γ(t) − γ(s)).)
With v = SNR(t) as the variable, L_∞ = ½ ∫_{SNR(1)}^{SNR(0)} E‖x − x̂(z_v, v)‖² dv: the schedule enters only through its
end points. Between them it changes the variance of the Monte Carlo estimate alone, which VDM lowers by learning γ with
a monotone network (`MonotoneLogSNR`), whose weights follow the gradient of the *squared* loss (`vdm_loss`).

Contents:
    alpha_sigma, LinearLogSNR, CosineLogSNR, TableLogSNR, MonotoneLogSNR, monotone_log_snr    the schedules γ(t)
    GammaConditioned, eps_model_from_net                                                       models of (z_t, γ_t)
    gamma_and_slope, continuous_diffusion_loss, discrete_diffusion_loss, sample_times, diffusion_loss
    prior_kl, reconstruction_nll, vdm_bound (VDMBound)                                           the whole bound
    vdm_loss                                                    training loss; the schedule minimises the variance
    gaussian_denoiser, gaussian_diffusion_loss                                 closed forms for data N(μ, diag s²)
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import nn

from .elbo import gaussian_kl, nats_to_bits_per_dim
from .schedules import log_snr
from .sde import check_time
from .utils import check_float, check_positive_int, check_prediction, check_schedule, randn

GAMMA_MIN, GAMMA_MAX = -13.3, 5.0  # VDM's end points of γ (configs/cifar10.py: gamma_min, gamma_max)


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor shaped (B, 1, ..., 1) against x, in x's dtype."""
    return v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def alpha_sigma(gamma_t: torch.Tensor):
    """(α_t, σ_t) from γ_t: α_t² = sigmoid(−γ_t), σ_t² = sigmoid(γ_t) (so α_t² + σ_t² = 1)."""
    return torch.sigmoid(-gamma_t).sqrt(), torch.sigmoid(gamma_t).sqrt()


def _check_ends(gamma_0: float, gamma_1: float) -> None:
    if not (math.isfinite(gamma_0) and math.isfinite(gamma_1) and gamma_0 < gamma_1):
        raise ValueError(f"need finite end points gamma_0 < gamma_1 (γ = −log SNR grows from data to noise), "
                         f"got gamma_0={gamma_0}, gamma_1={gamma_1}")


def _check_t(t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise TypeError(f"t must be a float tensor of times in [0, 1], got {getattr(t, 'dtype', type(t).__name__)}")
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"t must lie in [0, 1] (0 = data, 1 = noise), got values in "
                         f"[{t.min().item():.4g}, {t.max().item():.4g}]; a DDPM step i is t = i / T")
    return t


# ---------------------------------------------------------------- 1. schedules: γ(t), increasing in t


class LinearLogSNR(nn.Module):
    """γ(t) = γ_0 + (γ_1 − γ_0) t: log-SNR linear in t (VDM's fixed schedule, NoiseSchedule_FixedLinear)."""

    def __init__(self, gamma_0: float = GAMMA_MIN, gamma_1: float = GAMMA_MAX):
        super().__init__()
        _check_ends(gamma_0, gamma_1)
        self.gamma_0, self.gamma_1 = float(gamma_0), float(gamma_1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.gamma_0 + (self.gamma_1 - self.gamma_0) * _check_t(t)


class CosineLogSNR(nn.Module):
    """The cosine schedule with its ends pinned: SNR(t) = 1/tan²(u), u = a + (b − a) t, so γ(t) = 2 log tan(u),
    with a = arctan(exp(γ_0/2)), b = arctan(exp(γ_1/2)) (ᾱ = cos² u: Nichol & Dhariwal's shape, truncated)."""

    def __init__(self, gamma_0: float = GAMMA_MIN, gamma_1: float = GAMMA_MAX):
        super().__init__()
        _check_ends(gamma_0, gamma_1)
        self.gamma_0, self.gamma_1 = float(gamma_0), float(gamma_1)
        self.a, self.b = math.atan(math.exp(gamma_0 / 2)), math.atan(math.exp(gamma_1 / 2))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return 2 * torch.log(torch.tan(self.a + (self.b - self.a) * _check_t(t)))


class TableLogSNR(nn.Module):
    """γ(t) of a DDPM `NoiseSchedule`, linear in t between its steps. Its γ_i = −log SNR_i is finite for i = 1..T only
    (SNR_0 = ∞: no noise at all), so the time axis needs an end point at the data side:

        gamma_0 = None:   t ∈ [0, 1] covers steps 1..T, step i at t = (i − 1)/(T − 1), γ(0) = −log SNR_1
        gamma_0 = float:  step i at t = i/T (DDPM's convention), with γ(0) = gamma_0 (< −log SNR_1) in place of −∞

    `steps(γ)` inverts it: the float DDPM step at which the schedule has log-SNR −γ (the time a network trained on
    that schedule expects; with gamma_0 set, steps below 1 are noise levels the network never saw)."""

    def __init__(self, schedule, gamma_0: float | None = None):
        super().__init__()
        s = check_schedule(schedule)
        table = -log_snr(s.alphas_cumprod.double())
        if gamma_0 is None:
            if s.T < 2:
                raise ValueError("gamma_0=None needs a schedule of T ≥ 2 steps (t runs from step 1 to step T)")
            table, self.first = table[1:], 1
        else:
            _check_ends(gamma_0, table[1].item())
            table[0], self.first = gamma_0, 0
        if not (table[1:] > table[:-1]).all():
            raise ValueError("the schedule's log-SNR must fall at every step (ᾱ_t strictly decreasing)")
        self.n = table.numel() - 1  # segments of the table
        self.register_buffer("table", table)
        self.gamma_0, self.gamma_1 = table[0].item(), table[-1].item()

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        u = _check_t(t) * self.n
        i = u.detach().floor().clamp(0, self.n - 1).long()
        table = self.table.to(device=t.device, dtype=t.dtype)
        return table[i] + (u - i) * (table[i + 1] - table[i])

    def steps(self, gamma_t: torch.Tensor) -> torch.Tensor:
        """The DDPM step (float) where the schedule's γ equals γ_t, by inverting the piecewise-linear table."""
        table = self.table.to(gamma_t.device)
        g = gamma_t.detach().double().clamp(table[0], table[-1])
        i = (torch.searchsorted(table, g, right=True) - 1).clamp(0, self.n - 1)
        frac = (g - table[i]) / (table[i + 1] - table[i])
        return (self.first + i + frac).to(gamma_t.dtype)


def monotone_log_snr(net: "MonotoneLogSNR", t: torch.Tensor) -> torch.Tensor:
    """γ_η(t) of VDM's monotone network, normalised to the end points net.gamma_0, net.gamma_1:

        γ̂(t) = |w_1| t + (1/K) Σ_k |w_3,k| φ(|w_2,k| (2t − 1) + b_2,k),     φ(h) = 2 (sigmoid(h) − ½)
        γ(t)  = γ_0 + (γ_1 − γ_0) (γ̂(t) − γ̂(0)) / (γ̂(1) − γ̂(0))

    Every weight enters through |·| and φ is increasing, so γ̂ (and γ) increase with t for any parameters.
    t: float tensor (B,) in [0, 1]; returns γ(t) of shape (B,) in t's dtype.
    """
    ends = torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device)
    tt = torch.cat([t, ends])[:, None]  # 1. evaluate at t, 0 and 1 in one pass: (B + 2, 1)
    w1, w2, b2, w3 = (p.to(t.dtype) for p in (net.w1, net.w2, net.b2, net.w3))
    h = torch.sigmoid((2 * tt - 1) * w2.abs() + b2)  # 2. the gated layer, non-negative weights: (B + 2, K)
    g_hat = tt[:, 0] * w1.abs() + (2 * (h - 0.5)) @ w3.abs() / w3.numel()  # 3. linear + gated parts: (B + 2,)
    g_t, g_0, g_1 = g_hat[:-2], g_hat[-2], g_hat[-1]
    return net.gamma_0 + (net.gamma_1 - net.gamma_0) * (g_t - g_0) / (g_1 - g_0)  # 4. pin the end points


class MonotoneLogSNR(nn.Module):
    """A learned γ_η(t), increasing in t by construction (VDM's NoiseSchedule_NNet with DenseMonotone layers),
    with fixed end points gamma_0 < gamma_1: see `monotone_log_snr`. Starts close to `LinearLogSNR`."""

    def __init__(self, gamma_0: float = GAMMA_MIN, gamma_1: float = GAMMA_MAX, features: int = 64, seed: int = 0):
        super().__init__()
        _check_ends(gamma_0, gamma_1)
        check_positive_int("features", features)
        self.gamma_0, self.gamma_1 = float(gamma_0), float(gamma_1)
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.ones(1))
        self.w2 = nn.Parameter(torch.randn(features, generator=g))
        self.b2 = nn.Parameter(torch.randn(features, generator=g))
        self.w3 = nn.Parameter(0.01 * torch.randn(features, generator=g))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return monotone_log_snr(self, _check_t(t))


# ---------------------------------------------------------------- 2. models conditioned on γ_t


class GammaConditioned(nn.Module):
    """An ε-network of (x_t, t_in) seen as a model of (z_t, γ_t): t_in = scale · (γ_t − γ_min)/(γ_max − γ_min)
    (VDM's ScoreUNet maps g_t to [0, 1] the same way, then embeds 1000 t). With fixed γ_min, γ_max the network sees
    γ_t itself, whatever the schedule: the property that makes L_∞ depend on the schedule's end points only."""

    def __init__(self, net: nn.Module, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX, scale: float = 1000.0):
        super().__init__()
        _check_ends(gamma_min, gamma_max)
        self.net, self.gamma_min, self.gamma_max, self.scale = net, float(gamma_min), float(gamma_max), float(scale)

    def forward(self, z_t: torch.Tensor, gamma_t: torch.Tensor) -> torch.Tensor:
        return self.net(z_t, self.scale * (gamma_t - self.gamma_min) / (self.gamma_max - self.gamma_min))


def eps_model_from_net(net: Callable, table: TableLogSNR, prediction: str = "eps") -> Callable:
    """A network trained on a DDPM schedule (called as net(x_t, step), step a float in [0, T]) as a model of
    (z_t, γ_t): it is called at step = table.steps(γ_t); a v-prediction is turned into ε̂ = σ_t z_t + α_t v̂
    (lesson 05's `vpred`, with α, σ from γ_t so that any continuous t works)."""
    if prediction not in ("eps", "v"):
        raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")

    def eps_model(z_t: torch.Tensor, gamma_t: torch.Tensor) -> torch.Tensor:
        out = net(z_t, table.steps(gamma_t))
        if prediction == "eps":
            return out
        alpha, sigma = alpha_sigma(gamma_t)
        return _col(sigma, z_t) * z_t + _col(alpha, z_t) * out

    return eps_model


# ---------------------------------------------------------------- 3. the diffusion loss


def gamma_and_slope(gamma: Callable, t: torch.Tensor):
    """(γ(t), γ′(t)), both (B,). γ′ by autograd with create_graph, so that it stays differentiable in the
    schedule's parameters (a learned γ learns through γ′ too). Works under torch.no_grad as well."""
    keep = torch.is_grad_enabled()
    with torch.enable_grad():
        tt = t.detach().requires_grad_(True)
        g = gamma(tt)
        (dg,) = torch.autograd.grad(g.sum(), tt, create_graph=keep)
    return (g, dg) if keep else (g.detach(), dg.detach())


def _check_draws(x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> None:
    check_float("x", x)
    check_float("eps", eps)
    if eps.shape != x.shape:
        raise ValueError(f"eps must be shaped like x {tuple(x.shape)}, got {tuple(eps.shape)}")
    check_time("t", t, x)


def continuous_diffusion_loss(gamma: Callable, eps_model: Callable, x: torch.Tensor, t: torch.Tensor,
                              eps: torch.Tensor) -> torch.Tensor:
    """½ γ′(t) ‖ε − ε̂_θ(z_t; γ_t)‖² per example (B,): one draw of L_∞, for given t (B,) in [0, 1] and ε ~ N(0, I)."""
    _check_draws(x, t, eps)
    g, dg = gamma_and_slope(gamma, t)  # 1. γ(t) and γ′(t)
    if (dg <= 0).any():
        raise ValueError(f"γ must increase with t (noise grows), but γ′(t) = {dg.min().item():.3g} ≤ 0 "
                         f"at t = {t[dg.argmin()].item():.3g}: use a monotone schedule")
    alpha, sigma = alpha_sigma(g)  # 2. α_t² = sigmoid(−γ), σ_t² = sigmoid(γ)
    z_t = _col(alpha, x) * x + _col(sigma, x) * eps  # 3. z_t = α_t x + σ_t ε
    eps_hat = check_prediction("eps_model(z_t, gamma_t)", eps_model(z_t, g), z_t)
    err = (eps - eps_hat).pow(2).flatten(1).sum(1)  # 4. ‖ε − ε̂_θ(z_t; γ_t)‖²
    return 0.5 * dg.to(err.dtype) * err


def discrete_diffusion_loss(gamma: Callable, eps_model: Callable, x: torch.Tensor, i: torch.Tensor, T: int,
                            eps: torch.Tensor) -> torch.Tensor:
    """(T/2) expm1(γ(t) − γ(s)) ‖ε − ε̂_θ(z_t; γ_t)‖² per example (B,), t = i/T, s = (i − 1)/T: one draw of L_T."""
    check_positive_int("T", T)
    if not isinstance(i, torch.Tensor) or i.is_floating_point() or i.shape != (x.shape[0],):
        raise TypeError(f"i must be an integer tensor of shape ({x.shape[0]},) of steps in 1..T")
    if (i < 1).any() or (i > T).any():
        raise ValueError(f"steps i must lie in 1..T = 1..{T}, got {int(i.min())}..{int(i.max())}")
    t = i.to(x.dtype) / T
    _check_draws(x, t, eps)
    g_t, g_s = gamma(t), gamma((i - 1).to(x.dtype) / T)  # 1. γ at both ends of step i
    if (g_t <= g_s).any():
        raise ValueError("γ must increase with t (noise grows): γ(t) ≤ γ(s) for some step; use a monotone schedule")
    alpha, sigma = alpha_sigma(g_t)
    z_t = _col(alpha, x) * x + _col(sigma, x) * eps  # 2. z_t = α_t x + σ_t ε
    eps_hat = check_prediction("eps_model(z_t, gamma_t)", eps_model(z_t, g_t), z_t)
    err = (eps - eps_hat).pow(2).flatten(1).sum(1)  # 3. ‖ε − ε̂‖²
    return 0.5 * T * torch.expm1(g_t - g_s).to(err.dtype) * err  # 4. SNR(s)/SNR(t) − 1 = expm1(γ_t − γ_s)


def sample_times(n: int, generator: torch.Generator | None = None, device=None, dtype=torch.float32,
                 stratified: bool = True) -> torch.Tensor:
    """n times in [0, 1): t_k = (u + k/n) mod 1 with one u ~ U(0, 1) (VDM's antithetic_time_sampling: every
    part of [0, 1] gets its share, a lower-variance estimate of the same mean), or n independent U(0, 1)."""
    check_positive_int("n", n)
    gdev = generator.device if generator is not None else device
    if not stratified:
        return torch.rand(n, generator=generator, device=gdev, dtype=torch.float64).to(device=device, dtype=dtype)
    u = torch.rand(1, generator=generator, device=gdev, dtype=torch.float64).to(device)
    return torch.remainder(u + torch.arange(n, device=device, dtype=torch.float64) / n, 1.0).to(dtype)


def diffusion_loss(gamma: Callable, eps_model: Callable, x: torch.Tensor, generator: torch.Generator | None = None,
                   T: int | None = None, stratified: bool = True) -> torch.Tensor:
    """One Monte Carlo draw per example (B,) of L_∞ (T = None) or of L_T: t from `sample_times`, ε ~ N(0, I);
    for T steps, i = ⌈t T⌉ (VDM's discretisation of t)."""
    check_float("x", x)
    t = sample_times(x.shape[0], generator, x.device, x.dtype, stratified)
    eps = randn(x.shape, generator, x.device, x.dtype)
    if T is None:
        return continuous_diffusion_loss(gamma, eps_model, x, t, eps)
    i = torch.ceil(t.double() * T).long().clamp(1, T)
    return discrete_diffusion_loss(gamma, eps_model, x, i, T, eps)


# ---------------------------------------------------------------- 4. the whole bound


def prior_kl(gamma: Callable, x: torch.Tensor) -> torch.Tensor:
    """KL(q(z_1 | x) ‖ N(0, I)) per example (B,): q(z_1 | x) = N(α_1 x, σ_1² I)."""
    check_float("x", x)
    g1 = gamma(torch.ones(1, dtype=torch.float64, device=x.device))
    alpha, sigma = alpha_sigma(g1)  # in float64: σ_1² rounds to 1 in float32 when γ_1 is large
    return gaussian_kl(alpha * x.double(), sigma**2, 0.0, 1.0).flatten(1).sum(1).to(x.dtype)


def reconstruction_nll(gamma: Callable, x: torch.Tensor, generator: torch.Generator | None = None,
                       levels: int = 256) -> torch.Tensor:
    """−log p(x | z_0) per example (B,), z_0 = α_0 x + σ_0 ε, for data on `levels` evenly spaced values in [−1, 1]:
    p(x_i = x_k | z_0) = softmax_k(−(z_0,i/α_0 − x_k)² / (2 e^{γ_0})), since (σ_0/α_0)² = e^{γ_0}
    (VDM's EncDec.logprob: exact when the dimensions are independent given z_0)."""
    check_float("x", x)
    grid = torch.linspace(-1.0, 1.0, levels, dtype=x.dtype, device=x.device)
    k = torch.round((x + 1) * (levels - 1) / 2).long()
    if (k < 0).any() or (k >= levels).any() or not torch.allclose(grid[k.clamp(0, levels - 1)], x, atol=1e-4 / levels):
        raise ValueError(f"x must hold values on the {levels} levels k/{(levels - 1) / 2:g} − 1 (8-bit images "
                         "scaled to [−1, 1]); dequantised or out-of-range data has no discrete likelihood")
    g0 = gamma(torch.zeros(1, dtype=torch.float64, device=x.device)).to(x.dtype)
    alpha, sigma = alpha_sigma(g0)
    z0_scaled = x + torch.exp(0.5 * g0) * randn(x.shape, generator, x.device, x.dtype)  # z_0 / α_0 = x + (σ_0/α_0) ε
    logits = -0.5 * (z0_scaled[..., None] - grid) ** 2 * torch.exp(-g0)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, k[..., None])[..., 0]
    return -logp.flatten(1).sum(1)


class VDMBound(NamedTuple):
    """The three terms of VDM's bound per example (B,), in nats; total and bits/dim of the discrete data."""

    prior: torch.Tensor
    diffusion: torch.Tensor  # mean over the n_t draws of t per example
    reconstruction: torch.Tensor
    dims: int

    @property
    def total(self) -> torch.Tensor:
        return self.prior + self.diffusion + self.reconstruction

    @property
    def bits_per_dim(self) -> torch.Tensor:
        return nats_to_bits_per_dim(self.total, self.dims)


def vdm_bound(gamma: Callable, eps_model: Callable, x: torch.Tensor, generator: torch.Generator | None = None,
              n_t: int = 1, T: int | None = None, max_batch: int = 256) -> VDMBound:
    """VDM's bound −log P(x) ≤ prior + diffusion + reconstruction for 8-bit data x in [−1, 1], per example, with
    n_t draws of (t, ε) per example for the diffusion term (L_∞, or L_T for T steps), in batches of ≤ max_batch."""
    check_float("x", x)
    check_positive_int("n_t", n_t)
    with torch.no_grad():
        draws = []
        for _ in range(n_t):
            parts = [diffusion_loss(gamma, eps_model, xb, generator, T) for xb in x.split(max_batch)]
            draws.append(torch.cat(parts).double())
        diff = torch.stack(draws).mean(0)
        return VDMBound(prior_kl(gamma, x).double(), diff, reconstruction_nll(gamma, x, generator).double(),
                        int(x[0].numel()))


# ---------------------------------------------------------------- 5. training: the schedule minimises the variance


class _SquaredLossGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient of example k by box[0][k] (filled in after the loss is
    known, before backward runs)."""

    @staticmethod
    def forward(ctx, value, box):
        ctx.box = box
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.box[0].to(grad), None


def vdm_loss(gamma: nn.Module, eps_model: Callable, x: torch.Tensor, generator: torch.Generator | None = None,
             stratified: bool = True) -> torch.Tensor:
    """The batch mean of L_∞'s draws, for `training.train`. The denoiser's weights get the gradient of the mean
    loss; the schedule's weights that of the mean *squared* loss E[L²] = Var[L] + E[L]², i.e. of the variance,
    since E[L] does not depend on the schedule between fixed end points (VDM's variance minimisation). Done in
    one backward pass: γ(t) and γ′(t) of example k pass through a gate that multiplies their gradient by 2 L_k."""
    check_float("x", x)
    t = sample_times(x.shape[0], generator, x.device, x.dtype, stratified)
    eps = randn(x.shape, generator, x.device, x.dtype)
    g, dg = gamma_and_slope(gamma, t)
    box = [None]
    g, dg = _SquaredLossGrad.apply(g, box), _SquaredLossGrad.apply(dg, box)
    alpha, sigma = alpha_sigma(g)
    z_t = _col(alpha, x) * x + _col(sigma, x) * eps
    losses = 0.5 * dg * (eps - eps_model(z_t, g)).pow(2).flatten(1).sum(1)
    box[0] = 2 * losses.detach()
    return losses.mean()


# ---------------------------------------------------------------- 6. closed forms for Gaussian data


def gaussian_denoiser(mu: torch.Tensor, s2: torch.Tensor) -> Callable:
    """The optimal ε̂(z_t; γ_t) = E[ε | z_t] for data x ~ N(mu, diag s2): with a = α_t, b = σ_t,
    E[x | z] = mu + a s² (z − a mu)/(a² s² + b²) and ε̂ = (z − a E[x | z]) / b = b (z − a mu)/(a² s² + b²)."""

    def eps_model(z: torch.Tensor, gamma_t: torch.Tensor) -> torch.Tensor:
        a, b = (_col(v, z) for v in alpha_sigma(gamma_t))
        m, v = mu.to(z), s2.to(z)
        return b * (z - a * m) / (a**2 * v + b**2)

    return eps_model


def gaussian_diffusion_loss(gamma: Callable, s2: torch.Tensor, T: int | None = None) -> torch.Tensor:
    """The exact expected diffusion loss (nats, float64) of the optimal model for data N(μ, diag s2), for which
    E‖x − x̂‖² = Σ_d s_d²/(1 + v s_d²) at SNR v:

        T = None:  L_∞ = ½ Σ_d log((1 + SNR(0) s_d²) / (1 + SNR(1) s_d²))       (the integral over v in closed form)
        T steps:   L_T = ½ Σ_{i=1..T} (SNR(s_i) − SNR(t_i)) Σ_d s_d²/(1 + SNR(t_i) s_d²)
    """
    s2 = check_float("s2", s2).double()
    if T is None:
        snr = torch.exp(-gamma(torch.tensor([0.0, 1.0], dtype=torch.float64))).detach()
        return 0.5 * torch.log1p(snr[0] * s2).sub(torch.log1p(snr[1] * s2)).sum()
    check_positive_int("T", T)
    snr = torch.exp(-gamma(torch.arange(T + 1, dtype=torch.float64) / T)).detach()  # SNR(i/T), i = 0..T
    mse = (s2 / (1 + snr[1:, None] * s2)).sum(1)
    return 0.5 * ((snr[:-1] - snr[1:]) * mse).sum()
