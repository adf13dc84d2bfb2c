"""Checks for lesson 02, the forward process.

    from minidiff.course.checks import lesson02 as check
    check.q_step(q_step)                              # q(x_t | x_{t−1}), DDPM eq. 2
    check.add_noise(add_noise)                        # q(x_t | x_0), DDPM eq. 4
    check.q_posterior_mean_var(q_posterior_mean_var)  # q(x_{t−1} | x_t, x_0), DDPM eqs. 6–7

Oracles: the closed forms with noise = 0 and x = 0 (which separate the mean from the
standard deviation), the t = 1 and t = T edges, a batch of MNIST-shaped images with
one t per image, Monte Carlo moments (one step, and forty steps iterated against DDPM eq. 4),
the errors the functions must raise (t = 0 for a step, noise of another shape), and, for
the posterior, Bayes' rule for two Gaussians written out independently of DDPM eqs. 6–7.
"""

from __future__ import annotations

import torch

from ... import forward as ref
from ...schedules import NoiseSchedule
from . import core
from .core import Abort, Tester, diagnose, exercise

BROADCAST_HINT = (
    "index the schedule with t, then reshape to (B, 1, 1, 1) so it broadcasts over each image: "
    "use minidiff.schedules.extract(values, t, x)"
)


def _call(t: Tester, fn, *args):
    """t.call, with lesson 02's broadcasting hint when the learner's code trips over shapes."""
    t.crash_hints["shape"] = core.BROADCAST_HINT
    return t.call(fn, *args)


def _batch():
    """Four MNIST-shaped images with one timestep each (the t = 1 and t = T edges included)."""
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    t = torch.tensor([1, 10, 500, 1000])
    return x, t


def _col(v: torch.Tensor, ndim: int = 4) -> torch.Tensor:
    """Per-example values as a (B, 1, 1, 1) float32 column (ndim=2: (B, 1))."""
    return v.float().reshape(-1, *([1] * (ndim - 1)))


# float32 images: a learner may compute some coefficients after casting to float32. Outside the
# one test that is about exactly that (add_noise at t = 1), those ~1e-4 relative errors are not
# worth failing anyone for.
F32 = dict(rtol=1e-3, atol=1e-4)


