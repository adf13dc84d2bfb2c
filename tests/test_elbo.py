"""minidiff.elbo against independent oracles: torch.distributions, Monte Carlo, the posterior of
minidiff.forward, and, for Gaussian data, the exact bound of the optimal ε-model derived a
second way (KL(q(x_{0:T}) ‖ p_θ(x_{0:T})) through the true reverse conditionals)."""

import math

import pytest
import torch

from minidiff import elbo, forward
from minidiff.course.checks import lesson03
from minidiff.forward import add_noise, q_posterior_mean_var
from minidiff.schedules import NoiseSchedule, extract

torch.set_num_threads(1)
F64 = dict(dtype=torch.float64)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- Gaussian KL and likelihoods --------------------------------------------------------------
def test_gaussian_kl_matches_torch_distributions():
    g = gen()
    m1, m2 = torch.randn(7, 3, generator=g, **F64), torch.randn(7, 3, generator=g, **F64)
    v1, v2 = torch.rand(7, 3, generator=g, **F64) + 0.1, torch.rand(7, 3, generator=g, **F64) + 0.1
    want = torch.distributions.kl_divergence(torch.distributions.Normal(m1, v1.sqrt()), torch.distributions.Normal(m2, v2.sqrt()))
    assert torch.allclose(elbo.gaussian_kl(m1, v1, m2, v2), want, rtol=1e-10, atol=1e-12)
    assert torch.allclose(elbo.gaussian_kl(m1, v1, m1, v1), torch.zeros(7, 3, **F64), atol=1e-12)


def test_gaussian_kl_monte_carlo_and_broadcasting():
    g = gen(1)
    x = 0.2 + 0.7 * torch.randn(400_000, generator=g, **F64)
    logp = torch.distributions.Normal(0.2, 0.7).log_prob(x)
    logq = torch.distributions.Normal(-0.5, 1.3).log_prob(x)
    kl = elbo.gaussian_kl(torch.tensor(0.2, **F64), 0.49, -0.5, 1.69)
    assert abs(kl.item() - (logp - logq).mean().item()) < 0.01
    assert elbo.gaussian_kl(torch.zeros(4, 2), torch.ones(4, 2), 0.0, 1.0).shape == (4, 2)


def test_gaussian_kl_rejects_bad_input():
    with pytest.raises(ValueError, match="log-variance"):
        elbo.gaussian_kl(torch.zeros(3), torch.tensor([1.0, -2.0, 1.0]), torch.zeros(3), torch.ones(3))
    with pytest.raises(TypeError, match="mean1"):
        elbo.gaussian_kl([0.0], torch.ones(1), torch.zeros(1), torch.ones(1))
    with pytest.raises(TypeError, match="floating-point"):
        elbo.gaussian_kl(torch.zeros(1, dtype=torch.long), torch.ones(1), torch.zeros(1), torch.ones(1))


def test_gaussian_log_likelihood_matches_torch():
    x, m, v = torch.randn(50, **F64), torch.randn(50, **F64), torch.rand(50, **F64) + 0.05
    want = torch.distributions.Normal(m, v.sqrt()).log_prob(x)
    assert torch.allclose(elbo.gaussian_log_likelihood(x, m, v), want, rtol=1e-10)


def test_discretized_decoder_is_a_distribution_over_256_levels():
    levels = torch.linspace(-1, 1, 256, **F64)
    for mean, var in ((0.0, 0.01), (0.93, 1e-4), (-1.2, 0.3), (0.5, 4.0)):
        p = elbo.discretized_gaussian_log_likelihood(levels, torch.tensor(mean, **F64), torch.tensor(var, **F64)).exp()
        assert abs(p.sum().item() - 1) < 1e-6, (mean, var)
    # a narrow decoder centred on a level puts almost all its mass there
    lp = elbo.discretized_gaussian_log_likelihood(levels[100:101], levels[100:101], torch.tensor([1e-8], **F64))
    assert lp.item() > -1e-6
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        elbo.discretized_gaussian_log_likelihood(torch.tensor([1.5]), torch.zeros(1), torch.ones(1))


