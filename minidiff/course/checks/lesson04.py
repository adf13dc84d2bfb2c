"""Checks for lesson 04, DDPM on 2D toy data.

    from minidiff.course.checks import lesson04 as check
    check.timestep_embedding(timestep_embedding)   # sinusoidal features of t
    check.ddpm_loss(ddpm_loss)                     # L_simple on one batch (Algorithm 1, lines 2–5)
    check.train(train)                             # the training loop: batches, AdamW, cosine learning rate
    check.ddpm_step(ddpm_step)                     # one reverse step (Algorithm 2, line 4)
    check.ddpm_sample(ddpm_sample)                 # the whole sampler (Algorithm 2)

Oracles: the embedding at t = 0 (all sines 0, all cosines 1) and minidiff.embedding; for the
loss, data x_0 ~ N(0, I) with the model ε̂ = a · √(1 − ᾱ_t) · x_t, whose expected loss and
gradient are known in closed form:

    E (ε − ε̂)² = 1 − (2a − a²)(1 − ᾱ_t),   ∂/∂a = −2 (1 − a)(1 − ᾱ_t);

for the training loop, minidiff.training.train on a problem whose loss does not depend on the
random numbers (so any correct loop gives the same weights), then on one that does (the same
generator must give the same batches); for the reverse step, the posterior mean μ̃_t(x̂_0, x_t)
of DDPM eq. 7 and minidiff.sampling.ddpm_step with σ_t² = β_t; for the sampler, the exact ε*
of Gaussian data, minidiff.sampling.ddpm_sample with the same seed (the same samples) and with
another seed (the same distribution, whatever the order of the random draws).
"""

from __future__ import annotations

import copy
import math
from functools import partial

import torch
import torch.nn.functional as F

from ... import embedding as emb_ref
from ... import losses as loss_ref
from ... import sampling as samp_ref
from ... import training as train_ref
from ...forward import predict_x0, q_posterior_mean_var
from ...schedules import NoiseSchedule
from . import core
from .core import Abort, Tester, exercise, grad_close

# float32 networks: a looser tolerance than the default
diagnose = partial(core.diagnose, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 1. timestep embedding


def _embedding_mistakes(t: torch.Tensor, dim: int) -> dict:
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32)
    ang = t.float()[:, None] * torch.exp(-math.log(10_000.0) * i / half)[None]
    ang_h1 = t.float()[:, None] * torch.exp(-math.log(10_000.0) * i / max(half - 1, 1))[None]
    inter = torch.stack([torch.sin(ang), torch.cos(ang)], dim=2).reshape(len(t), dim)
    rising = t.float()[:, None] * torch.exp(math.log(10_000.0) * i / half)[None]
    return {
        "sines and cosines are swapped: the first dim/2 columns are sin(t·ω_i), the last dim/2 cos(t·ω_i)":
            torch.cat([torch.cos(ang), torch.sin(ang)], dim=1),
        "interleaved: put all dim/2 sines first, then all dim/2 cosines (torch.cat along dim 1), not sin, cos, sin, cos":
            inter,
        "the exponent divides i by dim/2, not by dim/2 − 1: ω_i = max_period^(−i/(dim/2))":
            torch.cat([torch.sin(ang_h1), torch.cos(ang_h1)], dim=1),
        "the frequencies must *fall*: ω_i = max_period^(−i/(dim/2)), a minus sign in the exponent":
            torch.cat([torch.sin(rising), torch.cos(rising)], dim=1),
    }


EMB_ATOL = 2e-4  # sin(t·ω) at t ≈ 1000 in float32 is good to about 1e-4: a float64 embedding is not wrong
EMB_DTYPE = ("the embedding is float32 whatever t's integer dtype: t.float() and float32 frequencies "
             "(torch.arange(half, dtype=torch.float32)); a float64 one would not mix with the network's float32 weights")


