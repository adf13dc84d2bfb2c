"""minidiff.langevin: the step against its formula, chains against the exact stationary law of
unadjusted Langevin on a Gaussian, annealing's schedule and its fix of the mode weights, the
predictor–corrector sampler against DDPM's sampler and exact moments; and lesson 07's checks
(they pass minidiff's functions and name the common mistakes)."""

import math

import pytest
import torch

from minidiff import langevin
from minidiff.course.checks import lesson07 as check
from minidiff.data.toy import GaussianMixture
from minidiff.sampling import ddpm_sample, ddpm_step, simulate
from minidiff.schedules import NoiseSchedule
from minidiff.score import geometric_sigmas, ve_noised
from minidiff.utils import randn

torch.set_num_threads(1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- one step


def test_step_formula_with_given_noise():
    x, s, z = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    out = langevin.langevin_step(x, s, 0.09, noise=z)
    assert torch.allclose(out, x + 0.045 * s + 0.3 * z)


def test_step_draws_noise_from_the_generator_and_accepts_tensor_steps():
    x, s = torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
    a = langevin.langevin_step(x, s, 0.1, gen(1))
    b = langevin.langevin_step(x, s, 0.1, gen(1))
    assert torch.equal(a, b) and a.shape == x.shape
    step = torch.tensor([0.1, 0.2, 0.3]).reshape(3, 1, 1, 1)
    z = torch.randn(3, 1, 2, 2)
    assert torch.allclose(langevin.langevin_step(x, s, step, noise=z), 0.5 * step * s + step.sqrt() * z)


def test_step_errors():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="score"):
        langevin.langevin_step(x, torch.zeros(4, 3), 0.1)
    with pytest.raises(ValueError, match="step_size"):
        langevin.langevin_step(x, x, 0.0)
    with pytest.raises(TypeError, match="x"):
        langevin.langevin_step(torch.zeros(4, 2, dtype=torch.long), x, 0.1)


# ---------------------------------------------------------------- chains


def test_chain_reaches_the_biased_stationary_law():
    mu, s2, delta = -0.5, 0.36, 0.08
    x = langevin.langevin_sample(lambda x: (mu - x) / s2, torch.full((40_000, 1), 3.0), 300, delta, gen(2))
    v = s2 / (1 - delta / (4 * s2))  # the fixed point of v = (1 − δ/(2s²))² v + δ
    assert abs(x.mean().item() - mu) < 0.02
    assert abs(x.var().item() / v - 1) < 0.03
    assert abs(x.var().item() / s2 - 1) > 0.03  # the discretisation bias is visible


def test_chain_trajectory_and_no_graph():
    w = torch.tensor(1.5, requires_grad=True)
    x, traj = langevin.langevin_sample(lambda x: -w * x, torch.zeros(8, 2), 10, 0.1, gen(3),
                                       return_trajectory=True, trajectory_stride=5)
    assert traj.shape == (3, 8, 2) and torch.equal(traj[-1], x)
    assert not x.requires_grad


def test_plain_langevin_keeps_the_starting_weights():
    q = GaussianMixture([[-2.5, 0.0], [2.5, 0.0]], 0.5, [0.2, 0.8])
    x0 = 10 * torch.rand(4000, 2, generator=gen(4)) - 5
    x = langevin.langevin_sample(q.score, x0, 500, 0.01, gen(5))
    assert abs((x[:, 0] < 0).float().mean().item() - 0.5) < 0.05


# ---------------------------------------------------------------- annealed


def test_annealed_visits_levels_in_order_with_algorithm_1_steps():
    seen = []

    def zero(x, sigma):
        assert sigma.shape == (x.shape[0],)
        seen.append(float(sigma[0]))
        return torch.zeros_like(x)

    sigmas = torch.tensor([3.0, 1.0, 0.5])
    x = langevin.annealed_langevin_sample(sigmas, zero, (20_000, 2), 4, 0.01, generator=gen(6), denoise=False,
                                          x_init=torch.zeros(20_000, 2))
    assert seen == [3.0] * 4 + [1.0] * 4 + [0.5] * 4
    expected_var = 4 * 0.01 * (sigmas**2 / 0.25).sum().item()  # Σ_i n δ_i, δ_i = ε σ_i²/σ_L²
    assert torch.allclose(x.var(0), torch.full((2,), expected_var), rtol=0.04)


def test_annealed_default_start_and_denoising():
    calls = []

    def spy(x, sigma):
        calls.append(x.clone())
        return -x / (1 + sigma[:, None] ** 2)

    sigmas = torch.tensor([5.0, 1.0])
    langevin.annealed_langevin_sample(sigmas, spy, (20_000, 2), 1, 1e-6, generator=gen(7))
    assert abs(calls[0].std().item() / 5.0 - 1) < 0.03  # x ~ N(0, σ_1² I)
    assert len(calls) == 3  # 2 levels × 1 step + the final denoising step


