"""Checks for lesson 01, noise schedules.

    from minidiff.course.checks import lesson01 as check
    check.schedule_tables(schedule_tables)   # β, α, ᾱ (ᾱ_0 = 1), SNR, log-SNR for t = 0..T
    check.cosine_betas(cosine_betas)         # Nichol & Dhariwal 2021, eq. 17, clipped
    check.sigmoid_betas(sigmoid_betas)       # the sigmoid schedule (Chen 2023)

Each check first tests closed forms and edges (t = 0, t = 1, t = T), then compares with
minidiff's reference on other inputs. When a wrong answer matches a common mistake
(off by one, cumsum for cumprod, no clipping, an inverted ratio, ...), the hint names that mistake.
"""

from __future__ import annotations

import math

import torch

from ... import schedules as ref
from .core import Tester, diagnose, exercise

TABLES = ("betas", "alphas", "alphas_cumprod", "snr", "log_snr")
T = 1000  # the schedule length the β checks use
COSINE_SHORT = "f is evaluated at the T + 1 points t = 0..T, which gives T ratios ᾱ_t/ᾱ_{t−1}: return all T of them"
FLOAT64 = ("keep the schedule in float64 (torch.arange(..., dtype=torch.float64); torch.linspace and torch.tensor "
           "make float32 by default): ᾱ_T is a product of many numbers just below 1")
SHIFTED = "off by one: evaluate f at t = 0..T (torch.arange(T + 1)), so that β_1 = 1 − f(1)/f(0)"
INVERTED = "the ratio is upside down: β_t = 1 − ᾱ_t/ᾱ_{t−1} (the later ᾱ over the earlier one), not 1 − ᾱ_{t−1}/ᾱ_t"
SIGMOID_SHORT = "evaluate ᾱ at the T + 1 points t = 0..T (u = t/T from 0 to 1), which gives T ratios ᾱ_t/ᾱ_{t−1}"


def _shape(t: Tester, out, n: int, what: str, short_hint: str) -> bool:
    """Is `out` a tensor of length n (decisive: the values can't be tested otherwise)? A length of n − 1
    gets `short_hint` (a missing t = 0 entry). Its dtype should be float64 (incidental: the values are
    still tested, and float32 rounding then shows up there)."""
    if not isinstance(out, torch.Tensor):
        return t.check(False, f"{what} is a torch.Tensor", f"got {type(out).__name__}",
                       hint="return torch tensors (torch.*), not lists, floats or numpy arrays", decisive=True)
    if tuple(out.shape) != (n,):
        hint = short_hint if tuple(out.shape) == (n - 1,) else f"{what} should hold {n} values"
        return t.check(False, f"{what} has {n} entries", f"got shape {tuple(out.shape)}", hint=hint, decisive=True)
    if out.dtype != torch.float64:
        t.check(False, f"{what} is float64", f"got {out.dtype}", hint=FLOAT64)
        return out.is_floating_point()
    return t.check(True, f"{what} is a float64 tensor of length {n}")


def _rtol(out: torch.Tensor, tight: float) -> float:
    """The tolerance for a schedule's values: float32 ones (already marked down by the dtype test) to float32 precision."""
    return tight if out.dtype == torch.float64 else max(tight, 1e-4)


def _range(t: Tester, out: torch.Tensor, max_beta: float, what: str, inverted_hint: str) -> bool:
    """Decisive: every β_t lies in (0, max_beta], so that ᾱ_t falls from 1 towards 0 and stays positive."""
    b = out.double()
    abar = torch.cumprod(1 - b, 0)
    low, high = int((b <= 0).sum()), int((b > max_beta * (1 + 1e-6)).sum())
    detail = (f"{low} of the β_t are ≤ 0 (the smallest, β_{int(b.argmin()) + 1} = {b.min().item():.4g}), "
              f"{high} exceed max_beta = {max_beta:g}; ᾱ_t ranges over [{abar.min().item():.4g}, {abar.max().item():.4g}]")
    hint = ("a β_t ≤ 0 makes ᾱ_t rise (ᾱ_t > 1 once a β is negative): " + inverted_hint if low else
            "clip every β_t at max_beta: betas.clamp(max=max_beta)")
    return t.check(low == 0 and high == 0, f"{what}: every β_t lies in (0, max_beta], so ᾱ_t falls and stays in (0, 1)",
                   detail, hint=hint, decisive=True)


def _betas_of(t: Tester, fn, T: int, name: str, short_hint: str):
    """fn(T), if it is a float64 tensor of T values β_1..β_T; None (the test recorded) otherwise."""
    out = t.call(fn, T)
    return out if _shape(t, out, T, f"{name}({T})", short_hint) else None


