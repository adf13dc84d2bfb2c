"""Checks for lesson 11, variational diffusion models.

    from minidiff.course.checks import lesson11 as check
    check.continuous_diffusion_loss(continuous_diffusion_loss)   # ½ γ′(t) ‖ε − ε̂(z_t; γ_t)‖², γ′ by autograd
    check.discrete_diffusion_loss(discrete_diffusion_loss)       # (T/2) expm1(γ(t) − γ(s)) ‖ε − ε̂‖²
    check.monotone_log_snr(monotone_log_snr)                     # VDM's monotone network, pinned to γ_0, γ_1

Closed forms first (a model that predicts ε̂ = 0 on a linear γ, where γ′ = γ_1 − γ_0; the end points and the
monotonicity of the network for any weights), then minidiff's references on random inputs (points and images,
float32 and float64, a curved γ, non-default T), and the gradients w.r.t. the model's and the schedule's weights.
The outputs of known mistakes (a missing ½ or T, γ for γ′, α and σ swapped, variances for stds, the model called
at t instead of γ_t, exp for expm1, s and t swapped, weights without |·|, no normalisation, ...) are recomputed
here so that a hint can name the mistake.
"""

from __future__ import annotations

import torch
from torch import nn

from ... import vdm as ref
from .core import Tester, diagnose, exercise, grad_close


def _col(v, x):
    return v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


