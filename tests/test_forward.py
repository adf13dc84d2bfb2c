"""minidiff.forward against eqs. 2, 4, 6–7, and its argument checks."""

import pytest
import torch

from minidiff.forward import add_noise, q_mean_var, q_posterior_mean_var, q_step
from minidiff.schedules import NoiseSchedule


@pytest.fixture
def s():
    return NoiseSchedule.make("linear", 1000)


def test_add_noise_closed_form_per_example(s):
    x0, eps = torch.randn(3, 1, 28, 28), torch.randn(3, 1, 28, 28)
    t = torch.tensor([1, 400, 1000])
    out = add_noise(s, x0, eps, t)
    assert out.shape == x0.shape and out.dtype == torch.float32
    for i, ti in enumerate(t.tolist()):  # each image gets its own ᾱ_t
        abar = s.alphas_cumprod[ti].item()
        assert torch.allclose(out[i], abar**0.5 * x0[i] + (1 - abar) ** 0.5 * eps[i], atol=1e-6)
    assert torch.allclose(add_noise(s, x0, eps, 0), x0)  # t = 0: no noise


def test_add_noise_is_accurate_near_t1(s):
    # the noise scale at t = 1 is √β_1 = 0.01; float32 arithmetic on ᾱ_1 would be off by 1e-4 relative
    out = add_noise(s, torch.zeros(1, 1), torch.ones(1, 1), 1)
    assert abs(out.item() - 1e-2) < 1e-8


def test_q_mean_var_matches_add_noise_moments(s):
    x0 = torch.tensor([[2.0, -1.0]]).expand(50_000, 2)
    t = torch.full((50_000,), 300)
    g = torch.Generator().manual_seed(0)
    x_t = add_noise(s, x0, torch.randn(x0.shape, generator=g), t)
    mean, var = q_mean_var(s, x0, t)
    assert torch.allclose(x_t.mean(0), mean[0], atol=0.02)
    assert torch.allclose(x_t.var(0), var[0].expand(2), rtol=0.03)


def test_iterated_q_step_matches_closed_form():
    s = NoiseSchedule.make("cosine", 50)
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((40_000, 1), -1.0)
    x = x0
    for t in range(1, 31):
        x = q_step(s, x, t, torch.randn(x.shape, generator=g))
    mean, var = q_mean_var(s, x0[:1], 30)
    assert abs(x.mean().item() - mean.item()) < 0.02
    assert abs(x.var().item() - var.item()) < 0.03 * var.item()


def test_q_step_closed_form(s):
    x, eps = torch.randn(2, 3), torch.randn(2, 3)
    t = torch.tensor([5, 700])
    out = q_step(s, x, t, eps)
    a, b = s.alphas[t].float().unsqueeze(1), s.betas[t].float().unsqueeze(1)
    assert torch.allclose(out, a.sqrt() * x + b.sqrt() * eps, atol=1e-6)
    assert q_step(s, x, t).shape == x.shape  # draws its own noise when none is given


def test_posterior_matches_bayes_rule():
    """Gaussian prior N(√ᾱ_{t−1} x0, 1 − ᾱ_{t−1}) × likelihood N(x_t; √α_t x_{t−1}, β_t)."""
    s = NoiseSchedule.make("cosine", 100)
    t = torch.arange(2, 101)
    x0 = torch.randn(len(t), 1, dtype=torch.float64)
    x_t = torch.randn(len(t), 1, dtype=torch.float64)
    mean, var = q_posterior_mean_var(s, x0, x_t, t)
    a_prev = s.alphas_cumprod[t - 1].unsqueeze(1)
    alpha, beta = s.alphas[t].unsqueeze(1), s.betas[t].unsqueeze(1)
    precision = 1 / (1 - a_prev) + alpha / beta
    bayes_mean = (a_prev.sqrt() * x0 / (1 - a_prev) + alpha.sqrt() * x_t / beta) / precision
    assert torch.allclose(var, 1 / precision, rtol=1e-10)
    assert torch.allclose(mean, bayes_mean, rtol=1e-10, atol=1e-12)


def test_posterior_by_monte_carlo_conditioning():
    """Sample (x_{t−1}, x_t) from the chain with x_0 fixed, keep pairs whose x_t lands near a value."""
    s = NoiseSchedule.make("linear", 100)
    t, x0 = 20, 1.0
    abar = s.alphas_cumprod[t].item()
    target = abar**0.5 * x0 - 0.5 * (1 - abar) ** 0.5  # half a std below x_t's mean
    g = torch.Generator().manual_seed(2)
    x0s = torch.full((400_000, 1), x0)
    x_prev = add_noise(s, x0s, torch.randn(x0s.shape, generator=g), t - 1)
    x_t = q_step(s, x_prev, t, torch.randn(x0s.shape, generator=g))
    keep = (x_t - target).abs() < 0.01
    mean, var = q_posterior_mean_var(s, torch.tensor([[x0]]), torch.tensor([[target]]), t)
    assert keep.sum() > 2000
    assert abs(x_prev[keep].mean().item() - mean.item()) < 0.01
    assert abs(x_prev[keep].var().item() - var.item()) < 0.1 * var.item()


