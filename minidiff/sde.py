"""The SDE view of diffusion: VP and VE SDEs, the reverse-time SDE, the probability-flow ODE (lesson 09).

Song et al. (2021, "Score-Based Generative Modeling through Stochastic Differential Equations") let the
number of noise levels go to infinity. Time becomes continuous, t ∈ [0, 1], and the noising is an Itô SDE

    dx = f(x, t) dt + g(t) dW                                         (Song et al. 2021, §3.1)

VP (the limit of DDPM, §3.4 and Appendix B):  f = −½ β(t) x,  g = √β(t),  β(t) = β_min + t (β_max − β_min)
    x_t | x_0 ~ N(√ᾱ(t) x_0, (1 − ᾱ(t)) I),   ᾱ(t) = exp(−∫_0^t β(s) ds)
VE (the limit of NCSN's noise levels):  f = 0,  g = σ(t) √(2 log(σ_max/σ_min)),  σ(t) = σ_min (σ_max/σ_min)^t
    x_t | x_0 ~ N(x_0, (σ(t)² − σ_min²) I)

DDPM's chain with T steps is this VP SDE seen at t = i/T: t_discrete = t · T, β(i/T) ≈ T β_i and ᾱ(i/T) ≈ ᾱ_i.
`VPSDE.from_schedule` makes the match exact for any `NoiseSchedule` (log ᾱ interpolated linearly between
the steps, so ᾱ(i/T) = ᾱ_i and β(t) = T (log ᾱ_{i−1} − log ᾱ_i) on ((i−1)/T, i/T]).

Reversing time (Anderson 1982; Song et al. 2021, §3.2) needs only the score s = ∇ log p_t:

    reverse SDE:        dx = [f(x, t) − g(t)² s(x, t)] dt + g(t) dW̄      (run from t = 1 down to 0)
    probability flow:   dx/dt = f(x, t) − ½ g(t)² s(x, t)                  (Song et al. 2021, §4.3)

Both carry the same marginals p_t. Models here are ε-models, as in every lesson: `eps_model(x_t, t_model)`
with t_model = t · sde.T a float tensor (B,) (sde.T = 1000 for DDPM's linear schedule), read as a score
s = −ε / σ_t with σ_t the std of x_t | x_0 (DDPM eq. 4; `score.eps_to_score`).

Solvers are steps `step(x, t, t_next)` for `sampling.simulate`: `euler_maruyama_step` for the reverse SDE,
`euler_step` / `heun_step` for any ODE drift, and an adaptive Dormand–Prince `solve_ode` with a step budget.
Every function is shape-generic: x may be (B, D) points or (B, C, H, W) images.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch

from .data.toy import GaussianMixture
from .sampling import simulate
from .utils import check_float, check_positive_int, check_schedule, randn

# ---------------------------------------------------------------- time


def check_time(name: str, t, x: torch.Tensor) -> torch.Tensor:
    """t as a float tensor (B,) in x's dtype and device, every entry in [0, 1]; a float is repeated."""
    if isinstance(t, bool):
        raise TypeError(f"{name} must be a float in [0, 1] or a float tensor of shape (B,), got {t!r}")
    if isinstance(t, torch.Tensor):
        t = t.to(x.device)
        t = (t if t.is_floating_point() else t.to(torch.float64)).to(x.dtype)
    else:  # a Python number: through float64, so that 0.3 stays 0.3 for float64 x
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device).to(x.dtype)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"{name} must be a float or have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}")
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        bad = t[torch.isnan(t) | (t < 0) | (t > 1)][0].item()
        raise ValueError(f"{name} must lie in [0, 1] (continuous time: 0 = data, 1 = noise), got {bad}; "
                         f"a DDPM timestep i is t = i / T")
    return t


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor reshaped to (B, 1, ..., 1) to broadcast against x."""
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def _check_scalar_time(name: str, t) -> float:
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {t}")
    return t


# ---------------------------------------------------------------- the VP SDE, closed forms (exercise 1)


def vp_sde(x: torch.Tensor, t, beta_min: float = 0.1, beta_max: float = 20.0):
    """Drift and diffusion of the VP SDE with linear β(t) = β_min + t (β_max − β_min)  (Song et al. 2021, eq. 11):

        f(x, t) = −½ β(t) x,     g(t) = √β(t).

    x: (B, ...); t: a float or a tensor (B,) in [0, 1]. Returns (drift shaped like x, g of shape (B, 1, ...)).
    """
    check_float("x", x)
    t = check_time("t", t, x)
    beta = _col(beta_min + t * (beta_max - beta_min), x)
    return -0.5 * beta * x, beta.sqrt()


def vp_marginal(x0: torch.Tensor, t, beta_min: float = 0.1, beta_max: float = 20.0):
    """Mean and std of x_t | x_0 under the linear VP SDE (solving the linear SDE in closed form):

        ∫_0^t β = β_min t + ½ (β_max − β_min) t²,   ᾱ(t) = exp(−∫_0^t β),
        mean = √ᾱ(t) x_0 = exp(−½ ∫β) x_0,          std = √(1 − ᾱ(t)).

    Returns (mean shaped like x0, std of shape (B, 1, ...)).
    """
    check_float("x0", x0)
    t = check_time("t", t, x0)
    integral = _col(beta_min * t + 0.5 * (beta_max - beta_min) * t**2, x0)
    return torch.exp(-0.5 * integral) * x0, torch.sqrt(-torch.expm1(-integral))


# ---------------------------------------------------------------- SDE objects


class SDE:
    """What VPSDE and VESDE share: x_t | x_0 ~ N(mean_scale(t) x_0, std(t)² I), the prior N(0, prior_std² I).
    Subclasses define mean_scale, std, drift, diffusion and prior_std; T is the model's time scale."""

    T: int = 1

    def marginal(self, x0: torch.Tensor, t):
        """(mean, std) of x_t | x_0: (mean_scale(t) x_0, std(t) of shape (B, 1, ...))."""
        t = check_time("t", t, x0)
        return _col(self.mean_scale(t), x0).to(x0.dtype) * x0, _col(self.std(t), x0).to(x0.dtype)

    def prior_std(self) -> float:
        return 1.0

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None,
                     dtype=torch.float32) -> torch.Tensor:
        return self.prior_std() * randn(shape, generator, device, dtype)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, s² I) per sample (B,), s = prior_std(), in z's dtype."""
        return gaussian_log_prob(z, self.prior_std())


