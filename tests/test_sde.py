"""minidiff.sde and minidiff.likelihood against closed forms: the VP SDE is DDPM's limit, Euler–Maruyama
reproduces an Ornstein–Uhlenbeck process's moments, the reverse SDE and the PF-ODE map N(0, I) to Gaussian
data exactly, the exact divergence equals autograd's Jacobian trace, Hutchinson is unbiased, the ODE log p of
Gaussian data is the Gaussian's own; bad input gives errors that name the argument."""

import math

import pytest
import torch

from minidiff import likelihood, sde
from minidiff.data import toy
from minidiff.data.toy import GaussianMixture
from minidiff.ddim import ddim_step, ddim_timesteps
from minidiff.sampling import simulate
from minidiff.schedules import NoiseSchedule

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- the SDEs


def test_vp_sde_is_ddpms_limit():
    """β(t) = β_min + t(β_max − β_min) with β_min = T β_1, β_max = T β_T: ᾱ(i/T) → ᾱ_i as T grows."""
    errors = []
    for T in (100, 1000, 10000):
        s = NoiseSchedule.make("linear", T, beta_1=0.1 / T, beta_T=20.0 / T)
        vp = sde.VPSDE(0.1, 20.0, T)
        t = torch.arange(T + 1, dtype=torch.float64) / T
        errors.append((vp.alpha_bar(t) - s.alphas_cumprod).abs().max().item())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3
    assert errors[1] / errors[2] > 5  # first order in 1/T


def test_from_schedule_passes_through_the_table():
    s = NoiseSchedule.make("cosine", 50)
    vp = sde.VPSDE.from_schedule(s)
    t = torch.arange(51, dtype=torch.float64) / 50
    assert torch.allclose(vp.alpha_bar(t), s.alphas_cumprod, rtol=1e-10, atol=1e-14)
    # β(t) is −d log ᾱ/dt: its integral over ((i−1)/T, i/T] is log ᾱ_{i−1} − log ᾱ_i
    mid = (torch.arange(1, 51, dtype=torch.float64) - 0.5) / 50
    assert torch.allclose(vp.beta(mid) / 50, -torch.log(s.alphas[1:]), rtol=1e-10)


def test_linear_marginal_closed_form_and_methods_agree():
    x0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=torch.float64)
    mean, std = sde.vp_marginal(x0, t, 0.5, 10.0)
    integral = 0.5 * t + 0.5 * 9.5 * t**2
    assert torch.allclose(mean, torch.exp(-0.5 * integral)[:, None] * x0)
    assert torch.allclose(std[:, 0], torch.sqrt(1 - torch.exp(-integral)))
    vp = sde.VPSDE(0.5, 10.0)
    m2, s2 = vp.marginal(x0, t)
    assert torch.allclose(m2, mean) and torch.allclose(s2, std)
    drift, g = sde.vp_sde(x0, t, 0.5, 10.0)
    assert torch.allclose(drift, vp.drift(x0, t)) and torch.allclose(g, vp.diffusion(t, x0))


def test_ddpm_chain_matches_the_sde_marginal():
    """Run DDPM's forward chain x_i = √(1 − β_i) x_{i−1} + √β_i z on a point: mean and variance at step i are those
    of the SDE at t = i/T, up to O(1/T)."""
    T = 1000
    s = NoiseSchedule.make("linear", T)
    vp = sde.VPSDE(0.1, 20.0, T)
    x = torch.full((20000, 1), 1.5, dtype=torch.float64)
    g = gen(1)
    for i in range(1, 301):
        x = (1 - s.betas[i]).sqrt() * x + s.betas[i].sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    mean, std = vp.marginal(torch.tensor([[1.5]], dtype=torch.float64), 0.3)
    assert abs(x.mean().item() - mean.item()) < 0.02 and abs(x.std().item() / std.item() - 1) < 0.02