def test_annealed_recovers_the_mode_weights():
    q = GaussianMixture([[-2.5, 0.0], [2.5, 0.0]], 0.5, [0.2, 0.8])
    exact = lambda x, sigma: ve_noised(q, float(sigma[0])).score(x)  # noqa: E731
    x = langevin.annealed_langevin_sample(geometric_sigmas(5.0, 0.05, 10), exact, (3000, 2), 60, 5e-4,
                                          generator=gen(8))
    assert abs((x[:, 0] < 0).float().mean().item() - 0.2) < 0.04
    right = x[x[:, 0] > 0]
    assert torch.allclose(right.mean(0), torch.tensor([2.5, 0.0]), atol=0.06)
    assert torch.allclose(right.std(0), torch.tensor([0.5, 0.5]), rtol=0.12)


def gaussian_eps(schedule, mu, s):
    """The exact ε-model for data N(μ, s² I): q_t = N(√ᾱ μ, (ᾱ s² + 1 − ᾱ) I)."""

    def eps(x, t):
        abar = schedule.alphas_cumprod[t].float()[:, None]
        return (1 - abar).sqrt() * (x - abar.sqrt() * mu) / (abar * s**2 + 1 - abar)

    return eps


def test_annealed_over_a_schedule_with_an_eps_model():
    sched = NoiseSchedule.make("linear", 200, beta_1=5e-4, beta_T=0.1)
    mu, s = torch.tensor([1.0, -2.0]), 0.5
    ts = [200, 100, 50, 20, 10, 5, 2, 1]
    # Algorithm 1's steps are small where the data's own variance dominates σ_t² = 1 − ᾱ_t: many steps per level.
    x = langevin.annealed_langevin_sample(sched, gaussian_eps(sched, mu, s), (4000, 2), 400, 5e-5, generator=gen(9),
                                          timesteps=ts)
    assert torch.allclose(x.mean(0), mu, atol=0.05)
    assert torch.allclose(x.std(0), torch.full((2,), s), rtol=0.06)


def test_annealed_errors():
    zero = lambda x, s: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="decreasing"):
        langevin.annealed_langevin_sample(torch.tensor([0.1, 1.0]), zero, (4, 2), 1, 0.1)
    with pytest.raises(ValueError, match="steps_each"):
        langevin.annealed_langevin_sample(torch.tensor([1.0, 0.1]), zero, (4, 2), 0, 0.1)
    with pytest.raises(ValueError, match="timesteps"):
        langevin.annealed_langevin_sample(NoiseSchedule.make("linear", 10), zero, (4, 2), 1, 0.1, timesteps=[1, 5])


# ---------------------------------------------------------------- predictor–corrector


def test_snr_step_size_hits_the_target_ratio():
    s, z = torch.randn(1, 5), torch.randn(1, 5)
    d = langevin.snr_step_size(s, z, 0.2)
    assert math.isclose(((d / 2 * s).norm() / (d.sqrt() * z).norm()).item(), 0.2, rel_tol=1e-5)
    assert torch.isclose(langevin.snr_step_size(s, z, 0.2, alpha=0.5), d / 2)


def test_pc_without_corrector_is_ddpm_sample():
    sched = NoiseSchedule.make("linear", 50, beta_1=2e-3, beta_T=0.4)
    eps = gaussian_eps(sched, torch.tensor([0.5, 0.5]), 0.3)
    a = langevin.pc_sample(sched, eps, (64, 2), corrector_steps=0, generator=gen(10))
    b = ddpm_sample(sched, eps, (64, 2), generator=gen(10))
    assert torch.allclose(a, b, atol=1e-6)


def test_pc_with_exact_model_matches_the_data_moments():
    sched = NoiseSchedule.make("linear", 100, beta_1=1e-3, beta_T=0.2)
    mu, s = torch.tensor([1.0, -1.0]), 0.4
    x, traj = langevin.pc_sample(sched, gaussian_eps(sched, mu, s), (8000, 2), corrector_steps=2, snr=0.16,
                                 generator=gen(11), return_trajectory=True)
    assert traj.shape == (101, 8000, 2)
    assert torch.allclose(x.mean(0), mu, atol=0.03)
    assert torch.allclose(x.std(0), torch.full((2,), s), rtol=0.06)


def test_pc_errors():
    sched = NoiseSchedule.make("linear", 10)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="corrector_steps"):
        langevin.pc_sample(sched, zero, (4, 2), corrector_steps=-1)
    with pytest.raises(ValueError, match="snr"):
        langevin.pc_sample(sched, zero, (4, 2), snr=0.0)
    with pytest.raises(TypeError, match="schedule"):
        langevin.pc_sample(object(), zero, (4, 2))


