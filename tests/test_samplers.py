"""minidiff.samplers (lesson 10): closed forms and identities.

* Karras levels: the endpoints, σ_N = 0, ρ = 1 is linear, spacing even in σ^(1/ρ);
* σ ↔ t: t(σ_i) = i on the table, and t(σ(t)) = t between the steps;
* the denoiser of an ε-model, of a v-model and of Gaussian-mixture data against closed forms;
* DDIM (η = 0) == Euler in σ == DPM-Solver++ of first order, to float64 round-off;
* the stochastic DPM-Solver++(2M): η = 0 is the ODE solver, η = 1 without history is DDIM with η = 1 (DDPM's
  posterior step), and for a known x_0 every η carries x_0 + σ ε to x_0 + σ' ε';
* orders of convergence on Gaussian data, where the ODE's solution is closed-form:
  x(σ) − μ = (x(σ_0) − μ) √((s² + σ²)/(s² + σ_0²));
* bad inputs: clear errors that name the argument; a NaN is reported with its step.
"""

import math

import pytest
import torch

from minidiff import samplers as S
from minidiff.data.toy import GaussianMixture, gmm8
from minidiff.ddim import ddim_step, ddim_timesteps
from minidiff.sampling import simulate
from minidiff.schedules import NoiseSchedule
from minidiff.sde import VPSDE, exact_eps_model
from minidiff.vpred import EpsFromV

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- Karras levels


def test_karras_endpoints_and_zero():
    s = S.karras_sigmas(10, 0.01, 50.0, 7.0)
    assert s.dtype == torch.float64 and s.shape == (11,)
    assert math.isclose(s[0].item(), 50.0, rel_tol=1e-12) and math.isclose(s[-2].item(), 0.01, rel_tol=1e-12)
    assert s[-1].item() == 0.0 and (s[:-1].diff() < 0).all()


def test_karras_rho_1_is_linear_and_rho_spacing_is_even():
    assert torch.allclose(S.karras_sigmas(5, 1.0, 9.0, 1.0), torch.tensor([9.0, 7.0, 5.0, 3.0, 1.0, 0.0], dtype=torch.float64))
    s = S.karras_sigmas(8, 0.002, 80.0, 3.0)[:-1]
    assert torch.allclose(s.pow(1 / 3).diff(), s.pow(1 / 3).diff()[0].expand(7), rtol=1e-10)


def test_karras_one_step():
    assert S.karras_sigmas(1, 0.1, 2.0).tolist() == [2.0, 0.0]