def test_ve_sde_matches_geometric_levels_and_its_marginal():
    from minidiff.score import geometric_sigmas

    ve = sde.VESDE(0.02, 4.0)
    levels = geometric_sigmas(4.0, 0.02, 40).double()
    t = torch.linspace(1, 0, 40, dtype=torch.float64)
    assert torch.allclose(ve.sigma(t), levels, rtol=1e-6)
    # g(t)² = d σ(t)²/dt, so std(t)² = ∫_0^t g² = σ(t)² − σ_min²
    tt = torch.linspace(0, 0.7, 2001, dtype=torch.float64)
    g2 = ve.diffusion(tt, tt[:, None])[:, 0] ** 2
    assert math.isclose(torch.trapezoid(g2, tt).item(), ve.std(torch.tensor([0.7]))[0].item() ** 2, rel_tol=1e-5)


# ---------------------------------------------------------------- solvers against closed forms


def test_euler_maruyama_on_an_ou_process():
    """The reverse SDE of an OU process started at N(μ, s²): an exact ε-model makes EM land on N(μ, s²)
    up to the step's O(Δt) bias."""
    vp = sde.VPSDE()
    data = GaussianMixture([[0.7]], 0.3)
    eps = sde.exact_eps_model(vp, data)
    x = sde.sde_sample(vp, eps, vp.prior_sample((20000, 1), gen(2)), steps=1000, t_end=1e-4, generator=gen(3))
    assert abs(x.mean().item() - 0.7) < 0.01 and abs(x.std().item() - 0.3) < 0.01


def test_forward_euler_maruyama_moments():
    """Forward EM on dx = −½βx dt + √β dW from a point: mean and variance after the whole path match the closed form."""
    vp = sde.VPSDE()
    x = torch.full((20000, 2), 2.0, dtype=torch.float64)
    ts = torch.linspace(0, 0.5, 501, dtype=torch.float64).tolist()
    g = gen(4)
    for a, b in zip(ts[:-1], ts[1:]):
        x = x + vp.drift(x, a) * (b - a) + vp.diffusion(a, x) * math.sqrt(b - a) * torch.randn(x.shape, generator=g,
                                                                                             dtype=x.dtype)
    mean, std = vp.marginal(torch.full((1, 2), 2.0, dtype=torch.float64), 0.5)
    assert torch.allclose(x.mean(0), mean[0], atol=0.02) and torch.allclose(x.std(0), std[0].expand(2), rtol=0.02)


def test_pf_ode_maps_the_prior_to_gaussian_data():
    vp = sde.VPSDE()
    data = GaussianMixture([[0.7, -0.2]], 0.3)
    eps = sde.exact_eps_model(vp, data)
    z = vp.prior_sample((4000, 2), gen(5), dtype=torch.float64)
    x = sde.ode_sample(vp, eps, z, method="rk45", t_end=1e-5, rtol=1e-6, atol=1e-6)
    assert torch.allclose(x.mean(0), torch.tensor([0.7, -0.2], dtype=torch.float64), atol=0.02)
    assert torch.allclose(x.std(0), torch.full((2,), 0.3, dtype=torch.float64), atol=0.01)
    # the ODE is deterministic and invertible: for Gaussian data x is an affine map of z
    lin = torch.linalg.lstsq(torch.cat([z, torch.ones(4000, 1, dtype=z.dtype)], 1), x).solution
    assert torch.allclose(torch.cat([z, torch.ones(4000, 1, dtype=z.dtype)], 1) @ lin, x, atol=1e-3)


def test_heun_converges_at_second_order():
    drift = lambda x, t: -(1 + t) * x  # noqa: E731   x(t) = x(0) exp(−t − t²/2)
    errors = []
    for n in (10, 20, 40):
        x, ts = torch.ones(1, 1, dtype=torch.float64), torch.linspace(0, 1, n + 1).tolist()
        for a, b in zip(ts[:-1], ts[1:]):
            x = sde.heun_step(drift, x, a, b)
        errors.append(abs(x.item() - math.exp(-1.5)))
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5


