"""Checks for lesson 03, the ELBO.

    from minidiff.course.checks import lesson03 as check
    check.gaussian_kl(gaussian_kl)                      # KL between diagonal Gaussians
    check.predict_mean_from_eps(predict_mean_from_eps)  # μ_θ from ε_θ, DDPM eq. 11
    check.eps_mse_weight(eps_mse_weight)                # λ_t of DDPM eq. 12, for σ_t² = β_t, β̃_t or a table

Oracles: KL values known by hand, torch.distributions.kl_divergence and a Monte Carlo
estimate; the posterior mean μ̃_t of DDPM eq. 7 (minidiff.forward) fed with the true noise;
the KL between q(x_{t−1} | x_t, x_0) and p_θ(x_{t−1} | x_t) computed from the means, which
DDPM eq. 12 says is λ_t ‖ε − ε_θ‖² plus a constant; and the errors the functions must raise
(a variance that is not positive, t = 0).
"""

from __future__ import annotations

import math

import torch

from ... import elbo as ref
from ... import forward
from ...forward import add_noise, q_posterior_mean_var
from ...schedules import NoiseSchedule
from .core import Abort, Tester, diagnose, exercise, grad_close


def _kl_mistakes(m1, v1, m2, v2) -> dict:
    """What the usual slips in the Gaussian KL return."""
    d2 = (m1 - m2) ** 2
    return {
        "missing ½: KL = ½ [log(var2/var1) + (var1 + (mean1 − mean2)²)/var2 − 1]":
            torch.log(v2 / v1) + (v1 + d2) / v2 - 1,
        "sign of the log term: it is log(var2 / var1), the log of the *second* variance over the first":
            0.5 * (torch.log(v1 / v2) + (v1 + d2) / v2 - 1),
        "you computed KL(q ‖ p): the KL is not symmetric; divide by var2, the second distribution's variance":
            0.5 * (torch.log(v1 / v2) + (v2 + d2) / v1 - 1),
        "the arguments are variances, but you treated them as standard deviations (squared them)":
            0.5 * (torch.log(v2**2 / v1**2) + (v1**2 + d2) / v2**2 - 1),
        "the arguments are variances, not log-variances: use torch.log(var), not var, in the log term":
            0.5 * (v2 - v1 + (v1.exp() + d2) / v2.exp() - 1),
        "missing the − 1: KL(p ‖ p) must be 0":
            0.5 * (torch.log(v2 / v1) + (v1 + d2) / v2),
        "the mean difference enters squared: (mean1 − mean2)²":
            0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2).abs()) / v2 - 1),
    }


