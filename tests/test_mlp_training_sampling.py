"""Lesson 04 modules: EpsMLP (mlp.py), L_simple (losses.py) and the training loop (training.py),
DDPM ancestral sampling (sampling.py), and the lesson's checks. Oracles are closed forms, not
stored numbers."""

import math
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from minidiff.data import toy
from minidiff.eval import metrics
from minidiff.forward import add_noise, predict_x0, q_posterior_mean_var, reverse_variances
from minidiff.losses import ddpm_loss, sample_timesteps
from minidiff.mlp import EpsMLP
from minidiff.sampling import ddpm_sample, ddpm_step, trajectory_timesteps
from minidiff.schedules import NoiseSchedule, extract
from minidiff.training import TrainResult, smooth, train
from minidiff.utils import count_parameters


def sched(T=100):
    return NoiseSchedule.make("linear", T=T, beta_1=1e-4 * 1000 / T, beta_T=min(0.02 * 1000 / T, 0.5))


# ---------------------------------------------------------------- EpsMLP


def test_mlp_shapes_and_time_dependence():
    torch.manual_seed(0)
    m = EpsMLP(hidden=32, depth=2)
    torch.nn.init.normal_(m.out.weight)  # the output layer starts at zero on purpose
    x = torch.randn(5, 2)
    out1 = m(x, torch.full((5,), 3))
    out2 = m(x, torch.full((5,), 300))
    assert out1.shape == (5, 2)
    assert not torch.allclose(out1, out2), "the prediction must depend on t"
    assert torch.allclose(m(x, torch.tensor(3)), out1), "a scalar t is broadcast over the batch"


def test_mlp_starts_at_zero_and_rejects_bad_input():
    m = EpsMLP(hidden=16)
    assert torch.equal(m(torch.randn(4, 2), torch.ones(4, dtype=torch.long)), torch.zeros(4, 2))
    assert count_parameters(m) > 0
    with pytest.raises(ValueError, match="shape"):
        m(torch.randn(4, 3), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="t must have shape"):
        m(torch.randn(4, 2), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError):
        EpsMLP(emb_dim=7)


# ---------------------------------------------------------------- L_simple


def test_timesteps_cover_1_to_T():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(sched(10), 5000, "cpu", g)
    assert t.dtype == torch.long and int(t.min()) == 1 and int(t.max()) == 10


def test_ddpm_loss_of_the_optimal_predictor_for_gaussian_data():
    # x_0 ~ N(0, I) gives q(x_t) = N(0, I) for every t, so the best ε-predictor is
    # ε*(x_t) = √(1 − ᾱ_t) x_t, and E(ε − ε*)² = ᾱ_t per coordinate. Averaged over t ~ U{1..T}:
    s = sched(50)
    g = torch.Generator().manual_seed(0)

    def oracle(x_t, t):
        return (1 - s.alphas_cumprod[t]).sqrt().float()[:, None] * x_t

    x0 = torch.randn(200_000, 2, generator=g)
    loss = ddpm_loss(s, oracle, x0, generator=g).item()
    expected = s.alphas_cumprod[1:].mean().item()
    assert abs(loss - expected) < 0.01, (loss, expected)
    # predicting zero costs E ε² = 1
    zero = ddpm_loss(s, lambda x, t: torch.zeros_like(x), x0, generator=g).item()
    assert abs(zero - 1.0) < 0.01