@exercise("04", "timestep_embedding", points=2)
def timestep_embedding(t: Tester, fn):
    """timestep_embedding(t, dim) -> (B, dim): sin(t ω_i) then cos(t ω_i), ω_i = 10000^(−i/(dim/2))."""
    steps = torch.tensor([0, 1, 7, 50, 999])
    out = t.call(fn, steps, 16)
    t.tensor(out, shape=(5, 16), dtype=torch.float32, dtype_hint=EMB_DTYPE)
    t.close(out[0], torch.cat([torch.zeros(8), torch.ones(8)]), "at t = 0 every sine is 0 and every cosine 1",
            hint="first all sines, then all cosines; sin(0) = 0, cos(0) = 1")
    t.close(out[1, 0], math.sin(1.0), "the first column is sin(t · ω_0) with ω_0 = 1", rtol=1e-4,
            hint="ω_0 = max_period^0 = 1: the fastest frequency comes first")
    diagnose(t, out, emb_ref.timestep_embedding(steps, 16), "matches minidiff.embedding.timestep_embedding (dim 16)",
             _embedding_mistakes(steps, 16), hint="ω_i = exp(−log(max_period) · i / (dim/2)), i = 0..dim/2 − 1", atol=EMB_ATOL)
    rand = torch.randint(1, 1001, (32,))
    out = t.call(fn, rand, 64)
    t.tensor(out, shape=(32, 64), dtype=torch.float32, what="the embedding of 32 random t with dim 64", dtype_hint=EMB_DTYPE)
    diagnose(t, out, emb_ref.timestep_embedding(rand, 64), "matches minidiff's embedding for random t, dim 64",
             _embedding_mistakes(rand, 64), hint="use dim // 2 frequencies, not a fixed number", atol=EMB_ATOL)
    out = t.call(fn, rand, 8, max_period=100.0)
    t.tensor(out, shape=(32, 8), what="timestep_embedding(t, 8, max_period=100.0)")
    diagnose(t, out, emb_ref.timestep_embedding(rand, 8, 100.0), "max_period = 100 sets the slowest frequency",
             {"you ignore max_period (10 000 hard-coded?): ω_i = max_period^(−i/(dim/2))": emb_ref.timestep_embedding(rand, 8)},
             hint="ω_i = exp(−log(max_period) · i / (dim/2))", atol=EMB_ATOL)


# ---------------------------------------------------------------- 2. the loss L_simple


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
        self.inputs = (x_t.detach().clone(), t)
        return self.a * self.sigma[t].reshape(-1, *([1] * (x_t.dim() - 1))) * x_t