@exercise("03", "gaussian_kl", points=3)
def gaussian_kl(t: Tester, fn):
    """Hand-computed values, KL(p ‖ p) = 0, torch.distributions, Monte Carlo, broadcasting."""
    f64 = dict(dtype=torch.float64)
    zero, one, four = torch.zeros(1, **f64), torch.ones(1, **f64), torch.full((1,), 4.0, **f64)
    out = t.call(fn, zero, one, one, one)
    t.tensor(out, shape=(1,), what="gaussian_kl on tensors of shape (1,)")
    diagnose(t, out, [0.5], "KL(N(0, 1) ‖ N(1, 1)) = ½ (a shift by one standard deviation)",
              _kl_mistakes(zero, one, one, one), hint="the mean term is (mean1 − mean2)² / (2 var2)")
    got = t.call(fn, zero, one, zero, four)
    diagnose(t, got, [0.5 * (math.log(4) + 0.25 - 1)], "KL(N(0, 1) ‖ N(0, 4)) = ½ (log 4 + ¼ − 1)",
              _kl_mistakes(zero, one, zero, four), hint="½ [log(var2/var1) + var1/var2 − 1] when the means agree")

    m1, m2 = torch.randn(5, 3, **f64), torch.randn(5, 3, **f64)
    v1, v2 = torch.rand(5, 3, **f64) + 0.2, torch.rand(5, 3, **f64) + 0.2
    same = t.call(fn, m1, v1, m1, v1)
    t.tensor(same, shape=(5, 3), what="gaussian_kl on (5, 3) tensors")
    t.close(same, torch.zeros(5, 3, **f64), "KL(p ‖ p) = 0 elementwise", atol=1e-12,
            hint="every term must cancel when both Gaussians agree: log 1 + 1 − 1 = 0")
    out = t.call(fn, m1, v1, m2, v2)
    t.tensor(out, shape=(5, 3), what="gaussian_kl on (5, 3) tensors")
    P = torch.distributions.Normal(m1, v1.sqrt())
    Q = torch.distributions.Normal(m2, v2.sqrt())
    diagnose(t, out, torch.distributions.kl_divergence(P, Q), "matches torch.distributions.kl_divergence elementwise",
              _kl_mistakes(m1, v1, m2, v2), hint="½ [log(var2/var1) + (var1 + (mean1 − mean2)²)/var2 − 1]",
              rtol=1e-6, atol=1e-9)
    t.check(bool((out >= -1e-12).all()), "KL ≥ 0 for every pair", hint="a KL divergence is never negative")

    # gradients: the KL is a loss term (L_T, L_{t−1}), so autograd must reach all four arguments
    args = [v.clone().requires_grad_(True) for v in (m1, v1, m2, v2)]
    kl = t.call(fn, *args)
    t.tensor(kl, shape=(5, 3), what="gaussian_kl on (5, 3) tensors that require grad")
    ref_args = [v.clone().requires_grad_(True) for v in (m1, v1, m2, v2)]
    want = torch.autograd.grad(torch.distributions.kl_divergence(torch.distributions.Normal(ref_args[0], ref_args[1].sqrt()),
                                                                 torch.distributions.Normal(ref_args[2], ref_args[3].sqrt())).sum(),
                               ref_args)
    grad_close(t, kl.sum(), args, want, "the gradient of Σ KL w.r.t. mean1, var1, mean2, var2 (autograd) is "
               "torch.distributions' gradient", hint="use torch operations only (torch.log, not math.log)", rtol=1e-6, atol=1e-9)

    # float32 in, float32 out
    f32 = [v.float() for v in (m1, v1, m2, v2)]
    out = t.call(fn, *f32)
    t.tensor(out, shape=(5, 3), dtype=torch.float32, what="gaussian_kl on float32 tensors")
    t.close(out, torch.distributions.kl_divergence(P, Q), "float32 tensors: the same KL to float32 precision",
            rtol=1e-4, atol=1e-6)

    # Monte Carlo: KL = E_{x ~ p}[log p(x) − log q(x)], one pair, 400 000 samples.
    mp, vp, mq, vq = (torch.tensor([x], **f64) for x in (0.3, 0.5, -0.4, 1.7))
    x = mp + vp.sqrt() * torch.randn(400_000, **f64)
    mc = (torch.distributions.Normal(mp, vp.sqrt()).log_prob(x) - torch.distributions.Normal(mq, vq.sqrt()).log_prob(x)).mean()
    t.close(t.call(fn, mp, vp, mq, vq), mc.reshape(1), "agrees with a Monte Carlo estimate E_p[log p − log q]",
            hint="check each term against the formula; the result is in nats (natural log)", rtol=0, atol=0.01)

    # Broadcasting: one reference Gaussian for a whole batch, as for the prior N(0, I).
    out = t.call(fn, m1, v1, torch.zeros(1, **f64), torch.ones(1, **f64))
    t.tensor(out, shape=(5, 3), what="gaussian_kl(mean (5, 3), var (5, 3), mean (1,), var (1,))")
    diagnose(t, out, 0.5 * (v1 + m1**2 - 1 - v1.log()), "KL to N(0, 1) broadcasts over the batch",
              _kl_mistakes(m1, v1, torch.zeros(1, **f64), torch.ones(1, **f64)),
              hint="use elementwise torch operations only (no .item(), no loops): then shapes broadcast")

    # Variances that are not positive: a log-variance passed by mistake is often negative.
    t.raises(fn, (m1, -v1, m2, v2), ValueError, "a negative var1 raises a ValueError",
            hint="check that both variances are positive and raise ValueError otherwise: a log-variance passed "
                 "by mistake is often negative, and torch.log would turn it into NaN without a word")
    t.raises(fn, (m1, v1, m2, torch.zeros_like(v2)), ValueError, "var2 = 0 raises a ValueError",
            hint="(var2 <= 0).any() must raise too: KL to a point mass is infinite")

    # Python numbers, as for the prior N(0, 1) in L_T.
    try:
        got = t.call(fn, 0.0, 1.0, 1.0, 1.0)
    except Abort:
        msgs = t.result.messages
        if msgs and ("Tensor" in msgs[-1] or "float" in msgs[-1]):
            msgs[-1] = (msgs[-1].rsplit("Hint:", 1)[0]
                        + "Hint: accept Python numbers too: turn every argument into a tensor with torch.as_tensor first")
        raise
    ok = isinstance(got, (float, torch.Tensor)) and torch.as_tensor(got).numel() == 1
    if t.check(ok, "gaussian_kl(0.0, 1.0, 1.0, 1.0) returns one number", f"got {type(got).__name__}",
               hint="turn every argument into a tensor with torch.as_tensor first"):
        t.close(torch.as_tensor(got).reshape(()), 0.5, "Python numbers work too: gaussian_kl(0.0, 1.0, 1.0, 1.0) = ½",
                hint="torch.as_tensor(x) makes a tensor of a Python number")