@exercise("01", "schedule_tables", points=3)
def schedule_tables(t: Tester, fn):
    """The five tables of a NoiseSchedule from β_1..β_T: t = 0 conventions, a product, SNR, log-SNR."""
    T = 50
    betas = torch.rand(T, dtype=torch.float64) * 0.2 + 0.01
    betas[0] = 0.5  # so that ᾱ_1 = 1/2: SNR(1) = 1 and λ_1 = 0 exactly
    alphas = 1 - betas
    want = ref.NoiseSchedule(betas)
    out = t.call(fn, betas.clone())
    if not isinstance(out, dict):
        t.check(False, "returns a dict of tables", f"got {type(out).__name__}",
                hint='end with return {"betas": ..., "alphas": ..., "alphas_cumprod": ..., "snr": ..., "log_snr": ...}',
                decisive=True)
        return
    missing = [k for k in TABLES if k not in out]
    if not t.check(not missing, "the dict has the keys " + ", ".join(TABLES), f"missing: {', '.join(missing)}",
                   hint="use exactly the names of NoiseSchedule's attributes", decisive=True):
        return
    ok = [_shape(t, out[k], T + 1, f'tables["{k}"]',
                 "the tables have T + 1 entries, one per t = 0..T: prepend β_0 = 0 (no noise at t = 0); "
                 "then α_0 = 1 and ᾱ_0 = 1 follow") for k in TABLES]
    if not all(ok):
        return
    b, a, ab, snr, lam = (out[k] for k in TABLES)

    t.close(b, want.betas, "betas: β_0 = 0, then β_1..β_T as given",
            hint="betas[t] is β_t: index 0 holds β_0 = 0 and the input follows unchanged")
    diagnose(t, a, want.alphas, "alphas: α_t = 1 − β_t for t = 0..T",
             {"α_t = 1 − β_t, not β_t": want.betas, "you returned ᾱ_t under the name alphas": want.alphas_cumprod},
             hint="α_t = 1 − β_t (DDPM §2)")
    t.close(ab[0], 1.0, "ᾱ_0 = 1 (t = 0: no noise yet, the empty product)",
            hint="the first entry is ᾱ_0 = 1; a cumulative product of α_0 = 1, α_1, ... gives it for free")
    t.close(ab[1], 0.5, "ᾱ_1 = 1 − β_1 (t = 1 edge)",
            hint="ᾱ_1 = α_1 = 1 − β_1: check the order of the entries and that you multiply α = 1 − β, not β")
    diagnose(
        t, ab[T], torch.prod(alphas), "ᾱ_T = ∏ (1 − β_s) (t = T edge)",
        {"you summed instead of multiplying: ᾱ_t is a cumulative *product* (torch.cumprod)": 1 - torch.sum(betas),
         "you multiplied the β_s: ᾱ_t multiplies α_s = 1 − β_s": torch.prod(betas)},
        hint="ᾱ_T is the product of all T alphas",
    )
    one = torch.ones(1, dtype=torch.float64)
    diagnose(
        t, ab, want.alphas_cumprod, "alphas_cumprod: all of ᾱ_0..ᾱ_T (DDPM eq. 4's product)",
        {"you used cumsum: ᾱ_t is a cumulative product, torch.cumprod(alphas, 0)": torch.cat([one, 1 - torch.cumsum(betas, 0)]),
         "you used cumsum of the alphas: ᾱ_t is a cumulative product": torch.cat([one, torch.cumsum(alphas, 0)]),
         "you multiplied the betas: ᾱ_t multiplies α_s = 1 − β_s": torch.cat([one, torch.cumprod(betas, 0)])},
        hint="alphas_cumprod[t] = (1 − β_1)(1 − β_2)···(1 − β_t)",
    )
    t.check(snr[0].item() == math.inf and lam[0].item() == math.inf, "SNR(0) = λ_0 = +∞ (t = 0 edge)",
            f"got SNR(0) = {snr[0].item():.4g}, λ_0 = {lam[0].item():.4g}",
            hint="with ᾱ_0 = 1 the formulas give 1/0 = +inf and log(+inf) = +inf; keep them, do not patch entry 0",
            decisive=True)
    t.close(snr[1], 1.0, "SNR(1) = 1 where ᾱ_1 = ½ (signal and noise equally strong)",
            hint="SNR = ᾱ / (1 − ᾱ): signal power over noise power")
    ab_ = want.alphas_cumprod[1:]
    diagnose(
        t, snr[1:], want.snr[1:], "snr: SNR(t) = ᾱ_t / (1 − ᾱ_t) for t = 1..T",
        {"inverted: SNR is signal over noise, ᾱ_t / (1 − ᾱ_t)": (1 - ab_) / ab_,
         "SNR uses ᾱ_t (alphas_cumprod), not α_t of one step": want.alphas[1:] / want.betas[1:],
         "SNR is a ratio of powers (variances), ᾱ_t / (1 − ᾱ_t), not of amplitudes √ᾱ_t / √(1 − ᾱ_t)": (ab_ / (1 - ab_)).sqrt()},
        hint="SNR(t) = ᾱ_t / (1 − ᾱ_t)", rtol=1e-9,
    )
    t.close(lam[1], 0.0, "λ_1 = log SNR(1) = 0 where ᾱ_1 = ½", hint="log 1 = 0: λ = log(ᾱ / (1 − ᾱ))", atol=1e-12)
    diagnose(
        t, lam[1:], want.log_snr[1:], "log_snr: λ_t = log SNR(t) for t = 1..T",
        {"you returned the SNR itself: take its log": want.snr[1:],
         "sign flipped: λ = log ᾱ − log(1 − ᾱ), signal over noise": -want.log_snr[1:],
         "the log of a ratio is a difference of logs, not log(ᾱ)/log(1 − ᾱ)": torch.log(ab_) / torch.log1p(-ab_),
         "use the natural log (torch.log), not log10": torch.log10(want.snr[1:])},
        hint="λ_t = log ᾱ_t − log(1 − ᾱ_t)", rtol=1e-9,
    )
    # A real schedule: DDPM's linear one, T = 1000, against NoiseSchedule.make.
    lin = ref.NoiseSchedule.make("linear", 1000)
    out2 = t.call(fn, ref.linear_betas(1000))
    ok = isinstance(out2, dict) and all(isinstance(out2.get(k), torch.Tensor) and out2[k].shape == (1001,) for k in TABLES)
    wrong = [k for k in TABLES if not ok or not torch.allclose(out2[k][1:].double(), getattr(lin, k)[1:], rtol=1e-9, atol=0)]
    t.check(not wrong, "all five tables of linear_betas(1000) match NoiseSchedule.make('linear', 1000)",
            "wrong: " + ", ".join(wrong) if ok else "the tables do not all have 1001 entries",
            hint="the same formulas on a longer schedule: if a test above failed, fix that first", decisive=True)