@pytest.mark.parametrize("sampler", ["ddpm", "annealed", "pc"])
@pytest.mark.parametrize("shape", [(), (0, 2)])
def test_samplers_refuse_an_empty_batch(sampler, shape):
    sched = NoiseSchedule.make("linear", 10)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    run = {"ddpm": lambda: ddpm_sample(sched, zero, shape),
           "annealed": lambda: langevin.annealed_langevin_sample(geometric_sigmas(1.0, 0.1, 3), zero, shape),
           "pc": lambda: langevin.pc_sample(sched, zero, shape)}[sampler]
    with pytest.raises(ValueError, match="positive batch size"):
        run()


# ---------------------------------------------------------------- lesson 07's checks


def _result(chk, *fns):
    return chk(*fns, quiet=True)


def test_checks_pass_minidiffs_functions():
    for r in (_result(check.langevin_sample, langevin.langevin_step, langevin.langevin_sample),
              _result(check.annealed_langevin_sample, langevin.annealed_langevin_sample),
              _result(check.pc_sample, langevin.pc_sample)):
        assert r.status == "ok" and r.passed == r.total > 0, r.messages


def _step_delta_noise(x, score, step_size, generator=None):
    return x + 0.5 * step_size * score + step_size * randn(x.shape, generator, x.device, x.dtype)


def _step_no_half(x, score, step_size, generator=None):
    return x + step_size * score + step_size**0.5 * randn(x.shape, generator, x.device, x.dtype)


def _chain_one_short(score_fn, x0, steps, step_size, generator=None, return_trajectory=False):
    def step(x, k, k_next):
        return langevin.langevin_step(x, score_fn(x), step_size, generator)

    return simulate(step, x0, list(range(steps)), return_trajectory=return_trajectory)


def _annealed(mistake):
    def fn(sigmas, score_model, shape, steps_each=100, step_lr=2e-5, generator=None, x_init=None, denoise=True,
           return_trajectory=False, device=None):
        x = (1.0 if mistake == "start" else float(sigmas[0])) * randn(shape, generator) if x_init is None else x_init
        for i, s in enumerate(sigmas):
            delta = step_lr * float(s) ** 2 if mistake == "no_division" else step_lr * float(s / sigmas[-1]) ** 2
            for _ in range(steps_each):
                x = langevin.langevin_step(x, score_model(x, s.expand(shape[0])), delta, generator)
        if denoise:
            x = x + float(sigmas[-1]) ** (1 if mistake == "tweedie_sigma" else 2) * score_model(x, sigmas[-1].expand(shape[0]))
        return x
    return fn


def _pc(mistake):
    @torch.no_grad()
    def fn(schedule, eps_model, shape, device=None, corrector_steps=1, snr=0.16, generator=None):
        def step(x, t, t_next):
            tt = torch.full((shape[0],), t, dtype=torch.long)
            x = ddpm_step(schedule, eps_model(x, tt), x, tt, generator=generator)
            if t_next >= 1:
                level = t if mistake == "sigma_t" else t_next
                sigma = (1 - schedule.alphas_cumprod[level]).sqrt().item()
                for _ in range(corrector_steps):
                    score = -eps_model(x, tt - 1) / sigma
                    z = randn(x.shape, generator)
                    delta = langevin.snr_step_size(score, z, snr, schedule.alphas[t_next].item())
                    delta = delta / 2 if mistake == "half" else delta
                    x = x + 0.5 * delta * score + (delta if mistake == "delta_noise" else delta.sqrt()) * z
            return x

        return simulate(step, randn(shape, generator), list(range(schedule.T, -1, -1)))
    return fn


@pytest.mark.parametrize("chk, fns, hint", [
    (check.langevin_sample, (_step_delta_noise, langevin.langevin_sample), "instead of √δ·z"),
    (check.langevin_sample, (_step_no_half, langevin.langevin_sample), "factor ½"),
    (check.langevin_sample, (langevin.langevin_step, _chain_one_short), "one step too few"),
    (check.annealed_langevin_sample, (_annealed("no_division"),), "division by σ_L²"),
    (check.annealed_langevin_sample, (_annealed("start"),), "multiply z by σ_1"),
    (check.annealed_langevin_sample, (_annealed("tweedie_sigma"),), "σ_L squared"),
    (check.pc_sample, (_pc("half"),), "needs the 4"),
    (check.pc_sample, (_pc("sigma_t"),), "level t − 1"),
    (check.pc_sample, (_pc("delta_noise"),), "not δ·z"),
])
def test_checks_name_the_mistake(chk, fns, hint):
    r = _result(chk, *fns)
    assert r.passed < r.total and any(hint in m for m in r.messages), r.messages


def test_checks_of_a_stub_say_not_attempted():
    def stub(*args, **kwargs):
        raise NotImplementedError

    for chk, fns in ((check.langevin_sample, (stub, stub)), (check.annealed_langevin_sample, (stub,)),
                     (check.pc_sample, (stub,))):
        r = _result(chk, *fns)
        assert r.status == "not attempted" and r.score == 0
