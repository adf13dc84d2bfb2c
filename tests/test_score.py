"""minidiff.score: exact scores against autograd, ε ↔ score against the Gaussian kernel's gradient,
DSM against Vincent's identity (Monte Carlo), and a short training run against the exact score."""

import math

import pytest
import torch
from helpers import gen, random_mixture_params

from minidiff import score
from minidiff.data import toy
from minidiff.data.toy import GaussianMixture
from minidiff.mlp import EpsMLP
from minidiff.schedules import NoiseSchedule, extract

torch.set_num_threads(1)


def random_mixture(seed=0, K=3, D=2):
    means, std, weights = random_mixture_params(seed, K, D)
    return means, std, weights / weights.sum()


# ---------------------------------------------------------------- exact scores


def test_mixture_score_is_grad_log_prob():
    means, std, weights = random_mixture(1, K=4, D=3)
    x = (2 * torch.randn(100, 3, generator=gen(2), dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(GaussianMixture(means, std, weights).log_prob(x).sum(), x)
    assert torch.allclose(score.mixture_score(x.detach(), means, std, weights), grad, atol=1e-10)


def test_mixture_score_of_one_gaussian_points_to_the_mean():
    x = torch.randn(10, 2, dtype=torch.float64)
    mu = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    assert torch.allclose(score.mixture_score(x, mu, 0.5), (mu - x) / 0.25)


def test_ve_noised_is_the_rescaled_vp_noised_mixture():
    """Eq. 6.10: x̃ = x_t/√ᾱ with σ² = (1 − ᾱ)/ᾱ, so ∇ log q_σ(x̃) = √ᾱ ∇ log q_t(√ᾱ x̃)."""
    p = GaussianMixture(*random_mixture(3))
    sigma = 0.7
    abar = 1 / (1 + sigma**2)
    x = torch.randn(50, 2, generator=gen(4), dtype=torch.float64)
    ve = score.ve_noised(p, sigma).score(x)
    vp = math.sqrt(abar) * p.noised(abar).score(math.sqrt(abar) * x)
    assert torch.allclose(ve, vp, atol=1e-10)


def test_ve_noised_matches_monte_carlo_moments():
    p = GaussianMixture(*random_mixture(5))
    q = score.ve_noised(p, 1.3)
    x = p.sample(200_000, gen(6)).double()
    x = x + 1.3 * torch.randn(x.shape, generator=gen(7), dtype=torch.float64)
    assert torch.allclose(x.mean(0), q.mean(), atol=0.02)
    assert torch.allclose(torch.cov(x.T), q.cov(), atol=0.05)


def test_ve_noised_rejects_negative_sigma():
    with pytest.raises(ValueError, match="sigma"):
        score.ve_noised(toy.density("gmm8"), -0.1)


# ---------------------------------------------------------------- ε ↔ score


def test_eps_to_score_is_the_gradient_of_the_noise_kernel():
    s = NoiseSchedule.make("cosine", 100)
    t = torch.tensor([1, 7, 50, 100])
    x0 = torch.randn(4, 3, dtype=torch.float64)
    eps = torch.randn(4, 3, dtype=torch.float64)
    abar = s.alphas_cumprod[t][:, None]
    xt = (abar.sqrt() * x0 + (1 - abar).sqrt() * eps).requires_grad_(True)
    log_q = -((xt - abar.sqrt() * x0) ** 2 / (2 * (1 - abar))).sum()
    (grad,) = torch.autograd.grad(log_q, xt)
    assert torch.allclose(score.eps_to_score(s, eps, t), grad)


def test_score_to_eps_inverts_eps_to_score_for_images():
    s = NoiseSchedule.make("linear", 1000)
    eps = torch.randn(3, 1, 4, 4)
    t = torch.tensor([1, 500, 1000])
    back = score.score_to_eps(s, score.eps_to_score(s, eps, t), t)
    assert back.shape == eps.shape and back.dtype == torch.float32
    assert torch.allclose(back, eps, atol=1e-5)


def test_eps_to_score_rejects_t_zero():
    s = NoiseSchedule.make("linear", 10)
    with pytest.raises(ValueError, match="1..T"):
        score.eps_to_score(s, torch.randn(2, 2), torch.tensor([0, 3]))


def test_exact_eps_model_gives_the_exact_noised_score():
    """ε*(x_t, t) = −√(1 − ᾱ_t) ∇ log q_t; score_fn_from_eps must give ∇ log q_t back."""
    p = toy.density("gmm8")
    s = NoiseSchedule.make("linear", 200, beta_1=5e-4, beta_T=0.1)
    t = torch.full((64,), 30)
    abar = s.alphas_cumprod[30].item()
    x = p.noised(abar).sample(64, gen(8))
    eps_star = lambda x_t, tt: -math.sqrt(1 - abar) * p.noised(abar).score(x_t)  # noqa: E731
    got = score.score_fn_from_eps(s, eps_star)(x, t)
    assert torch.allclose(got, p.noised(abar).score(x), rtol=1e-5, atol=1e-5)


def test_ve_sigmas_of_schedule():
    s = NoiseSchedule.make("linear", 1000)
    sig = score.ve_sigmas_of(s)
    assert sig.shape == (1001,) and sig[0] == 0
    abar = s.alphas_cumprod[500]
    assert torch.isclose(sig[500], ((1 - abar) / abar).sqrt())
    assert (sig[1:] > sig[:-1]).all()


# ---------------------------------------------------------------- noise levels and DSM


def test_geometric_sigmas():
    sig = score.geometric_sigmas(4.0, 0.02, 40)
    assert sig.shape == (40,)
    assert math.isclose(sig[0].item(), 4.0, rel_tol=1e-6) and math.isclose(sig[-1].item(), 0.02, rel_tol=1e-6)
    ratios = sig[:-1] / sig[1:]
    assert torch.allclose(ratios, ratios[0].expand(39), rtol=1e-5)
    with pytest.raises(ValueError):
        score.geometric_sigmas(0.02, 4.0, 10)


def test_dsm_objective_is_zero_for_the_conditional_score_and_half_z_squared_for_zero():
    x0, z = torch.randn(32, 3), torch.randn(32, 3)
    sigma = 0.1 + torch.rand(32)
    oracle = lambda xt, s: -(xt - x0) / s[:, None] ** 2  # noqa: E731
    assert score.dsm_objective(oracle, x0, sigma, z).abs() < 1e-5
    zero = lambda xt, s: torch.zeros_like(xt)  # noqa: E731
    assert torch.isclose(score.dsm_objective(zero, x0, sigma, z), 0.5 * z.pow(2).sum(1).mean())


def test_dsm_satisfies_vincents_identity():
    """DSM(s) − DSM(∇ log q_σ) = ½ σ² E‖s − ∇ log q_σ‖²  (eq. 6.5 times σ²)."""
    p = toy.density("gmm8")
    sigma = 0.4
    q = score.ve_noised(p, sigma)
    exact = lambda xt, s: q.score(xt)  # noqa: E731
    shift = torch.tensor([0.5, -0.3], dtype=torch.float64)
    wrong = lambda xt, s: 0.7 * q.score(xt) + shift  # noqa: E731
    n = 400_000
    x0 = p.sample(n, gen(9)).double()
    z = torch.randn(n, 2, generator=gen(10), dtype=torch.float64)
    sig = torch.full((n,), sigma, dtype=torch.float64)
    gap = score.dsm_objective(wrong, x0, sig, z) - score.dsm_objective(exact, x0, sig, z)
    xt = q.sample(n, gen(11)).double()  # independent samples of q_σ for the right-hand side
    esm = 0.5 * sigma**2 * (wrong(xt, sig) - exact(xt, sig)).pow(2).sum(1).mean()
    assert abs(gap.item() / esm.item() - 1) < 0.03


def test_dsm_loss_draws_from_the_given_levels():
    seen = []

    def spy(x, s):
        seen.append(s.clone())
        return torch.zeros_like(x)

    levels = torch.tensor([2.0, 0.5, 0.1])
    loss = score.dsm_loss(levels, spy, torch.randn(500, 2), gen(12))
    assert loss.dim() == 0
    used = torch.unique(seen[0])
    assert set(used.tolist()) <= set(levels.tolist()) and len(used) == 3


def test_dsm_errors_name_the_argument():
    with pytest.raises(ValueError, match="noise"):
        score.dsm_objective(lambda x, s: x, torch.randn(4, 2), 1.0, torch.randn(4, 3))
    with pytest.raises(ValueError, match="sigma"):
        score.dsm_objective(lambda x, s: x, torch.randn(4, 2), torch.ones(3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="sigma"):
        score.dsm_objective(lambda x, s: x, torch.randn(4, 2), 0.0, torch.randn(4, 2))
    with pytest.raises(ValueError, match="score_model"):
        score.dsm_objective(lambda x, s: x[:, :1], torch.randn(4, 2), 1.0, torch.randn(4, 2))
    with pytest.raises(TypeError, match="x0"):
        score.dsm_loss(torch.ones(2), lambda x, s: x, torch.ones(4, 2, dtype=torch.long))


# ---------------------------------------------------------------- the network


def test_noise_conditional_score_shapes_and_scaling():
    net = score.NoiseConditionalScore()
    x = torch.randn(5, 2)
    assert net(x, 0.5).shape == (5, 2)
    assert torch.equal(net(x, 0.5), torch.zeros(5, 2))  # zero-initialised output layer
    torch.nn.init.normal_(net.eps_net.out.weight)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0])
    eps = net.eps_net(x / torch.sqrt(1 + sigma[:, None] ** 2), 100 * torch.log(sigma))
    assert torch.allclose(net(x, sigma), -eps / sigma[:, None])  # eq. 6.8
    with pytest.raises(ValueError, match="sigma"):
        net(x, torch.ones(4))


def test_short_dsm_training_learns_the_noised_score():
    from functools import partial

    from minidiff.training import train

    torch.manual_seed(0)
    p = toy.density("gmm8")
    net = score.NoiseConditionalScore(hidden=64, depth=2)
    sigmas = score.geometric_sigmas(4.0, 0.05, 20)
    before = []
    for sigma in (0.5, 1.0):
        q = score.ve_noised(p, sigma)
        x = q.sample(1000, gen(13))
        with torch.no_grad():
            before.append(score.relative_score_error(net(x, sigma), q.score(x)))
    train(net, partial(score.dsm_loss, sigmas), lambda n, g: toy.sample("gmm8", n, g), 400, lr=3e-3,
          generator=gen(14), show_progress=False)
    for sigma, b in zip((0.5, 1.0), before):
        q = score.ve_noised(p, sigma)
        x = q.sample(1000, gen(15))
        with torch.no_grad():
            err = score.relative_score_error(net(x, sigma), q.score(x))
        assert b == pytest.approx(1.0)  # the zero-initialised network predicts 0
        assert err < 0.35, f"σ = {sigma}: relative error {err:.3f} after training (1.0 before)"


# ---------------------------------------------------------------- lesson 06 checks

# The notebook's solutions, written the way a learner would (not minidiff's code).


def _mixture_score(x, means, stds, weights):
    diff = means[None] - x[:, None]
    var = stds**2
    logits = torch.log(weights) - 0.5 * x.shape[1] * torch.log(var) - diff.pow(2).sum(-1) / (2 * var)
    return (torch.softmax(logits, dim=1)[:, :, None] * diff / var[None, :, None]).sum(1)


def _dsm_loss(sigmas, score_model, x0, generator=None, half=0.5, power=1, per_row=True, weighted=True):
    idx = torch.randint(len(sigmas), (x0.shape[0] if per_row else 1,), generator=generator)
    sigma = sigmas[idx].to(x0).expand(x0.shape[0])
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    out = score_model(x0 + s**power * noise, sigma)
    return half * ((s * out + noise) if weighted else (out + noise / s)).pow(2).flatten(1).sum(1).mean()


def _ncs(c_in=True, divide=True, log=True):
    class Net(torch.nn.Module):
        def __init__(self, dim=2, hidden=128, depth=3, emb_dim=32):
            super().__init__()
            self.eps_net = EpsMLP(dim=dim, hidden=hidden, depth=depth, emb_dim=emb_dim)

        def forward(self, x, sigma):
            sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
            s = sigma[:, None]
            eps = self.eps_net(x / torch.sqrt(1 + s**2) if c_in else x, 100 * torch.log(sigma) if log else sigma)
            return -eps / s if divide else -eps

    return Net


def _score_fn_from_eps(schedule, eps_model, var=False):
    def score_fn(x_t, t):
        eps = eps_model(x_t, t)
        one_minus = 1 - extract(schedule.alphas_cumprod, t, eps)
        return -eps / (one_minus if var else one_minus.sqrt())

    return score_fn


def _hinted(result, words):
    return result.score < result.points and any(words in m for m in result.messages)


def test_lesson06_checks_pass_the_solutions_and_minidiff():
    from minidiff.course.checks import lesson06 as check

    cases = [(check.mixture_score, _mixture_score), (check.mixture_score, score.mixture_score),
             (check.dsm_loss, _dsm_loss), (check.dsm_loss, score.dsm_loss),
             (check.NoiseConditionalScore, _ncs()), (check.NoiseConditionalScore, score.NoiseConditionalScore),
             (check.score_fn_from_eps, _score_fn_from_eps), (check.score_fn_from_eps, score.score_fn_from_eps)]
    for fn, ref in cases:
        r = fn(ref, quiet=True)
        assert r.status == "ok" and r.score == r.points, (r.exercise, ref, r.messages)


def test_lesson06_checks_name_common_mistakes():
    from functools import partial

    from minidiff.course.checks import lesson06 as check

    r = check.mixture_score(lambda x, m, s, w: _mixture_score(x, m, s, w) * s.mean(), quiet=True)
    assert r.score < r.points
    for kw, words in ((dict(half=1.0), "½ is missing"), (dict(per_row=False), "one per row"),
                      (dict(weighted=False), "λ(σ) = σ² is missing"), (dict(power=2), "σ, not σ²")):
        r = check.dsm_loss(partial(_dsm_loss, **kw), quiet=True)
        assert _hinted(r, words), (kw, r.messages)
    for kw, words in ((dict(c_in=False), "c_in"), (dict(divide=False), "divide the network's output by σ"),
                      (dict(log=False), "100 · log σ")):
        r = check.NoiseConditionalScore(_ncs(**kw), quiet=True)
        assert _hinted(r, words), (kw, r.messages)
    r = check.score_fn_from_eps(partial(_score_fn_from_eps, var=True), quiet=True)
    assert _hinted(r, "not the variance")

    def stub(*args, **kwargs):
        raise NotImplementedError

    class Stub(torch.nn.Module):
        def __init__(self, dim=2, hidden=128, depth=3, emb_dim=32):
            super().__init__()
            self.eps_net = EpsMLP(dim=dim, hidden=hidden, depth=depth, emb_dim=emb_dim)

        def forward(self, x, sigma):
            raise NotImplementedError

    for fn, obj in ((check.mixture_score, stub), (check.dsm_loss, stub), (check.NoiseConditionalScore, Stub),
                    (check.score_fn_from_eps, stub)):
        assert fn(obj, quiet=True).status == "not attempted"