def test_posterior_edges(s):
    x0, x_t = torch.randn(2, 4), torch.randn(2, 4)
    mean, var = q_posterior_mean_var(s, x0, x_t, torch.tensor([1, 1000]))
    assert torch.allclose(mean[0], x0[0]) and var[0].item() == 0  # t = 1: x_0 is known exactly
    assert var.shape == (2, 1) and 0 < var[1].item() < s.betas[1000].item()  # β̃_t < β_t


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda s: add_noise(s, torch.zeros(2, 3), torch.zeros(2, 4), 1), ValueError, "noise has shape"),
        (lambda s: add_noise(s, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), 1), TypeError, "x0.float"),
        (lambda s: add_noise(s, [0.0, 1.0], torch.zeros(2), 1), TypeError, "x0 must be a torch.Tensor"),
        (lambda s: add_noise(s, torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1.0, 2.0])), TypeError, "integer"),
        (lambda s: add_noise(s, torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1, 2, 3])), ValueError, "shape"),
        (lambda s: add_noise(s, torch.zeros(2, 3), torch.zeros(2, 3), 1001), ValueError, "0..T"),
        (lambda s: add_noise(s.betas, torch.zeros(2, 3), torch.zeros(2, 3), 1), TypeError, "NoiseSchedule"),
        (lambda s: q_step(s, torch.zeros(2, 3), 0), ValueError, "t ≥ 1"),
        (lambda s: q_posterior_mean_var(s, torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1])), ValueError, "t ≥ 1"),
        (lambda s: q_posterior_mean_var(s, torch.zeros(2, 3), torch.zeros(3, 3), 1), ValueError, "same shape|must match"),
    ],
)
def test_bad_arguments_raise_clear_errors(s, call, exc, match):
    with pytest.raises(exc, match=match):
        call(s)


# -- the lesson 02 checks: the reference scores full marks, common mistakes do not -------------

from minidiff.course.checks import lesson02  # noqa: E402
from minidiff.schedules import extract  # noqa: E402


@pytest.mark.parametrize(
    "check, fn",
    [(lesson02.q_step, q_step), (lesson02.add_noise, add_noise), (lesson02.q_posterior_mean_var, q_posterior_mean_var)],
)
def test_lesson02_checks_accept_the_reference(check, fn):
    r = check(fn, quiet=True)
    assert r.score == r.points, "\n".join(r.messages)


def _add_noise_variance_not_std(s, x0, noise, t):
    abar = extract(s.alphas_cumprod, t, x0)
    return abar.sqrt() * x0 + (1 - abar) * noise


def _add_noise_no_reshape(s, x0, noise, t):
    abar = s.alphas_cumprod[t].float()
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def _add_noise_float32(s, x0, noise, t):
    if noise.shape != x0.shape:
        raise ValueError("shapes differ")
    abar = extract(s.alphas_cumprod, t, x0)  # cast to float32 before 1 − ᾱ_t
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def _add_noise_no_shape_check(s, x0, noise, t):
    abar = s.alphas_cumprod
    return extract(abar.sqrt(), t, x0) * x0 + extract((1 - abar).sqrt(), t, x0) * noise


def _q_step_with_abar(s, x, t, noise=None):
    return add_noise(s, x, noise, t)


def _q_step_no_t_check(s, x, t, noise=None):
    noise = torch.randn_like(x) if noise is None else noise
    return extract(s.alphas.sqrt(), t, x) * x + extract(s.betas.sqrt(), t, x) * noise


def _q_step_noise_required(s, x, t, noise):
    return q_step(s, x, t, noise)


def _posterior_std_not_var(s, x0, x_t, t):
    mean, var = q_posterior_mean_var(s, x0, x_t, t)
    return mean, var.sqrt()


@pytest.mark.parametrize(
    "check, wrong, hint",
    [
        (lesson02.add_noise, _add_noise_variance_not_std, "variance vs std"),
        (lesson02.add_noise, _add_noise_no_reshape, "reshaped to (B, 1, 1, …)"),
        (lesson02.add_noise, _add_noise_float32, "float64 schedule"),
        (lesson02.add_noise, _add_noise_no_shape_check, "compare noise.shape with x0.shape"),
        (lesson02.q_step, _q_step_with_abar, "not √ᾱ_t"),
        (lesson02.q_step, _q_step_no_t_check, "raise ValueError when any t < 1"),
        (lesson02.q_step, _q_step_noise_required, "noise=None"),
        (lesson02.q_posterior_mean_var, _posterior_std_not_var, "variance vs std"),
    ],
)
def test_lesson02_checks_catch_common_mistakes(check, wrong, hint):
    r = check(wrong, quiet=True)
    assert r.score < r.points
    assert hint in "\n".join(r.messages)