class VPSDE(SDE):
    """dx = −½ β(t) x dt + √β(t) dW on t ∈ [0, 1]  (Song et al. 2021, §3.4): the limit of DDPM.

    VPSDE(beta_min, beta_max, T): linear β(t) (Song et al. use 0.1 and 20, DDPM's β_1 = 1e-4 and β_T = 0.02
    times T = 1000). T is the number of discrete steps the model was trained with: the model sees t · T.
    VPSDE.from_schedule(schedule): any NoiseSchedule, with ᾱ(i/T) = ᾱ_i exactly.
    Coefficients are computed in float64 and returned in x's dtype.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: int = 1000):
        if not (0 < beta_min <= beta_max):
            raise ValueError(f"need 0 < beta_min ≤ beta_max, got beta_min={beta_min}, beta_max={beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.T = check_positive_int("T", T)
        self.log_alphas_cumprod = None  # a table (float64, length T + 1) when made from a schedule
        self.name = "linear"

    @classmethod
    def from_schedule(cls, schedule) -> "VPSDE":
        """The VP SDE whose ᾱ(t) passes through the schedule's ᾱ_i at t = i/T (log ᾱ linear in between)."""
        s = check_schedule(schedule)
        sde = cls(s.T * float(s.betas[1:].min()), s.T * float(s.betas[1:].max()), s.T)
        sde.log_alphas_cumprod = torch.log(s.alphas_cumprod.double())
        sde.name = getattr(s, "name", "custom")
        return sde

    def __repr__(self) -> str:
        if self.log_alphas_cumprod is not None:
            return f"VPSDE.from_schedule({self.name!r}, T={self.T})"
        return f"VPSDE(beta_min={self.beta_min:g}, beta_max={self.beta_max:g}, T={self.T})"

    # -- β(t) and ∫β, the two numbers everything else is made of (float64, shape (B,))
    def integral_beta(self, t: torch.Tensor) -> torch.Tensor:
        """∫_0^t β(s) ds = −log ᾱ(t)."""
        t = t.double()
        if self.log_alphas_cumprod is None:
            return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2
        table = self.log_alphas_cumprod.to(t.device)
        u = t * self.T
        i = u.floor().clamp(0, self.T - 1).long()
        return -(table[i] + (u - i) * (table[i + 1] - table[i]))

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """β(t) = d/dt ∫β (piecewise constant for a table: T (log ᾱ_{i−1} − log ᾱ_i) on ((i−1)/T, i/T])."""
        t = t.double()
        if self.log_alphas_cumprod is None:
            return self.beta_min + t * (self.beta_max - self.beta_min)
        table = self.log_alphas_cumprod.to(t.device)
        i = (t * self.T - 1e-6).ceil().clamp(1, self.T).long()  # t = i/T (up to rounding) belongs to step i
        return self.T * (table[i - 1] - table[i])

    def alpha_bar(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.exp(-self.integral_beta(t))

    # -- the interface shared with VESDE: scale and std of x_t | x_0, f, g, the prior
    def mean_scale(self, t: torch.Tensor) -> torch.Tensor:
        """√ᾱ(t), float64 (B,)."""
        return torch.exp(-0.5 * self.integral_beta(t))

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """σ_t = √(1 − ᾱ(t)), float64 (B,) (expm1: exact at small t)."""
        return torch.sqrt(-torch.expm1(-self.integral_beta(t)))

    def drift(self, x: torch.Tensor, t) -> torch.Tensor:
        """f(x, t) = −½ β(t) x."""
        t = check_time("t", t, x)
        return -0.5 * _col(self.beta(t), x).to(x.dtype) * x

    def diffusion(self, t, x: torch.Tensor) -> torch.Tensor:
        """g(t) = √β(t), shaped (B, 1, ...) against x."""
        t = check_time("t", t, x)
        return _col(self.beta(t).sqrt(), x).to(x.dtype)



class VESDE(SDE):
    """dx = σ(t) √(2 log(σ_max/σ_min)) dW, σ(t) = σ_min (σ_max/σ_min)^t  (Song et al. 2021, §3.4): NCSN's
    geometric noise levels (lesson 07) made continuous. x_t | x_0 ~ N(x_0, (σ(t)² − σ_min²) I); the prior
    is N(0, σ_max² I). T: the model sees t · T (default 1: the time itself)."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, T: int = 1):
        if not (0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.T = check_positive_int("T", T)

    def __repr__(self) -> str:
        return f"VESDE(sigma_min={self.sigma_min:g}, sigma_max={self.sigma_max:g})"

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ(t) = σ_min (σ_max/σ_min)^t, float64."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** torch.as_tensor(t, dtype=torch.float64)

    def mean_scale(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t, dtype=torch.float64)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """√(σ(t)² − σ_min²)."""
        return torch.sqrt(self.sigma(t) ** 2 - self.sigma_min**2)

    def drift(self, x: torch.Tensor, t) -> torch.Tensor:
        check_time("t", t, x)
        return torch.zeros_like(x)

    def diffusion(self, t, x: torch.Tensor) -> torch.Tensor:
        """g(t) = √(d σ(t)²/dt) = σ(t) √(2 log(σ_max/σ_min))."""
        t = check_time("t", t, x)
        return _col(self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min)), x).to(x.dtype)

    def prior_std(self) -> float:
        return self.sigma_max


def gaussian_log_prob(z: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """log N(z; 0, std² I) per sample: −|z|²/(2 std²) − D/2 log(2π std²), shape (B,)."""
    check_float("z", z)
    D = z[0].numel()
    return -0.5 * z.flatten(1).pow(2).sum(1) / std**2 - 0.5 * D * math.log(2 * math.pi * std**2)


# ---------------------------------------------------------------- ε-models and scores in continuous time


def eps_at(sde, eps_model: Callable, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ε_θ(x, t · T): the model called at its own time scale, checked (shape, NaN)."""
    eps = eps_model(x, t * sde.T)
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps_model(x, t) must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    if not torch.isfinite(eps).all():
        raise ValueError(f"eps_model returned NaN or inf at t = {t.min().item():.4g}..{t.max().item():.4g} "
                         "(model time t·T): check the model and its input; the solver cannot go on")
    return eps


def score_from_eps(sde, eps_model: Callable, x: torch.Tensor, t) -> torch.Tensor:
    """s(x, t) = −ε_θ(x, t · T) / σ_t  (DDPM eq. 4, read in continuous time)."""
    t = check_time("t", t, x)
    return -eps_at(sde, eps_model, x, t) / _col(sde.std(t), x).to(x.dtype)


def exact_score(sde, mixture: GaussianMixture, x: torch.Tensor, t) -> torch.Tensor:
    """∇ log p_t(x) for data from a Gaussian mixture, exactly: x_t = a x_0 + s z (a = mean scale, s = std)
    is c · (√ᾱ' x_0 + √(1 − ᾱ') z) with c = √(a² + s²), ᾱ' = a²/c², so p_t's score is
    (1/c) · mixture.noised_score(x / c, ᾱ'). Works for VP and VE."""
    t = check_time("t", t, x)
    a, s = sde.mean_scale(t), sde.std(t)
    c = torch.sqrt(a**2 + s**2)
    out = mixture.noised_score(x.double() / c[:, None], (a / c) ** 2) / c[:, None]
    return out.to(x.dtype)


def exact_eps_model(sde, mixture: GaussianMixture) -> Callable:
    """The ideal ε-model of mixture data, ε*(x, t·T) = −σ_t ∇ log p_t(x): an oracle without training error."""

    def eps(x: torch.Tensor, t_model: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t_model, dtype=torch.float64, device=x.device) / sde.T
        t = t.clamp(0.0, 1.0)  # t·T / T can round a hair past 1
        return -_col(sde.std(t), x).to(x.dtype) * exact_score(sde, mixture, x, t)

    return eps


def eps_from_v_model(sde, v_net: Callable) -> Callable:
    """A v-prediction network read as an ε-model at *continuous* times (lesson 05: v = √ᾱ ε − √(1 − ᾱ) x_0, so
    ε = √ᾱ v + √(1 − ᾱ) x_t). `vpred.EpsFromV` does the same at integer t only; adaptive ODE solvers need any t."""

    def eps(x: torch.Tensor, t_model: torch.Tensor) -> torch.Tensor:
        t = (torch.as_tensor(t_model, dtype=torch.float64, device=x.device) / sde.T).clamp(0.0, 1.0)
        v = v_net(x, t_model)
        return _col(sde.mean_scale(t), x).to(x.dtype) * v + _col(sde.std(t), x).to(x.dtype) * x

    return eps


# ---------------------------------------------------------------- the reverse SDE and the PF-ODE


def euler_maruyama_step(sde, eps_model: Callable, x: torch.Tensor, t, t_next, generator: torch.Generator | None = None,
                        noise: torch.Tensor | None = None) -> torch.Tensor:
    """One Euler–Maruyama step of the reverse SDE from t down to t_next < t  (Song et al. 2021, eq. 6):

        x ← x + [f(x, t) − g(t)² s(x, t)] Δt + g(t) √|Δt| z,   Δt = t_next − t < 0,  z ~ N(0, I)

    with s = −ε_θ(x, t·T)/σ_t. noise: the z to use (shaped like x); drawn from `generator` when None.
    """
    check_float("x", x)
    tt, tn = check_time("t", t, x), check_time("t_next", t_next, x)
    if (tn >= tt).any():
        raise ValueError("t_next must be smaller than t: the reverse SDE runs from t = 1 down to t = 0")
    dt = _col(tn - tt, x)
    g = sde.diffusion(tt, x)
    drift = sde.drift(x, tt) - g**2 * score_from_eps(sde, eps_model, x, tt)
    if noise is None:
        noise = randn(x.shape, generator, x.device, x.dtype)
    elif noise.shape != x.shape:
        raise ValueError(f"noise must be shaped like x {tuple(x.shape)}, got {tuple(noise.shape)}")
    return x + drift * dt + g * (-dt).sqrt() * noise


def pf_ode_drift(sde, eps_model: Callable, x: torch.Tensor, t) -> torch.Tensor:
    """The probability-flow ODE's velocity dx/dt = f(x, t) − ½ g(t)² s(x, t), s = −ε_θ(x, t·T)/σ_t  (Song et al. 2021, eq. 13)."""
    check_float("x", x)
    t = check_time("t", t, x)
    g = sde.diffusion(t, x)
    return sde.drift(x, t) - 0.5 * g**2 * score_from_eps(sde, eps_model, x, t)


def euler_step(drift: Callable, x: torch.Tensor, t, t_next) -> torch.Tensor:
    """x + (t_next − t) · drift(x, t): Euler's method for dx/dt = drift(x, t), either direction in time."""
    return x + (float(t_next) - float(t)) * drift(x, t)


def heun_step(drift: Callable, x: torch.Tensor, t, t_next) -> torch.Tensor:
    """Heun's method (explicit trapezoid, 2nd order; Karras et al. 2022, Algorithm 1): an Euler step to the end, then the average slope:

        d₁ = drift(x, t),  x̃ = x + h d₁,  d₂ = drift(x̃, t_next),  x ← x + h (d₁ + d₂)/2,   h = t_next − t
    """
    h = float(t_next) - float(t)
    d1 = drift(x, t)
    d2 = drift(x + h * d1, t_next)
    return x + 0.5 * h * (d1 + d2)


# ---------------------------------------------------------------- an adaptive solver with a budget

# Dormand & Prince (1980) RK5(4)7M: nodes c, stages a, 5th-order weights b, and b − b̂ for the error estimate.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


class ODESolution:
    """What `solve_ode` returns: the state at t1, and how many drift evaluations and steps it took."""

    def __init__(self, x: torch.Tensor, nfe: int, steps: int, rejected: int):
        self.x, self.nfe, self.steps, self.rejected = x, nfe, steps, rejected

    def __repr__(self) -> str:
        return f"ODESolution(nfe={self.nfe}, steps={self.steps}, rejected={self.rejected})"


def solve_ode(drift: Callable, x: torch.Tensor, t0: float, t1: float, rtol: float = 1e-5, atol: float = 1e-5,
              max_steps: int = 10_000, first_step: float | None = None) -> ODESolution:
    """Integrate dx/dt = drift(x, t) from t0 to t1 (either direction) with adaptive Dormand–Prince steps.

    A step is kept when every sample's RMS error, |x₅ − x₄| / (atol + rtol · max(|x|, |x_new|)), is ≤ 1; the
    next size is h · clip(0.9 · err^(−1/5), 0.2, 5). drift(x, t) gets t as a Python float.
    max_steps: the budget of attempted steps; beyond it a RuntimeError says so (no silent hang).
    """
    check_float("x", x)
    check_positive_int("max_steps", max_steps)
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be positive, got rtol={rtol}, atol={atol}")
    t0, t1 = float(t0), float(t1)
    span = t1 - t0
    if span == 0:
        return ODESolution(x, 0, 0, 0)
    sign = 1.0 if span > 0 else -1.0
    h = abs(first_step) if first_step else 0.01 * abs(span)
    t, k1, nfe, steps, rejected = t0, drift(x, t0), 1, 0, 0
    while sign * (t1 - t) > 1e-12 * abs(span):
        if steps + rejected >= max_steps:
            raise RuntimeError(f"solve_ode exceeded its step budget max_steps={max_steps} at t = {t:.6g} "
                               f"(from t0={t0:g} to t1={t1:g}, step size {h:.3g}): the ODE is too stiff for "
                               f"rtol={rtol:g}, atol={atol:g}; loosen the tolerances or raise max_steps")
        h = min(h, abs(t1 - t))
        hs = sign * h
        ks = [k1]
        for i in range(1, 7):
            xi = x + hs * sum(a * k for a, k in zip(_A[i], ks) if a)
            ks.append(drift(xi, t + _C[i] * hs))
        nfe += 6
        x_new = xi  # stage 7 is evaluated at the 5th-order solution itself (FSAL)
        err = hs * sum(e * k for e, k in zip(_E, ks) if e)
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        ratio = (err / scale).flatten(1).pow(2).mean(1).sqrt().max().item()
        if not math.isfinite(ratio):
            raise ValueError(f"solve_ode: the state became NaN or inf at t = {t:.6g}; check the drift")
        if ratio <= 1.0:
            t, x, k1 = t + hs, x_new, ks[-1]
            steps += 1
        else:
            rejected += 1
        h = h * min(5.0, max(0.2, 0.9 * ratio ** -0.2 if ratio > 0 else 5.0))
    return ODESolution(x, nfe, steps, rejected)


# ---------------------------------------------------------------- samplers


def sde_timesteps(steps: int, t_end: float = 1e-3, t_start: float = 1.0) -> list[float]:
    """steps + 1 evenly spaced times from t_start down to t_end (Song et al. stop at ε = 1e-3 for sampling)."""
    check_positive_int("steps", steps)
    t_start, t_end = _check_scalar_time("t_start", t_start), _check_scalar_time("t_end", t_end)
    if not t_end < t_start:
        raise ValueError(f"need t_end < t_start, got t_end={t_end}, t_start={t_start}")
    return torch.linspace(t_start, t_end, steps + 1, dtype=torch.float64).tolist()


@torch.no_grad()
def sde_sample(sde, eps_model: Callable, x_T: torch.Tensor, steps: int = 500, t_end: float = 1e-3,
               generator: torch.Generator | None = None, return_trajectory: bool = False):
    """Euler–Maruyama on the reverse SDE from x_T at t = 1 down to t_end, `steps` steps (a `simulate` loop)."""
    check_float("x_T", x_T)
    step = partial(euler_maruyama_step, sde, eps_model, generator=generator)
    return simulate(step, x_T, sde_timesteps(steps, t_end), return_trajectory=return_trajectory, desc="reverse SDE")


@torch.no_grad()
def ode_sample(sde, eps_model: Callable, x_T: torch.Tensor, steps: int = 100, method: str = "heun",
               t_end: float = 1e-3, return_trajectory: bool = False, rtol: float = 1e-5, atol: float = 1e-5,
               max_steps: int = 10_000):
    """Solve the probability-flow ODE from x_T at t = 1 down to t_end: `steps` Euler or Heun steps driven by
    `simulate` (method "euler" / "heun"), or the adaptive `solve_ode` (method "rk45"; returns x only)."""
    check_float("x_T", x_T)
    drift = partial(pf_ode_drift, sde, eps_model)
    if method == "rk45":
        _check_scalar_time("t_end", t_end)
        return solve_ode(drift, x_T, 1.0, t_end, rtol, atol, max_steps).x
    steppers = {"euler": euler_step, "heun": heun_step}
    if method not in steppers:
        raise ValueError(f"method must be one of 'euler', 'heun', 'rk45', got {method!r}")
    return simulate(partial(steppers[method], drift), x_T, sde_timesteps(steps, t_end),
                    return_trajectory=return_trajectory, desc="PF-ODE")