def _same_draws(s: NoiseSchedule, model: _ScaledOracle, x0: torch.Tensor):
    """L_simple and its gradient ∂L/∂a on the t and ε the learner drew, read back from the model's last
    input x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε; None if the model was not called with a (B,) LongTensor t."""
    x_t, ts = getattr(model, "inputs", (None, None))
    if not (isinstance(ts, torch.Tensor) and ts.dtype == torch.long and ts.shape == (x0.shape[0],) and x_t.shape == x0.shape):
        return None
    ab = s.alphas_cumprod.to(torch.float64)[ts.clamp(0, s.T)].reshape(-1, *([1] * (x0.dim() - 1)))
    eps = ((x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt().clamp_min(1e-12)).to(x0.dtype)
    a = model.a.detach().clone().requires_grad_(True)
    pred = a * model.sigma[ts].reshape(-1, *([1] * (x0.dim() - 1))) * x_t
    loss = F.mse_loss(pred, eps)
    return loss.detach(), torch.autograd.grad(loss, [a]), F.mse_loss(pred, x0).detach()


def _folded_d(loss: torch.Tensor, x0: torch.Tensor) -> dict:
    """The values that folding the 2-D data's D = 2 into a constant gives on other data."""
    D = x0[0].numel()
    hint = ("you folded the data's dimension into a constant (D = 2 for the points): average over every coordinate, "
            f"whatever x0's shape (F.mse_loss; here D = {D})")
    return {hint: loss * D / 2, hint + " ": loss / 2} if D != 2 else {}

def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@exercise("04", "ddpm_loss", points=3)
def ddpm_loss(t: Tester, fn):
    """ddpm_loss(schedule, model, x0, generator) -> L_simple (DDPM eq. 14) as a 0-dim tensor with gradients."""
    s = NoiseSchedule(torch.tensor([0.05, 0.15, 0.3, 0.5, 0.7], dtype=torch.float64))  # T = 5
    one_minus = 1 - s.alphas_cumprod[1:]  # 1 − ᾱ_t, t = 1..5
    x0 = torch.randn(40_000, 2)
    a0 = 0.5
    model = _ScaledOracle(s, a0)
    loss = t.call(fn, s, model, x0, _gen(0))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        t.check(False, "ddpm_loss returns the loss as a tensor with one element",
                f"got {type(loss).__name__}", hint="return F.mse_loss(...), not loss.item(): the training loop calls loss.backward()",
                decisive=True)
        raise Abort
    if not model.seen:
        t.check(False, "ddpm_loss calls model(x_t, t)", hint="the model predicts ε from the noisy x_t and t", decisive=True)
        raise Abort
    ts = model.seen[-1]
    t.check(isinstance(ts, torch.Tensor) and ts.dtype == torch.long and tuple(ts.shape) == (x0.shape[0],),
            "t is a LongTensor of shape (B,), one timestep per example",
            f"got {getattr(ts, 'dtype', type(ts).__name__)} of shape {tuple(getattr(ts, 'shape', ()))}",
            hint="t = torch.randint(1, schedule.T + 1, (B,), generator=generator)")
    if isinstance(ts, torch.Tensor):
        t.check(int(ts.min()) == 1 and int(ts.max()) == s.T, "t covers 1..T (both ends included)",
                f"got t from {int(ts.min())} to {int(ts.max())}",
                hint="torch.randint's upper end is exclusive: randint(1, T + 1, ...) gives 1..T", decisive=True)
    x_t, _ = model.inputs
    if tuple(x_t.shape) == tuple(x0.shape) and isinstance(ts, torch.Tensor) and ts.dtype == torch.long \
            and ts.shape == (x0.shape[0],) and 1 <= int(ts.min()) and int(ts.max()) <= s.T:
        ab = s.alphas_cumprod[ts].reshape(-1, 1)
        eps = (x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()  # the ε the learner drew, if x_t is DDPM eq. 4
        t.check(abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02,
                "the model sees x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ε ~ N(0, I)",
                f"(x_t − √ᾱ_t x_0)/√(1 − ᾱ_t) has mean {eps.mean().item():.3f} and std {eps.std().item():.3f}",
                hint="ε = torch.randn(x0.shape, generator=generator): normal (randn, not rand), and x_t by DDPM eq. 4 "
                     "(the model gets x_t, not x_0)", decisive=True)
    value = float(loss.detach())
    expected = (1 - (2 * a0 - a0**2) * one_minus).mean().item()
    off_by_one = (1 - (2 * a0 - a0**2) * (1 - s.alphas_cumprod[:-1])).mean().item()
    hint = "x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (DDPM eq. 4), loss = mean over batch and coordinates of (ε − ε_θ(x_t, t))²"
    if abs(value - 2 * expected) < 0.03:
        hint = "average over the coordinates too (F.mse_loss), not only over the batch"
    elif abs(value - off_by_one) < 0.015:
        hint = "off by one: t runs from 1 to T, and ᾱ_t is schedule.alphas_cumprod[t]"
    t.check(abs(value - expected) < 0.015, "the loss equals L_simple in expectation (a model with a known loss)",
            f"expected about {expected:.4f}, got {value:.4f}", hint=hint, decisive=True)
    # ∂L/∂a = −2 (1 − a)(1 − ᾱ_t) on average: the gradient must reach the model's parameter
    grad = (-2 * (1 - a0) * one_minus).mean().item()
    got = None
    if loss.requires_grad:
        model.a.grad = None
        loss.backward()
        got = None if model.a.grad is None else model.a.grad.item()
    t.check(got is not None and abs(got - grad) < 0.01, "gradients flow from the loss into the model",
            f"expected ∂L/∂a ≈ {grad:+.4f}, got {'no gradient' if got is None else f'{got:+.4f}'}",
            hint=core.NO_GRAD_HINT if got is None else
            "a gradient flows, but not L_simple's: with x_t by DDPM eq. 4, ε ~ N(0, I) and F.mse_loss(model(x_t, t), ε), "
            "∂L/∂a = −2 (1 − a)(1 − ᾱ_t) on average", decisive=True)
    # the same generator, the same numbers
    small = x0[:256]
    a = t.call(fn, s, model, small, _gen(1))
    b = t.call(fn, s, model, small, _gen(1))
    c = t.call(fn, s, model, small, _gen(2))
    t.check(torch.equal(torch.as_tensor(a).detach(), torch.as_tensor(b).detach())
            and not torch.equal(torch.as_tensor(a).detach(), torch.as_tensor(c).detach()),
            "the same generator gives the same loss (t and ε are drawn from `generator`)",
            hint="pass generator=generator to torch.randint and torch.randn")
    ref = loss_ref.ddpm_loss(s, model, small, _gen(1))
    t.close(a, ref, "with the same generator, the same loss as minidiff.losses.ddpm_loss", rtol=1e-5, atol=1e-6, decisive=False,
            hint="draw t first, then ε, both from `generator` (minidiff's order); ε = torch.randn(x0.shape, generator=generator)")
    # the exact gradient on the draws the learner made (2-D points)
    small_model = _ScaledOracle(s, 0.3)
    loss = t.call(fn, s, small_model, small, _gen(4))
    same = _same_draws(s, small_model, small)
    if same is not None:
        grad_close(t, loss, [small_model.a], same[1], "∂L/∂a by autograd equals L_simple's on the same t and ε",
                   hint="loss = F.mse_loss(model(x_t, t), ε): the mean of (ε_θ − ε)² over the batch and the coordinates",
                   rtol=1e-4, atol=1e-6)
    # images: any rank, and the mean over every coordinate (D = 16 here)
    imgs = torch.randn(8, 1, 4, 4)
    img_model = _ScaledOracle(s, 0.4)
    out = t.call(fn, s, img_model, imgs, _gen(3))
    t.tensor(out, shape=(), dtype=torch.float32, what="the loss on a batch of 8 images of shape 1×4×4")
    seen = img_model.seen[-1] if img_model.seen else None
    ok = t.check(isinstance(seen, torch.Tensor) and tuple(seen.shape) == (8,), "works for images too (x0 of shape (B, C, H, W))",
                 hint="t has shape (B,) = (x0.shape[0],); draw ε with the shape of x0; add_noise handles any shape",
                 decisive=True)
    same = _same_draws(s, img_model, imgs) if ok else None
    if same is not None:
        diagnose(t, out, same[0], "images: the loss is L_simple on the t and ε you drew (mean over all 16 coordinates)",
                 {**_folded_d(same[0], imgs), "the model predicts the noise: the target is ε, not x_0": same[2]},
                 hint="x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ᾱ_t reshaped to (B, 1, 1, 1); loss = F.mse_loss(model(x_t, t), ε)",
                 rtol=1e-4, atol=1e-6)
        grad_close(t, out, [img_model.a], same[1], "images: ∂L/∂a by autograd equals L_simple's on the same t and ε",
                   rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- 3. the training loop


def _loop(model, loss_fn, data, steps, batch_size, lr, generator, decay=True, weight_decay=0.0, zero_grad=True, shift=0):
    """The weights after a training loop with one known mistake switched on (for the hints)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    for s in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (s + shift) / steps)) if decay else lr
        batch = data[torch.randint(len(data), (batch_size,), generator=generator)]
        loss = loss_fn(model, batch, generator)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
    return _weights(model)


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _losses_of(out):
    return out.losses if hasattr(out, "losses") else out


@exercise("04", "train", points=3)
def train(t: Tester, fn):
    """train(model, loss_fn, data, steps, batch_size, lr, generator) -> TrainResult, like minidiff.training.train."""
    # 1. what the loop hands to loss_fn
    seen = []

    def spy(model, batch, generator):
        seen.append((batch.detach().clone(), generator))
        return model(batch).pow(2).mean()

    data = torch.randn(50, 3)
    gen = _gen(5)
    torch.manual_seed(0)
    out = t.call(fn, torch.nn.Linear(3, 3), spy, data, 6, batch_size=7, lr=0.01, generator=gen)
    ok = hasattr(out, "losses") and hasattr(out, "sampling_model")
    t.check(ok, "train returns a TrainResult (with .losses and .sampling_model)", f"got {type(out).__name__}",
            hint="return TrainResult(model=model, ema=None, losses=losses)")
    losses = _losses_of(out)
    good = isinstance(losses, (list, tuple)) and len(losses) == 6 and all(isinstance(v, float) for v in losses)
    t.check(good, "the losses are a list of `steps` Python floats, one per step",
            f"got {type(losses).__name__} of length {len(losses) if hasattr(losses, '__len__') else '?'}",
            hint="losses.append(loss.item()) after each step: .item() gives a float and lets the graph go")
    t.check(len(seen) == 6, "loss_fn is called once per step", f"it was called {len(seen)} times for 6 steps",
            hint="one batch, one loss, one optimiser step per step", decisive=True)
    if not seen:
        raise Abort
    batch, g = seen[0]
    t.check(tuple(batch.shape) == (7, 3), "each batch holds batch_size rows of data", f"got shape {tuple(batch.shape)}",
            hint="batch = data[torch.randint(len(data), (batch_size,), generator=generator)]")
    rows_ok = all(bool((b[:, None, :] == data[None]).all(-1).any(-1).all()) for b, _ in seen if b.shape[-1] == 3)
    t.check(rows_ok, "the batches are rows of data", hint="index data with random row numbers: data[idx]")
    t.check(all(gg is gen for _, gg in seen), "loss_fn gets the generator (so that its t and ε are reproducible too)",
            hint="call loss_fn(model, batch, generator)")

    # 2. a loss that does not depend on the random numbers: every row of data is the same
    def fixed_loss(model, batch, generator):
        return (model(batch) - torch.tensor([1.0, -2.0])).pow(2).mean()

    same_rows = torch.tensor([[0.5, -1.0]]).expand(40, 2).contiguous()
    torch.manual_seed(1)
    m0 = torch.nn.Linear(2, 2)
    kw = dict(batch_size=8, lr=0.05)
    m = copy.deepcopy(m0)
    t.call(fn, m, fixed_loss, same_rows, 25, generator=_gen(6), **kw)
    expected = copy.deepcopy(m0)
    train_ref.train(expected, fixed_loss, same_rows, 25, generator=_gen(6), show_progress=False, **kw)
    mistakes = {
        "the learning rate must decay: lr_s = lr · ½(1 + cos(π s / steps)), set in every param_group before the step":
            _loop(copy.deepcopy(m0), fixed_loss, same_rows, 25, 8, 0.05, _gen(6), decay=False),
        "torch.optim.AdamW decays the weights by 0.01 unless told otherwise: AdamW(..., weight_decay=0.0)":
            _loop(copy.deepcopy(m0), fixed_loss, same_rows, 25, 8, 0.05, _gen(6), weight_decay=0.01),
        "gradients pile up across steps: call opt.zero_grad() before loss.backward()":
            _loop(copy.deepcopy(m0), fixed_loss, same_rows, 25, 8, 0.05, _gen(6), zero_grad=False),
        "off by one in the learning rate: step s (from 0) uses cos(π s / steps), so the first step has the full lr":
            _loop(copy.deepcopy(m0), fixed_loss, same_rows, 25, 8, 0.05, _gen(6), shift=1),
    }
    diagnose(t, _weights(m), _weights(expected),
             "the weights after 25 steps equal minidiff.training.train's (AdamW, no weight decay, cosine learning rate)",
             mistakes, hint="AdamW(model.parameters(), lr=lr, weight_decay=0.0); each step: set the lr, zero_grad, "
                            "backward, step", rtol=1e-5, atol=1e-6)

    # 3. distinct rows: the same generator must draw the same batches as minidiff (whatever the optimiser does)
    def recorder(batches):
        def regress(model, batch, generator):
            batches.append(batch.detach().clone())
            return (model(batch) - 2 * batch.flip(1)).pow(2).mean()
        return regress

    rows = torch.randn(40, 2)
    mine, theirs = [], []
    t.call(fn, copy.deepcopy(m0), recorder(mine), rows, 10, generator=_gen(7), **kw)
    train_ref.train(copy.deepcopy(m0), recorder(theirs), rows, 10, generator=_gen(7), show_progress=False, **kw)
    t.check(len(mine) == len(theirs) and all(torch.equal(a, b) for a, b in zip(mine, theirs)),
            "with the same generator, the same batches as minidiff's train",
            hint="draw each batch with torch.randint(len(data), (batch_size,), generator=generator), before calling loss_fn")


# ---------------------------------------------------------------- 4. one sampling step


@exercise("04", "ddpm_step", points=3)
def ddpm_step(t: Tester, fn):
    """ddpm_step(schedule, eps, x_t, t, noise) -> x_{t−1} with σ_t² = β_t and no noise at t = 1."""
    s = NoiseSchedule.make("linear", T=50, beta_1=2e-3, beta_T=0.4)
    x_t = torch.randn(6, 2, dtype=torch.float64)
    eps = torch.randn(6, 2, dtype=torch.float64)
    ts = torch.tensor([1, 2, 10, 25, 49, 50])
    zero = torch.zeros_like(x_t)
    t.crash_hints["shape"] = core.BROADCAST_HINT
    out = t.call(fn, s, eps, x_t, ts, zero)
    t.tensor(out, shape=(6, 2), dtype=torch.float64, what="the step on float64 points (6, 2)")
    x0_hat = predict_x0(s, x_t, ts, eps)
    mean, _ = q_posterior_mean_var(s, x0_hat, x_t, ts)
    b = s.betas[ts].reshape(-1, 1)
    ab = s.alphas_cumprod[ts].reshape(-1, 1)
    al = s.alphas[ts].reshape(-1, 1)
    diagnose(t, out, mean, "with z = 0 the step returns the mean μ_θ of DDPM eq. 11",
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
    expected = samp_ref.ddpm_step(s, eps, x_t, ts, noise=z, sigma2="beta")
    t.close(out[0], expected[0], "no noise is added at t = 1 (z = 0 in Algorithm 2)",
            hint="use torch.where(t == 1, 0, σ_t) (per row) so that the last step returns the mean")
    diagnose(t, out[1:], expected[1:], "for t > 1 the noise is scaled by σ_t = √β_t",
             {
                 "σ_t² = β_t is a variance: multiply z by √β_t, not β_t": mean[1:] + b[1:] * z[1:],
                 "this exercise uses σ_t² = β_t, not β̃_t":
                     samp_ref.ddpm_step(s, eps, x_t, ts, noise=z, sigma2="beta_tilde")[1:],
             },
             hint="x_{t−1} = μ_θ + √β_t · z", rtol=1e-5, atol=1e-7)
    imgs = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    e_img = torch.randn_like(imgs)
    t_img = torch.tensor([3, 1, 40])
    out = t.call(fn, s, e_img, imgs, t_img, torch.ones_like(imgs))
    t.tensor(out, shape=(3, 1, 4, 4), what="the step on a batch of 1×4×4 images")
    t.close(out, samp_ref.ddpm_step(s, e_img, imgs, t_img, noise=torch.ones_like(imgs), sigma2="beta"),
            "works for images too (x of shape (B, C, H, W))",
            hint="reshape per-example coefficients to (B, 1, 1, 1): minidiff.schedules.extract does it for you",
            rtol=1e-5, atol=1e-7)
    # float32: the schedule's float64 tables must not turn the result into float64
    x32, e32, z32 = x_t.float(), eps.float(), z.float()
    out = t.call(fn, s, e32, x32, ts, z32)
    t.tensor(out, shape=(6, 2), dtype=torch.float32, what="the step on float32 points (6, 2)")
    t.close(out, samp_ref.ddpm_step(s, e32, x32, ts, noise=z32, sigma2="beta"), "float32 points: the same step",
            hint="x_{t−1} = (x_t − β_t/√(1 − ᾱ_t) · ε) / √α_t + σ_t z", rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 5. the sampler


class _GaussianEps(torch.nn.Module):
    """The exact ε* for data x_0 ~ N(m, s² I): q_t = N(√ᾱ_t m, (ᾱ_t s² + 1 − ᾱ_t) I), so
    ε*(x_t, t) = √(1 − ᾱ_t) (x_t − √ᾱ_t m) / (ᾱ_t s² + 1 − ᾱ_t). A parameter (= 1) makes
    its output carry gradients unless the sampler runs under torch.no_grad(). Records t."""

    def __init__(self, schedule: NoiseSchedule, m: float = 0.7, s: float = 0.5):
        super().__init__()
        self.abar = schedule.alphas_cumprod.float()
        self.m, self.s = m, s
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        self.seen = []

    def forward(self, x_t, t):
        self.seen.append(t)
        ab = self.abar[t].reshape(-1, *([1] * (x_t.dim() - 1)))
        return self.scale * (1 - ab).sqrt() * (x_t - ab.sqrt() * self.m) / (ab * self.s**2 + 1 - ab)


def _sample_without_noise(schedule, model, shape, generator):
    """Algorithm 2 with z = 0 at every step (a known mistake)."""
    x = torch.randn(shape, generator=generator)
    with torch.no_grad():
        for step in range(schedule.T, 0, -1):
            tt = torch.full((shape[0],), step, dtype=torch.long)
            x = samp_ref.ddpm_step(schedule, model(x, tt), x, tt, noise=torch.zeros_like(x))
    return x


@exercise("04", "ddpm_sample", points=3)
def ddpm_sample(t: Tester, fn):
    """ddpm_sample(schedule, model, shape, generator=...) -> x_0: x_T ~ N(0, I), then ddpm_step for t = T..1."""
    s = NoiseSchedule.make("linear", T=20, beta_1=5e-3, beta_T=0.5)
    model = _GaussianEps(s)
    n = 4000
    out = t.call(fn, s, model, (n, 2), generator=_gen(0))
    t.tensor(out, shape=(n, 2), dtype=torch.float32, what="ddpm_sample(schedule, model, (4000, 2))")
    t.check(not out.requires_grad, "the samples carry no autograd graph (sampling runs under torch.no_grad())",
            hint="call the model inside `with torch.no_grad():` — 200 steps of graph cost memory and time")
    ts = [int(tt.flatten()[0]) if isinstance(tt, torch.Tensor) and tt.numel() else tt for tt in model.seen]
    hint = "for t in range(schedule.T, 0, -1): one step each at t = T, T − 1, ..., 1"
    if ts and ts[-1] == 0:
        hint = "there is no step at t = 0: range(T, 0, -1) stops at t = 1"
    elif ts and ts[-1] == 2:
        hint = "the last step is t = 1 (it returns the mean): range(T, 0, -1), not range(T, 1, -1)"
    elif ts and ts[0] < ts[-1]:
        hint = "sampling runs backwards, from t = T down to t = 1"
    t.check(ts == list(range(s.T, 0, -1)), "the model is called once per step, at t = T, T − 1, ..., 1",
            f"it was called at t = {ts[:3]} ... {ts[-3:]} ({len(ts)} calls)" if ts else "it was never called", hint=hint,
            decisive=True)
    tt = model.seen[0] if model.seen else None
    t.check(isinstance(tt, torch.Tensor) and tt.dtype == torch.long and tuple(tt.shape) == (n,),
            "the model gets t as a LongTensor of shape (B,)",
            f"got {getattr(tt, 'dtype', type(tt).__name__)} of shape {tuple(getattr(tt, 'shape', ()))}",
            hint="tt = torch.full((B,), t, dtype=torch.long)")
    # the same distribution as minidiff's sampler, whatever the order of the random draws
    big = 20_000
    mine = t.call(fn, s, _GaussianEps(s), (big, 2), generator=_gen(1))
    ref = samp_ref.ddpm_sample(s, _GaussianEps(s), (big, 2), generator=_gen(2))
    if isinstance(mine, torch.Tensor) and mine.shape == ref.shape:
        mine = mine.detach().double()
        dm = (mine.mean(0) - ref.mean(0)).abs().max().item()
        ds = (mine.std(0) - ref.std(0)).abs().max().item()
        hint = "x_T ~ N(0, I), then x ← ddpm_step(schedule, model(x, t), x, t, z) with a fresh z ~ N(0, I) each step"
        if mine.std(0).max().item() < 0.8 * ref.std(0).min().item():
            hint = "the samples are too narrow: draw a fresh z ~ N(0, I) at every step and pass it to ddpm_step"
        t.check(dm < 0.03 and ds < 0.03, "the samples have the distribution of minidiff's ddpm_sample (20,000 samples)",
                f"mean {mine.mean().item():.3f} vs {ref.mean().item():.3f}, std {mine.std().item():.3f} vs {ref.std().item():.3f}",
                hint=hint, decisive=True)
    else:
        t.check(False, "the samples have the distribution of minidiff's ddpm_sample", "wrong shape",
                hint="return x_0 shaped like `shape`", decisive=True)
    # the same seed, the same samples
    expected = samp_ref.ddpm_sample(s, _GaussianEps(s), (n, 2), generator=_gen(0))
    same_draws = diagnose(t, out, expected, "with the same generator, the same samples as minidiff.sampling.ddpm_sample",
             {"no noise: add σ_t z with a fresh z ~ N(0, I) at every step (ddpm_step leaves it out at t = 1 itself)":
                  _sample_without_noise(s, _GaussianEps(s), (n, 2), _gen(0))},
             hint="draw x_T first, then one z per step, both with torch.randn(shape, generator=generator)")
    res = t.call(fn, s, _GaussianEps(s), (n, 2), generator=_gen(0), return_trajectory=True)
    if not (isinstance(res, tuple) and len(res) == 2):
        t.check(False, "return_trajectory=True returns (x_0, trajectory)", f"got {type(res).__name__}",
                hint="return x, torch.stack(traj) when return_trajectory is True")
    else:
        x, traj = res
        t.tensor(traj, shape=(s.T + 1, n, 2), what="the trajectory (x_T, x_{T−1}, ..., x_0)")
        start = traj[0].double()
        t.check(torch.equal(traj[-1].cpu(), torch.as_tensor(x).cpu())
                and abs(start.mean().item()) < 0.05 and abs(start.std().item() - 1) < 0.05,
                "the trajectory starts at x_T ~ N(0, I) and ends at the returned x_0",
                f"first state: mean {start.mean().item():.3f}, std {start.std().item():.3f}",
                hint="keep x_T, then the state after every step: T + 1 states, the last one x_0")
    imgs = t.call(fn, s, _GaussianEps(s), (3, 1, 4, 4), generator=_gen(4))
    t.tensor(imgs, shape=(3, 1, 4, 4), dtype=torch.float32, what="samples of shape (3, 1, 4, 4): works for images too")
    if same_draws:  # otherwise the 2D test above has already named the mistake in the random draws
        t.close(imgs, samp_ref.ddpm_sample(s, _GaussianEps(s), (3, 1, 4, 4), generator=_gen(4)),
                "images, the same generator: the same samples as minidiff.sampling.ddpm_sample",
                hint="nothing in the sampler depends on the rank of `shape`: t is (B,) = (shape[0],), x_T and z are randn(shape)",
                rtol=1e-4, atol=1e-5)