@pytest.mark.parametrize("kwargs,needle", [
    (dict(steps=5, sigma_min=2.0, sigma_max=1.0), "sigma_min < sigma_max"),
    (dict(steps=5, sigma_min=1.0, sigma_max=1.0), "sigma_min < sigma_max"),
    (dict(steps=5, sigma_min=0.0, sigma_max=1.0), "sigma_min must be > 0"),
    (dict(steps=5, rho=0.0), "rho must be > 0"),
    (dict(steps=5, rho=-1.0), "rho must be > 0"),
    (dict(steps=0), "steps"),
])
def test_karras_bad_inputs(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        S.karras_sigmas(**kwargs)


def test_steps_for_nfe():
    assert [S.steps_for_nfe("euler", n) for n in (1, 5, 20)] == [1, 5, 20]
    assert [S.steps_for_nfe("heun", n) for n in (1, 5, 10, 20)] == [1, 3, 5, 10]
    for bad in (0, -3):
        with pytest.raises(ValueError, match="nfe"):
            S.steps_for_nfe("heun", bad)
    with pytest.raises(ValueError, match="method"):
        S.steps_for_nfe("rk4", 10)


# ---------------------------------------------------------------- σ and t


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_sigma_to_t_on_and_between_the_table(name):
    s = NoiseSchedule.make(name, 1000)
    sig = S.sigmas_from_schedule(s)
    assert sig[0].item() == 0.0
    assert torch.allclose(sig, ((1 - s.alphas_cumprod.double()) / s.alphas_cumprod.double()).sqrt())
    t = torch.tensor([0, 1, 2, 17, 500, 999, 1000])
    assert torch.allclose(S.sigma_to_t(s, sig[t]), t.double(), atol=1e-8)
    tf = torch.tensor([0.5, 1.25, 37.7, 998.9], dtype=torch.float64)
    assert torch.allclose(S.sigma_to_t(s, S.sigma_of_t(s, tf)), tf, atol=1e-8)
    # and the VP SDE of lesson 09 agrees on ᾱ at those times
    sde = VPSDE.from_schedule(s)
    assert torch.allclose(sde.alpha_bar(tf / 1000), 1 / (1 + S.sigma_of_t(s, tf) ** 2), rtol=1e-10)


def test_sigma_beyond_the_schedule_is_an_error():
    s = NoiseSchedule.make("linear", 1000)
    with pytest.raises(ValueError, match="exceeds the schedule's largest"):
        S.sigma_to_t(s, torch.tensor([1e6]))
    with pytest.raises(ValueError, match="sigma must be ≥ 0"):
        S.sigma_to_t(s, torch.tensor([-1.0]))


# ---------------------------------------------------------------- denoisers


def test_denoise_closed_form_and_model_time():
    s = NoiseSchedule.make("cosine", 100)
    seen = {}

    def eps_model(x_t, t):
        seen["x_t"], seen["t"] = x_t, t
        return 0.5 * x_t

    x = torch.randn(3, 1, 4, 4, generator=gen())
    sigma = S.sigmas_from_schedule(s)[torch.tensor([3, 40, 90])]
    out = S.denoise(s, eps_model, x, sigma)
    c = (1 + sigma**2).sqrt().float().view(3, 1, 1, 1)
    assert torch.allclose(seen["x_t"], x / c) and torch.allclose(seen["t"], torch.tensor([3.0, 40.0, 90.0], dtype=torch.float64))
    assert out.dtype == torch.float32 and torch.allclose(out, x - sigma.float().view(3, 1, 1, 1) * 0.5 * x / c)


def test_v_denoiser_matches_eps_from_v_at_integer_t():
    s = NoiseSchedule.make("cosine", 1000)
    w = torch.randn(2, 2, generator=gen(1), dtype=torch.float64)
    v_net = lambda x_t, t: x_t @ w + 0.001 * t.double()[:, None]  # noqa: E731
    t = torch.tensor([5, 250, 900])
    sigma = S.sigmas_from_schedule(s)[t]
    x = torch.randn(3, 2, generator=gen(2), dtype=torch.float64)
    got = S.v_denoiser(s, v_net)(x, sigma)
    want = S.eps_denoiser(s, lambda x_t, tt: EpsFromV(v_net, s)(x_t, tt.round().long()))(x, sigma)
    assert torch.allclose(got, want, atol=1e-9)


def test_mixture_denoiser_against_gaussian_closed_form():
    mu, sd = torch.tensor([[0.5, -1.0]]), 0.3
    D = S.mixture_denoiser(GaussianMixture(mu, sd))
    x = torch.randn(6, 2, generator=gen(3), dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.01, 0.3, 1.0, 7.0, 80.0], dtype=torch.float64)
    want = mu.double() + (sd**2 / (sd**2 + sigma**2))[:, None] * (x - mu.double())
    assert torch.allclose(D(x, sigma), want, atol=1e-10)


# ---------------------------------------------------------------- DDIM == Euler in σ == DPM-Solver++ 1st order


@pytest.mark.parametrize("name,steps", [("cosine", 10), ("linear", 25)])
def test_ddim_is_euler_in_sigma_and_first_order_dpm_solver(name, steps):
    s = NoiseSchedule.make(name, 1000)
    eps = exact_eps_model(VPSDE.from_schedule(s), gmm8())
    D = S.eps_denoiser(s, eps)
    x_T = torch.randn(64, 2, generator=gen(4), dtype=torch.float64)
    ts = ddim_timesteps(1000, steps) + [0]

    def ddim(x, t, t_prev):
        tt = torch.full((64,), t, dtype=torch.long)
        return ddim_step(s, eps(x, tt), x, tt, t_prev)

    x_ddim = simulate(ddim, x_T, ts)
    sigmas = S.sigmas_from_schedule(s)[ts]
    x = x_T * (1 + sigmas[0] ** 2).sqrt()  # x = x_T / √ᾱ_T
    x_euler = S.karras_sample(D, x, sigmas, "euler")
    x_dpm1 = simulate(lambda y, a, b: S.dpmpp_2m_update(y, D(y, a), a, b), x, sigmas.tolist())  # no history: order 1
    assert torch.allclose(x_euler, x_ddim, atol=1e-10, rtol=0)
    assert torch.allclose(x_dpm1, x_ddim, atol=1e-10, rtol=0)


# ---------------------------------------------------------------- the stochastic DPM-Solver++(2M)


