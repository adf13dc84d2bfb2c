"""Checks for lesson 01, noise schedules.

    from minidiff.course.checks import lesson01 as check
    check.linear_betas(linear_betas)
    check.alphas_cumprod(alphas_cumprod)
    check.cosine_betas(cosine_betas)
    check.log_snr(log_snr)

Each check first tests closed forms and edges (t = 1, t = T), then compares with
minidiff's reference on other inputs. When a wrong answer matches a common mistake
(off by one, cumsum for cumprod, no clipping, ...), the hint names that mistake.
"""

from __future__ import annotations

import math

import torch

from ... import schedules as ref
from .core import Tester, diagnose, exercise


@exercise("01", "linear_betas", points=2)
def linear_betas(t: Tester, fn):
    """β_1..β_T rising linearly: shape, dtype, both ends, the spacing, other arguments."""
    T = 1000
    out = t.call(fn, T)
    t.tensor(out, shape=(T,), dtype=torch.float64, what="linear_betas(1000)")
    t.close(out[0], 1e-4, "β_1 equals beta_1 = 1e-4 (t = 1 edge)",
            hint="the first entry is β_1 (t = 1): it should be beta_1 itself, not a step above it")
    t.close(out[-1], 0.02, "β_T equals beta_T = 0.02 (t = T edge)",
            hint="the last entry is β_T: torch.linspace(beta_1, beta_T, T) includes both ends")
    steps = out[1:] - out[:-1]
    t.close(steps, torch.full((T - 1,), (0.02 - 1e-4) / (T - 1), dtype=torch.float64),
            "consecutive β_t differ by (beta_T − beta_1)/(T − 1)", hint="β_t should be linear in t: use torch.linspace")
    T2, b1, bT = 10, 0.001, 0.1
    out2 = t.call(fn, T2, b1, bT)
    t.tensor(out2, shape=(T2,), what="linear_betas(10, 0.001, 0.1)")
    diagnose(
        t, out2, ref.linear_betas(T2, b1, bT), "linear_betas(10, 0.001, 0.1) matches minidiff.schedules.linear_betas",
        {
            "you return T + 1 values squeezed in: off by one in t (use linspace(beta_1, beta_T, T))":
                torch.linspace(b1, bT, T2 + 1, dtype=torch.float64)[1:],
            "you ignore the arguments beta_1 and beta_T (the defaults are hard-coded)":
                torch.linspace(1e-4, 0.02, T2, dtype=torch.float64),
        },
        hint="use the arguments T, beta_1 and beta_T",
    )


@exercise("01", "alphas_cumprod", points=2)
def alphas_cumprod(t: Tester, fn):
    """ᾱ_0..ᾱ_T from β_1..β_T: the t = 0 convention, a product (not a sum), dtype kept."""
    T = 50
    betas = torch.rand(T, dtype=torch.float64) * 0.2 + 0.01
    alphas = 1 - betas
    expected = ref.alphas_cumprod_from_betas(betas)
    out = t.call(fn, betas.clone())
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (T,):
        t.check(False, "alphas_cumprod returns T + 1 values ᾱ_0..ᾱ_T",
                f"got {T} values for {T} betas",
                hint="prepend ᾱ_0 = 1 (no noise at t = 0), so that out[t] is ᾱ_t for t = 0..T")
        return
    t.tensor(out, shape=(T + 1,), dtype=torch.float64, what="alphas_cumprod(betas)")
    t.close(out[0], 1.0, "ᾱ_0 = 1 (t = 0 convention: no noise yet)",
            hint="the first entry is ᾱ_0 = 1, the empty product; ᾱ_1 comes second")
    t.close(out[1], alphas[0], "ᾱ_1 = 1 − β_1 (t = 1 edge)",
            hint="ᾱ_1 = α_1 = 1 − β_1: check the order of the entries and that you use α = 1 − β, not β")
    diagnose(
        t, out[T], torch.prod(alphas), "ᾱ_T = ∏ (1 − β_s) (t = T edge)",
        {
            "you summed instead of multiplying: ᾱ_t is a cumulative *product* (torch.cumprod)":
                1 - torch.sum(betas),
            "you multiplied the β_s: ᾱ_t multiplies α_s = 1 − β_s": torch.prod(betas),
        },
        hint="ᾱ_T is the product of all T alphas",
    )
    diagnose(
        t, out, expected, "all of ᾱ_0..ᾱ_T match minidiff.schedules.alphas_cumprod_from_betas",
        {
            "you used cumsum: ᾱ_t is a cumulative product, torch.cumprod(1 - betas, 0)":
                torch.cat([torch.ones(1, dtype=torch.float64), 1 - torch.cumsum(betas, 0)]),
            "you used cumsum of the alphas: ᾱ_t is a cumulative product":
                torch.cat([torch.ones(1, dtype=torch.float64), torch.cumsum(alphas, 0)]),
            "you multiplied the betas: ᾱ_t multiplies α_s = 1 − β_s":
                torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(betas, 0)]),
        },
        hint="out[t] = (1 − β_1)(1 − β_2)···(1 − β_t)",
    )
    out32 = t.call(fn, betas.float())
    t.tensor(out32, shape=(T + 1,), dtype=torch.float32, what="alphas_cumprod(betas.float())")


