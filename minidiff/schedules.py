"""Noise schedules: β_1..β_T and everything derived from them (lesson 01).

Notation (Ho et al. 2020, "DDPM"):

    α_t = 1 − β_t                                    (DDPM §2)
    ᾱ_t = ∏_{s=1..t} α_s,  ᾱ_0 = 1                    (DDPM eq. 4)
    SNR(t) = ᾱ_t / (1 − ᾱ_t),  λ_t = log SNR(t)       (Kingma et al. 2021, eq. 2)

Indexing: the paper counts t = 1..T. A `NoiseSchedule` stores T+1 entries so that
`schedule.alphas_cumprod[t]` *is* ᾱ_t, with the convention ᾱ_0 = 1 (β_0 = 0, no
noise at t = 0). Hugging Face diffusers stores T entries and counts from 0, so
their `alphas_cumprod[i]` is our `alphas_cumprod[i + 1]`.

All schedule tensors are float64: ᾱ_t near t = T is a product of a thousand
numbers slightly below 1 and ends near 1e-5 or smaller, where float32 keeps few digits.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

# -- the three schedules: each returns β_1..β_T (float64, length T) --------------------


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """DDPM's schedule: β_t rises linearly from β_1 to β_T (Ho et al. 2020, §4).

    Returns the T values β_1..β_T (float64). The defaults are the paper's, for T = 1000.
    For another T, Nichol & Dhariwal (2021, appendix) scale both ends by 1000/T so that
    ᾱ_T stays near 0: `linear_betas(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)`.
    """
    _check_T(T)
    _check_prob("beta_1", beta_1)
    _check_prob("beta_T", beta_T)
    if beta_1 > beta_T:
        raise ValueError(f"beta_1={beta_1} is larger than beta_T={beta_T}: noise should grow with t")
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def cosine_alphas_cumprod(T: int, s: float = 0.008) -> torch.Tensor:
    """ᾱ_0..ᾱ_T of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), before any clipping:

        ᾱ_t = f(t) / f(0),   f(t) = cos²( (t/T + s) / (1 + s) · π/2 ).

    The small offset s keeps β_1 from being tiny (√β_1 would be below a pixel's 1/255
    step). Note ᾱ_T = f(T)/f(0) = 0 up to rounding: the last step destroys everything.
    """
    _check_T(T)
    if not (isinstance(s, Real) and s >= 0):
        raise ValueError(f"s must be a non-negative float (the paper uses 0.008), got {s!r}")
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    return f / f[0]


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17:  ᾱ_t = f(t)/f(0),  f(t) = cos²((t/T + s)/(1 + s) · π/2),
    and β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped to max_beta so that β_T < 1 (their §3.2).

    Without the clip β_T = 1 (ᾱ_T = 0): α_T = 0, the sampler's 1/√α_T is infinite and
    log-SNR(T) = −∞. Clipping at 0.999 keeps every α_t ≥ 0.001.
    """
    _check_prob("max_beta", max_beta, closed=True)
    abar = cosine_alphas_cumprod(T, s)
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999) -> torch.Tensor:
    """Sigmoid schedule (Jabri et al. 2022; Chen 2023, "On the importance of noise scheduling"):
    ᾱ_t = (σ(end/τ) − σ((start + (end − start)·t/T)/τ)) / (σ(end/τ) − σ(start/τ)),
    then β_t = 1 − ᾱ_t/ᾱ_{t−1}. It keeps ᾱ near 1 for longer than cosine, then drops.
    """
    _check_T(T)
    _check_prob("max_beta", max_beta, closed=True)
    if not start < end:
        raise ValueError(f"start={start} must be smaller than end={end}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    t = torch.arange(T + 1, dtype=torch.float64) / T
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    abar = (v_end - torch.sigmoid((start + (end - start) * t) / tau)) / (v_end - v_start)
    return (1 - abar[1:] / abar[:-1]).clamp(min=0.0, max=max_beta)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}


