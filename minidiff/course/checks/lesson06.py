"""Checks for lesson 06, score matching.

    from minidiff.course.checks import lesson06 as check
    check.mixture_score(mixture_score)                    # ∇ log of a Gaussian mixture
    check.dsm_loss(dsm_loss)                              # denoising score matching on one batch
    check.NoiseConditionalScore(NoiseConditionalScore)    # s_θ(x̃, σ) = −ε_θ(c_in x̃, c_noise)/σ
    check.score_fn_from_eps(score_fn_from_eps)            # an ε-model read as a score model

Each check tests closed forms first (one Gaussian, a model that knows the noise, t = 1 and
t = T, autograd of log p), then compares with minidiff's reference on random inputs. The loss
check reads the σ and z that the learner drew back from what the model was called with, so
that its expected value is exact whatever the order of the random draws; a separate test asks
for minidiff's order (the same generator, the same loss). When a wrong answer equals a common
mistake (σ for σ², a missing ½, a lost minus sign), the hint names it.
"""

from __future__ import annotations

import torch

from ... import score as ref
from ...data.toy import GaussianMixture
from ...schedules import NoiseSchedule
from . import core
from .core import Abort, Tester, diagnose, exercise, grad_close


def _random_mixture(K=3, D=2):
    means = 2 * torch.randn(K, D, dtype=torch.float64)
    stds = 0.3 + torch.rand(K, dtype=torch.float64)
    weights = torch.rand(K, dtype=torch.float64) + 0.2
    return means, stds, weights / weights.sum()


def _mixture(x, means, stds, weights, log_var_factor):
    """The mixture score with log_var_factor · log σ_k² in the responsibilities' logits (D/2 is right)."""
    diff = means[None] - x[:, None]
    var = stds**2
    logits = torch.log(weights) - log_var_factor * torch.log(var) - diff.pow(2).sum(-1) / (2 * var)
    r = torch.softmax(logits, dim=1)
    return (r[:, :, None] * diff / var[None, :, None]).sum(1)


def _mixture_mistakes(x, means, stds, weights) -> dict:
    D = x.shape[1]
    return {
        "the −D/2 · log σ_k² term of the log-density is missing from the responsibilities (it matters when the σ_k "
        "differ)": _mixture(x, means, stds, weights, 0.0),
        f"you folded D = 2 into the log-density: its normalisation is −D/2 · log σ_k² with D = x.shape[1] (here {D})":
            _mixture(x, means, stds, weights, 1.0),
        "the normalisation is −D/2 · log σ_k² (a variance), or −D · log σ_k: you used −D/2 · log σ_k":
            _mixture(x, means, stds, weights, D / 4),
        "the weights w_k are missing from the responsibilities r_k(x)": GaussianMixture(means, stds, None).score(x),
    }


@exercise("06", "mixture_score", points=3)
def mixture_score(t: Tester, fn):
    """∇ log Σ w_k N(μ_k, σ_k² I): one Gaussian, autograd of log p, far-away points, D = 2 and D = 3, the reference."""
    t.crash_hints["shape"] = ("a shape mismatch: x is (N, D), means (K, D), stds and weights (K,); compare every point "
                              "with every mean by broadcasting, means[None, :, :] − x[:, None, :] is (N, K, D)")
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
        t, out, xg.grad, "equals ∇ log p(x) computed by autograd", _mixture_mistakes(x, means, stds, weights),
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

    # another dimension: D = 3 (the normalisation −D/2 · log σ_k² must follow D)
    means3, stds3, weights3 = _random_mixture(K=3, D=3)
    x3 = 1.5 * torch.randn(100, 3, dtype=torch.float64)
    out3 = t.call(fn, x3, means3, stds3, weights3)
    t.tensor(out3, shape=(100, 3), dtype=torch.float64, what="mixture_score on 3-D points (100, 3)")
    diagnose(t, out3, ref.mixture_score(x3, means3, stds3, weights3), "D = 3: matches minidiff.score.mixture_score",
             _mixture_mistakes(x3, means3, stds3, weights3), hint="use D = x.shape[1] wherever the dimension enters",
             rtol=1e-4, atol=1e-6)

    # float32 in, float32 out
    f32 = [v.float() for v in (x, means, stds, weights)]
    out32 = t.call(fn, *f32)
    t.tensor(out32, shape=(200, 2), dtype=torch.float32, what="mixture_score on float32 inputs")
    t.close(out32, ref.mixture_score(*f32), "float32 inputs: the same score to float32 precision", rtol=1e-3, atol=1e-4)



