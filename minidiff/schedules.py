"""Noise schedules: β_1..β_T and everything derived from them (lesson 01).

Notation (Ho et al. 2020, "DDPM"):  α_t = 1 − β_t,   ᾱ_t = ∏_{s=1..t} α_s,
SNR(t) = ᾱ_t / (1 − ᾱ_t).

Indexing: the paper counts t = 1..T. A `NoiseSchedule` stores T+1 entries so that
`schedule.alphas_cumprod[t]` *is* ᾱ_t, with the convention ᾱ_0 = 1 (β_0 = 0, no
noise at t = 0). Hugging Face diffusers stores T entries and counts from 0, so
their `alphas_cumprod[i]` is our `alphas_cumprod[i + 1]`.
"""

from __future__ import annotations

import math

import torch


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """DDPM's schedule: β_t rises linearly from β_1 to β_T (Ho et al. 2020, §4).

    Returns the T values β_1..β_T (float64). The defaults are the paper's, for T = 1000.
    """
    _check_T(T)
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17:  ᾱ_t = f(t)/f(0),  f(t) = cos²((t/T + s)/(1 + s) · π/2),
    and β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped to max_beta so that β_T < 1 (their §3.2).
    """
    _check_T(T)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


def sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999) -> torch.Tensor:
    """Sigmoid schedule (Jabri et al. 2022; Chen 2023, "On the importance of noise scheduling"):
    ᾱ_t = (σ(end/τ) − σ((start + (end − start)·t/T)/τ)) / (σ(end/τ) − σ(start/τ)),
    then β_t = 1 − ᾱ_t/ᾱ_{t−1}. It keeps ᾱ near 1 for longer than cosine, then drops.
    """
    _check_T(T)
    t = torch.arange(T + 1, dtype=torch.float64) / T
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    abar = (v_end - torch.sigmoid((start + (end - start) * t) / tau)) / (v_end - v_start)
    return (1 - abar[1:] / abar[:-1]).clamp(min=0.0, max=max_beta)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}


def _check_T(T) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T must be a positive int (the number of diffusion steps), got {T!r}")


class NoiseSchedule:
    """β_t, α_t, ᾱ_t and SNR(t) for t = 0..T, as float64 tensors of length T + 1.

    >>> s = NoiseSchedule.make("linear", T=1000)
    >>> s.alphas_cumprod[1]  # ᾱ_1 = 1 − β_1
    """

    def __init__(self, betas: torch.Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 1:
            raise ValueError("betas is empty: a schedule needs at least one step")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError("every β_t must lie strictly between 0 and 1")
        self.T = betas.numel()
        zero = torch.zeros(1, dtype=torch.float64)
        self.betas = torch.cat([zero, betas])  # β_0 = 0 by convention
        self.alphas = 1.0 - self.betas  # α_t = 1 − β_t
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # ᾱ_t, ᾱ_0 = 1
        # SNR(t) = ᾱ_t / (1 − ᾱ_t); infinite at t = 0 (no noise yet).
        self.snr = self.alphas_cumprod / (1.0 - self.alphas_cumprod)
        self.log_snr = torch.log(self.alphas_cumprod) - torch.log1p(-self.alphas_cumprod)

    @classmethod
    def make(cls, name: str = "linear", T: int = 1000, **kwargs) -> "NoiseSchedule":
        if name not in SCHEDULES:
            raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
        return cls(SCHEDULES[name](T, **kwargs))

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return f"NoiseSchedule(T={self.T}, ᾱ_T={self.alphas_cumprod[-1].item():.3g})"


def extract(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t], shaped (B, 1, 1, ...) to broadcast against a batch x of shape (B, ...).

    Also the place where bad timesteps are caught: t must hold integers in 0..T,
    one per batch element (or a single one for the whole batch).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps (torch.long), got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(x.shape[0] if x.dim() else 1)
    if t.dim() != 1 or (x.dim() and t.shape[0] != x.shape[0]):
        raise ValueError(f"t must have shape (B,) with B = x.shape[0] = {x.shape[0] if x.dim() else 1}, got {tuple(t.shape)}")
    T = values.shape[0] - 1
    if (t < 0).any() or (t > T).any():
        raise ValueError(f"timesteps must lie in 0..T = 0..{T}; got min {int(t.min())}, max {int(t.max())}")
    out = values.to(x.device)[t.to(x.device)].to(x.dtype if x.is_floating_point() else torch.float32)
    return out.reshape(-1, *([1] * (x.dim() - 1)))