# -- ε-parameterisation (eqs. 11–12) ------------------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_mean_from_true_eps_is_the_posterior_mean(name):
    s = NoiseSchedule.make(name, 300)
    g = gen(2)
    x0, eps = torch.randn(16, 1, 4, 4, generator=g, **F64), torch.randn(16, 1, 4, 4, generator=g, **F64)
    t = torch.randint(1, 301, (16,), generator=g)
    t[0], t[1] = 1, 300
    x_t = add_noise(s, x0, eps, t)
    mean_q, _ = q_posterior_mean_var(s, x0, x_t, t)
    assert torch.allclose(forward.predict_mean_from_eps(s, x_t, t, eps), mean_q, rtol=1e-9, atol=1e-10)
    assert torch.allclose(forward.predict_x0(s, x_t, t, eps), x0, rtol=1e-7, atol=1e-7)


def test_predict_from_eps_rejects_bad_input():
    s = NoiseSchedule.make("linear", 10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="t ≥ 1"):
        forward.predict_mean_from_eps(s, x, torch.tensor([0, 3]), x)
    with pytest.raises(ValueError, match="must match"):
        forward.predict_mean_from_eps(s, x, torch.tensor([1, 3]), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="NoiseSchedule"):
        forward.predict_x0(s.betas, x, torch.tensor([1, 3]), x)
    with pytest.raises(TypeError, match="integer timesteps"):
        forward.predict_x0(s, x, torch.tensor([1.0, 3.0]), x)


@pytest.mark.parametrize("kind", ["beta", "beta_tilde"])
def test_kl_from_means_is_the_weighted_eps_mse(kind):
    """Eq. 12: KL(q(x_{t−1}|x_t,x_0) ‖ p_θ) = λ_t ‖ε − ε_θ‖² + (a part that does not depend on ε_θ)."""
    s = NoiseSchedule.make("cosine", 200)
    g = gen(3)
    t = torch.arange(2, 201)
    x0 = torch.randn(t.numel(), 6, generator=g, **F64)
    eps, eps_theta = torch.randn_like(x0), torch.randn_like(x0)
    x_t = add_noise(s, x0, eps, t)
    mean_q, var_q = q_posterior_mean_var(s, x0, x_t, t)
    var_p = extract(forward.reverse_variances(s, kind), t, x0)
    kl = elbo.gaussian_kl(mean_q, var_q, forward.predict_mean_from_eps(s, x_t, t, eps_theta), var_p).sum(1)
    const = elbo.gaussian_kl(mean_q, var_q, mean_q, var_p).sum(1)
    lam = elbo.eps_mse_weight(s, t, kind)
    assert torch.allclose(kl, const + lam * ((eps - eps_theta) ** 2).sum(1), rtol=1e-8, atol=1e-10)


def test_eps_mse_weight_values_and_errors():
    s = NoiseSchedule.make("linear", 1000)
    lam = elbo.eps_mse_weight(s, torch.tensor([1, 1000]), "beta")
    assert lam.dtype == torch.float64 and lam.shape == (2,)
    assert abs(lam[0].item() - 1 / (2 * s.alphas[1].item())) < 1e-12  # 1 − ᾱ_1 = β_1
    b, a, ab = s.betas[1000], s.alphas[1000], s.alphas_cumprod[1000]
    assert abs(lam[1].item() - (b / (2 * a * (1 - ab))).item()) < 1e-12
    custom = torch.full((1001,), 0.5, **F64)
    assert torch.allclose(elbo.eps_mse_weight(s, torch.tensor([7]), custom), s.betas[7] ** 2 / (s.alphas[7] * (1 - s.alphas_cumprod[7])))
    with pytest.raises(ValueError, match="1..T"):
        elbo.eps_mse_weight(s, torch.tensor([0]))
    with pytest.raises(ValueError, match="T \\+ 1"):
        elbo.eps_mse_weight(s, torch.tensor([3]), torch.ones(1000))
    with pytest.raises(ValueError, match="sigma2 must be one of"):
        elbo.eps_mse_weight(s, torch.tensor([3]), "large")


def test_reverse_variances():
    s = NoiseSchedule.make("linear", 50)
    bt = forward.reverse_variances(s, "beta_tilde")
    _, var_q = q_posterior_mean_var(s, torch.zeros(49, 1, **F64), torch.zeros(49, 1, **F64), torch.arange(2, 51))
    assert torch.allclose(bt[2:], var_q.flatten())
    assert bt[1] == s.betas[1]  # β̃_1 = 0 is replaced so that the decoder is not a delta
    assert torch.equal(forward.reverse_variances(s, "beta"), s.betas)
    assert (bt[1:] <= s.betas[1:] + 1e-15).all()  # β̃_t ≤ β_t