# ---------------------------------------------------------------- 2. the DSM loss


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _recording(inner, calls: list):
    """A score model that records (x̃, σ) of every call, then answers like `inner`."""

    def model(x_tilde, sigma):
        calls.append((x_tilde.detach().clone(), torch.as_tensor(sigma).detach().clone()))
        return inner(x_tilde, sigma)

    return model


class _LinearScore(torch.nn.Module):
    """s_θ(x̃, σ) = x̃ W / σ, with a weight to differentiate."""

    def __init__(self, D: int):
        super().__init__()
        self.W = torch.nn.Parameter(0.3 * torch.randn(D, D))

    def forward(self, x_tilde, sigma):
        return (x_tilde @ self.W) / sigma[:, None]


def _drawn(t: Tester, calls: list, x0: torch.Tensor, levels: torch.Tensor):
    """The σ (B,) and z (B, ...) that the learner drew, read back from the model's inputs."""
    if not calls:
        t.check(False, "dsm_loss calls score_model(x̃, σ)", hint="the loss compares the model's score at x̃ with −z/σ",
                decisive=True)
        raise Abort
    x_tilde, sigma = calls[-1]
    B = x0.shape[0]
    if tuple(sigma.shape) != (B,):
        t.check(False, "the model gets σ of shape (B,): one noise level per row", f"got shape {tuple(sigma.shape)}",
                hint="idx = torch.randint(len(sigmas), (B,), generator=generator); sigma = sigmas[idx]", decisive=True)
        raise Abort
    t.check(bool(torch.isin(sigma.float(), levels.float()).all()), "every σ is one of the levels `sigmas`",
            hint="pick the levels by index: sigmas[torch.randint(len(sigmas), (B,), generator=generator)]", decisive=True)
    t.check(not torch.allclose(x_tilde.double(), x0.double()), "the model sees the noised x̃ = x_0 + σ z, not x_0",
            hint="x_tilde = x0 + sigma * noise, with sigma reshaped to (B, 1, ...)", decisive=True)
    sb = sigma.double().reshape(-1, *([1] * (x0.dim() - 1)))
    return sigma, ((x_tilde.double() - x0.double()) / sb).to(x0.dtype)