@exercise("01", "cosine_betas", points=3)
def cosine_betas(t: Tester, fn):
    """Nichol & Dhariwal's cosine schedule: ᾱ_t = f(t)/f(0), β_t from ratios, clipped at max_beta."""
    if (out := _betas_of(t, fn, T, "cosine_betas", COSINE_SHORT)) is None:
        return
    s = 0.008
    f = lambda u: math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    fs = torch.tensor([f(u) for u in range(T + 1)], dtype=torch.float64)
    diagnose(
        t, out[-1], 0.999, "β_T (the last entry) is clipped to max_beta = 0.999",
        {"you forgot the clip: without it β_T = 1, α_T = 0 and 1/√α_T is infinite; use .clamp(max=max_beta)": 1.0,
         "β_T turns negative: either you are off by one (f is evaluated at t = 0..T; at t = T + 1 the cosine "
         "passes π/2) or " + INVERTED: 1 - fs[-2] / fs[-1]},
        hint="β_T = 1 − ᾱ_T/ᾱ_{T−1} = 1 (ᾱ_T = 0) before the clip, max_beta after it",
    )
    _range(t, out, 0.999, "cosine_betas(1000)", INVERTED)
    abar = torch.cumprod(1 - out.double(), 0)
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
             math.cos((T // 2) / T * math.pi / 2) ** 2,
         SHIFTED: f(T // 2 + 1) / f(1)},
        hint="the product of the first T/2 alphas should be the closed form ᾱ_{T/2} = f(T/2)/f(0)",
        rtol=_rtol(out, 1e-6),
    )
    T2, s2, m2 = 40, 0.02, 0.9
    out2 = t.call(fn, T2, s2, m2)
    t.tensor(out2, shape=(T2,), dtype=torch.float64, what="cosine_betas(40, s=0.02, max_beta=0.9)", dtype_hint=FLOAT64)
    diagnose(
        t, out2, ref.cosine_betas(T2, s2, m2), "cosine_betas(40, 0.02, 0.9) matches minidiff.schedules.cosine_betas",
        {
            "you ignore max_beta (0.999 is hard-coded?)": ref.cosine_betas(T2, s2, 0.999),
            "you ignore s (0.008 is hard-coded?)": ref.cosine_betas(T2, 0.008, m2),
            "you forgot the clip at max_beta": ref.cosine_betas(T2, s2, 1.0),
            "β_t = 1 − ᾱ_t/ᾱ_{t−1}, a ratio of consecutive ᾱ, not 1 − ᾱ_t":
                (1 - ref.cosine_alphas_cumprod(T2, s2)[1:]).clamp(max=m2),
            INVERTED: (1 - ref.cosine_alphas_cumprod(T2, s2)[:-1] / ref.cosine_alphas_cumprod(T2, s2)[1:]).clamp(max=m2),
            SHIFTED: (1 - _cosine_f(T2, s2, 2) / _cosine_f(T2, s2, 1)).clamp(max=m2),
        },
        hint="use the arguments T, s and max_beta",
        rtol=_rtol(out2, 1e-6),
    )


def _cosine_f(T, s, start):
    """f(t) = cos²((t/T + s)/(1 + s)·π/2) at t = start..start + T − 1."""
    t = torch.arange(start, start + T, dtype=torch.float64)
    return torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


def _sigmoid_abar(T, start, end, tau):
    """ᾱ_0..ᾱ_T of the sigmoid schedule, written out here independently of minidiff."""
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    u = [k / T for k in range(T + 1)]
    return torch.tensor([(sig(end / tau) - sig((start + (end - start) * x) / tau)) / (sig(end / tau) - sig(start / tau))
                         for x in u], dtype=torch.float64)


@exercise("01", "sigmoid_betas", points=2)
def sigmoid_betas(t: Tester, fn):
    """The sigmoid schedule: ᾱ_{T/2} = ½ when start = −end, β_1 and β_T, other arguments."""
    if (out := _betas_of(t, fn, T, "sigmoid_betas", SIGMOID_SHORT)) is None:
        return
    abar = torch.cumprod(1 - out, 0)
    t.close(abar[T // 2 - 1], 0.5, "start = −end: ᾱ_{T/2} = ½ (σ(0) = ½ lies halfway between σ(start/τ) and σ(end/τ))",
            hint="ᾱ_t = (σ(end/τ) − σ((start + (end − start)·t/T)/τ)) / (σ(end/τ) − σ(start/τ)), with t/T from 0 to 1",
            rtol=_rtol(out, 1e-9))
    want = _sigmoid_abar(T, -3.0, 3.0, 1.0)
    diagnose(
        t, out[0], 1 - want[1] / want[0], "β_1 = 1 − ᾱ_1/ᾱ_0 (t = 1 edge)",
        {"off by one: ᾱ is evaluated at t = 0..T, and β_1 = 1 − ᾱ_1/ᾱ_0": 1 - want[2] / want[1]},
        hint="β_t = 1 − ᾱ_t/ᾱ_{t−1}, with ᾱ evaluated at t = 0..T", rtol=_rtol(out, 1e-9),
    )
    diagnose(
        t, out[-1], 0.999, "β_T is clipped to max_beta = 0.999 (ᾱ_T = 0 would give β_T = 1)",
        {"you forgot the clip: ᾱ_T = 0 gives β_T = 1; use .clamp(max=max_beta)": 1.0,
         INVERTED: (1 - want[-2] / want[-1]).clamp(max=0.999)},
        hint="clip every β_t at max_beta", rtol=_rtol(out, 1e-9),
    )
    _range(t, out, 0.999, "sigmoid_betas(1000)", INVERTED)
    args = (40, -2.0, 4.0, 0.7, 0.9)
    out2 = t.call(fn, *args)
    t.tensor(out2, shape=(40,), dtype=torch.float64, what="sigmoid_betas(40, start=-2, end=4, tau=0.7, max_beta=0.9)", dtype_hint=FLOAT64)
    T2, a, b, tau, m = args
    diagnose(
        t, out2, ref.sigmoid_betas(*args), "sigmoid_betas(40, -2, 4, 0.7, 0.9) matches minidiff.schedules.sigmoid_betas",
        {"divide by the temperature τ everywhere, σ(x/τ); you left τ out": ref.sigmoid_betas(T2, a, b, 1.0, m),
         "divide by τ, don't multiply: σ(x/τ)": ref.sigmoid_betas(T2, a, b, 1 / tau, m),
         "you ignore start and end (−3 and 3 are hard-coded?)": ref.sigmoid_betas(T2, -3.0, 3.0, tau, m),
         "you ignore max_beta (0.999 is hard-coded?)": ref.sigmoid_betas(T2, a, b, tau, 0.999),
         "you forgot the clip at max_beta": ref.sigmoid_betas(T2, a, b, tau, 1.0),
         "β_t = 1 − ᾱ_t/ᾱ_{t−1}, a ratio of consecutive ᾱ, not 1 − ᾱ_t":
             (1 - _sigmoid_abar(T2, a, b, tau)[1:]).clamp(max=m),
         INVERTED: (1 - _sigmoid_abar(T2, a, b, tau)[:-1] / _sigmoid_abar(T2, a, b, tau)[1:]).clamp(max=m)},
        hint="use all the arguments: T, start, end, tau and max_beta", rtol=_rtol(out2, 1e-9),
    )
