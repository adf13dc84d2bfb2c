"""Checks for lesson 06, score matching.

    from minidiff.course.checks import lesson06 as check
    check.mixture_score(mixture_score)
    check.ve_noised(ve_noised)
    check.dsm_objective(dsm_objective)
    check.eps_to_score(eps_to_score)

Each check tests closed forms first (one Gaussian, a model that knows the noise, t = 1 and
t = T, autograd of log p), then compares with minidiff's reference on random inputs. When a
wrong answer equals a common mistake (σ for σ², a missing ½, a lost minus sign), the hint
names it.
"""

from __future__ import annotations

import torch

from ... import score as ref
from ...data.toy import GaussianMixture
from ...schedules import NoiseSchedule
from .core import Tester, diagnose, exercise


def _random_mixture(K=3, D=2):
    means = 2 * torch.randn(K, D, dtype=torch.float64)
    stds = 0.3 + torch.rand(K, dtype=torch.float64)
    weights = torch.rand(K, dtype=torch.float64) + 0.2
    return means, stds, weights / weights.sum()


@exercise("06", "mixture_score", points=3)
def mixture_score(t: Tester, fn):
    """∇ log Σ w_k N(μ_k, σ_k² I): one Gaussian, autograd of log p, far-away points, the reference."""
    x = torch.randn(20, 2, dtype=torch.float64)
    mu = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    one = t.call(fn, x, mu, torch.tensor([0.7], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
    t.tensor(one, shape=(20, 2), what="mixture_score(x, one component)")
    diagnose(
        t, one, (mu - x) / 0.49, "one Gaussian: the score is (μ − x)/σ²",
        {
            "you divided by σ instead of the variance σ²": (mu - x) / 0.7,
            "the sign is flipped: the score points towards the mean, (μ − x)/σ²": (x - mu) / 0.49,
        },
        hint="for one component r_1 = 1, so the score is (μ − x)/σ²",
    )
    means, stds, weights = _random_mixture()
    x = 1.5 * torch.randn(200, 2, dtype=torch.float64)
    out = t.call(fn, x.clone(), means, stds, weights)
    t.tensor(out, shape=(200, 2), what="mixture_score(x, means, stds, weights)")
    xg = x.clone().requires_grad_(True)
    GaussianMixture(means, stds, weights).log_prob(xg).sum().backward()
    diagnose(
        t, out, xg.grad, "equals ∇ log p(x) computed by autograd",
        {
            "the weights w_k are missing from the responsibilities r_k(x)":
                GaussianMixture(means, stds, None).score(x),
        },
        hint="r_k(x) is the softmax over k of log w_k − D/2·log σ_k² − ‖x − μ_k‖²/(2σ_k²); "
             "the −D/2·log σ_k² term matters when the σ_k differ",
        rtol=1e-4, atol=1e-6,
    )
    far = torch.tensor([[60.0, -40.0], [0.0, 80.0]], dtype=torch.float64)
    out_far = t.call(fn, far, means, stds, weights)
    t.tensor(out_far, shape=(2, 2), what="mixture_score at points far from every mode")
    t.close(out_far, ref.mixture_score(far, means, stds, weights), "far from the modes the score is still right",
            hint="exp(−‖x − μ‖²/2σ²) underflows to 0 there and 0/0 = NaN: compute r_k with torch.softmax "
                 "of the log-densities (the log-sum-exp trick)", rtol=1e-4, atol=1e-6)


@exercise("06", "ve_noised", points=1)
def ve_noised(t: Tester, fn):
    """x̃ = x_0 + σ z for a mixture: means and weights kept, variances add."""
    means, stds, weights = _random_mixture()
    p = GaussianMixture(means, stds, weights)
    q = t.call(fn, p, 0.8)
    if not all(hasattr(q, a) for a in ("means", "std", "weights")):
        t.check(False, "ve_noised returns a GaussianMixture", f"got {type(q).__name__}",
                hint="return GaussianMixture(new_means, new_stds, weights)")
        return
    t.close(q.means, means, "the means do not move (VE noise has no √ᾱ scaling)",
            hint="x̃ = x_0 + σz adds zero-mean noise: E[x̃] = E[x_0], so the μ_k stay where they are")
    t.close(q.weights, weights, "the weights are kept", hint="noise does not change which component a point came from")
    diagnose(
        t, q.std, torch.sqrt(stds**2 + 0.64), "the stds are √(σ_k² + σ²)",
        {"you added standard deviations; independent noises add their *variances*": stds + 0.8},
        hint="Var[x_0 + σz | k] = σ_k² + σ²",
    )
    q0 = t.call(fn, p, 0.0)
    t.close(q0.std, stds, "σ = 0 gives back the same mixture", hint="with no noise nothing changes")


@exercise("06", "dsm_objective", points=3)
def dsm_objective(t: Tester, fn):
    """½ E‖σ s_θ(x̃, σ) + z‖²: a model that knows the noise, the zero model, the reference."""
    B, D = 64, 3  # D = 3: averaging over coordinates differs from a ½ (they agree when D = 2)
    x0 = torch.randn(B, D)
    noise = torch.randn(B, D)
    sigma = 0.1 + 2 * torch.rand(B)
    sb = sigma[:, None]
    oracle = lambda x_tilde, s: -(x_tilde - x0) / s[:, None] ** 2  # noqa: E731  knows x0: the conditional score
    out = t.call(fn, oracle, x0, sigma, noise)
    t.tensor(out, shape=(), what="dsm_objective(...)")
    t.close(out, 0.0, "a model that returns the conditional score −(x̃ − x_0)/σ² has loss 0",
            hint="x̃ = x_0 + σ z, and the target is −(x̃ − x_0)/σ² = −z/σ: check where σ multiplies z", atol=1e-6)
    zero = lambda x_tilde, s: torch.zeros_like(x_tilde)  # noqa: E731
    out0 = t.call(fn, zero, x0, sigma, noise)
    half_norm = 0.5 * noise.pow(2).sum(1).mean()
    diagnose(
        t, out0, half_norm, "the zero model scores ½ E‖z‖² (with λ(σ) = σ²)",
        {
            "the factor ½ is missing": 2 * half_norm,
            "you averaged over the coordinates too: sum ‖·‖² over the data dimensions, average over the batch":
                half_norm / D,
            "a plain .mean() averages over the coordinates and drops the ½: "
            "take ½ · (...).pow(2).sum(dim=1).mean()": 2 * half_norm / D,
            "the weighting λ(σ) = σ² is missing": 0.5 * (noise / sb).pow(2).sum(1).mean(),
        },
        hint="with s = 0 the loss is ½ σ² ‖z/σ‖² = ½ ‖z‖², averaged over the batch",
    )
    w = torch.randn(D, D)
    linear = lambda x_tilde, s: (x_tilde @ w) / s[:, None]  # noqa: E731
    out1 = t.call(fn, linear, x0, sigma, noise)
    expected = ref.dsm_objective(linear, x0, sigma, noise)
    diagnose(
        t, out1, expected, "a linear model: matches minidiff.score.dsm_objective",
        {
            "the model must see the noised point x̃ = x_0 + σz, not x_0":
                0.5 * (sb * linear(x0, sigma) + noise).pow(2).sum(1).mean(),
        },
        hint="loss = ½ · mean over the batch of ‖σ s(x̃, σ) + z‖², summed over the coordinates",
        rtol=1e-4, atol=1e-6,
    )


@exercise("06", "eps_to_score", points=2)
def eps_to_score(t: Tester, fn):
    """s = −ε/√(1 − ᾱ_t): autograd of log q(x_t | x_0), t = 1 and t = T, per-row t."""
    s = NoiseSchedule.make("linear", 1000)
    B = 16
    x0 = torch.randn(B, 2, dtype=torch.float64)
    eps = torch.randn(B, 2, dtype=torch.float64)
    tt = torch.randint(1, 1001, (B,))
    tt[0], tt[1] = 1, 1000  # both ends
    abar = s.alphas_cumprod[tt][:, None]
    x_t = (abar.sqrt() * x0 + (1 - abar).sqrt() * eps).requires_grad_(True)
    logq = -((x_t - abar.sqrt() * x0) ** 2 / (2 * (1 - abar))).sum()
    logq.backward()
    out = t.call(fn, eps.clone(), s, tt)
    t.tensor(out, shape=(B, 2), what="eps_to_score(eps, schedule, t)")
    diagnose(
        t, out, x_t.grad, "equals ∇ log q(x_t | x_0) by autograd, with one t per row (t = 1 and t = T included)",
        {
            "divide by the standard deviation √(1 − ᾱ_t), not the variance 1 − ᾱ_t": -eps / (1 - abar),
            "the sign: noise pushes x_t away from √ᾱ_t x_0, the score points back, −ε/√(1 − ᾱ_t)": eps / (1 - abar).sqrt(),
            "you used ᾱ_{t−1}: schedule.alphas_cumprod[t] is ᾱ_t already": -eps / (1 - s.alphas_cumprod[tt - 1][:, None]).sqrt(),
            "you used β_t instead of 1 − ᾱ_t": -eps / s.betas[tt][:, None].sqrt(),
        },
        hint="s(x_t, t) = −ε/√(1 − ᾱ_t); index alphas_cumprod with t and reshape to (B, 1) to broadcast",
        rtol=1e-5, atol=1e-8,
    )
    e32 = torch.randn(4, 2)
    out_int = t.call(fn, e32, s, 500)
    t.tensor(out_int, shape=(4, 2), what="eps_to_score(eps, schedule, 500) (an int t)")
    t.close(out_int, ref.eps_to_score(e32, s, 500), "an int t works for the whole batch",
            hint="same formula as above with one t for every row; "
                 "minidiff.schedules.extract(values, t, x) handles ints and (B,) tensors", rtol=1e-5)
    if isinstance(out_int, torch.Tensor):
        t.check(out_int.dtype == torch.float32, "float32 ε gives a float32 score",
                f"got {out_int.dtype}", hint="cast ᾱ_t (float64) to eps.dtype before dividing")