def test_nats_to_bits_per_dim():
    assert abs(elbo.nats_to_bits_per_dim(784 * math.log(2), 784) - 1) < 1e-12
    out = elbo.nats_to_bits_per_dim(torch.tensor([2 * math.log(2), 0.0]), 2)
    assert torch.allclose(out, torch.tensor([1.0, 0.0]))
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="dims"):
            elbo.nats_to_bits_per_dim(1.0, bad)


# -- the whole bound on Gaussian data, where everything is known ----------------------------------
MU = torch.tensor([0.5, -1.0], **F64)
S2 = torch.tensor([0.25, 0.09], **F64)  # data variances per dimension


def optimal_eps(s):
    """E[ε | x_t] for x_0 ~ N(MU, diag S2): the ε-model that minimises the ε-MSE."""
    def eps_model(x_t, t):
        abar = extract(s.alphas_cumprod, t, x_t)
        v = abar * S2 + 1 - abar  # Var(x_t)
        return (1 - abar).sqrt() / v * (x_t - abar.sqrt() * MU)
    return eps_model


def exact_expected_bound(s, kind):
    """E_x0[L] a second way: H(q(x_0)) + KL(q(x_T) ‖ N(0, I)) + Σ_t E KL(q(x_{t−1}|x_t) ‖ p_θ(x_{t−1}|x_t)).
    With the optimal mean only the variances differ: the true one is β_t Var(x_{t−1}) / Var(x_t)."""
    ab = s.alphas_cumprod[:, None]
    v = ab * S2 + 1 - ab
    r = (s.betas[1:, None] * v[:-1] / v[1:]) / forward.reverse_variances(s, kind)[1:, None]
    prior = 0.5 * (v[-1] + ab[-1] * MU**2 - 1 - v[-1].log())
    entropy = 0.5 * torch.log(2 * math.pi * math.e * S2)
    return (entropy + prior + 0.5 * (r - 1 - r.log()).sum(0)).sum().item()


@pytest.mark.parametrize("kind,T", [("beta", 50), ("beta_tilde", 50), ("beta", 300)])
def test_vlb_of_the_optimal_model_on_gaussian_data(kind, T):
    s = NoiseSchedule.make("cosine", T)
    g = gen(4)
    x0 = MU + S2.sqrt() * torch.randn(2000, 2, generator=g, **F64)
    vlb = elbo.vlb_terms(s, optimal_eps(s), x0, sigma2=kind, generator=g, max_batch=5000)
    assert vlb.terms.shape == (2000, T + 1) and vlb.dims == 2
    # The x_0-variation of −log q(x_0) dominates the spread; compare with the entropy of the same x_0.
    nll = -torch.distributions.Normal(MU, S2.sqrt()).log_prob(x0).sum(1)
    entropy = (0.5 * torch.log(2 * math.pi * math.e * S2)).sum().item()
    diff = vlb.total - nll
    want = exact_expected_bound(s, kind) - entropy
    assert abs(diff.mean().item() - want) < 4 * diff.std().item() / math.sqrt(2000) + 1e-3
    assert (vlb.terms[:, 1:T] > -1e-9).all()  # KL terms are non-negative
    abar_T = s.alphas_cumprod[T]
    prior = 0.5 * (1 - abar_T + abar_T * x0**2 - 1 - torch.log(1 - abar_T)).sum(1)
    assert torch.allclose(vlb.terms[:, T], prior)  # L_T is exact
    assert torch.allclose(vlb.bits_per_dim, vlb.total / (2 * math.log(2)))


def test_vlb_gap_with_beta_vanishes_and_beta_tilde_does_not():
    gaps = {k: [exact_expected_bound(NoiseSchedule.make("cosine", T), k) for T in (100, 1000)] for k in ("beta", "beta_tilde")}
    entropy = (0.5 * torch.log(2 * math.pi * math.e * S2)).sum().item()
    assert gaps["beta"][1] - entropy < 0.2 * (gaps["beta"][0] - entropy)  # ~ 1/T
    assert gaps["beta_tilde"][1] - entropy > 0.5  # stays ~ γ/2 nats per dimension


def test_vlb_sampled_timesteps_is_unbiased_and_reproducible():
    s = NoiseSchedule.make("cosine", 100)
    x0 = MU + S2.sqrt() * torch.randn(2000, 2, generator=gen(5), **F64)
    full = elbo.vlb_terms(s, optimal_eps(s), x0, generator=gen(6))
    part = elbo.vlb_terms(s, optimal_eps(s), x0, n_t=10, generator=gen(6))
    again = elbo.vlb_terms(s, optimal_eps(s), x0, n_t=10, generator=gen(6))
    assert torch.equal(part.terms, again.terms)
    assert ((part.terms[:, 1:100] != 0).sum(1) == 10).all()
    se = (part.total - full.total).std().item() / math.sqrt(2000)
    assert abs((part.total - full.total).mean().item()) < 4 * se