@exercise("02", "q_step", points=3)
def q_step(t: Tester, fn):
    """x_t = √α_t x_{t−1} + √β_t ε with one t per image; t = 0 refused; fresh noise by default;
    iterated forty times, it has DDPM eq. 4's moments."""
    s = NoiseSchedule.make("linear", 1000)
    x, ts = _batch()
    eps = torch.randn_like(x)
    alpha, beta = _col(s.alphas[ts]), _col(s.betas[ts])

    out = _call(t, fn, s, x, ts, eps)
    t.tensor(out, shape=x.shape, dtype=torch.float32, what="q_step on a (4, 1, 28, 28) batch")
    t.check(torch.equal(out, _call(t, fn, s, x, ts, eps)), "the same noise argument gives the same x_t",
            hint="use the noise you are given: draw torch.randn_like(x_prev) only when noise is None")
    diagnose(
        t, _call(t, fn, s, x, ts, torch.zeros_like(x)), alpha.sqrt() * x,
        "with noise = 0 the result is √α_t · x_{t−1}",
        {"one step scales by √α_t = √(1 − β_t), not √ᾱ_t: ᾱ_t is for the jump from x_0": _col(s.alphas_cumprod[ts]).sqrt() * x,
         "missing sqrt: the mean is √α_t · x_{t−1}": alpha * x,
         "the mean is √(1 − β_t) x_{t−1}, not √β_t x_{t−1}": beta.sqrt() * x},
        hint="the mean of q(x_t | x_{t−1}) is √α_t · x_{t−1} (DDPM eq. 2)", **F32,
    )
    diagnose(
        t, _call(t, fn, s, torch.zeros_like(x), ts, eps), beta.sqrt() * eps,
        "with x_{t−1} = 0 the result is √β_t · ε",
        {"variance vs std: multiply ε by √β_t, the standard deviation": beta * eps,
         "one step adds noise of variance β_t, not 1 − ᾱ_t": (1 - _col(s.alphas_cumprod[ts])).sqrt() * eps},
        hint="the standard deviation of q(x_t | x_{t−1}) is √β_t (DDPM eq. 2)", **F32,
    )
    diagnose(
        t, out, ref.q_step(s, x, ts, eps), "matches minidiff.forward.q_step on the batch",
        {"off by one in t: s.betas[t] already is β_t (index 0 holds β_0 = 0)": ref.q_step(s, x, (ts - 1).clamp(min=1), eps)},
        hint="if only some images are wrong, " + BROADCAST_HINT, **F32,
    )
    # float64 points: the result stays float64, to float64 precision
    x64, e64, t64 = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64), torch.tensor([1, 2, 3, 400, 999, 1000])
    out64 = _call(t, fn, s, x64, t64, e64)
    t.tensor(out64, shape=(6, 3), dtype=torch.float64, what="q_step on float64 points (6, 3)")
    t.close(out64, ref.q_step(s, x64, t64, e64), "float64 points: matches minidiff.forward.q_step to float64 precision",
            hint="extract the coefficients in x's dtype (extract(values, t, x)), without a detour through float32",
            rtol=1e-4 if out64.dtype == torch.float32 else 1e-10, atol=1e-6 if out64.dtype == torch.float32 else 1e-12)
    t.raises(fn, (s, x, torch.tensor([0, 10, 500, 1000]), eps), ValueError,
            "t = 0 raises a ValueError (there is no x_{−1} to step from)",
            hint="β_0 = 0 would silently return x unchanged: raise ValueError when any t < 1 "
                 "(torch.as_tensor(t) < 1).any()")

    # Iterate from x_0 to x_40 and compare the moments with the closed form (DDPM eq. 4).
    c = NoiseSchedule.make("cosine", 100)
    n, steps = 20_000, 40
    x0 = torch.full((n, 1), 1.5)
    xt = x0
    for k in range(1, steps + 1):
        xt = _call(t, fn, c, xt, torch.full((n,), k), torch.randn_like(xt))
    ab = c.alphas_cumprod[steps].item()
    t.close(xt.mean(), 1.5 * ab**0.5, f"after {steps} steps, sample mean ≈ √ᾱ_t x_0 (DDPM eq. 4)",
            hint="each step scales the mean by √α_t; after t steps that is √ᾱ_t", rtol=0, atol=0.03)
    t.close(xt.var(), 1 - ab, f"after {steps} steps, sample variance ≈ 1 − ᾱ_t (DDPM eq. 4)",
            hint="each step adds variance β_t: scale ε by √β_t", rtol=0.05, atol=0)

    # noise=None: a fresh standard normal every call.
    zeros = torch.zeros(n, 2)
    try:
        a = t.call(fn, s, zeros, 500)
    except Abort:
        msgs = t.result.messages
        if msgs and "argument" in msgs[-1] and "noise" in msgs[-1]:
            msgs[-1] = (msgs[-1].rsplit("Hint:", 1)[0] + "Hint: give noise a default, "
                        "def q_step(schedule, x_prev, t, noise=None), and draw torch.randn_like(x_prev) when it is None")
        raise
    b = _call(t, fn, s, zeros, 500)
    t.tensor(a, shape=(n, 2), dtype=torch.float32, what="q_step(schedule, zeros of shape (20000, 2), 500) without noise")
    t.check(not torch.equal(a, b), "without a noise argument, each call draws fresh noise",
            hint="draw noise = torch.randn_like(x_prev) inside the function when noise is None")
    t.close(a.var(), s.betas[500].item(), "without a noise argument, x_{t−1} = 0 gives variance β_t (Monte Carlo)",
            hint="draw standard normal noise (torch.randn_like) and scale it by √β_t", rtol=0.05, atol=0)