def test_solve_ode_on_a_linear_ode_and_its_budget():
    drift = lambda x, t: -(1 + t) * x  # noqa: E731
    sol = sde.solve_ode(drift, torch.ones(3, 1, dtype=torch.float64), 0.0, 1.0, rtol=1e-8, atol=1e-10)
    assert torch.allclose(sol.x, torch.full((3, 1), math.exp(-1.5), dtype=torch.float64), rtol=1e-7)
    back = sde.solve_ode(drift, sol.x, 1.0, 0.0, rtol=1e-8, atol=1e-10)
    assert torch.allclose(back.x, torch.ones(3, 1, dtype=torch.float64), rtol=1e-6)
    with pytest.raises(RuntimeError, match="max_steps=5"):
        sde.solve_ode(lambda x, t: -1e4 * x, torch.ones(2, 1), 0.0, 1.0, max_steps=5)


def test_ddim_converges_to_the_pf_ode():
    """DDIM (η = 0) from the same x_T lands ever closer to the PF-ODE's solution as its steps grow."""
    s = NoiseSchedule.make("linear", 1000)
    vp = sde.VPSDE.from_schedule(s)
    eps = sde.exact_eps_model(vp, toy.density("gmm8"))
    z = torch.randn(200, 2, generator=gen(6), dtype=torch.float64)
    ref = sde.ode_sample(vp, eps, z, method="rk45", t_end=1 / 1000, rtol=1e-7, atol=1e-7)
    dists = []
    for steps in (10, 50, 250):
        ts = ddim_timesteps(1000, steps) + [1]  # stop at step 1, t = 1/T, where the ODE stopped
        x = simulate(lambda y, a, b: ddim_step(s, eps(y, torch.full((200,), float(a))), y, a, b), z.clone(), ts)
        dists.append((x - ref).norm(dim=1).mean().item())
    assert dists[0] > dists[1] > dists[2] and dists[2] < 0.02


# ---------------------------------------------------------------- divergences and likelihoods


def test_exact_divergence_is_the_jacobian_trace():
    W = torch.randn(3, 3, dtype=torch.float64)

    def fn(x):
        return torch.tanh(x @ W) * x

    x = torch.randn(5, 3, dtype=torch.float64)
    f, div = likelihood.exact_divergence(fn, x)
    traces = torch.stack([torch.trace(torch.autograd.functional.jacobian(lambda y: fn(y[None])[0], xi)) for xi in x])
    assert torch.allclose(div, traces) and torch.allclose(f, fn(x))


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_with_the_predicted_variance(kind):
    A = torch.randn(4, 4, dtype=torch.float64, generator=gen(7))
    n = 40000
    x = torch.randn(n, 4, dtype=torch.float64)
    v = likelihood.probe_vectors(x.shape, kind, gen(8), dtype=torch.float64)
    _, est = likelihood.hutchinson_divergence(lambda y: y @ A.T, x, v)
    S = A + A.T
    var = 0.5 * (S**2).sum() if kind == "gaussian" else 0.5 * ((S**2).sum() - (S.diagonal() ** 2).sum())
    assert abs(est.mean().item() - torch.trace(A).item()) < 4 * math.sqrt(var / n)
    assert abs(est.var().item() / var.item() - 1) < 0.05


def test_ode_log_likelihood_of_gaussian_data_is_exact():
    """Data N(μ, s² I): p_t is Gaussian, and the ODE's log p_{t0} must equal log N(x; √ᾱ μ, (ᾱ s² + 1 − ᾱ) I)."""
    vp = sde.VPSDE()
    data = GaussianMixture([[0.5, -1.0]], 0.6)
    eps = sde.exact_eps_model(vp, data)
    x = torch.randn(50, 2, dtype=torch.float64, generator=gen(9))
    t0 = 1e-3
    truth = data.noised(vp.alpha_bar(torch.tensor(t0)).item()).log_prob(x)
    prior = data.noised(vp.alpha_bar(torch.tensor(1.0)).item()).log_prob
    res = likelihood.ode_log_likelihood(vp, eps, x, t0=t0, rtol=1e-7, atol=1e-7, prior_log_prob=prior)
    assert (res.log_prob - truth).abs().max() < 1e-4
    heun = likelihood.ode_log_likelihood(vp, eps, x, t0=t0, method="heun", steps=200, prior_log_prob=prior)
    assert (heun.log_prob - truth).abs().max() < 1e-2  # second order, 200 steps evenly spaced in log t
    hutch = likelihood.ode_log_likelihood(vp, eps, x, t0=t0, divergence="hutchinson", generator=gen(10),
                                          rtol=1e-6, atol=1e-6, prior_log_prob=prior)
    assert abs((hutch.log_prob - truth).mean().item()) < 0.3  # unbiased, one probe per sample