class _Linear(nn.Module):
    """ε̂(z, γ) = a z + b γ: a model with weights, shape-generic; records the γ it was called with."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7, dtype=dtype))
        self.b = nn.Parameter(torch.tensor(0.05, dtype=dtype))
        self.seen = []

    def forward(self, z, g):
        self.seen.append(g.detach())
        return self.a * z + self.b * _col(g, z)


def _zero(z, g):
    return torch.zeros_like(z)


def _decreasing(t):
    return 5.0 - 18.3 * t


def _continuous_wrong(gamma, model, x, t, eps, mistake):
    g, dg = ref.gamma_and_slope(gamma, t)
    a, s = ref.alpha_sigma(g)
    if mistake == "swap":
        a, s = s, a
    if mistake == "variance":
        a, s = a**2, s**2
    z = _col(a, x) * x + _col(s, x) * eps
    cond = t if mistake == "t_for_gamma" else g
    err = (eps - model(z, cond)).pow(2).flatten(1)
    err = err.mean(1) if mistake == "mean" else err.sum(1)
    w = {"no_half": dg, "gamma": 0.5 * g, "neg": -0.5 * dg,
         "const_slope": torch.full_like(dg, 0.5 * (gamma.gamma_1 - gamma.gamma_0))}.get(mistake, 0.5 * dg)
    return w.to(err.dtype) * err


def _grads(loss, params):
    return [g.detach() for g in torch.autograd.grad(loss, params)]


@exercise("11", "continuous_diffusion_loss", points=4)
def continuous_diffusion_loss(t: Tester, fn):
    """½ γ′(t) ‖ε − ε̂_θ(z_t; γ_t)‖² per example, z_t = α_t x + σ_t ε, γ′ by autograd."""
    lin = ref.LinearLogSNR(-10.0, 6.0)
    x, eps = torch.randn(5, 2), torch.randn(5, 2)
    tt = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    out = t.call(fn, lin, _zero, x, tt, eps)
    t.tensor(out, shape=(5,), dtype=torch.float32, what="the loss of 5 points (one number per example)")
    diagnose(t, out, 8.0 * eps.pow(2).sum(1), "a model that predicts ε̂ = 0, γ linear from −10 to 6: ½ · 16 · ‖ε‖²",
             {"the weight is ½ γ′(t): a factor ½ is missing": 16.0 * eps.pow(2).sum(1),
              "the weight is the slope γ′(t), not γ(t) itself": _continuous_wrong(lin, _zero, x, tt, eps, "gamma"),
              "γ′ > 0 and the loss is ≥ 0: the weight is +½ γ′(t), not −½ γ′": -8.0 * eps.pow(2).sum(1),
              "sum the squared error over the dimensions of each example (‖·‖²), not the mean":
              _continuous_wrong(lin, _zero, x, tt, eps, "mean")},
             hint="γ′ of a linear γ is γ_1 − γ_0 = 16 everywhere; the loss is ½ γ′ ‖ε − ε̂‖² summed over dims",
             rtol=1e-5, atol=1e-5)
    # a curved γ (cosine), a real model: z_t and the conditioning matter now
    cos = ref.CosineLogSNR()
    tt = torch.tensor([0.05, 0.3, 0.5, 0.7, 0.95])
    model = _Linear()
    out = t.call(fn, cos, model, x, tt, eps)
    t.tensor(out, shape=(5,), what="the loss with the cosine schedule")
    if model.seen:
        t.close(model.seen[-1], cos(tt), "the model is called at γ_t = γ(t)",
                hint="VDM's model is conditioned on the log-SNR: eps_model(z_t, gamma(t)), not eps_model(z_t, t)",
                rtol=1e-5, atol=1e-5)
    mistakes = {"α_t² = sigmoid(−γ_t) and σ_t² = sigmoid(γ_t): α and σ are swapped (γ = −log SNR grows with noise)":
                _continuous_wrong(cos, _Linear(), x, tt, eps, "swap"),
                "α_t and σ_t are square roots of the sigmoids: z_t = α_t x + σ_t ε uses stds, not variances":
                _continuous_wrong(cos, _Linear(), x, tt, eps, "variance"),
                "call the model at γ_t (VDM conditions on the log-SNR), not at t":
                _continuous_wrong(cos, _Linear(), x, tt, eps, "t_for_gamma"),
                "γ′ of a curved γ changes with t: take it by autograd (torch.autograd.grad of γ(t).sum() w.r.t. t)":
                _continuous_wrong(cos, _Linear(), x, tt, eps, "const_slope")}
    diagnose(t, out, ref.continuous_diffusion_loss(cos, _Linear(), x, tt, eps),
             "cosine γ and a linear model on points: matches minidiff.vdm.continuous_diffusion_loss", mistakes,
             hint="g = γ(t); γ′ by autograd; α, σ = √sigmoid(−g), √sigmoid(g); z = α x + σ ε; ½ γ′ ‖ε − ε̂(z, g)‖²",
             rtol=1e-4, atol=1e-5)
    # float64 images; gradients w.r.t. the model and the learned schedule's weights
    imgs, e2 = torch.randn(3, 1, 4, 4, dtype=torch.float64), torch.randn(3, 1, 4, 4, dtype=torch.float64)
    t3 = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    sched, model = ref.MonotoneLogSNR(features=8).double(), _Linear(torch.float64)
    for p in sched.parameters():
        p.data.normal_()
    out = t.call(fn, sched, model, imgs, t3, e2)
    t.tensor(out, shape=(3,), dtype=torch.float64, what="the loss of float64 images (3, 1, 4, 4)")
    sched_r, model_r = ref.MonotoneLogSNR(features=8).double(), _Linear(torch.float64)
    sched_r.load_state_dict(sched.state_dict())
    want = ref.continuous_diffusion_loss(sched_r, model_r, imgs, t3, e2)
    t.close(out, want, "images, a learned monotone γ: matches the reference", rtol=1e-7, atol=1e-9)
    params = list(model.parameters()) + list(sched.parameters())
    hint = ("keep γ′ differentiable in the schedule's weights: torch.autograd.grad(..., create_graph=True); "
            "no .detach() on γ or γ′ (a learned schedule learns through both)")
    try:
        grad_close(t, out.sum(), params, _grads(want.sum(), list(model_r.parameters()) + list(sched_r.parameters())),
                   "the gradient w.r.t. the model's and the schedule's weights equals the reference's", hint=hint)
    except RuntimeError as e:  # the graph of γ was freed by an autograd.grad without create_graph
        t.check(False, "the gradient w.r.t. the model's and the schedule's weights equals the reference's",
                f"backward failed: {str(e).splitlines()[0][:120]}", hint=hint, decisive=True)
    t.raises(fn, (_decreasing, _zero, x, torch.full((5,), 0.5), eps), ValueError,
             "a decreasing γ raises a ValueError", hint="check γ′(t) > 0: raise ValueError('γ must increase with t')")
    t.raises(fn, (lin, _zero, x, torch.full((5,), 1.5), eps), ValueError, "t = 1.5 (outside [0, 1]) raises a ValueError",
             hint="times live in [0, 1]: raise ValueError for t < 0 or t > 1")


def _discrete_wrong(gamma, model, x, i, T, eps, mistake):
    t, s = i.to(x.dtype) / T, (i - 1).to(x.dtype) / T
    if mistake == "s_after":
        s = (i + 1).to(x.dtype) / T
    if mistake == "zero_based":
        t, s = (i - 1).to(x.dtype) / T, (i - 2).clamp(min=0).to(x.dtype) / T
    g_t, g_s = gamma(t), gamma(s)
    a, sg = ref.alpha_sigma(g_t)
    z = _col(a, x) * x + _col(sg, x) * eps
    err = (eps - model(z, g_t)).pow(2).flatten(1).sum(1)
    w = {"no_T": 0.5 * torch.expm1(g_t - g_s), "exp": 0.5 * T * torch.exp(g_t - g_s),
         "swap": 0.5 * T * torch.expm1(g_s - g_t), "snr_diff": 0.5 * T * (torch.exp(-g_s) - torch.exp(-g_t))}
    return w.get(mistake, 0.5 * T * torch.expm1(g_t - g_s)).to(err.dtype) * err


@exercise("11", "discrete_diffusion_loss", points=3)
def discrete_diffusion_loss(t: Tester, fn):
    """(T/2) expm1(γ(t) − γ(s)) ‖ε − ε̂_θ(z_t; γ_t)‖², t = i/T, s = (i − 1)/T."""
    t.crash_hints[""] = ("step i runs from s = (i − 1)/T to t = i/T (both in [0, 1] for i in 1..T); an error of your own "
                         "on a valid, increasing γ often means s or t is off: not (i + 1)/T, not i/T − 1")
    lin = ref.LinearLogSNR(-10.0, 6.0)
    x, eps = torch.randn(4, 2), torch.randn(4, 2)
    i = torch.tensor([1, 3, 7, 9])
    out = t.call(fn, lin, _zero, x, i, 10, eps)
    t.tensor(out, shape=(4,), dtype=torch.float32, what="the loss of 4 points, T = 10")
    want = 5.0 * torch.expm1(torch.tensor(1.6)) * eps.pow(2).sum(1)
    diagnose(t, out, want, "ε̂ = 0, γ linear from −10 to 6, T = 10: (T/2) expm1(1.6) ‖ε‖² for every step",
             {"the loss carries a factor T (T/2 in front): it is missing": want / 10,
              "SNR(s)/SNR(t) − 1 = exp(γ_t − γ_s) − 1: the −1 is missing (torch.expm1 does both, accurately)":
              5.0 * torch.exp(torch.tensor(1.6)) * eps.pow(2).sum(1),
              "the weight is SNR(s)/SNR(t) − 1 = expm1(γ(t) − γ(s)) with s = t − 1/T: the sign is flipped":
              5.0 * torch.expm1(torch.tensor(-1.6)) * eps.pow(2).sum(1)},
             hint="t = i/T, s = (i − 1)/T; (T/2) · expm1(γ(t) − γ(s)) · ‖ε − ε̂‖²", rtol=1e-5, atol=1e-5)
    # a curved γ, a real model, another T
    cos, model = ref.CosineLogSNR(), _Linear()
    i = torch.tensor([1, 2, 50, 400, 499])
    x5, e5 = torch.randn(5, 2), torch.randn(5, 2)
    out = t.call(fn, cos, model, x5, i, 500, e5)
    t.tensor(out, shape=(5,), what="the loss with the cosine schedule, T = 500")
    mistakes = {"s = (i − 1)/T is the *less* noisy end of step i; you used (i + 1)/T":
                _discrete_wrong(cos, _Linear(), x5, i, 500, e5, "s_after"),
                "step i spans s = (i − 1)/T to t = i/T (i runs 1..T): an index is off by one":
                _discrete_wrong(cos, _Linear(), x5, i, 500, e5, "zero_based"),
                "in ε-form the weight is SNR(s)/SNR(t) − 1 (from SNR(t)‖x − x̂‖² = ‖ε − ε̂‖²), not SNR(s) − SNR(t)":
                _discrete_wrong(cos, _Linear(), x5, i, 500, e5, "snr_diff"),
                "use the T you are given, not 1000": _discrete_wrong(cos, _Linear(), x5, i, 1000, e5, "none")}
    diagnose(t, out, ref.discrete_diffusion_loss(cos, _Linear(), x5, i, 500, e5),
             "cosine γ, T = 500, a linear model: matches minidiff.vdm.discrete_diffusion_loss", mistakes,
             hint="z_t = α_t x + σ_t ε at t = i/T with α, σ from γ(t); the model is called at γ(t)", rtol=1e-4, atol=1e-5)
    # float64 images, gradient w.r.t. the model
    imgs, e2 = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.randn(2, 1, 4, 4, dtype=torch.float64)
    i2, model, model_r = torch.tensor([3, 1000]), _Linear(torch.float64), _Linear(torch.float64)
    out = t.call(fn, ref.LinearLogSNR(), model, imgs, i2, 1000, e2)
    t.tensor(out, shape=(2,), dtype=torch.float64, what="the loss of float64 images (2, 1, 4, 4), T = 1000")
    want = ref.discrete_diffusion_loss(ref.LinearLogSNR(), model_r, imgs, i2, 1000, e2)
    t.close(out, want, "images, T = 1000: matches the reference", rtol=1e-7, atol=1e-9)
    grad_close(t, out.sum(), list(model.parameters()), _grads(want.sum(), list(model_r.parameters())),
               "the gradient w.r.t. the model's weights equals the reference's")
    t.raises(fn, (lin, _zero, x, torch.tensor([0, 1, 2, 3]), 10, eps), ValueError, "a step i = 0 raises a ValueError",
             hint="steps run 1..T (step i goes from (i − 1)/T to i/T): raise ValueError for i < 1 or i > T")
    t.raises(fn, (_decreasing, _zero, x, torch.tensor([1, 3, 7, 10]), 10, eps), ValueError,
             "a decreasing γ raises a ValueError", hint="check γ(t) > γ(s): raise ValueError('γ must increase with t')")


def _monotone_wrong(net, t, mistake):
    ends = torch.tensor([0.0, 1.0], dtype=t.dtype)
    tt = torch.cat([t, ends])[:, None]
    w1, w2, b2, w3 = net.w1, net.w2, net.b2, net.w3
    if mistake == "no_abs":
        a1, a2, a3 = w1, w2, w3
    else:
        a1, a2, a3 = w1.abs(), w2.abs(), w3.abs()
    inp = tt if mistake == "no_rescale" else 2 * tt - 1
    phi = torch.tanh(inp * a2 + b2) if mistake == "tanh" else 2 * (torch.sigmoid(inp * a2 + b2) - 0.5)
    g = tt[:, 0] * a1 + phi @ a3 / (1 if mistake == "no_mean" else w3.numel())
    if mistake == "raw":
        return g[:-2]
    return net.gamma_0 + (net.gamma_1 - net.gamma_0) * (g[:-2] - g[-2]) / (g[-1] - g[-2])


def _net(seed, gamma_0=-13.3, gamma_1=5.0, dtype=torch.float32):
    net = ref.MonotoneLogSNR(gamma_0, gamma_1, features=16, seed=seed).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():  # raw weights of both signs: |·| must make them positive
            p.copy_(1.5 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))
    return net


@exercise("11", "monotone_log_snr", points=3)
def monotone_log_snr(t: Tester, fn):
    """γ̂(t) = |w1| t + mean_k |w3_k| φ(|w2_k| (2t − 1) + b2_k), φ = 2(sigmoid − ½); γ pinned to γ_0, γ_1."""
    net = _net(1)
    tt = torch.linspace(0, 1, 41)
    out = t.call(fn, net, tt)
    t.tensor(out, shape=(41,), dtype=torch.float32, what="γ(t) at 41 times")
    t.close(out[[0, -1]], torch.tensor([-13.3, 5.0]), "γ(0) = γ_0 = −13.3 and γ(1) = γ_1 = 5",
            hint="normalise: γ = γ_0 + (γ_1 − γ_0)(γ̂(t) − γ̂(0)) / (γ̂(1) − γ̂(0)); evaluate γ̂ at 0 and 1 too",
            rtol=1e-5, atol=1e-4)
    steps = out[1:] - out[:-1]
    t.check(bool((steps > 0).all()), "γ increases with t for weights of both signs",
            f"γ falls between {int((steps <= 0).sum())} of 40 neighbouring times",
            hint="every weight must enter through .abs() (and φ must be increasing): then no choice of weights "
                 "can make γ fall", decisive=True)
    mistakes = {"take |·| of every weight (w1, w2, w3): a negative raw weight must not turn the slope negative":
                _monotone_wrong(net, tt, "no_abs"),
                "feed 2t − 1 (t rescaled to [−1, 1]) to the gated layer, as VDM does": _monotone_wrong(net, tt, "no_rescale"),
                "φ(h) = 2 (sigmoid(h) − ½) (that is tanh(h/2), not tanh(h))": _monotone_wrong(net, tt, "tanh"),
                "divide the gated part by the number of features K (its mean over k, not its sum)":
                _monotone_wrong(net, tt, "no_mean")}
    diagnose(t, out, ref.monotone_log_snr(net, tt), "matches minidiff.vdm.monotone_log_snr", mistakes,
             hint="γ̂(t) = |w1| t + (2 (sigmoid((2t − 1)|w2| + b2) − ½)) @ |w3| / K, then pinned to γ_0, γ_1",
             rtol=1e-5, atol=1e-4)
    # other end points, float64, a batch of random times; the gradient reaches every weight
    net, net_r = _net(2, -8.0, 3.0, torch.float64), _net(2, -8.0, 3.0, torch.float64)
    t64 = torch.rand(7, dtype=torch.float64)
    out = t.call(fn, net, t64)
    t.tensor(out, shape=(7,), dtype=torch.float64, what="γ(t) of 7 float64 times")
    want = ref.monotone_log_snr(net_r, t64)
    diagnose(t, out, want, "end points −8 and 3, float64: matches the reference",
             {"use the net's own end points net.gamma_0, net.gamma_1 (here −8 and 3), not −13.3 and 5":
              -13.3 + 18.3 * (want + 8.0) / 11.0,
              "pin the end points: γ = γ_0 + (γ_1 − γ_0)(γ̂(t) − γ̂(0))/(γ̂(1) − γ̂(0))": _monotone_wrong(net_r, t64, "raw")},
             rtol=1e-9, atol=1e-9)
    grad_close(t, out.sum(), [net.w1, net.w2, net.b2, net.w3], _grads(want.sum(), [net_r.w1, net_r.w2, net_r.b2, net_r.w3]),
               "the gradient reaches w1, w2, b2 and w3 and equals the reference's",
               hint="build γ from the parameters with torch operations (no .detach(), no .item(), no torch.tensor(...))")