@exercise("03", "predict_mean_from_eps", points=3)
def predict_mean_from_eps(t: Tester, fn):
    """With the true noise, DDPM eq. 11 gives the posterior mean μ̃_t of eq. 7; t = 1 gives x_0; batches; t = 0 refused."""
    s = NoiseSchedule.make("linear", 1000)
    x0 = torch.rand(4, 1, 28, 28, dtype=torch.float32) * 2 - 1
    eps = torch.randn_like(x0)
    ts = torch.tensor([1, 10, 500, 1000])
    x_t = add_noise(s, x0, eps, ts)
    out = t.call(fn, s, x_t, ts, eps)
    t.tensor(out, shape=x0.shape, dtype=torch.float32, what="predict_mean_from_eps on a (4, 1, 28, 28) batch")

    col = lambda v: v[ts].float().reshape(-1, 1, 1, 1)  # noqa: E731
    beta, alpha, abar = col(s.betas), col(s.alphas), col(s.alphas_cumprod)
    mistakes = {
        "divide by √α_t (a square root), not by α_t": (x_t - beta / (1 - abar).sqrt() * eps) / alpha,
        "the divisor is √α_t of this one step, not √ᾱ_t": (x_t - beta / (1 - abar).sqrt() * eps) / abar.sqrt(),
        "inside the square root it is 1 − ᾱ_t (alphas_cumprod), not 1 − α_t = β_t":
            (x_t - beta / beta.sqrt() * eps) / alpha.sqrt(),
        "missing sqrt: ε is scaled by β_t / √(1 − ᾱ_t)": (x_t - beta / (1 - abar) * eps) / alpha.sqrt(),
        "variance vs std: the coefficient of ε is β_t / √(1 − ᾱ_t), not √β_t / √(1 − ᾱ_t)":
            (x_t - beta.sqrt() / (1 - abar).sqrt() * eps) / alpha.sqrt(),
        "sign: subtract the noise, μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε) / √α_t": (x_t + beta / (1 - abar).sqrt() * eps) / alpha.sqrt(),
        "every image used the first t: index the schedule with the whole tensor t (extract(values, t, x))":
            (x_t - s.betas[1].float() / (1 - s.alphas_cumprod[1].float()).sqrt() * eps) / s.alphas[1].float().sqrt(),
    }
    mean_q, _ = q_posterior_mean_var(s, x0, x_t, ts)
    diagnose(t, out, mean_q, "with the true ε it equals the posterior mean μ̃_t(x_t, x_0) of DDPM eq. 7", mistakes,
              hint="μ_θ = (x_t − β_t / √(1 − ᾱ_t) · ε) / √α_t (DDPM eq. 11)", rtol=1e-4, atol=2e-5)
    t.close(out[0], x0[0], "t = 1: μ̃_1 is x_0 itself (ᾱ_0 = 1, so one step back from x_1 is the data)",
            hint="t counts from 1: betas[1], alphas[1], alphas_cumprod[1] are β_1, α_1, ᾱ_1", rtol=1e-4, atol=2e-5)

    # 2D points, cosine schedule, float64, random ε_θ and t: compare with minidiff's version.
    c = NoiseSchedule.make("cosine", 200)
    x = torch.randn(64, 2, dtype=torch.float64)
    e = torch.randn(64, 2, dtype=torch.float64)
    tt = torch.randint(1, 201, (64,))
    out = t.call(fn, c, x, tt, e)
    t.tensor(out, shape=(64, 2), dtype=torch.float64, what="predict_mean_from_eps on (64, 2) float64 points")
    diagnose(t, out, forward.predict_mean_from_eps(c, x, tt, e),
             "matches minidiff.forward.predict_mean_from_eps (cosine, T = 200)",
             {"off by one in t: betas[t], alphas[t], alphas_cumprod[t] already are β_t, α_t, ᾱ_t":
                  forward.predict_mean_from_eps(c, x, (tt - 1).clamp(min=1), e)},
             hint="use extract(values, t, x) so that each row gets its own t", rtol=1e-9, atol=1e-12)
    t.raises(fn, (s, x_t, torch.tensor([0, 10, 500, 1000]), eps), ValueError,
            "t = 0 raises a ValueError (DDPM eq. 11 holds for t = 1..T)",
            hint="at t = 0 the coefficient β_0 / √(1 − ᾱ_0) is 0/0: without a check the result is NaN; "
                 "raise ValueError when any t < 1")