@exercise("06", "dsm_loss", points=3)
def dsm_loss(t: Tester, fn):
    """dsm_loss(sigmas, score_model, x0, generator): σ per row from the levels, z ~ N(0, I), ½ E‖σ s_θ + z‖²."""
    levels = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05])
    B, D = 2000, 3  # D = 3: averaging over coordinates differs from a ½ (they agree when D = 2)
    x0 = torch.randn(B, D)
    calls = []
    zero = _recording(lambda x_tilde, s: torch.zeros_like(x_tilde), calls)
    out = t.call(fn, levels, zero, x0, _gen(0))
    t.tensor(out, shape=(), what="dsm_loss(...)")
    t.crash_hints["shape"] = core.BROADCAST_HINT
    sigma, z = _drawn(t, calls, x0, levels)
    t.check(len(torch.unique(sigma)) == len(levels), "each row draws its own level (all 7 levels appear in 2,000 rows)",
            f"{len(torch.unique(sigma))} distinct levels", hint="draw B indices, one per row, not one for the batch",
            decisive=True)
    t.check(abs(z.mean().item()) < 0.1 and abs(z.std().item() - 1) < 0.1, "the noise z is standard normal",
            f"z has mean {z.mean().item():.3f} and std {z.std().item():.3f}",
            hint="z = torch.randn(x0.shape, generator=generator) (randn, not rand), and x̃ = x_0 + σ z (σ, not σ²)",
            decisive=True)
    half_norm = 0.5 * z.pow(2).sum(1).mean()
    sb = sigma[:, None]
    diagnose(
        t, out, half_norm, "the zero model scores ½ E‖z‖² (with λ(σ) = σ²)",
        {
            "the factor ½ is missing": 2 * half_norm,
            "you averaged over the coordinates too: sum ‖·‖² over the data dimensions, average over the batch":
                half_norm / D,
            "a plain .mean() averages over the coordinates and drops the ½: "
            "take ½ · (...).pow(2).flatten(1).sum(1).mean()": 2 * half_norm / D,
            "the weighting λ(σ) = σ² is missing: the loss is ½‖σ s_θ + z‖², σ multiplies the score":
                0.5 * (z / sb).pow(2).sum(1).mean(),
        },
        hint="with s = 0 the loss is ½ σ² ‖z/σ‖² = ½ ‖z‖², averaged over the batch", rtol=1e-4, atol=1e-6,
    )
    oracle = lambda x_tilde, s: -(x_tilde - x0) / s[:, None] ** 2  # noqa: E731  knows x0: the conditional score
    out = t.call(fn, levels, oracle, x0, _gen(1))
    t.tensor(out, shape=(), what="dsm_loss(...) of the conditional score")
    t.close(out, 0.0, "a model that returns the conditional score −(x̃ − x_0)/σ² has loss 0",
            hint="x̃ = x_0 + σ z (σ, not σ²), and the target is −(x̃ − x_0)/σ² = −z/σ: check where σ multiplies z",
            atol=1e-5)
    w = torch.randn(D, D)
    calls = []
    linear = lambda x_tilde, s: (x_tilde @ w) / s[:, None]  # noqa: E731
    out = t.call(fn, levels, _recording(linear, calls), x0, _gen(2))
    sigma, z = _drawn(t, calls, x0, levels)
    t.close(out, ref.dsm_objective(linear, x0, sigma, z), "a linear model: matches minidiff.score.dsm_objective "
            "at the σ and z you drew", rtol=1e-4, atol=1e-6,
            hint="loss = ½ · mean over the batch of ‖σ s(x̃, σ) + z‖², summed over the coordinates")
    # the gradient w.r.t. a model's weights, on the σ and z the learner drew
    net = _LinearScore(D)
    calls = []
    out = t.call(fn, levels, _recording(net, calls), x0, _gen(5))
    t.tensor(out, shape=(), dtype=torch.float32, what="dsm_loss of a linear score network")
    sigma, z = _drawn(t, calls, x0, levels)
    want = torch.autograd.grad(ref.dsm_objective(net, x0, sigma, z), list(net.parameters()))
    grad_close(t, out, net.parameters(), want, "∂loss/∂W by autograd equals minidiff.score.dsm_objective's (same σ and z)",
               hint="loss = ½ · mean over the batch of ‖σ s_θ(x̃, σ) + z‖²", rtol=1e-4, atol=1e-6)
    a = t.call(fn, levels, linear, x0, _gen(3))
    b = t.call(fn, levels, linear, x0, _gen(3))
    t.check(torch.equal(torch.as_tensor(a), torch.as_tensor(b)), "the same generator gives the same loss",
            hint="pass generator=generator to torch.randint and torch.randn")
    t.close(a, ref.dsm_loss(levels, linear, x0, _gen(3)), "with the same generator, the same loss as minidiff.score.dsm_loss",
            rtol=1e-5, atol=1e-6, decisive=False, hint="draw the level indices first, then z, both from `generator` (minidiff's order)")
    # float64 points: the loss keeps their dtype, and is right on the σ and z drawn
    x64, calls = x0[:64].double(), []
    out = t.call(fn, levels, _recording(lambda x_tilde, s: -x_tilde / (1 + s[:, None] ** 2), calls), x64, _gen(6))
    t.tensor(out, shape=(), dtype=torch.float64, what="dsm_loss on float64 points (64, 3)")
    sigma, z = _drawn(t, calls, x64, levels)
    t.close(out, ref.dsm_objective(lambda x_tilde, s: -x_tilde / (1 + s[:, None] ** 2), x64, sigma.double(), z),
            "float64 points: ½ · mean ‖σ s + z‖² on the σ and z you drew", rtol=1e-6, atol=1e-9,
            hint="cast σ and z to x0's dtype (.to(x0)) instead of x0 to float32")
    # images: the same random numbers in shape (B, C, H, W) or flattened to (B, C·H·W) give the same loss
    imgs = torch.randn(8, 1, 4, 4)
    conv = lambda x_tilde, s: -x_tilde / (1 + s.reshape(-1, *([1] * (x_tilde.dim() - 1))) ** 2)  # noqa: E731
    out = t.call(fn, levels, conv, imgs, _gen(4))
    t.tensor(out, shape=(), what="dsm_loss on images (8, 1, 4, 4)")
    flat = t.call(fn, levels, conv, imgs.flatten(1), _gen(4))
    t.close(out, flat, "works for images: the squared norm sums over C, H and W", rtol=1e-5, atol=1e-6,
            hint="reshape σ to (B, 1, 1, 1) to meet the images, and sum with .flatten(1).sum(1)")


# ---------------------------------------------------------------- 3. the score network