def test_vlb_model_calls_are_batched_and_typed():
    s = NoiseSchedule.make("linear", 30)
    seen = []

    def model(x_t, t):
        seen.append((x_t.shape[0], t.dtype, int(t.min()), int(t.max())))
        return torch.zeros_like(x_t)

    elbo.vlb_terms(s, model, torch.zeros(10, 1, 2, 2), max_batch=64)
    assert all(n <= 64 and dt == torch.long and 1 <= lo <= hi <= 30 for n, dt, lo, hi in seen)
    assert sum(n for n, *_ in seen) == 10 * 30  # each (example, t) once


def test_vlb_discretized_decoder_on_images():
    s = NoiseSchedule.make("linear", 20, beta_1=0.005, beta_T=0.2)
    x0 = torch.randint(0, 256, (3, 1, 4, 4), generator=gen(7)).float() / 127.5 - 1
    vlb = elbo.vlb_terms(s, lambda x, t: torch.zeros_like(x), x0, decoder="discretized", generator=gen(8))
    assert vlb.dims == 16 and torch.isfinite(vlb.terms).all()
    assert (vlb.terms[:, 0] >= 0).all()  # −log of a probability


def test_vlb_rejects_bad_input():
    s = NoiseSchedule.make("linear", 10)
    x0 = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="shaped like x_t"):
        elbo.vlb_terms(s, lambda x, t: x[:, :1], x0)
    with pytest.raises(ValueError, match="batch"):
        elbo.vlb_terms(s, lambda x, t: x, torch.zeros(4))
    with pytest.raises(TypeError, match="callable"):
        elbo.vlb_terms(s, None, x0)
    with pytest.raises(ValueError, match="n_t"):
        elbo.vlb_terms(s, lambda x, t: x, x0, n_t=10)
    with pytest.raises(ValueError, match="decoder"):
        elbo.vlb_terms(s, lambda x, t: x, x0, decoder="bernoulli")


# -- the lesson's checks accept minidiff's reference and reject typical slips ---------------------
def test_lesson03_checks_pass_the_reference_and_fail_mistakes():
    for name, ref in (("gaussian_kl", elbo.gaussian_kl), ("predict_mean_from_eps", forward.predict_mean_from_eps),
                      ("eps_mse_weight", elbo.eps_mse_weight)):
        r = getattr(lesson03, name)(ref, quiet=True)
        assert r.status == "ok" and r.passed == r.total, (name, r.messages)
    r = lesson03.gaussian_kl(lambda m1, v1, m2, v2: torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1, quiet=True)
    assert r.score < r.points and any("missing ½" in m for m in r.messages)
    r = lesson03.gaussian_kl(lambda m1, v1, m2, v2: 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1), quiet=True)
    assert any("log-variance" in m for m in r.messages) and any("Python numbers" in m for m in r.messages)

    def weight_not_squared(s, t, sigma2="beta"):
        v = forward.reverse_variances(s, sigma2)
        return s.betas[t] / (2 * v[t] * s.alphas[t] * (1 - s.alphas_cumprod[t]))
    r = lesson03.eps_mse_weight(weight_not_squared, quiet=True)
    assert r.status == "failed" and any("squared" in m for m in r.messages)

    def weight_beta_tilde_1_is_0(s, t, sigma2="beta"):
        v = forward.reverse_variances(s, sigma2).clone()
        if sigma2 == "beta_tilde":
            v[1] = 0.0
        return s.betas[t] ** 2 / (2 * v[t] * s.alphas[t] * (1 - s.alphas_cumprod[t]))
    r = lesson03.eps_mse_weight(weight_beta_tilde_1_is_0, quiet=True)
    assert r.status == "failed" and any("σ_1² = β_1" in m for m in r.messages)

    def mean_without_t_check(s, x_t, t, eps):
        b, a, ab = (extract(v, t, x_t) for v in (s.betas, s.alphas, s.alphas_cumprod))
        return (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
    r = lesson03.predict_mean_from_eps(mean_without_t_check, quiet=True)
    assert r.status == "failed" and any("raise ValueError when any t < 1" in m for m in r.messages)