def test_sde_2m_with_eta_0_is_the_ode_solver():
    D = S.mixture_denoiser(gmm8())
    x = 5.0 * torch.randn(8, 2, generator=gen(11), dtype=torch.float64)
    d, d_old = D(x, 2.0), D(x, 3.0)
    for old, prev in ((None, None), (d_old, 3.0)):
        assert torch.equal(S.dpmpp_2m_sde_update(x, d, 2.0, 1.0, old, prev, eta=0.0),
                           S.dpmpp_2m_update(x, d, 2.0, 1.0, old, prev))


@pytest.mark.parametrize("t,t_prev", [(1000, 900), (500, 450), (60, 1), (20, 0)])
def test_sde_2m_first_order_with_eta_1_is_ddim_eta_1(t, t_prev):
    s = NoiseSchedule.make("cosine", 1000)
    eps = exact_eps_model(VPSDE.from_schedule(s), gmm8())
    D = S.eps_denoiser(s, eps)
    sig = S.sigmas_from_schedule(s)
    x_t = torch.randn(64, 2, generator=gen(12), dtype=torch.float64)
    z = torch.randn(64, 2, generator=gen(13), dtype=torch.float64)
    tt = torch.full((64,), t, dtype=torch.long)
    want = ddim_step(s, eps(x_t, tt), x_t, tt, t_prev, eta=1.0, noise=z) * (1 + sig[t_prev] ** 2).sqrt()  # ÷ √ᾱ_t'
    x = x_t * (1 + sig[t] ** 2).sqrt()
    got = S.dpmpp_2m_sde_update(x, D(x, sig[t]), sig[t], sig[t_prev], eta=1.0, noise=z)
    assert torch.allclose(got, want, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("eta", [0.3, 1.0, 2.0])
def test_sde_2m_keeps_the_marginal_of_a_known_x0(eta):
    x0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    D = lambda x, sigma: x0.expand_as(x)  # noqa: E731   the denoiser of data that is always x0
    x = x0 + 3.0 * torch.randn(200_000, 2, generator=gen(14), dtype=torch.float64)
    out = S.dpmpp_2m_sde_update(x, D(x, 3.0), 3.0, 1.2, eta=eta, generator=gen(15))
    assert torch.allclose((out - x0).mean(0), torch.zeros(2, dtype=torch.float64), atol=0.02)
    assert torch.allclose((out - x0).std(0), torch.full((2,), 1.2, dtype=torch.float64), rtol=0.01)


def test_sde_2m_bad_inputs_and_reproducibility():
    D = S.mixture_denoiser(gmm8())
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="eta"):
        S.dpmpp_2m_sde_update(x, D(x, 2.0), 2.0, 1.0, eta=-0.5)
    with pytest.raises(ValueError, match="noise must be shaped"):
        S.dpmpp_2m_sde_update(x, D(x, 2.0), 2.0, 1.0, noise=torch.randn(3, 2))
    with pytest.raises(ValueError, match="eta"):
        S.DPMSolver2MSDE(D, eta=float("nan"))
    a = S.sample(D, (16, 2), nfe=8, method="dpmpp_2m_sde", generator=gen(16), dtype=torch.float64)
    b = S.sample(D, (16, 2), nfe=8, method="dpmpp_2m_sde", generator=gen(16), dtype=torch.float64)
    c = S.sample(D, (16, 2), nfe=8, method="dpmpp_2m_sde", generator=gen(17), dtype=torch.float64)
    assert torch.equal(a, b) and not torch.allclose(a, c)


# ---------------------------------------------------------------- orders on Gaussian data


def gaussian_problem():
    mu, sd = 0.7, 0.5
    D = S.mixture_denoiser(GaussianMixture(torch.tensor([[mu, -mu]]), sd))
    z = torch.randn(32, 2, generator=gen(5), dtype=torch.float64)
    smax, smin = 80.0, 0.01
    x0 = smax * z
    m = torch.tensor([mu, -mu], dtype=torch.float64)
    exact = m + (x0 - m) * math.sqrt((sd**2 + smin**2) / (sd**2 + smax**2))
    return D, x0, exact, smin, smax


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_order_of_convergence_on_gaussian_data(method, order):
    D, x0, exact, smin, smax = gaussian_problem()
    errs, nfes = [], []
    for steps in (20, 40, 80, 160):
        counted = S.CountCalls(D)
        x = S.karras_sample(counted, x0, S.karras_sigmas(steps, smin, smax)[:-1], method)
        errs.append((x - exact).norm(dim=1).mean().item())
        nfes.append(counted.calls)
    slopes = [math.log(errs[i] / errs[i + 1]) / math.log(nfes[i + 1] / nfes[i]) for i in range(3)]
    assert abs(slopes[-1] - order) < 0.2, (errs, slopes)
    assert nfes == [(2 if method == "heun" else 1) * n for n in (19, 39, 79, 159)]  # counted, not assumed