def test_ddpm_loss_is_reproducible_and_differentiable():
    s = sched(20)
    m = EpsMLP(hidden=16)
    x0 = torch.randn(64, 2)
    a = ddpm_loss(s, m, x0, torch.Generator().manual_seed(3))
    b = ddpm_loss(s, m, x0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.backward()
    assert m.out.weight.grad is not None and m.out.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shaped like x_t"):
        ddpm_loss(s, lambda x, t: x[:, :1], x0)
    with pytest.raises(TypeError):
        ddpm_loss(s, m, torch.ones(4, 2, dtype=torch.long))


def test_train_on_ddpm_loss_lowers_the_loss_and_keeps_an_ema():
    torch.manual_seed(0)
    s = sched(50)
    m = EpsMLP(hidden=32, depth=2, t_scale=1000 / 50)
    g = torch.Generator().manual_seed(0)
    data = toy.sample("gmm8", 2000, g)
    r = train(m, partial(ddpm_loss, s), data, steps=300, batch_size=128, lr=3e-3, ema_decay=0.9, generator=g,
              show_progress=False)
    assert len(r.losses) == 300
    assert sum(r.losses[-50:]) / 50 < 0.8 * sum(r.losses[:10]) / 10
    assert r.ema is not None and r.sampling_model is r.ema.model
    assert not any(p.requires_grad for p in r.sampling_model.parameters())
    # a function that draws fresh data works too
    r2 = train(EpsMLP(hidden=16), partial(ddpm_loss, s), lambda n, g: toy.sample("moons", n, g), steps=5,
               show_progress=False)
    assert r2.ema is None and r2.sampling_model is r2.model
    with pytest.raises(TypeError, match="data must be"):
        train(m, partial(ddpm_loss, s), "gmm8", steps=1, show_progress=False)
    assert smooth([1.0, 3.0, 5.0], window=2).tolist() == [2.0, 4.0]


# ---------------------------------------------------------------- sampling


def test_ddpm_step_matches_the_posterior_mean_form():
    # Algorithm 2's mean equals μ̃_t(x̂_0, x_t) of eq. 7 with x̂_0 from eq. 4 (DDPM eq. 11).
    s = sched(100)
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(8, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(8, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 5, 10, 50, 99, 100, 37])
    zero = torch.zeros_like(x_t)
    out = ddpm_step(s, eps, x_t, t, noise=zero)
    mean, var = q_posterior_mean_var(s, predict_x0(s, x_t, t, eps), x_t, t)
    assert torch.allclose(out, mean, atol=1e-10)
    assert torch.allclose(ddpm_step(s, eps, x_t, t, noise=zero, clip_denoised=1e6), mean, atol=1e-10)
    # the noise is scaled by σ_t, except at t = 1
    z = torch.ones_like(x_t)
    for sigma2, sig2 in (("beta_tilde", var), ("beta", s.betas[t].reshape(-1, 1))):
        step = ddpm_step(s, eps, x_t, t, noise=z, sigma2=sigma2) - out
        expected = sig2.sqrt().expand_as(x_t).clone()
        expected[0] = 0.0
        assert torch.allclose(step, expected, atol=1e-10), sigma2
    assert torch.allclose(reverse_variances(s, "beta_tilde")[t][1:, None], var[1:])  # β̃_1 = 0 is replaced by β_1


def test_ddpm_step_accepts_a_model_and_any_shape():
    s = sched(10)
    x = torch.randn(3, 1, 4, 4)
    calls = []

    def model(x_t, t):
        calls.append((tuple(x_t.shape), t.dtype, tuple(t.shape)))
        return 0.5 * x_t

    a = ddpm_step(s, model, x, 7, noise=torch.zeros_like(x))
    b = ddpm_step(s, 0.5 * x, x, torch.full((3,), 7), noise=torch.zeros_like(x))
    assert torch.allclose(a, b) and a.shape == x.shape
    assert calls == [((3, 1, 4, 4), torch.long, (3,))]
    with pytest.raises(ValueError, match="must lie in 1..10"):
        ddpm_step(s, x, x, 0)
    with pytest.raises(TypeError, match="integer"):
        ddpm_step(s, x, x, torch.full((3,), 2.0))
    with pytest.raises(ValueError, match="sigma2"):
        ddpm_step(s, x, x, 2, sigma2="large")


def test_ddpm_sample_trajectory_and_reproducibility():
    s = sched(12)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x0, traj = ddpm_sample(s, model, (4, 1, 2, 2), generator=torch.Generator().manual_seed(1), return_trajectory=True)
    assert x0.shape == (4, 1, 2, 2) and traj.shape == (13, 4, 1, 2, 2)
    assert torch.equal(traj[-1], x0)
    again = ddpm_sample(s, model, (4, 1, 2, 2), generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, x0)
    _, short = ddpm_sample(s, model, (4, 2), return_trajectory=True, trajectory_stride=5)
    assert trajectory_timesteps(12, 5) == [12, 7, 2, 0] and short.shape[0] == 4


def test_sampling_with_the_exact_noise_predictor_recovers_the_mixture():
    # With the true ε*(x_t, t) = −√(1 − ᾱ_t) ∇log q_t(x_t) (known in closed form for a
    # Gaussian mixture), Algorithm 2 must reproduce the data up to the floor of the metric.
    s = NoiseSchedule.make("linear", T=200, beta_1=5e-4, beta_T=0.1)
    p = toy.density("gmm8")

    def oracle(x_t, t):
        ab = s.alphas_cumprod[t]
        return -(1 - ab).sqrt().to(x_t.dtype)[:, None] * p.noised_score(x_t, ab)

    g = torch.Generator().manual_seed(0)
    x = ddpm_sample(s, oracle, (4000, 2), generator=g)
    data = lambda n, g: toy.sample("gmm8", n, g)  # noqa: E731
    q = metrics.quality(x, data, chunk=500, generator=g)
    assert q.ratio < 1.4, q
    # ...and samples shrunk by 10% (a wrong scale somewhere) sit far above the floor: the test can fail
    assert metrics.quality(0.9 * x, data, chunk=500, generator=g).ratio > 2


# ---------------------------------------------------------------- lesson 04 checks

# The notebook's solutions, written the way a learner would (not minidiff's code).


def _loss(schedule, model, x0, generator=None):
    t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    return F.mse_loss(model(add_noise(schedule, x0, noise, t), t), noise)


def _train(model, loss_fn, data, steps, batch_size=128, lr=1e-3, generator=None, decay=True, weight_decay=0.0,
           zero_grad=True, as_list=False):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps)) if decay else lr
        loss = loss_fn(model, data[torch.randint(len(data), (batch_size,), generator=generator)], generator)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses if as_list else TrainResult(model=model, ema=None, losses=losses)