def _weight_mistakes(c: NoiseSchedule, tt, v) -> dict:
    """What the usual slips in λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) return, for variances v = σ_t² at tt."""
    b, a, ab = c.betas[tt], c.alphas[tt], c.alphas_cumprod[tt]
    return {
        "missing ½: the KL's mean term is ‖μ̃ − μ_θ‖² / (2 σ_t²)": b**2 / (v * a * (1 - ab)),
        "β_t enters squared: μ̃ − μ_θ = β_t / (√α_t √(1 − ᾱ_t)) (ε_θ − ε), and the KL squares it": b / (2 * v * a * (1 - ab)),
        "α_t (this step), not ᾱ_t, comes from the 1/√α_t of DDPM eq. 11": b**2 / (2 * v * ab * (1 - ab)),
        "1 − ᾱ_t (alphas_cumprod), not 1 − α_t": b**2 / (2 * v * a * b),
        "σ_t² already is a variance: do not square it": b**2 / (2 * v**2 * a * (1 - ab)),
        "σ_t² is the variance; you used its square root (the std) instead": b**2 / (2 * v.sqrt() * a * (1 - ab)),
    }


@exercise("03", "eps_mse_weight", points=4)
def eps_mse_weight(t: Tester, fn):
    """λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) for σ_t² = β_t, β̃_t (with σ_1² = β_1) or a table of T + 1 variances:
    closed forms at t = 1, and the KL of DDPM eq. 12 itself."""
    s = NoiseSchedule.make("linear", 1000)
    ts = torch.tensor([1, 2, 500, 1000])
    out = t.call(fn, s, ts, "beta")
    t.tensor(out, shape=(4,), dtype=torch.float64, what='eps_mse_weight(schedule, t of shape (4,), "beta")')
    t.close(out[0], 1 / (2 * s.alphas[1]), "σ_t² = β_t, t = 1: λ_1 = 1 / (2 α_1) (because 1 − ᾱ_1 = β_1)",
            hint="t counts from 1; betas[t], alphas[t], alphas_cumprod[t] are β_t, α_t, ᾱ_t", rtol=1e-9)
    b, a, ab = s.betas[ts], s.alphas[ts], s.alphas_cumprod[ts]
    diagnose(t, out, b / (2 * a * (1 - ab)), "σ_t² = β_t: λ_t = β_t / (2 α_t (1 − ᾱ_t))", _weight_mistakes(s, ts, b),
             hint='"beta" means σ_t² = betas[t]', rtol=1e-9, atol=0)
    default = t.call(fn, s, ts)
    t.tensor(default, shape=(4,), what="eps_mse_weight(schedule, t) without sigma2")
    diagnose(t, default, out, 'the default is sigma2="beta"',
             {'the default must be sigma2="beta", as in the signature': ref.eps_mse_weight(s, ts, "beta_tilde")},
             hint='keep the signature: def eps_mse_weight(schedule, t, sigma2="beta")', rtol=1e-9, atol=0)

    # DDPM eq. 12 from scratch: the KL between q(x_{t−1} | x_t, x_0) and p_θ(x_{t−1} | x_t), minus its
    # ε-free part, divided by ‖ε − ε_θ‖², is the weight. Here with σ_t² = β̃_t, t ≥ 2.
    c = NoiseSchedule.make("cosine", 100)
    tt = torch.tensor([2, 3, 17, 50, 99, 100])
    x0 = torch.randn(6, 5, dtype=torch.float64)
    eps, eps_theta = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    x_t = add_noise(c, x0, eps, tt)
    mean_q, var_q = q_posterior_mean_var(c, x0, x_t, tt)  # var_q is β̃_t
    kl = ref.gaussian_kl(mean_q, var_q, forward.predict_mean_from_eps(c, x_t, tt, eps_theta), var_q).sum(1)
    kl_means_equal = ref.gaussian_kl(mean_q, var_q, mean_q, var_q).sum(1)
    lam = (kl - kl_means_equal) / ((eps - eps_theta) ** 2).sum(1)
    out = t.call(fn, c, tt, "beta_tilde")
    t.tensor(out, shape=(6,), dtype=torch.float64, what='eps_mse_weight on the cosine schedule, T = 100, "beta_tilde"')
    ab, ab_prev, b = c.alphas_cumprod[tt], c.alphas_cumprod[tt - 1], c.betas[tt]
    bt = (1 - ab_prev) / (1 - ab) * b
    diagnose(
        t, out, lam, "σ_t² = β̃_t: [KL(q(x_{t−1}|x_t,x_0) ‖ p_θ) − C_t] / ‖ε − ε_θ‖², the weight DDPM eq. 12 derives", {
            **_weight_mistakes(c, tt, bt),
            '"beta_tilde" is β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, not β_t': ref.eps_mse_weight(c, tt, "beta"),
            "β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t: your ratio is upside down":
                b**2 / (2 * ((1 - ab) / (1 - ab_prev) * b) * c.alphas[tt] * (1 - ab)),
            "off by one in t: index every table with t itself": ref.eps_mse_weight(c, tt - 1, "beta_tilde"),
        }, hint="λ_t = β_t² / (2 σ_t² α_t (1 − ᾱ_t)) with σ_t² = β̃_t", rtol=1e-6, atol=0)

    # t = 1 with β̃: β̃_1 = 0 would make λ_1 infinite; minidiff uses σ_1² = β_1 there.
    out1 = t.call(fn, c, torch.tensor([1, 2]), "beta_tilde")
    fin = isinstance(out1, torch.Tensor) and out1.numel() == 2 and bool(torch.isfinite(out1).all())
    if t.check(fin, '"beta_tilde" at t = 1 is finite', f"got {out1}",
               hint="β̃_1 = 0 (ᾱ_0 = 1) would divide by zero: use σ_1² = β_1 for t = 1, as minidiff.forward.reverse_variances does",
               decisive=True):
        t.close(out1[0], 1 / (2 * c.alphas[1]), '"beta_tilde", t = 1: σ_1² = β_1, so λ_1 = 1 / (2 α_1)',
                hint="set σ_1² = β_1 in the β̃ table", rtol=1e-9)

    # A table of variances, as for the exact bound of lesson 03 §5.
    table = torch.rand(101, dtype=torch.float64) + 0.01
    ts2 = torch.randint(1, 101, (32,))
    out2 = t.call(fn, c, ts2, table)
    t.tensor(out2, shape=(32,), dtype=torch.float64, what="eps_mse_weight with a tensor of T + 1 variances")
    diagnose(t, out2, ref.eps_mse_weight(c, ts2, table), "a tensor sigma2 is the table σ_0²..σ_T² (32 random t)",
             _weight_mistakes(c, ts2, table[ts2]), hint="a tensor sigma2 holds σ_t² at index t: use sigma2[t]",
             rtol=1e-9, atol=0)
    diagnose(t, t.call(fn, c, ts2, "beta_tilde"), ref.eps_mse_weight(c, ts2, "beta_tilde"),
             'matches minidiff.elbo.eps_mse_weight(schedule, t, "beta_tilde") on 32 random t',
             {'"beta_tilde" is β̃_t, not β_t': ref.eps_mse_weight(c, ts2, "beta")},
             hint="index every table with the whole tensor t", rtol=1e-9, atol=0)