@exercise("06", "NoiseConditionalScore", points=2)
def NoiseConditionalScore(t: Tester, cls):
    """s_θ(x̃, σ) = −ε_θ(x̃/√(1 + σ²), 100 log σ)/σ around an EpsMLP, for σ a float or (B,)."""
    net = t.call(cls, dim=2, hidden=16, depth=2, emb_dim=8)
    reference = ref.NoiseConditionalScore(dim=2, hidden=16, depth=2, emb_dim=8)
    torch.nn.init.normal_(reference.eps_net.out.weight, std=0.5)  # the output layer starts at 0: wake it up
    torch.nn.init.normal_(reference.eps_net.out.bias, std=0.5)
    try:
        net.load_state_dict(reference.state_dict())
    except Exception as e:  # missing or renamed sub-modules
        t.check(False, "the network keeps its EpsMLP as self.eps_net", f"{type(e).__name__}: {e}",
                hint="leave __init__ as given: self.eps_net = EpsMLP(dim, hidden, depth, emb_dim)", decisive=True)
        raise Abort
    x = torch.randn(6, 2)
    sigma = torch.tensor([0.02, 0.1, 0.5, 1.0, 2.0, 4.0])
    out = t.call(net, x, sigma)
    t.tensor(out, shape=(6, 2), dtype=torch.float32, what="net(x, sigma)")
    t.check(out.requires_grad, "the score is differentiable in the weights (so the network can be trained)",
            hint="no torch.no_grad(), .detach() or .item() inside forward")
    v = torch.randn(6, 2)  # a random direction: the gradient of ⟨v, s_θ⟩ w.r.t. every weight
    want = torch.autograd.grad((reference(x, sigma) * v).sum(), list(reference.parameters()))
    grad_close(t, (out * v).sum(), net.parameters(), want,
               "the gradient of the score w.r.t. the weights (autograd) equals minidiff's",
               hint="s = −eps_net(x/√(1 + σ²), 100 · log σ) / σ, all in torch operations", rtol=1e-4, atol=1e-6)
    sb = sigma[:, None]
    c_in = torch.sqrt(1 + sb**2)
    with torch.no_grad():
        e = reference.eps_net
        eps = e(x / c_in, 100 * torch.log(sigma))
        mistakes = {
            "feed the network x̃/√(1 + σ²) (c_in), not x̃: its input then has unit size at every σ":
                -e(x, 100 * torch.log(sigma)) / sb,
            "c_in = 1/√(1 + σ²): a square root": -e(x / (1 + sb**2), 100 * torch.log(sigma)) / sb,
            "the network's time input is c_noise(σ) = 100 · log σ, not σ": -e(x / c_in, sigma) / sb,
            "c_noise(σ) = 100 · log σ: the factor 100 spreads the levels over the embedding's range, like timesteps":
                -e(x / c_in, torch.log(sigma)) / sb,
            "divide the network's output by σ: the true score has size 1/σ": -eps,
            "the score is −ε/σ: divide by σ, don't multiply": -eps * sb,
            "the sign: the score points against the noise, s = −ε_θ/σ": eps / sb,
        }
        expected = reference(x, sigma)
    diagnose(t, out, expected, "matches minidiff.score.NoiseConditionalScore (same weights, six levels)", mistakes,
             hint="s = −eps_net(x/√(1 + σ²), 100 · log σ) / σ, with σ shaped (B, 1) where it meets x",
             rtol=1e-5, atol=1e-6)
    out = t.call(net, x, 0.5)
    t.tensor(out, shape=(6, 2), what="net(x, 0.5) (one float σ for the whole batch)")
    rows = t.call(net, x, torch.full((6,), 0.5))
    t.close(out, rows, "a float σ gives the same as one σ per row", rtol=1e-5, atol=1e-6, decisive=False,
            hint="sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0]) gives one σ per row")
    t.check(out.dtype == torch.float32, "float32 points give a float32 score", f"got {out.dtype}",
            hint="make σ a tensor of x's dtype: torch.as_tensor(sigma, dtype=x.dtype, device=x.device)")
    # another dimension: 3-D points
    net3 = t.call(cls, dim=3, hidden=16, depth=2, emb_dim=8)
    ref3 = ref.NoiseConditionalScore(dim=3, hidden=16, depth=2, emb_dim=8)
    torch.nn.init.normal_(ref3.eps_net.out.weight, std=0.5)
    try:
        net3.load_state_dict(ref3.state_dict())
    except Exception as e:  # missing or renamed sub-modules
        t.check(False, "dim=3: the network keeps its EpsMLP as self.eps_net", f"{type(e).__name__}: {e}", decisive=True)
        raise Abort
    x3 = torch.randn(5, 3)
    out3 = t.call(net3, x3, sigma[:5])
    t.tensor(out3, shape=(5, 3), dtype=torch.float32, what="net(x, sigma) for 3-D points (5, 3)")
    with torch.no_grad():
        t.close(out3, ref3(x3, sigma[:5]), "3-D points: matches minidiff.score.NoiseConditionalScore(dim=3)",
                hint="nothing in forward may assume 2-D points: σ as (B, 1) broadcasts over any number of coordinates",
                rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- 4. ε-model → score model


@exercise("06", "score_fn_from_eps", points=2)
def score_fn_from_eps(t: Tester, fn):
    """score_fn_from_eps(schedule, eps_model) -> s(x_t, t) = −ε_θ(x_t, t)/√(1 − ᾱ_t): autograd of log q(x_t | x_0)."""
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
    calls = []

    def eps_model(x, t_):
        calls.append((x, t_))
        return eps.clone()  # a model that knows the noise

    score_fn = t.call(fn, s, eps_model)
    if not callable(score_fn):
        t.check(False, "score_fn_from_eps returns a function s(x_t, t)", f"got {type(score_fn).__name__}",
                hint="define score_fn(x_t, t) inside, and return score_fn itself (not score_fn(...))", decisive=True)
        raise Abort
    t.crash_hints["shape"] = core.BROADCAST_HINT
    out = t.call(score_fn, x_t.detach(), tt)
    t.tensor(out, shape=(B, 2), dtype=torch.float64, what="score_fn(x_t, t) for float64 (x_t, ε)")
    t.check(bool(calls) and calls[-1][1] is tt and calls[-1][0].shape == x_t.shape,
            "the ε-model is called with the same (x_t, t)", hint="eps = eps_model(x_t, t)")
    diagnose(
        t, out, x_t.grad, "equals ∇ log q(x_t | x_0) by autograd, with one t per row (t = 1 and t = T included)",
        {
            "divide by the standard deviation √(1 − ᾱ_t), not the variance 1 − ᾱ_t": -eps / (1 - abar),
            "the sign: noise pushes x_t away from √ᾱ_t x_0, the score points back, −ε/√(1 − ᾱ_t)": eps / (1 - abar).sqrt(),
            "you used ᾱ_{t−1}: schedule.alphas_cumprod[t] is ᾱ_t already":
                -eps / (1 - s.alphas_cumprod[tt - 1][:, None]).sqrt(),
            "you used β_t instead of 1 − ᾱ_t": -eps / s.betas[tt][:, None].sqrt(),
        },
        hint="s(x_t, t) = −ε/√(1 − ᾱ_t); index alphas_cumprod with t and reshape to (B, 1, …) to broadcast "
             "(extract(schedule.alphas_cumprod, t, eps))",
        rtol=1e-3 if out.dtype == torch.float32 else 1e-5, atol=1e-8,  # float32 (marked down above): its precision
    )
    e32 = torch.randn(4, 2)
    x32 = torch.randn(4, 2)
    score_fn = t.call(fn, s, lambda x, t_: e32)
    out_int = t.call(score_fn, x32, 500)
    t.tensor(out_int, shape=(4, 2), what="score_fn(x_t, 500) (an int t)")
    out_rows = t.call(score_fn, x32, torch.full((4,), 500))
    t.close(out_int, out_rows, "an int t gives the same as one t per row", rtol=1e-6, decisive=False,
            hint="minidiff.schedules.extract(values, t, x) handles ints and (B,) tensors alike")
    t.check(out_int.dtype == torch.float32, "float32 ε gives a float32 score",
            f"got {out_int.dtype}", hint="cast ᾱ_t (float64) to eps.dtype before dividing")
    # images: one t per image, any rank
    e_img = torch.randn(3, 1, 4, 4)
    score_fn = t.call(fn, s, lambda x, t_: e_img)
    t_img = torch.tensor([1, 300, 1000])
    out_img = t.call(score_fn, torch.randn(3, 1, 4, 4), t_img)
    t.tensor(out_img, shape=(3, 1, 4, 4), dtype=torch.float32, what="score_fn on images (3, 1, 4, 4)")
    t.close(out_img, ref.eps_to_score(s, e_img, t_img), "images: s = −ε/√(1 − ᾱ_t), one t per image",
            hint="reshape ᾱ_t to (B, 1, 1, 1) for images: extract(schedule.alphas_cumprod, t, eps)", rtol=1e-5, atol=1e-7)