@exercise("02", "add_noise", points=3)
def add_noise(t: Tester, fn):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with one t per image; moments; edges; 1 − ᾱ_t in float64;
    noise of another shape refused."""
    s = NoiseSchedule.make("linear", 1000)
    x0, ts = _batch()
    eps = torch.randn_like(x0)
    abar = _col(s.alphas_cumprod[ts])

    out = _call(t, fn, s, x0, eps, ts)
    t.tensor(out, shape=x0.shape, dtype=torch.float32, what="add_noise on a (4, 1, 28, 28) batch")
    mean_only = _call(t, fn, s, x0, torch.zeros_like(x0), ts)
    diagnose(
        t, mean_only, abar.sqrt() * x0, "with noise = 0 the result is the mean √ᾱ_t · x_0",
        {"missing sqrt: the mean is √ᾱ_t · x_0, not ᾱ_t · x_0": abar * x0,
         "use ᾱ_t (alphas_cumprod), not α_t, to jump from x_0 straight to x_t": _col(s.alphas[ts]).sqrt() * x0,
         "every image used the first t: index alphas_cumprod with the whole tensor t": s.alphas_cumprod[1].sqrt().float() * x0},
        hint="the mean of q(x_t | x_0) is √ᾱ_t · x_0 (DDPM eq. 4)", **F32,
    )
    noise_only = _call(t, fn, s, torch.zeros_like(x0), eps, ts)
    diagnose(
        t, noise_only, (1 - abar).sqrt() * eps, "with x_0 = 0 the result is √(1 − ᾱ_t) · ε",
        {"variance vs std: ε is multiplied by the standard deviation √(1 − ᾱ_t), not the variance 1 − ᾱ_t": (1 - abar) * eps,
         "the noise scale is √(1 − ᾱ_t), not √ᾱ_t ... check which factor goes with x_0 and which with ε": abar.sqrt() * eps},
        hint="the standard deviation of q(x_t | x_0) is √(1 − ᾱ_t) (DDPM eq. 4)", **F32,
    )
    t.close(out[0], (1 - s.betas[1]).sqrt().float() * x0[0] + s.betas[1].sqrt().float() * eps[0],
            "t = 1: one step of noise, √(1 − β_1) x_0 + √β_1 ε", hint="t counts from 1: alphas_cumprod[1] = 1 − β_1",
            **F32)
    diagnose(
        t, out, ref.add_noise(s, x0, eps, ts), "matches minidiff.forward.add_noise on the batch",
        {"off by one in t: alphas_cumprod[t] already is ᾱ_t (index 0 is ᾱ_0 = 1)":
             ref.add_noise(s, x0, eps, ts - 1)},
        hint="if only some images are wrong, " + BROADCAST_HINT, **F32,
    )
    # The numerics: 1 − ᾱ_1 = 1e-4 must be formed in float64, before the cast to the images' float32.
    ones = torch.ones(3, 1, 28, 28)
    at_1 = _call(t, fn, s, torch.zeros_like(ones), ones, torch.ones(3, dtype=torch.long))
    diagnose(
        t, at_1, ((1 - s.alphas_cumprod[1]).sqrt().float() * ones),
        "t = 1 on float32 images: √(1 − ᾱ_1) = √β_1 to float32 precision",
        {"form 1 − ᾱ_t on the float64 schedule, then extract: after the cast to float32, ᾱ_1 = 0.9999 keeps "
         "only about four correct digits of 1 − ᾱ_1": (1 - s.alphas_cumprod[1].float()).sqrt() * ones},
        hint="compute (1 − alphas_cumprod).sqrt() in float64 and only then extract it at t", rtol=2e-6, atol=0,
    )

    # Monte Carlo: many samples of one 2D point at t = 300 of the cosine schedule.
    c = NoiseSchedule.make("cosine", 1000)
    n, tt = 20_000, 300
    x = torch.tensor([[1.5, -0.5]]).expand(n, 2).contiguous()
    xt = _call(t, fn, c, x, torch.randn_like(x), torch.full((n,), tt))
    t.tensor(xt, shape=(n, 2), dtype=torch.float32, what="add_noise on a (20000, 2) batch of 2D points")
    ab = c.alphas_cumprod[tt].item()
    t.close(xt.mean(0), torch.tensor([1.5, -0.5]) * ab**0.5, "sample mean ≈ √ᾱ_t x_0 (Monte Carlo, 20000 samples)",
            hint="the mean of x_t is √ᾱ_t x_0", rtol=0, atol=0.04)
    t.close(xt.var(0), torch.full((2,), 1 - ab), "sample variance ≈ 1 − ᾱ_t (Monte Carlo)",
            hint="variance vs std: the noise is scaled by √(1 − ᾱ_t) so that its variance is 1 − ᾱ_t", rtol=0.05, atol=0)
    at_T = _call(t, fn, c, x[:8], torch.ones(8, 2), torch.full((8,), 1000))
    t.close(at_T, torch.ones(8, 2), "t = T (cosine): x_T is pure noise (here ε = 1)", hint="ᾱ_T ≈ 0, so x_T ≈ ε",
            rtol=0, atol=1e-3)
    x64, e64, t64 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64), torch.tensor([1, 2, 300, 999, 1000])
    out64 = _call(t, fn, s, x64, e64, t64)
    t.tensor(out64, shape=(5, 3), dtype=torch.float64, what="add_noise on float64 points (5, 3)")
    t.close(out64, ref.add_noise(s, x64, e64, t64), "float64 points: matches minidiff.forward.add_noise to float64 precision",
            hint="extract the coefficients in x0's dtype (extract(values, t, x0)), without a detour through float32",
            rtol=1e-4 if out64.dtype == torch.float32 else 1e-10, atol=1e-6 if out64.dtype == torch.float32 else 1e-12)
    t.raises(fn, (s, x0, eps[:, 0], ts), ValueError,
            "noise of shape (4, 28, 28) for images of shape (4, 1, 28, 28) raises a ValueError",
            hint="compare noise.shape with x0.shape and raise ValueError: otherwise (B, 28, 28) noise silently "
                 "broadcasts against (B, 1, 28, 28) images into a (B, B, 28, 28) tensor")


def _bayes_posterior(s: NoiseSchedule, x0, x_t, ts):
    """q(x_{t−1} | x_t, x_0) by Bayes for Gaussians, *not* by DDPM eqs. 6–7:
    prior N(√ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}) times likelihood N(x_t; √α_t x_{t−1}, β_t):
    precisions add, and the mean is the precision-weighted average."""
    col = lambda v: v.double().reshape(-1, *([1] * (x0.dim() - 1)))  # noqa: E731
    a = s.alphas_cumprod.double()
    prior_mean, prior_var = col(a[ts - 1].sqrt()) * x0.double(), col(1 - a[ts - 1])
    alpha, beta = col(s.alphas[ts]), col(s.betas[ts])
    precision = 1 / prior_var + alpha / beta
    var = 1 / precision
    mean = var * (prior_mean / prior_var + alpha.sqrt() * x_t.double() / beta)
    return mean, var


@exercise("02", "q_posterior_mean_var", points=4)
def q_posterior_mean_var(t: Tester, fn):
    """μ̃_t and β̃_t (DDPM eqs. 6–7) on a batch; t = 1 edge; against Bayes' rule computed another way."""
    s = NoiseSchedule.make("linear", 1000)
    x0, ts = _batch()
    x_t = ref.add_noise(s, x0, torch.randn_like(x0), ts)

    out = _call(t, fn, s, x0, x_t, ts)
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        t.check(False, "returns a pair (mean, variance)", f"got {type(out).__name__}",
                hint="end with `return mean, var`", decisive=True)
        return
    mean, var = out
    t.tensor(mean, shape=x0.shape, dtype=torch.float32, what="the posterior mean")
    t.tensor(var, what="the posterior variance")
    try:
        var_full = torch.broadcast_to(var, x0.shape)
    except RuntimeError:
        t.check(False, "the variance broadcasts against x", f"got shape {tuple(var.shape)} for x of shape {tuple(x0.shape)}",
                hint=BROADCAST_HINT, decisive=True)
        raise Abort
    ref_mean, ref_var = ref.q_posterior_mean_var(s, x0, x_t, ts)
    ref_var_full = torch.broadcast_to(ref_var, x0.shape)

    abar, abar_prev = _col(s.alphas_cumprod[ts]), _col(s.alphas_cumprod[ts - 1])
    beta = _col(s.betas[ts])
    t.close(mean[0], x0[0], "t = 1: the mean is x_0 (ᾱ_0 = 1)", **F32,
            hint="at t = 1 use ᾱ_0 = alphas_cumprod[0] = 1: the coefficient of x_t vanishes")
    t.close(var_full[0], torch.zeros_like(x0[0]), "t = 1: the variance β̃_1 is 0", rtol=0, atol=1e-6,
            hint="β̃_1 = (1 − ᾱ_0)/(1 − ᾱ_1) · β_1 and ᾱ_0 = 1: index alphas_cumprod with t − 1")
    diagnose(
        t, var_full, ref_var_full, "β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t (DDPM eq. 7)",
        {"variance vs std: return β̃_t itself, not its square root": ref_var_full.sqrt(),
         "you got β_t: the numerator needs ᾱ_{t−1} = alphas_cumprod[t − 1], not ᾱ_t": torch.broadcast_to(beta, x0.shape)},
        hint="β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t", rtol=1e-3, atol=1e-6,
    )
    diagnose(
        t, mean, ref_mean, "μ̃_t matches DDPM eq. 7 on the batch",
        {"the coefficients of x_0 and x_t are swapped": (abar_prev.sqrt() * beta / (1 - abar)) * x_t
             + (_col(s.alphas[ts]).sqrt() * (1 - abar_prev) / (1 - abar)) * x0,
         "missing sqrt: the coefficients use √ᾱ_{t−1} and √α_t": (abar_prev * beta / (1 - abar)) * x0
             + (_col(s.alphas[ts]) * (1 - abar_prev) / (1 - abar)) * x_t},
        hint="μ̃_t = √ᾱ_{t−1} β_t/(1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) · x_t; " + BROADCAST_HINT,
        **F32,
    )

    # An independent oracle: Bayes' rule for Gaussians on a 1D batch, t = 2..T of the cosine schedule.
    c = NoiseSchedule.make("cosine", 200)
    ts2 = torch.arange(2, 201)
    x0b = torch.randn(len(ts2), 1, dtype=torch.float64)
    x_tb = ref.add_noise(c, x0b, torch.randn_like(x0b), ts2)
    out2 = _call(t, fn, c, x0b, x_tb, ts2)
    if not (isinstance(out2, (tuple, list)) and len(out2) == 2):
        t.check(False, "returns a pair (mean, variance)", hint="end with `return mean, var`", decisive=True)
        return
    t.tensor(out2[0], shape=x0b.shape, dtype=torch.float64, what="the posterior mean of float64 points (199, 1)")
    t.tensor(out2[1], dtype=torch.float64, what="the posterior variance for float64 points")
    f32 = out2[0].dtype == torch.float32
    bayes_mean, bayes_var = _bayes_posterior(c, x0b, x_tb, ts2)
    t.close(out2[0], bayes_mean.reshape(-1, 1), "μ̃_t equals the Bayes posterior mean (precision-weighted average)",
            hint="check both coefficients in DDPM eq. 7", rtol=1e-4 if f32 else 1e-6, atol=1e-6 if f32 else 1e-9)
    t.close(torch.broadcast_to(torch.as_tensor(out2[1]), x0b.shape), bayes_var.reshape(-1, 1),
            "β̃_t equals 1 / (1/(1 − ᾱ_{t−1}) + α_t/β_t), the Bayes posterior variance",
            hint="check DDPM eq. 7's variance", rtol=1e-4 if f32 else 1e-6, atol=1e-9 if f32 else 1e-12)
