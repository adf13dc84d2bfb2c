"""Checks for lesson 04, DDPM on 2D toy data.

    from minidiff.course.checks import lesson04 as check
    check.timestep_embedding(timestep_embedding)   # sinusoidal features of t
    check.train_step(train_step)                   # one AdamW step on L_simple (Algorithm 1)
    check.ddpm_step(ddpm_step)                     # one reverse step (Algorithm 2, line 4)

Oracles: the embedding at t = 0 (all sines 0, all cosines 1) and minidiff.embedding; for the
training step, data x_0 ~ N(0, I) with the model ε̂ = a · √(1 − ᾱ_t) · x_t, whose expected
loss and gradient are known in closed form:

    E (ε − ε̂)² = 1 − (2a − a²)(1 − ᾱ_t),   ∂/∂a = −2 (1 − a)(1 − ᾱ_t);

for the reverse step, the posterior mean μ̃_t(x̂_0, x_t) of eq. 7 (minidiff.forward) and
minidiff.sampling.ddpm_step with σ_t² = β_t.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from ... import embedding as emb_ref
from ... import sampling as samp_ref
from ...forward import q_posterior_mean_var
from ...schedules import NoiseSchedule
from . import core
from .core import Tester, exercise

# float32 networks: a looser tolerance than the default
diagnose = partial(core.diagnose, rtol=1e-4, atol=1e-5)






# ---------------------------------------------------------------- 1. timestep embedding


def _embedding_mistakes(t: torch.Tensor, dim: int) -> dict:
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32)
    ang = t.float()[:, None] * torch.exp(-math.log(10_000.0) * i / half)[None]
    ang_h1 = t.float()[:, None] * torch.exp(-math.log(10_000.0) * i / max(half - 1, 1))[None]
    inter = torch.stack([torch.sin(ang), torch.cos(ang)], dim=2).reshape(len(t), dim)
    return {
        "sines and cosines are swapped: the first dim/2 columns are sin(t·ω_i), the last dim/2 cos(t·ω_i)":
            torch.cat([torch.cos(ang), torch.sin(ang)], dim=1),
        "interleaved: put all dim/2 sines first, then all dim/2 cosines (torch.cat along dim 1), not sin, cos, sin, cos":
            inter,
        "the exponent divides i by dim/2, not by dim/2 − 1: ω_i = max_period^(−i/(dim/2))":
            torch.cat([torch.sin(ang_h1), torch.cos(ang_h1)], dim=1),
        "the frequencies must *fall*: ω_i = max_period^(−i/(dim/2)), a minus sign in the exponent":
            torch.cat([torch.sin(t.float()[:, None] * torch.exp(math.log(10_000.0) * i / half)[None]),
                       torch.cos(t.float()[:, None] * torch.exp(math.log(10_000.0) * i / half)[None])], dim=1),
    }


@exercise("04", "timestep_embedding", points=2)
def timestep_embedding(t: Tester, fn):
    """timestep_embedding(t, dim) -> (B, dim): sin(t ω_i) then cos(t ω_i), ω_i = 10000^(−i/(dim/2))."""
    steps = torch.tensor([0, 1, 7, 50, 999])
    out = t.call(fn, steps, 16)
    t.tensor(out, shape=(5, 16))
    t.close(out[0], torch.cat([torch.zeros(8), torch.ones(8)]), "at t = 0 every sine is 0 and every cosine 1",
            hint="first all sines, then all cosines; sin(0) = 0, cos(0) = 1")
    t.close(out[1, 0], math.sin(1.0), "the first column is sin(t · ω_0) with ω_0 = 1", rtol=1e-4,
            hint="ω_0 = max_period^0 = 1: the fastest frequency comes first")
    diagnose(t, out, emb_ref.timestep_embedding(steps, 16), "matches minidiff.embedding.timestep_embedding (dim 16)",
              _embedding_mistakes(steps, 16), hint="ω_i = exp(−log(max_period) · i / (dim/2)), i = 0..dim/2 − 1")
    rand = torch.randint(1, 1001, (32,))
    out = t.call(fn, rand, 64)
    t.tensor(out, shape=(32, 64), what="the embedding of 32 random t with dim 64")
    diagnose(t, out, emb_ref.timestep_embedding(rand, 64), "matches minidiff's embedding for random t, dim 64",
              _embedding_mistakes(rand, 64), hint="use dim // 2 frequencies, not a fixed number")


# ---------------------------------------------------------------- 2. one training step


class _ScaledOracle(torch.nn.Module):
    """ε̂ = a · √(1 − ᾱ_t) · x_t, the best predictor for x_0 ~ N(0, I) when a = 1.
    Records the t it was called with, so that the check can inspect them."""

    def __init__(self, schedule: NoiseSchedule, a: float):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(float(a)))
        self.sigma = (1 - schedule.alphas_cumprod).sqrt().float()
        self.seen = []

    def forward(self, x_t, t):
        self.seen.append(t)
        return self.a * self.sigma[t].reshape(-1, *([1] * (x_t.dim() - 1))) * x_t


@exercise("04", "train_step", points=3)
def train_step(t: Tester, fn):
    """train_step(model, opt, schedule, x0) -> loss: one optimizer step on L_simple (eq. 14)."""
    s = NoiseSchedule(torch.tensor([0.05, 0.15, 0.3, 0.5, 0.7], dtype=torch.float64))  # T = 5
    one_minus = 1 - s.alphas_cumprod[1:]  # 1 − ᾱ_t, t = 1..5
    x0 = torch.randn(40_000, 2)
    a0 = 0.5
    model = _ScaledOracle(s, a0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = t.call(fn, model, opt, s, x0)
    if not (isinstance(loss, float) or (isinstance(loss, torch.Tensor) and loss.numel() == 1)):
        t.check(False, "train_step returns the loss as a float or a 0-dim tensor", f"got {type(loss).__name__}",
                hint="return loss.item()")
        return
    loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else loss
    if not model.seen:
        t.check(False, "train_step calls model(x_t, t)", hint="the model predicts ε from the noisy x_t and t")
        return
    ts = model.seen[-1]
    t.check(isinstance(ts, torch.Tensor) and ts.dtype == torch.long and ts.shape == (x0.shape[0],),
            "t is a LongTensor of shape (B,), one timestep per example",
            f"got {getattr(ts, 'dtype', type(ts).__name__)} of shape {tuple(getattr(ts, 'shape', ()))}",
            hint="t = torch.randint(1, schedule.T + 1, (B,))")
    if isinstance(ts, torch.Tensor):
        t.check(int(ts.min()) == 1 and int(ts.max()) == s.T, "t covers 1..T (both ends included)",
                f"got t from {int(ts.min())} to {int(ts.max())}",
                hint="torch.randint's upper end is exclusive: randint(1, T + 1, ...) gives 1..T")
    expected = (1 - (2 * a0 - a0**2) * one_minus).mean().item()
    off_by_one = (1 - (2 * a0 - a0**2) * (1 - s.alphas_cumprod[:-1])).mean().item()
    hint = "x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (eq. 4), loss = mean over batch and coordinates of (ε − ε_θ(x_t, t))²"
    if abs(loss - 2 * expected) < 0.03:
        hint = "average over the coordinates too (F.mse_loss), not only over the batch"
    elif abs(loss - off_by_one) < 0.015:
        hint = "off by one: t runs from 1 to T, and ᾱ_t is schedule.alphas_cumprod[t]"
    t.check(abs(loss - expected) < 0.015, "the loss equals L_simple in expectation (a model with a known loss)",
            f"expected about {expected:.4f}, got {loss:.4f}", hint=hint)
    # The gradient at a = 0.5 is −(1 − ᾱ_t) on average; one SGD step of size lr moves a by
    # −lr · gradient. Gradients left over from the earlier calls (no zero_grad) would triple it.
    fn(model, opt, s, x0)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1)
    grad = (-2 * (1 - a0) * one_minus).mean().item()
    fn(model, opt2, s, x0)
    moved = model.a.detach().item() - a0
    hint = "loss.backward() then opt.step()"
    if abs(moved) < 1e-6:
        hint = "the weights did not move: call loss.backward() and opt.step()"
    elif abs(moved + 0.3 * grad) < 0.006:
        hint = "gradients pile up across calls: call opt.zero_grad() before loss.backward()"
    t.check(abs(moved + 0.1 * grad) < 0.003, "train_step takes one gradient step on the loss",
            f"a should move by about {-0.1 * grad:+.4f}, it moved by {moved:+.4f}", hint=hint)


# ---------------------------------------------------------------- 3. one sampling step


@exercise("04", "ddpm_step", points=3)
def ddpm_step(t: Tester, fn):
    """ddpm_step(schedule, eps, x_t, t, noise) -> x_{t−1} with σ_t² = β_t and no noise at t = 1."""
    s = NoiseSchedule.make("linear", T=50, beta_1=2e-3, beta_T=0.4)
    x_t = torch.randn(6, 2, dtype=torch.float64)
    eps = torch.randn(6, 2, dtype=torch.float64)
    ts = torch.tensor([1, 2, 10, 25, 49, 50])
    zero = torch.zeros_like(x_t)
    out = t.call(fn, s, eps, x_t, ts, zero)
    t.tensor(out, shape=(6, 2))
    x0_hat = samp_ref.predict_x0(s, x_t, ts, eps)
    mean, _ = q_posterior_mean_var(s, x0_hat, x_t, ts)
    b = s.betas[ts].reshape(-1, 1)
    ab = s.alphas_cumprod[ts].reshape(-1, 1)
    al = s.alphas[ts].reshape(-1, 1)
    diagnose(t, out, mean, "with z = 0 the step returns the mean μ_θ of eq. 11",
              {
                  "β_t / √(1 − ᾱ_t): the square root is on (1 − ᾱ_t)": (x_t - b / (1 - ab) * eps) / al.sqrt(),
                  "divide by √α_t, don't multiply": (x_t - b / (1 - ab).sqrt() * eps) * al.sqrt(),
                  "the coefficient of ε is β_t / √(1 − ᾱ_t), not √(1 − ᾱ_t) (that would give x̂_0's formula)":
                      (x_t - (1 - ab).sqrt() * eps) / al.sqrt(),
              },
              hint="x_{t−1} = (x_t − β_t/√(1 − ᾱ_t) · ε) / √α_t + σ_t z", rtol=1e-5, atol=1e-7)
    z = torch.randn(6, 2, dtype=torch.float64)
    out = t.call(fn, s, eps, x_t, ts, z)
    t.tensor(out, shape=(6, 2), what="the step with noise")
    expected = samp_ref.ddpm_step(s, eps, x_t, ts, noise=z, variance="beta")
    t.close(out[0], expected[0], "no noise is added at t = 1 (z = 0 in Algorithm 2)",
            hint="use torch.where(t == 1, 0, σ_t) (per row) so that the last step returns the mean")
    diagnose(t, out[1:], expected[1:], "for t > 1 the noise is scaled by σ_t = √β_t",
              {
                  "σ_t² = β_t is a variance: multiply z by √β_t, not β_t": mean[1:] + b[1:] * z[1:],
                  "this exercise uses σ_t² = β_t, not β̃_t": samp_ref.ddpm_step(s, eps, x_t, ts, noise=z, variance="beta_tilde")[1:],
              },
              hint="x_{t−1} = μ_θ + √β_t · z", rtol=1e-5, atol=1e-7)
    imgs = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    e_img = torch.randn_like(imgs)
    t_img = torch.tensor([3, 1, 40])
    out = t.call(fn, s, e_img, imgs, t_img, torch.ones_like(imgs))
    t.tensor(out, shape=(3, 1, 4, 4), what="the step on a batch of 1×4×4 images")
    t.close(out, samp_ref.ddpm_step(s, e_img, imgs, t_img, noise=torch.ones_like(imgs), variance="beta"),
            "works for images too (x of shape (B, C, H, W))",
            hint="reshape per-example coefficients to (B, 1, 1, 1): minidiff.schedules.extract does it for you",
            rtol=1e-5, atol=1e-7)