def test_gmm8_exact_score_log_likelihood_within_a_hundredth_of_a_nat():
    vp = sde.VPSDE()
    p = toy.density("gmm8")
    x = p.sample(200, gen(11)).double()
    res = likelihood.ode_log_likelihood(vp, sde.exact_eps_model(vp, p), x, t0=1e-5, rtol=1e-5, atol=1e-5)
    assert (res.log_prob - p.log_prob(x)).abs().mean() < 0.01


def test_bits_per_dim_and_dequantize():
    # a uniform density on [−1, 1]^D (log p = −D log 2), levels 2/255 apart: 1 + log₂ 127.5 ≈ 7.99 bits per dimension
    D = 10
    w = 2 / 255
    bpd = likelihood.bits_per_dim(torch.tensor(-D * math.log(2.0), dtype=torch.float64), D, w)
    assert math.isclose(bpd.item(), 1 + math.log2(127.5), rel_tol=1e-12)
    x = torch.zeros(10000, 1)
    y = likelihood.dequantize(x, w, gen(12))
    assert y.abs().max() <= w / 2 and abs(y.std().item() - w / math.sqrt(12)) < 1e-4


# ---------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    vp = sde.VPSDE()
    x = torch.zeros(3, 2)
    eps = sde.exact_eps_model(vp, toy.density("gmm8"))
    with pytest.raises(ValueError, match="steps"):
        sde.sde_timesteps(0)
    with pytest.raises(ValueError, match="steps"):
        sde.ode_sample(vp, eps, x, steps=-1)
    with pytest.raises(ValueError, match="steps"):
        likelihood.ode_log_likelihood(vp, eps, x, method="heun", steps=0)
    with pytest.raises(ValueError, match=r"^t must lie in \[0, 1\]"):
        sde.pf_ode_drift(vp, eps, x, 1.5)
    with pytest.raises(ValueError, match="t_next must lie in"):
        sde.euler_maruyama_step(vp, eps, x, 0.5, -0.1)
    with pytest.raises(ValueError, match="t_next must be smaller"):
        sde.euler_maruyama_step(vp, eps, x, 0.5, 0.6)
    with pytest.raises(ValueError, match="t1 must lie"):
        likelihood.ode_log_likelihood(vp, eps, x, t1=2.0)
    with pytest.raises(ValueError, match="t0 must be > 0"):
        likelihood.ode_log_likelihood(vp, eps, x, t0=0.0)
    with pytest.raises(ValueError, match="NaN"):
        sde.pf_ode_drift(vp, lambda y, t: torch.full_like(y, float("nan")), x, 0.5)
    with pytest.raises(ValueError, match="NaN"):
        sde.ode_sample(vp, lambda y, t: torch.full_like(y, float("nan")), x, method="rk45")
    with pytest.raises(ValueError, match="eps_model"):
        sde.pf_ode_drift(vp, lambda y, t: y[:, :1], x, 0.5)
    with pytest.raises(RuntimeError, match="step budget max_steps=3"):
        likelihood.ode_log_likelihood(vp, eps, x, rtol=1e-9, atol=1e-9, max_steps=3)
    with pytest.raises(ValueError, match="method"):
        sde.ode_sample(vp, eps, x, method="rk4")