def _step(schedule, eps, x_t, t, noise):
    beta, alpha = extract(schedule.betas, t, x_t), extract(schedule.alphas, t, x_t)
    abar = extract(schedule.alphas_cumprod, t, x_t)
    mean = (x_t - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    last = (t == 1).reshape(-1, *([1] * (x_t.dim() - 1)))
    return mean + torch.where(last, torch.zeros_like(beta), beta.sqrt()) * noise


def _sample(schedule, model, shape, device="cpu", generator=None, return_trajectory=False, first=1, noise=True,
            no_grad=True):
    x = torch.randn(shape, generator=generator)
    traj = [x]
    for t in range(schedule.T, first - 1, -1):
        tt = torch.full((shape[0],), t, dtype=torch.long)
        with torch.set_grad_enabled(not no_grad):
            eps = model(x, tt)
        z = torch.randn(shape, generator=generator) if noise else torch.zeros(shape)
        x = _step(schedule, eps, x, tt, z)
        traj.append(x)
    return (x, torch.stack(traj)) if return_trajectory else x


def _hinted(result, words):
    return result.score < result.points and any(words in m for m in result.messages)


def test_lesson04_checks_pass_the_solutions_and_minidiff():
    from minidiff.course.checks import lesson04 as check
    from minidiff.embedding import timestep_embedding

    def step(schedule, eps, x_t, t, noise):
        return ddpm_step(schedule, eps, x_t, t, noise=noise, sigma2="beta")

    cases = [(check.timestep_embedding, timestep_embedding), (check.ddpm_loss, _loss), (check.ddpm_loss, ddpm_loss),
             (check.train, _train), (check.train, train), (check.ddpm_step, _step), (check.ddpm_step, step),
             (check.ddpm_sample, _sample), (check.ddpm_sample, ddpm_sample)]
    for fn, ref in cases:
        r = fn(ref, quiet=True)
        assert r.status == "ok" and r.score == r.points, (r.exercise, ref, r.messages)


def test_lesson04_checks_name_common_mistakes():
    from minidiff.course.checks import lesson04 as check
    from minidiff.embedding import timestep_embedding

    swapped = check.timestep_embedding(lambda t, d: timestep_embedding(t, d).roll(d // 2, 1), quiet=True)
    assert _hinted(swapped, "swapped")

    # the loss: summed over the coordinates; returned as a float; ε drawn before t (right in distribution)
    def summed(schedule, model, x0, generator=None):
        t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        return (model(add_noise(schedule, x0, noise, t), t) - noise).pow(2).sum(1).mean()

    assert _hinted(check.ddpm_loss(summed, quiet=True), "average over the coordinates")
    r = check.ddpm_loss(lambda s, m, x0, g=None: _loss(s, m, x0, g).item(), quiet=True)
    assert _hinted(r, "not loss.item()")

    def noise_first(schedule, model, x0, generator=None):
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator)
        return F.mse_loss(model(add_noise(schedule, x0, noise, t), t), noise)

    r = check.ddpm_loss(noise_first, quiet=True)
    assert r.total - r.passed == 1 and _hinted(r, "draw t first"), r.messages  # only the same-numbers test fails

    # the loop: no decay, AdamW's default weight decay, no zero_grad, a list instead of a TrainResult
    for kw, words in ((dict(decay=False), "must decay"), (dict(weight_decay=0.01), "weight_decay=0.0"),
                      (dict(zero_grad=False), "zero_grad"), (dict(as_list=True), "TrainResult")):
        r = check.train(partial(_train, **kw), quiet=True)
        assert _hinted(r, words), (kw, r.messages)

    # the step
    r = check.ddpm_step(lambda s, e, x, t, z: ddpm_step(s, e, x, t, noise=z, sigma2="beta_tilde"), quiet=True)
    assert _hinted(r, "β̃"), r.messages

    # the sampler: no noise, stopping at t = 2, going past t = 1, no torch.no_grad, the global random stream
    assert _hinted(check.ddpm_sample(partial(_sample, noise=False), quiet=True), "too narrow")
    assert _hinted(check.ddpm_sample(partial(_sample, first=2), quiet=True), "the last step is t = 1")
    assert _hinted(check.ddpm_sample(partial(_sample, first=0), quiet=True), "no step at t = 0")
    assert _hinted(check.ddpm_sample(partial(_sample, no_grad=False), quiet=True), "torch.no_grad")
    r = check.ddpm_sample(lambda s, m, shape, device="cpu", generator=None, return_trajectory=False:
                          _sample(s, m, shape, device, None, return_trajectory), quiet=True)
    assert r.total - r.passed == 1 and _hinted(r, "draw x_T first"), r.messages  # right distribution, other numbers

    def stub(*args, **kwargs):
        raise NotImplementedError

    for fn in (check.timestep_embedding, check.ddpm_loss, check.train, check.ddpm_step, check.ddpm_sample):
        assert fn(stub, quiet=True).status == "not attempted"