def test_churn_without_churn_is_heun_and_adds_the_right_noise():
    D = S.mixture_denoiser(gmm8())
    x = torch.randn(16, 2, generator=gen(6), dtype=torch.float64)
    assert torch.equal(S.churn_step(D, x, 2.0, 1.0, gamma=0.0), S.karras_heun_step(D, x, 2.0, 1.0))
    z = torch.randn(16, 2, generator=gen(7), dtype=torch.float64)
    g = math.sqrt(2) - 1
    want = S.karras_heun_step(D, x + math.sqrt((2.0 * (1 + g)) ** 2 - 4.0) * z, 2.0 * (1 + g), 1.0)
    assert torch.allclose(S.churn_step(D, x, 2.0, 1.0, gamma=g, noise=z), want)
    assert S.churn_gammas([10.0, 1.0, 0.1, 0.0], s_churn=0.3) == pytest.approx([0.1, 0.1, 0.1])
    assert S.churn_gammas([10.0, 1.0, 0.0], s_churn=100.0, s_tmax=5.0) == [0.0, g]


def test_dpm_solver_2m_remembers_and_resets():
    D = S.mixture_denoiser(gmm8())
    step = S.DPMSolver2M(D)
    x = 5.0 * torch.randn(8, 2, generator=gen(8), dtype=torch.float64)
    sig = S.karras_sigmas(4, 0.01, 5.0).tolist()
    a = simulate(step, x, sig)
    step.reset()
    assert torch.equal(simulate(step, x, sig), a)
    # the second step uses the history: it differs from a first-order step
    x1 = step.__class__(D)(x, sig[0], sig[1])
    two = S.DPMSolver2M(D)
    two(x, sig[0], sig[1])
    assert not torch.allclose(two(x1, sig[1], sig[2]), S.dpmpp_2m_update(x1, D(x1, sig[1]), sig[1], sig[2]))


@pytest.mark.parametrize("method", S.METHODS)
def test_sample_images_and_dtype(method):
    D = lambda x, sigma: 0.5 * x  # noqa: E731
    out = S.sample(D, (2, 1, 4, 4), nfe=5, method=method, generator=gen(9))
    assert out.shape == (2, 1, 4, 4) and out.dtype == torch.float32 and torch.isfinite(out).all()


# ---------------------------------------------------------------- bad inputs


def test_bad_shapes_are_named():
    D = S.mixture_denoiser(gmm8())
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="sigma must be a float or have shape"):
        D(x, torch.ones(3))
    with pytest.raises(ValueError, match="shaped like x"):
        S.karras_sample(lambda y, s: y[:, :1], x, [1.0, 0.5, 0.0], "euler")
    s = NoiseSchedule.make("linear", 100)
    with pytest.raises(ValueError, match="eps_model"):
        S.denoise(s, lambda x_t, t: x_t[:2], x, 1.0)
    with pytest.raises(ValueError, match="noise must be shaped like x"):
        S.churn_step(D, x, 1.0, 0.5, gamma=0.1, noise=torch.zeros(4, 3))


def test_bad_sigmas_and_methods():
    D = S.mixture_denoiser(gmm8())
    x = torch.randn(4, 2)
    for bad in ([1.0], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0], [1.0, -0.5]):
        with pytest.raises(ValueError, match="sigmas"):
            S.karras_sample(D, x, bad, "euler")
    with pytest.raises(ValueError, match="method"):
        S.karras_sample(D, x, [1.0, 0.0], "rk4")
    with pytest.raises(ValueError, match="nfe"):
        S.sample(D, (4, 2), nfe=0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        S.sample(D, (4, 2), nfe=5, sigma_min=1.0, sigma_max=0.5)


def test_nan_is_reported_with_its_step():
    def D(x, sigma):
        return torch.full_like(x, float("nan")) if float(sigma) < 1.0 else 0.5 * x

    sig = S.karras_sigmas(6, 0.01, 10.0)
    bad = next(i for i, s in enumerate(sig.tolist()) if s < 1.0)
    for method in ("euler", "dpmpp_2m"):
        with pytest.raises(ValueError, match=f"at step {bad + 1} of 6"):
            S.karras_sample(D, torch.randn(3, 2), sig, method)