# -- quantities derived from β ----------------------------------------------------------


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_0..ᾱ_T from β_1..β_T:  ᾱ_t = ∏_{s=1..t} (1 − β_s)  (DDPM eq. 4), with ᾱ_0 = 1.

    Input length T, output length T + 1, same dtype. A product, not a sum: the signal
    is scaled by √α_s at every step, so the scales multiply.
    """
    betas = torch.as_tensor(betas)
    if betas.dim() != 1 or not betas.is_floating_point():
        raise ValueError(f"betas must be a 1-D float tensor β_1..β_T, got shape {tuple(betas.shape)} dtype {betas.dtype}")
    one = torch.ones(1, dtype=betas.dtype, device=betas.device)
    return torch.cumprod(torch.cat([one, 1.0 - betas]), dim=0)


def snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of q(x_t | x_0):  SNR(t) = ᾱ_t / (1 − ᾱ_t)  (Kingma et al. 2021, eq. 2).

    x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: signal power ᾱ_t over noise power 1 − ᾱ_t. +inf at t = 0.
    """
    return alphas_cumprod / (1.0 - alphas_cumprod)


def log_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """λ_t = log SNR(t) = log ᾱ_t − log(1 − ᾱ_t), computing log(1 − ᾱ_t) as log1p(−ᾱ_t)
    (exact to rounding when ᾱ_t is small, at large t)."""
    return torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod)


# -- the object the rest of minidiff passes around -------------------------------------


class NoiseSchedule:
    """β_t, α_t, ᾱ_t, SNR(t) and log SNR(t) for t = 0..T, as float64 tensors of length T + 1.

    >>> s = NoiseSchedule.make("linear", T=1000)
    >>> s.alphas_cumprod[1]  # ᾱ_1 = 1 − β_1
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 1:
            raise ValueError("betas is empty: a schedule needs at least one step")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("every β_t must lie strictly between 0 and 1 (β_t = 1 erases x_{t−1} completely: clip it)")
        self.name = name
        self.T = betas.numel()
        zero = torch.zeros(1, dtype=torch.float64)
        self.betas = torch.cat([zero, betas])  # β_0 = 0 by convention
        self.alphas = 1.0 - self.betas  # α_t = 1 − β_t
        self.alphas_cumprod = alphas_cumprod_from_betas(betas)  # ᾱ_t, ᾱ_0 = 1
        self.snr = snr(self.alphas_cumprod)  # +inf at t = 0 (no noise yet)
        self.log_snr = log_snr(self.alphas_cumprod)

    @classmethod
    def make(cls, name: str = "linear", T: int = 1000, **kwargs) -> "NoiseSchedule":
        """A named schedule ("linear", "cosine" or "sigmoid"); kwargs go to its β function."""
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
        return cls(SCHEDULES[name](T, **kwargs), name=name)

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.name!r}, T={self.T}, ᾱ_T={self.alphas_cumprod[-1].item():.3g})"


def extract(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t], shaped (B, 1, 1, ...) to broadcast against a batch x of shape (B, ...).

    Also the place where bad timesteps are caught: t must hold integers in 0..T,
    one per batch element (or a single one for the whole batch).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps (torch.long), got dtype {t.dtype}: use t.long()")
    if t.dim() == 0:
        t = t.expand(x.shape[0] if x.dim() else 1)
    if t.dim() != 1 or (x.dim() and t.shape[0] != x.shape[0]):
        raise ValueError(f"t must have shape (B,) with B = x.shape[0] = {x.shape[0] if x.dim() else 1}, got {tuple(t.shape)}")
    T = values.shape[0] - 1
    if t.numel() and ((t < 0).any() or (t > T).any()):
        raise ValueError(f"timesteps must lie in 0..T = 0..{T}; got min {int(t.min())}, max {int(t.max())}")
    out = values.to(x.device)[t.to(x.device)].to(x.dtype if x.is_floating_point() else torch.float32)
    return out.reshape(-1, *([1] * (x.dim() - 1)))


# -- argument checks: clear errors that name the argument and the fix -------------------


def _check_T(T) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive int (the number of diffusion steps), got {T!r}")


def _check_prob(name: str, p, closed: bool = False) -> None:
    ok = isinstance(p, Real) and not isinstance(p, bool) and 0 < p and (p <= 1 if closed else p < 1)
    if not ok:
        interval = "(0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{name} must be a number in {interval}, got {p!r}")