@exercise("01", "cosine_betas", points=3)
def cosine_betas(t: Tester, fn):
    """Nichol & Dhariwal's cosine schedule: ᾱ_t = f(t)/f(0), β_t from ratios, clipped at max_beta."""
    T = 1000
    out = t.call(fn, T)
    t.tensor(out, shape=(T,), dtype=torch.float64, what="cosine_betas(1000)")
    diagnose(
        t, out.max(), 0.999, "β_T is clipped to max_beta = 0.999",
        {"you forgot the clip: without it β_T = 1, α_T = 0 and 1/√α_T is infinite; use .clamp(max=max_beta)": 1.0},
        hint="β_T is the largest β and should equal max_beta after the clip",
    )
    abar = torch.cumprod(1 - out.double(), 0)
    s = 0.008
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    diagnose(
        t, out[0], 1 - f(1) / f(0), "β_1 = 1 − f(1)/f(0) (t = 1 edge)",
        {
            "off by one: β_1 = 1 − ᾱ_1/ᾱ_0 uses f(0) and f(1); f is evaluated at t = 0..T (T + 1 points)":
                1 - f(2) / f(1),
        },
        hint="β_t = 1 − ᾱ_t/ᾱ_{t−1} with ᾱ_t = f(t)/f(0) and f(t) = cos²((t/T + s)/(1 + s)·π/2)",
        rtol=1e-4,
    )
    diagnose(
        t, abar[T // 2 - 1], f(T // 2) / f(0), "∏_{s≤T/2} (1 − β_s) = f(T/2)/f(0) (ᾱ at the middle)",
        {"check the offset s and the factor π/2 in f(t) = cos²((t/T + s)/(1 + s) · π/2)":
             math.cos((T // 2) / T * math.pi / 2) ** 2},
        hint="the product of the first T/2 alphas should be the closed form ᾱ_{T/2} = f(T/2)/f(0)",
        rtol=1e-6,
    )
    T2, s2, m2 = 40, 0.02, 0.9
    out2 = t.call(fn, T2, s2, m2)
    t.tensor(out2, shape=(T2,), what="cosine_betas(40, s=0.02, max_beta=0.9)")
    diagnose(
        t, out2, ref.cosine_betas(T2, s2, m2), "cosine_betas(40, 0.02, 0.9) matches minidiff.schedules.cosine_betas",
        {
            "you ignore max_beta (0.999 is hard-coded?)": ref.cosine_betas(T2, s2, 0.999),
            "you ignore s (0.008 is hard-coded?)": ref.cosine_betas(T2, 0.008, m2),
            "you forgot the clip at max_beta": ref.cosine_betas(T2, s2, 1.0),
            "β_t = 1 − ᾱ_t/ᾱ_{t−1}, a ratio of consecutive ᾱ, not 1 − ᾱ_t":
                (1 - ref.cosine_alphas_cumprod(T2, s2)[1:]).clamp(max=m2),
        },
        hint="use the arguments T, s and max_beta",
        rtol=1e-6,
    )


@exercise("01", "log_snr", points=1)
def log_snr(t: Tester, fn):
    """λ = log(ᾱ / (1 − ᾱ)): the value at ᾱ = 1/2, its sign, and agreement with the reference."""
    abar = ref.NoiseSchedule.make("cosine", 200).alphas_cumprod[1:]
    out = t.call(fn, abar.clone())
    t.tensor(out, shape=abar.shape, dtype=torch.float64, what="log_snr(alphas_cumprod[1:])")
    half = t.call(fn, torch.tensor([0.5], dtype=torch.float64))
    t.tensor(half, shape=(1,), what="log_snr(0.5)")
    t.close(half, 0.0, "log SNR = 0 where ᾱ = 1/2 (signal and noise equally strong)",
            hint="SNR = ᾱ / (1 − ᾱ) is 1 at ᾱ = 1/2, so its log is 0")
    diagnose(
        t, out, ref.log_snr(abar), "matches minidiff.schedules.log_snr",
        {
            "you returned the SNR itself: take its log": ref.snr(abar),
            "sign flipped: SNR = ᾱ / (1 − ᾱ), signal over noise": -ref.log_snr(abar),
            "you took log(ᾱ)/log(1 − ᾱ): the log of a ratio is a difference of logs":
                torch.log(abar) / torch.log1p(-abar),
        },
        hint="λ_t = log ᾱ_t − log(1 − ᾱ_t)",
        rtol=1e-6,
    )
