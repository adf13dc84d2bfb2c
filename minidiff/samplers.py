"""Fast samplers in the σ view: Karras noise levels, Euler, Heun, EDM's churn, DPM-Solver++(2M) (lesson 10).

Divide DDPM's x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4) by √ᾱ_t:

    x = x_t / √ᾱ_t = x_0 + σ ε,     σ = √((1 − ᾱ_t) / ᾱ_t),     ᾱ_t = 1 / (1 + σ²)

so every VP model is a model of data plus Gaussian noise of std σ (Karras et al. 2022, "Elucidating the Design
Space of Diffusion-Based Generative Models", §2). The ε-model becomes a *denoiser*

    D(x; σ) = x − σ ε_θ(x / √(1 + σ²), t(σ))          (the model's guess of x_0, DDIM eq. 9 in these variables)

and the probability-flow ODE loses its drift term: dx/dσ = (x − D(x; σ)) / σ (Karras et al. 2022, §2 with σ(t) = t,
s(t) = 1). The schedule (β_t, cosine, ...) is gone from the ODE; it only decides which t the network sees at σ.

Samplers are steps `step(x, sigma, sigma_next)` for `sampling.simulate`, over noise levels
σ_0 > σ_1 > ... > σ_{N−1} > σ_N = 0 (`karras_sigmas`, Karras et al. 2022, §3):

    euler     x ← x + (σ' − σ) d,  d = (x − D(x; σ)) / σ                    1 network call per step, order 1
    heun      Euler, then the average of d and d' at σ' (Euler on the last step to σ' = 0)  2 calls, order 2
    churn     Heun after raising σ to σ̂ = (1 + γ) σ with fresh noise (Karras et al. 2022, §4)  2 calls
    dpmpp_2m  DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", §4): exact in the linear part, a
              multistep 2nd-order guess of D in λ = −log σ                  1 call per step, order 2
    dpmpp_2m_sde  the same guess of D in the exact solution of a reverse SDE that adds fresh noise every step
              (η = 1: DDPM's posterior step when D is constant; η = 0: dpmpp_2m)   1 call per step

DDIM with η = 0 is Euler in these variables and DPM-Solver++ of first order (tests/test_samplers.py checks both
to float64 round-off). Every function is shape-generic: x may be (B, D) points or (B, C, H, W) images.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .sampling import simulate
from .sde import euler_step, heun_step
from .utils import check_float, check_positive_int, check_schedule, randn

METHODS = ("euler", "heun", "churn", "dpmpp_2m", "dpmpp_2m_sde")

# ---------------------------------------------------------------- σ and t


def sigmas_from_schedule(schedule) -> torch.Tensor:
    """σ_t = √((1 − ᾱ_t) / ᾱ_t) for t = 0..T, float64 (length T + 1, σ_0 = 0)."""
    abar = check_schedule(schedule).alphas_cumprod.double()
    return ((1 - abar) / abar).sqrt()


def sigma_to_t(schedule, sigma: torch.Tensor) -> torch.Tensor:
    """The model time t(σ) in [0, T] (float64, σ's shape) at which ᾱ = 1 / (1 + σ²).

    Between the steps log ᾱ is linear in t (the convention of `sde.VPSDE.from_schedule`), so t(σ_i) = i and the
    ᾱ that a model derives from t agrees with the σ a sampler asked for. σ beyond σ_T raises a ValueError.
    """
    s = check_schedule(schedule)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if torch.isnan(sigma).any() or (sigma < 0).any():
        raise ValueError(f"sigma must be ≥ 0, got {sigma.min().item():g}")
    neg_log_abar = -torch.log(s.alphas_cumprod.double()).to(sigma.device)  # increasing, 0 at t = 0
    target = torch.log1p(sigma**2)  # −log ᾱ at σ
    top = neg_log_abar[-1].item()
    if (target > top * (1 + 1e-12)).any():
        raise ValueError(f"sigma = {sigma.max().item():.6g} exceeds the schedule's largest noise level "
                         f"σ_T = {math.sqrt(math.expm1(top)):.6g}; pick sigma_max ≤ σ_T")
    i = torch.searchsorted(neg_log_abar, target.clamp(max=top)).clamp(1, s.T)
    lo, hi = neg_log_abar[i - 1], neg_log_abar[i]
    return (i - 1) + ((target - lo) / (hi - lo)).clamp(0, 1)


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """`steps` noise levels spaced evenly in σ^(1/ρ), from sigma_max down to sigma_min, then σ_N = 0  (Karras et al. 2022, eq. 5):

        σ_i = (σ_max^(1/ρ) + i/(N − 1) · (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ,   i = 0..N−1,   σ_N = 0

    (Karras et al. 2022, §3). A float64 tensor of length steps + 1. ρ = 1 is linear in σ; larger ρ spends more
    steps at small σ. steps = 1 gives [σ_max, 0].
    """
    check_positive_int("steps", steps)
    sigma_min, sigma_max, rho = float(sigma_min), float(sigma_max), float(rho)
    if not sigma_min > 0:
        raise ValueError(f"sigma_min must be > 0, got sigma_min={sigma_min}")
    if not sigma_min < sigma_max:
        raise ValueError(f"need sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got rho={rho}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0] = sigma_max  # exact endpoints (the power of a root rounds)
    if steps > 1:
        sigmas[-1] = sigma_min
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def steps_for_nfe(method: str, nfe: int) -> int:
    """How many steps `method` takes for at most `nfe` network calls: nfe for euler, dpmpp_2m and dpmpp_2m_sde (one
    call each), (nfe + 1) // 2 for heun and churn (two calls a step, one on the last step to σ = 0: 2N − 1 calls)."""
    check_method(method)
    check_positive_int("nfe", nfe)
    return nfe if method in ("euler", "dpmpp_2m", "dpmpp_2m_sde") else (nfe + 1) // 2


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    return method


# ---------------------------------------------------------------- denoisers D(x; σ)


def sigma_column(sigma, x: torch.Tensor) -> torch.Tensor:
    """σ as a float64 tensor (B,) for x (a float is repeated), checked: shape (B,), every entry ≥ 0."""
    if isinstance(sigma, bool):
        raise TypeError(f"sigma must be a float or a tensor of shape (B,), got {sigma!r}")
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if sigma.dim() == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float or have shape (B,) = ({x.shape[0]},), got {tuple(sigma.shape)}")
    if torch.isnan(sigma).any() or (sigma < 0).any():
        raise ValueError(f"sigma must be ≥ 0 (a noise level), got {sigma.min().item():g}")
    return sigma


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor as (B, 1, ..., 1) in x's dtype, to broadcast against x."""
    return v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def denoise(schedule, eps_model: Callable, x: torch.Tensor, sigma) -> torch.Tensor:
    """D(x; σ) = x − σ ε_θ(x / √(1 + σ²), t(σ)): an ε-model read as a denoiser in the σ variables.

    x = x_t / √ᾱ (so x_t = x / √(1 + σ²)); sigma: a float or a tensor (B,); the model is called as
    eps_model(x_t, t) with t = sigma_to_t(schedule, σ) a float64 tensor (B,) in [0, T]. Returns a tensor like x.
    """
    check_float("x", x)
    sigma = sigma_column(sigma, x)
    t = sigma_to_t(schedule, sigma)
    x_t = x / _col(torch.sqrt(1 + sigma**2), x)
    eps = eps_model(x_t, t)
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps_model(x_t, t) must return a tensor shaped like x {tuple(x.shape)}, got {got}")
    return x - _col(sigma, x) * eps


def eps_denoiser(schedule, eps_model: Callable) -> Callable:
    """`denoise` with the schedule and the model bound: D(x, sigma)."""
    check_schedule(schedule)

    def D(x: torch.Tensor, sigma) -> torch.Tensor:
        return denoise(schedule, eps_model, x, sigma)

    return D


def v_denoiser(schedule, v_net: Callable) -> Callable:
    """A v-prediction network (lesson 05: v = √ᾱ ε − √(1 − ᾱ) x_0) as a denoiser: read as the ε-model
    ε = √ᾱ v + √(1 − ᾱ) x_t with ᾱ taken at the real model time t, then `denoise`. Works at any real t
    (vpred.EpsFromV needs integer t)."""
    check_schedule(schedule)

    def eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = torch.exp(-torch.log1p(sigma_of_t(schedule, t) ** 2))
        v = v_net(x_t, t)
        return _col(abar.sqrt(), x_t) * v + _col((1 - abar).sqrt(), x_t) * x_t

    return eps_denoiser(schedule, eps_model)


def sigma_of_t(schedule, t: torch.Tensor) -> torch.Tensor:
    """σ at a real model time t in [0, T] (the inverse of `sigma_to_t`: log ᾱ linear between the steps)."""
    s = check_schedule(schedule)
    t = torch.as_tensor(t, dtype=torch.float64)
    log_abar = torch.log(s.alphas_cumprod.double()).to(t.device)
    i = t.floor().clamp(0, s.T - 1).long()
    la = log_abar[i] + (t - i) * (log_abar[i + 1] - log_abar[i])
    return torch.sqrt(torch.expm1(-la))


def mixture_denoiser(mixture) -> Callable:
    """The exact denoiser of Gaussian-mixture data (minidiff.data.toy.GaussianMixture), any σ ≥ 0:
    D(x; σ) = E[x_0 | x_0 + σ ε = x] = x + σ² ∇ log p_σ(x) (Tweedie), p_σ = the mixture with σ² added to each
    variance; computed with `noised_score` at x / √(1 + σ²), ᾱ = 1 / (1 + σ²). No network, no time table."""

    def D(x: torch.Tensor, sigma) -> torch.Tensor:
        check_float("x", x)
        sigma = sigma_column(sigma, x)
        c = torch.sqrt(1 + sigma**2)[:, None]
        score = mixture.noised_score(x.double() / c, 1 / c[:, 0] ** 2) / c
        return (x.double() + sigma[:, None] ** 2 * score).to(x.dtype)

    return D


def clipped(denoiser: Callable, c: float = 1.0) -> Callable:
    """D clamped to [−c, c] (the data range): the σ view of DDIM's clip_denoised, which clamps x̂_0 = D."""

    def D(x: torch.Tensor, sigma) -> torch.Tensor:
        return denoiser(x, sigma).clamp(-c, c)

    return D


# ---------------------------------------------------------------- steps for `simulate`


def ode_derivative(denoiser: Callable, x: torch.Tensor, sigma) -> torch.Tensor:
    """dx/dσ = (x − D(x; σ)) / σ, the probability-flow ODE in the σ variables (σ > 0): Karras et al. 2022, eq. 1
    with σ(t) = t and the score (D − x)/σ² of their eq. 3."""
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"the ODE's derivative needs sigma > 0, got {sigma}")
    return (x - checked(denoiser(x, sigma), x, sigma)) / sigma


def checked(d: torch.Tensor, x: torch.Tensor, sigma) -> torch.Tensor:
    """A denoiser's output, checked: a tensor shaped like x."""
    if not isinstance(d, torch.Tensor) or d.shape != x.shape:
        got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
        raise ValueError(f"the denoiser D(x, sigma={float(sigma):.4g}) must return a tensor shaped like x "
                         f"{tuple(x.shape)}, got {got}")
    return d


def karras_euler_step(denoiser: Callable, x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """Euler in σ: x + (σ' − σ) (x − D(x; σ)) / σ. One network call."""
    return euler_step(lambda y, s: ode_derivative(denoiser, y, s), x, sigma, sigma_next)


def karras_heun_step(denoiser: Callable, x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
    """Heun in σ (Karras et al. 2022, §3): an Euler step to σ', then the average of the slopes at σ and σ'
    (Karras et al. 2022, Algorithm 1); on the last step, to σ' = 0, where the slope is undefined, the Euler step alone. Two network calls
    (one on the last step)."""
    drift = lambda y, s: ode_derivative(denoiser, y, s)  # noqa: E731
    if float(sigma_next) == 0:
        return euler_step(drift, x, sigma, sigma_next)
    return heun_step(drift, x, sigma, sigma_next)


def churn_step(denoiser: Callable, x: torch.Tensor, sigma, sigma_next, gamma: float = 0.0, s_noise: float = 1.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """EDM's stochastic step (Karras et al. 2022, §4): add noise to raise σ to σ̂ = (1 + γ) σ,

        x̂ = x + √(σ̂² − σ²) · s_noise · z,   z ~ N(0, I),

    then a Heun step from σ̂ to σ'. γ = 0 is `karras_heun_step`."""
    if not gamma >= 0:
        raise ValueError(f"gamma must be ≥ 0, got {gamma}")
    sigma = float(sigma)
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        if noise is None:
            noise = randn(x.shape, generator, x.device, x.dtype)
        elif noise.shape != x.shape:
            raise ValueError(f"noise must be shaped like x {tuple(x.shape)}, got {tuple(noise.shape)}")
        x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * noise
    return karras_heun_step(denoiser, x, sigma_hat, sigma_next)


def churn_gammas(sigmas, s_churn: float, s_tmin: float = 0.0, s_tmax: float = float("inf")) -> list[float]:
    """γ_i = min(S_churn / N, √2 − 1) for σ_i in [S_tmin, S_tmax], else 0 (Karras et al. 2022, §4); N = steps."""
    if not s_churn >= 0:
        raise ValueError(f"s_churn must be ≥ 0, got {s_churn}")
    sigmas = [float(s) for s in sigmas]
    n = len(sigmas) - 1
    g = min(s_churn / n, math.sqrt(2) - 1)
    return [g if s_tmin <= s <= s_tmax else 0.0 for s in sigmas[:-1]]


def dpmpp_2m_update(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_next, old_denoised: torch.Tensor | None = None,
                    sigma_prev=None) -> torch.Tensor:
    """One DPM-Solver++(2M) update from σ to σ' (Lu et al. 2022, §4) in the variables x = x_0 + σ ε:

        λ = −log σ,  h = λ' − λ,  r = (λ − λ_prev) / h,
        D̂ = (1 + 1/(2r)) D − 1/(2r) D_prev       (D̂ = D on the first step and on the last, to σ' = 0)
        x' = (σ'/σ) x − (e^(−h) − 1) D̂ = (σ'/σ) x + (1 − σ'/σ) D̂

    denoised: D(x; σ) at this step; old_denoised and sigma_prev: the previous step's (None on the first step).
    With D̂ = D this is DDIM (η = 0) and Euler in σ.
    """
    sigma, sigma_next = float(sigma), float(sigma_next)
    d_hat = multistep_denoised(denoised, sigma, sigma_next, old_denoised, sigma_prev)
    ratio = sigma_next / sigma  # = e^(−h)
    return ratio * x + (1 - ratio) * d_hat


def multistep_denoised(denoised: torch.Tensor, sigma, sigma_next, old_denoised: torch.Tensor | None = None,
                       sigma_prev=None) -> torch.Tensor:
    """DPM-Solver++(2M)'s guess D̂ = (1 + 1/(2r)) D − 1/(2r) D_prev, r = (λ − λ_prev) / (λ' − λ), λ = −log σ
    (Lu et al. 2022, §4); D̂ = D without history and on the last step, to σ' = 0."""
    sigma, sigma_next = float(sigma), float(sigma_next)
    if not sigma > sigma_next >= 0:
        raise ValueError(f"need sigma > sigma_next ≥ 0, got sigma={sigma}, sigma_next={sigma_next}")
    if old_denoised is None or sigma_next == 0:
        return denoised
    if sigma_prev is None or not float(sigma_prev) > sigma:
        raise ValueError(f"sigma_prev must be given and larger than sigma={sigma}, got {sigma_prev}")
    r = math.log(float(sigma_prev) / sigma) / math.log(sigma / sigma_next)
    return (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised


def dpmpp_2m_sde_update(x: torch.Tensor, denoised: torch.Tensor, sigma, sigma_next,
                        old_denoised: torch.Tensor | None = None, sigma_prev=None, eta: float = 1.0,
                        noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """One step of the stochastic DPM-Solver++(2M) from σ to σ' (the SDE variant of DPM-Solver++ by Lu et al.;
    k-diffusion's `sample_dpmpp_2m_sde`, diffusers' `sde-dpmsolver++`):

        h = λ' − λ = log(σ/σ'),
        x' = (σ'/σ) e^(−ηh) x + (1 − e^(−(1+η)h)) D̂ + σ' √(1 − e^(−2ηh)) z,    z ~ N(0, I)

    with D̂ = `multistep_denoised` (the 2M guess). Derivation, in the variables x = x_0 + σ ε: for a constant
    D = x_0 the step must carry x = x_0 + σ ε to x_0 + σ' ε' with ε' ~ N(0, I) again; the coefficients above do
    for every η ≥ 0 (x_0's weights sum to (σ'/σ)e^(−ηh) + 1 − e^(−(1+η)h) = 1 as σ'/σ = e^(−h); the noise variance
    is σ'² e^(−2ηh) + σ'² (1 − e^(−2ηh)) = σ'²). η = 0 is `dpmpp_2m_update`. η = 1 with D̂ = D is the posterior
    q(x_{t'} | x_t, x̂_0) of DDPM (DDPM eqs. 6–7), i.e. DDIM with η = 1 (DDIM eq. 16), read in σ:
    x' = (σ'/σ)² x + (1 − (σ'/σ)²) D + σ' √(1 − (σ'/σ)²) z. tests/test_samplers.py checks both identities.
    """
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0 (0: the ODE solver dpmpp_2m, 1: DDPM's amount of noise), got {eta}")
    sigma, sigma_next = float(sigma), float(sigma_next)
    d_hat = multistep_denoised(denoised, sigma, sigma_next, old_denoised, sigma_prev)
    if sigma_next == 0:  # the last step lands on D̂ = D, with no noise left to add
        return d_hat
    h = math.log(sigma / sigma_next)
    x_next = (sigma_next / sigma) * math.exp(-eta * h) * x + (1 - math.exp(-(1 + eta) * h)) * d_hat
    if eta > 0:
        if noise is None:
            noise = randn(x.shape, generator, x.device, x.dtype)
        elif noise.shape != x.shape:
            raise ValueError(f"noise must be shaped like x {tuple(x.shape)}, got {tuple(noise.shape)}")
        x_next = x_next + sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * noise
    return x_next


class DPMSolver2M:
    """DPM-Solver++(2M) as a `step(x, sigma, sigma_next)` for `simulate`: it remembers the previous step's D and σ
    (a multistep method). Use a fresh one for every sampling run (or call `reset()`)."""

    def __init__(self, denoiser: Callable):
        self.denoiser = denoiser
        self.reset()

    def reset(self) -> None:
        self.old_denoised, self.sigma_prev = None, None

    def __call__(self, x: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
        d = checked(self.denoiser(x, float(sigma)), x, sigma)
        out = self.update(x, d, sigma, sigma_next)
        self.old_denoised, self.sigma_prev = d, float(sigma)
        return out

    def update(self, x: torch.Tensor, d: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
        return dpmpp_2m_update(x, d, sigma, sigma_next, self.old_denoised, self.sigma_prev)


class DPMSolver2MSDE(DPMSolver2M):
    """The stochastic DPM-Solver++(2M) (`dpmpp_2m_sde_update`) as a `step` for `simulate`: fresh noise of scale η
    every step, drawn from `generator`."""

    def __init__(self, denoiser: Callable, eta: float = 1.0, generator: torch.Generator | None = None):
        if not eta >= 0:
            raise ValueError(f"eta must be ≥ 0, got {eta}")
        super().__init__(denoiser)
        self.eta, self.generator = eta, generator

    def update(self, x: torch.Tensor, d: torch.Tensor, sigma, sigma_next) -> torch.Tensor:
        return dpmpp_2m_sde_update(x, d, sigma, sigma_next, self.old_denoised, self.sigma_prev, eta=self.eta,
                                   generator=self.generator)


# ---------------------------------------------------------------- the sampler


class CountCalls:
    """A denoiser that counts its calls (`.calls`): the NFE of a sampler, measured."""

    def __init__(self, denoiser: Callable):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, sigma)


def make_step(method: str, denoiser: Callable, sigmas, s_churn: float = 0.0, s_noise: float = 1.0,
              generator: torch.Generator | None = None, eta: float = 1.0) -> Callable:
    """The `step(x, sigma, sigma_next)` of `method` (one of `METHODS`) for these sigmas; `eta` is dpmpp_2m_sde's."""
    check_method(method)
    if method == "euler":
        return lambda x, s, s_next: karras_euler_step(denoiser, x, s, s_next)
    if method == "heun":
        return lambda x, s, s_next: karras_heun_step(denoiser, x, s, s_next)
    if method == "dpmpp_2m":
        return DPMSolver2M(denoiser)
    if method == "dpmpp_2m_sde":
        return DPMSolver2MSDE(denoiser, eta, generator)
    gammas = dict(zip([float(s) for s in sigmas[:-1]], churn_gammas(sigmas, s_churn)))
    return lambda x, s, s_next: churn_step(denoiser, x, s, s_next, gammas[float(s)], s_noise, generator)


def check_sigmas(sigmas) -> list[float]:
    """The noise levels as a list of floats: at least two, strictly decreasing, ending at ≥ 0."""
    sigmas = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if len(sigmas) < 2:
        raise ValueError(f"sigmas needs at least 2 noise levels (one step), got {len(sigmas)}")
    if any(not a > b for a, b in zip(sigmas, sigmas[1:])) or sigmas[-1] < 0 or any(math.isnan(s) for s in sigmas):
        raise ValueError("sigmas must decrease strictly from sigma_max to a last value ≥ 0 (usually 0), "
                         f"got {sigmas[:4]}{' ...' if len(sigmas) > 4 else ''}")
    return sigmas


@torch.no_grad()
def karras_sample(denoiser: Callable, x: torch.Tensor, sigmas, method: str = "heun", s_churn: float = 0.0,
                  s_noise: float = 1.0, generator: torch.Generator | None = None, return_trajectory: bool = False,
                  show_progress: bool = False, eta: float = 1.0):
    """Solve from x at sigmas[0] (x = σ_0 · z for a sample; x = x_T / √ᾱ_T to start where DDPM starts) down the
    noise levels `sigmas` with `method`, through `sampling.simulate`. A NaN or inf in the state raises a ValueError
    naming the step (and σ) at which it appeared. Returns x (and the trajectory if asked)."""
    check_float("x", x)
    sigmas = check_sigmas(sigmas)
    step = make_step(method, denoiser, sigmas, s_churn, s_noise, generator, eta)
    index = {s: i for i, s in enumerate(sigmas)}

    def guarded(x_, s, s_next):
        out = step(x_, s, s_next)
        if not torch.isfinite(out).all():
            raise ValueError(f"{method}: NaN or inf appeared at step {index[s] + 1} of {len(sigmas) - 1} "
                             f"(σ = {s:.4g} → {s_next:.4g}); check the denoiser and the noise levels")
        return out

    return simulate(guarded, x, sigmas, return_trajectory=return_trajectory, show_progress=show_progress,
                    desc=method)


@torch.no_grad()
def sample(denoiser: Callable, shape, nfe: int, method: str = "dpmpp_2m", sigma_min: float = 0.002,
           sigma_max: float = 80.0, rho: float = 7.0, generator: torch.Generator | None = None, device=None,
           dtype=torch.float32, s_churn: float = 0.0, eta: float = 1.0):
    """x ~ N(0, σ_max² I), then `method` over `karras_sigmas(steps_for_nfe(method, nfe), ...)`: at most `nfe`
    network calls. Returns the samples (shape `shape`)."""
    steps = steps_for_nfe(method, nfe)
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho)
    x = sigma_max * randn(tuple(shape), generator, device, dtype)
    return karras_sample(denoiser, x, sigmas, method, s_churn=s_churn, generator=generator, eta=eta)
