"""Checks for lesson 08, classifier-free guidance.

    from minidiff.course.checks import lesson08 as check
    check.cfg_loss(cfg_loss)            # label dropout inside the conditional L_simple
    check.guided_eps(guided_eps)        # ε(∅) + w·(ε(y) − ε(∅)) from one pass on the doubled batch
    check.guided_sample(guided_sample)  # guided DDIM sampling, x̂_0 clipped

The conditional "network" in these checks is a tiny closed-form stand-in, so that every
expected value is known exactly and a check runs in milliseconds: ε(x, t, y) = x/2 + e_y + t/1000,
with its own vector e_∅ for the null class (index num_classes). It counts its calls and records
the labels, batch sizes and timesteps it was given, so that a check can tell how it was used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import guidance as ref
from ...ddim import ddim_timesteps
from ...losses import ddpm_loss
from ...sampling import simulate
from ...schedules import NoiseSchedule
from ...utils import randn
from . import core
from .core import Tester, diagnose, exercise, grad_close


class ToyConditional(torch.nn.Module):
    """ε(x, t, y) = gain · (x/2 + e_y + t/1000), with labels 0..K−1 and the null class ∅ = K.

    gain is a parameter equal to 1, so that a loss built on the model can be backpropagated.
    It refuses labels outside 0..K (a common slip: −1 or None as the null class) and records
    its calls, so that checks can tell how it was used.
    """

    def __init__(self, num_classes: int = 10, shape=(1, 4, 4)):
        super().__init__()
        self.num_classes = num_classes
        g = torch.Generator().manual_seed(8)
        self.register_buffer("emb", torch.randn(num_classes + 1, *shape, generator=g))
        self.gain = torch.nn.Parameter(torch.ones(()))
        self.reset()

    def reset(self):
        self.calls, self.batch_sizes, self.labels, self.times = 0, [], [], []

    def forward(self, x, t, y=None):
        self.calls += 1
        B = x.shape[0]
        if y is None:
            y = torch.full((B,), self.num_classes, dtype=torch.long)
        if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != (B,):
            raise TypeError(f"the model wants y as a LongTensor of shape ({B},), got {y!r:.80}")
        if (y < 0).any() or (y > self.num_classes).any():
            raise ValueError(f"labels must lie in 0..{self.num_classes} ({self.num_classes} is ∅), got {y.tolist()[:20]}")
        t = torch.as_tensor(t).expand(B) if torch.as_tensor(t).dim() == 0 else torch.as_tensor(t)
        self.batch_sizes.append(B)
        self.labels.append(y.detach().clone())
        self.times.append(int(t.flatten()[0]))
        self.inputs = (x.detach().clone(), t, y.detach().clone())
        return self.gain * (0.5 * x + self.emb[y] + t.float().reshape(-1, *([1] * (x.dim() - 1))) / 1000)


# -- exercise 1: label dropout in the conditional loss ----------------------------------------


def _same_draws(schedule, model: ToyConditional, x0: torch.Tensor):
    """L_simple and ∂L/∂gain on the t, ε and dropped labels the learner drew, read back from the model's
    last call (x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε); None if that call was not one (B,) batch."""
    x_t, ts, y = getattr(model, "inputs", (None, None, None))
    if x_t is None or x_t.shape != x0.shape or ts.shape != (x0.shape[0],) or ts.is_floating_point():
        return None
    ab = schedule.alphas_cumprod.double()[ts.clamp(0, schedule.T)].reshape(-1, *([1] * (x0.dim() - 1)))
    eps = ((x_t.double() - ab.sqrt() * x0.double()) / (1 - ab).sqrt()).to(x0.dtype)
    gain = model.gain.detach().clone().requires_grad_(True)
    pred = gain * (0.5 * x_t + model.emb[y] + ts.float().reshape(-1, *([1] * (x0.dim() - 1))) / 1000)
    loss = F.mse_loss(pred, eps)
    return loss.detach(), torch.autograd.grad(loss, [gain]), eps


def _folded_d(loss: torch.Tensor, x0: torch.Tensor, D_seen: int = 4) -> dict:
    """What folding the dimension of the first data (D = 4) into a constant gives on data of another D."""
    D = x0[0].numel()
    hint = (f"you folded the data's dimension into a constant (D = {D_seen} for the 1×2×2 images): average over every "
            f"coordinate, whatever x0's shape (F.mse_loss; here D = {D})")
    return {hint: loss * D / D_seen, hint + " ": loss * D_seen / D} if D != D_seen else {}


@exercise("08", "cfg_loss", points=3)
def cfg_loss(t: Tester, fn):
    """Ho & Salimans 2022, Algorithm 1: L_simple with each label replaced by ∅ = num_classes with
    probability p_uncond, independently; the reference with the same generator."""
    K = 10
    schedule = NoiseSchedule.make("linear", T=100)
    model = ToyConditional(K, shape=(1, 2, 2))
    x0 = torch.randn(20_000, 1, 2, 2)
    y = torch.randint(0, K, (20_000,))
    y_before = y.clone()
    loss = t.call(fn, schedule, model, (x0, y), torch.Generator().manual_seed(0), p_uncond=0.2)
    t.tensor(loss, shape=(), dtype=torch.float32, what="cfg_loss(schedule, model, (x0, y), generator, p_uncond=0.2)")
    t.check(loss.requires_grad, "the loss can be backpropagated into the model", hint=core.NO_GRAD_HINT)
    t.check(torch.equal(y, y_before), "the batch's labels are left unchanged (the dropout makes a new tensor)",
            hint="build the new labels with torch.where(...) instead of writing into y (y[mask] = ... edits the batch)")
    t.check(model.calls == 1, "the model is called once, on the whole batch", f"got {model.calls} calls",
            hint="one call model(x_t, t, y') with the dropped labels y'", decisive=True)
    if model.calls < 1:
        return
    seen = model.labels[-1]
    y = y_before
    same = _same_draws(schedule, model, x0)
    if same is not None:
        eps = same[2].double()
        t.check(abs(eps.mean().item()) < 0.02 and abs(eps.std().item() - 1) < 0.02,
                "the model sees x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ε ~ N(0, I), t in 1..T",
                f"(x_t − √ᾱ_t x_0)/√(1 − ᾱ_t) has mean {eps.mean().item():.3f} and std {eps.std().item():.3f}",
                hint="as in ddpm_loss: t = sample_timesteps(...), ε = randn(x0.shape, generator, x0.device) (normal, "
                     "not rand), x_t = add_noise(schedule, x0, ε, t), and the model gets x_t", decisive=True)
    dropped = seen != y
    null_ok = t.check(bool((seen[dropped] == K).all()), "a dropped label becomes the null class ∅ = num_classes = 10",
            f"dropped labels became {sorted(set(seen[dropped].tolist()))[:5]}",
            hint="∅ is one index past the last class (10 for MNIST), not 0 or −1: the embedding table has "
                 "num_classes + 1 rows", decisive=True)
    rate = (seen == K).float().mean().item() if null_ok else dropped.float().mean().item() * K / (K - 1)
    t.check(abs(rate - 0.2) < 0.015, "about 20% of the labels are dropped when p_uncond = 0.2", f"dropped {rate:.1%}",
            hint="drop where torch.rand(...) < p_uncond (with > you drop 1 − p_uncond of them)" if abs(rate - 0.8) < 0.02
            else "draw one uniform number per label and compare it with p_uncond", decisive=True)
    t.check(0 < int(dropped[:100].sum()) < 100, "labels are dropped one by one, not the whole batch at once",
            hint="draw a random number for every label (shape y.shape), not one for the batch")

    def labels_with(p, model, n=200, classes=K):
        model.reset()
        yy = torch.randint(0, classes, (n,))
        t.call(fn, schedule, model, (torch.randn(n, 1, 2, 2), yy), torch.Generator().manual_seed(1), p_uncond=p)
        return yy, (model.labels[-1] if model.labels else None)

    yy, seen = labels_with(0.0, model)
    t.check(seen is not None and torch.equal(seen, yy), "p_uncond = 0 keeps every label")
    yy, seen = labels_with(1.0, model)
    t.check(seen is not None and bool((seen == K).all()), "p_uncond = 1 drops every label")
    yy, seen = labels_with(0.5, ToyConditional(3, shape=(1, 2, 2)), n=1000, classes=3)
    t.check(seen is not None and set(seen.unique().tolist()) <= {0, 1, 2, 3} and bool((seen == 3).any()),
            "with a 3-class model the null class is 3", hint="use model.num_classes, do not hard-code 10")

    # the default p_uncond is 0.2 (the signature's)
    model.reset()
    t.call(fn, schedule, model, (x0, y), torch.Generator().manual_seed(2))
    rate = (model.labels[-1] == K).float().mean().item() if model.labels else -1.0
    t.check(abs(rate - 0.2) < 0.015, "without p_uncond, about 20% of the labels are dropped (the default p_uncond=0.2)",
            f"dropped {rate:.1%}", hint="keep the signature: def cfg_loss(schedule, model, batch, generator=None, p_uncond=0.2)")

    # the gradient, and 2-D points: L_simple on the draws the learner made
    for shape in ((1, 2, 2), (3,)):
        m = ToyConditional(K, shape=shape)
        xb = torch.randn(256, *shape)
        got = t.call(fn, schedule, m, (xb, torch.randint(0, K, (256,))), torch.Generator().manual_seed(3), p_uncond=0.3)
        t.tensor(got, shape=(), dtype=torch.float32, what=f"cfg_loss on x0 of shape (256, {', '.join(map(str, shape))})")
        same = _same_draws(schedule, m, xb)
        if same is None:
            x_t = getattr(m, "inputs", (None,))[0]
            wrong_shape = x_t is not None and x_t.shape != xb.shape
            t.check(False, f"x0 of shape (256, {', '.join(map(str, shape))}): the model gets x_t shaped like x0",
                    f"got x_t of shape {tuple(x_t.shape)}" if wrong_shape else "",
                    hint=core.BROADCAST_HINT if wrong_shape else "one call model(x_t, t, y') with x_t shaped like x0",
                    decisive=True)
            continue
        if len(shape) == 1:
            diagnose(t, got, same[0], "2-D points (256, 3): the loss is L_simple on the t, ε and labels you drew",
                     _folded_d(same[0], xb), hint="x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ᾱ_t reshaped to (B, 1, …) "
                                                  "(add_noise does it); loss = F.mse_loss(model(x_t, t, y'), ε)",
                     rtol=1e-4, atol=1e-6)
        grad_close(t, got, [m.gain], same[1], f"x0 of shape (256, {', '.join(map(str, shape))}): ∂loss/∂gain by autograd "
                   "equals L_simple's on the same draws", rtol=1e-4, atol=1e-6)

    # the value, against minidiff with the same generator
    model = ToyConditional(K, shape=(1, 2, 2))
    xb, yb = torch.randn(64, 1, 2, 2), torch.randint(0, K, (64,))
    got = t.call(fn, schedule, model, (xb, yb), torch.Generator().manual_seed(5), p_uncond=0.3)
    t.tensor(got, shape=(), what="cfg_loss on a batch of 64")
    expected = ref.cfg_loss(schedule, model, (xb, yb), torch.Generator().manual_seed(5), p_uncond=0.3)
    g = torch.Generator().manual_seed(5)
    drop = torch.rand(yb.shape, generator=g) < 0.3  # the dropout's draw, then L_simple with dropped labels set to 0
    to_zero = ddpm_loss(schedule, lambda x_t, tt: model(x_t, tt, torch.where(drop, 0, yb)), xb, g)
    diagnose(t, got, expected, "matches minidiff.guidance.cfg_loss (p_uncond = 0.3, same generator)",
             {"the labels are never dropped: the network must also learn ε(x_t, t, ∅)":
                  ddpm_loss(schedule, lambda x_t, tt: model(x_t, tt, yb), xb, torch.Generator().manual_seed(5)),
              "dropped labels must become ∅ = num_classes, not 0 (0 is a real digit)": to_zero},
             hint="draw the dropout first, torch.rand(y.shape, generator=generator), then t = sample_timesteps(...), "
                  "ε = randn(...), x_t = add_noise(...), as in ddpm_loss, and the MSE between ε and the model's output",
             rtol=1e-4, atol=1e-6)


# -- exercise 2: the guided prediction ---------------------------------------------------------


@exercise("08", "guided_eps", points=3)
def guided_eps(t: Tester, fn):
    """ε(∅) + w·(ε(y) − ε(∅)): one pass on the doubled batch, w = 0 / 1 / 3, a (B,) tensor of scales."""
    model = ToyConditional()
    B = 6
    x = torch.randn(B, 1, 4, 4)
    tt = torch.randint(1, 1000, (B,))
    y = torch.randint(0, 10, (B,))
    e_y, e_null = model(x, tt, y).detach(), model(x, tt, None).detach()
    e_zero = model(x, tt, torch.zeros_like(y)).detach()
    for w in (0.0, 1.0, 3.0):
        model.reset()
        out = t.call(fn, model, x, tt, y, w)
        t.tensor(out, shape=x.shape, what=f"guided_eps(..., w={w:g})")
        expected = e_null + w * (e_y - e_null)
        what = {0.0: "w = 0 gives the unconditional ε(x_t, t, ∅)", 1.0: "w = 1 gives the conditional ε(x_t, t, y)",
                3.0: "w = 3 gives ε(∅) + 3·(ε(y) − ε(∅))"}[w]
        diagnose(
            t, out, expected, what,
            {
                "that is (1 + w)·ε(y) − w·ε(∅), the other convention: ours is ε(∅) + w·(ε(y) − ε(∅))":
                    (1 + w) * e_y - w * e_null,
                "the two predictions are swapped: start from ε(∅) and move w times towards ε(y)":
                    e_y + w * (e_null - e_y),
                "you return ε(x_t, t, y): the scale w is not used": e_y,
                "∅ is the label num_classes (= 10), not 0 (0 is a real digit)": e_zero + w * (e_y - e_zero),
            },
            hint="ε(∅) is the model called with labels num_classes (= 10), ε(y) with the labels y",
            rtol=1e-4, atol=1e-5,
        )
        if w == 3.0:
            t.check(model.calls == 1 and model.batch_sizes == [2 * B],
                    "one forward pass on the doubled batch of 2B images (labels [y; ∅])",
                    f"got {model.calls} calls on batches of {model.batch_sizes}",
                    hint="torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null]) in one call, "
                         "then eps.chunk(2) gives ε(y) and ε(∅)")
    x2 = torch.randn(3, 1, 4, 4)
    t2, y2 = torch.tensor([5, 500, 995]), torch.tensor([1, 4, 7])
    out = t.call(fn, model, x2, t2, y2, 2.0)
    t.tensor(out, shape=x2.shape, what="guided_eps on a batch of 3")
    e2y, e2n = model(x2, t2, y2).detach(), model(x2, t2, None).detach()
    t.close(out, ref.combine(e2y, e2n, 2.0), "each image is guided towards its own label and t (batch of 3, w = 2)",
            hint="keep the batch order: if you stack [x_t; x_t] with labels [y; ∅], the first half of the "
                 "output is ε(y)", rtol=1e-4, atol=1e-5)
    w = torch.tensor([0.0, 1.0, 4.0])
    out = t.call(fn, model, x2, t2, y2, w)
    t.tensor(out, shape=x2.shape, dtype=torch.float32, what="guided_eps with w a tensor of shape (3,)")
    t.close(out, ref.combine(e2y, e2n, w), "w may be a tensor (B,): one scale per image",
            hint="reshape w to (B, 1, 1, 1) so that it broadcasts over each image: "
                 "w.reshape(-1, *([1] * (x_t.dim() - 1)))", rtol=1e-4, atol=1e-5)
    # 2-D points: a tensor w must broadcast over any rank
    points = ToyConditional(shape=(2,))
    xp = torch.randn(3, 2)
    t.crash_hints["shape"] = core.BROADCAST_HINT
    out = t.call(fn, points, xp, t2, y2, w)
    t.tensor(out, shape=(3, 2), dtype=torch.float32, what="guided_eps on 2-D points (3, 2) with w of shape (3,)")
    t.close(out, ref.combine(points(xp, t2, y2).detach(), points(xp, t2, None).detach(), w),
            "2-D points: each point guided with its own w", hint="w.reshape(-1, *([1] * (x_t.dim() - 1))) fits any rank; "
            "w[:, None, None, None] fits images only", rtol=1e-4, atol=1e-5)


# -- exercise 3: guided DDIM sampling -------------------------------------------------------------


@torch.no_grad()
def _ddim(schedule, model, y, w, shape, steps, generator, clip, mistake=None):
    """Guided DDIM (η = 0) as minidiff does it, or with one known mistake."""

    def step(x, t, t_prev):
        eps = ref.guided_eps(model, x, torch.full_like(y, t), y, w)
        ab, ab_prev = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[t_prev].item()
        if mistake == "no_sqrt":
            x0 = (x - (1 - ab) * eps) / ab
            return ab_prev * x0 + (1 - ab_prev) * eps
        x0 = (x - (1 - ab) ** 0.5 * eps) / ab**0.5
        if clip is not None and mistake != "no_clip":
            x0 = x0.clamp(-clip, clip)
            if mistake != "stale_eps":
                eps = (x - ab**0.5 * x0) / (1 - ab) ** 0.5
        x_prev = ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * eps
        return x_prev.clamp(-clip, clip) if mistake == "clip_x" else x_prev

    ts = ddim_timesteps(schedule.T, steps) + ([] if mistake == "no_last" else [0])
    return simulate(step, randn((len(y), *shape), generator), ts)


DDIM_MISTAKES = {
    "no_sqrt": "x̂_0 = (x_t − √(1 − ᾱ_t) ε̃)/√ᾱ_t and x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̃: square roots of ᾱ, "
               "not ᾱ itself",
    "no_last": "the last jump goes to t_prev = 0 (ᾱ_0 = 1, x_0 = x̂_0): timesteps ddim_timesteps(T, steps) + [0]",
    "no_clip": "clip x̂_0 to [−clip_denoised, clip_denoised] when clip_denoised is not None",
    "stale_eps": "after clipping x̂_0, recompute ε̃ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t) so that the step stays consistent",
    "clip_x": "clip x̂_0, the predicted clean image, not x_prev",
}


@exercise("08", "guided_sample", points=3)
def guided_sample(t: Tester, fn):
    """Guided DDIM (η = 0) over ddim_timesteps(T, steps) + [0] from x_T ~ N(0, I), with the guided ε̃;
    x̂_0 clipped when asked; the reference with the same generator."""
    model = ToyConditional()
    schedule = NoiseSchedule.make("linear", T=200, beta_1=5e-4, beta_T=0.1)
    y = torch.tensor([0, 3, 3, 7, 9, 5])
    out = t.call(fn, schedule, model, y, 3.0, (1, 4, 4), steps=5, generator=torch.Generator().manual_seed(0),
                 clip_denoised=None)
    t.tensor(out, shape=(6, 1, 4, 4), what="guided_sample(schedule, model, y (6 labels), 3.0, (1, 4, 4), steps=5, ...)")
    times = [s for i, s in enumerate(model.times) if i == 0 or s != model.times[i - 1]]
    expected_times = ddim_timesteps(200, 5)
    t.check(times == expected_times, "the model is asked about t = ddim_timesteps(T, steps) = "
            f"{expected_times}, in that order", f"got t = {times[:12]}",
            hint="jump through ts = ddim_timesteps(schedule.T, steps) + [0]: simulate(step, x_T, ts) calls "
                 "step(x, t, t_prev) for each consecutive pair", decisive=True)
    for clip in (None, 1.0, 0.5):
        got = out if clip is None else t.call(fn, schedule, model, y, 3.0, (1, 4, 4), steps=5,
                                              generator=torch.Generator().manual_seed(0), clip_denoised=clip)
        t.tensor(got, shape=(6, 1, 4, 4), dtype=torch.float32, what=f"guided_sample(..., clip_denoised={clip})")
        expected = ref.guided_sample(schedule, model, y, 3.0, (1, 4, 4), steps=5,
                                     generator=torch.Generator().manual_seed(0), clip_denoised=clip)
        wrong = {hint: _ddim(schedule, model, y, 3.0, (1, 4, 4), 5, torch.Generator().manual_seed(0), clip, mistake)
                 for mistake, hint in DDIM_MISTAKES.items() if clip is not None or mistake in ("no_sqrt", "no_last")}
        wrong["that is the conditional model: use the guided ε̃ = guided_eps(model, x_t, t, y, w)"] = \
            ref.guided_sample(schedule, model, y, 1.0, (1, 4, 4), steps=5, generator=torch.Generator().manual_seed(0),
                              clip_denoised=clip)
        if clip == 0.5:
            wrong["you clip to [−1, 1] whatever clip_denoised is: clamp(−clip_denoised, clip_denoised)"] = \
                _ddim(schedule, model, y, 3.0, (1, 4, 4), 5, torch.Generator().manual_seed(0), 1.0)
        diagnose(t, got, expected,
                 f"matches minidiff.guidance.guided_sample (w = 3, 5 steps, clip_denoised={clip}, same generator)",
                 wrong, hint="x_T = randn((len(y), *shape), generator, device); each jump: ε̃, then x̂_0 (DDIM eq. 9), "
                             "then x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̃ (DDIM eq. 12 with η = 0)",
                 rtol=1e-4, atol=1e-5)
    points = ToyConditional(shape=(2,))
    got = t.call(fn, schedule, points, y, 3.0, (2,), steps=5, generator=torch.Generator().manual_seed(1), clip_denoised=1.0)
    t.tensor(got, shape=(6, 2), dtype=torch.float32, what="guided_sample(..., shape=(2,)): 2-D points")
    t.close(got, ref.guided_sample(schedule, points, y, 3.0, (2,), steps=5, generator=torch.Generator().manual_seed(1),
                                   clip_denoised=1.0),
            "2-D points: matches minidiff.guidance.guided_sample (shape (2,), same generator)",
            hint="x_T = randn((len(y), *shape), ...): nothing in the sampler may assume images", rtol=1e-4, atol=1e-5)
    again = t.call(fn, schedule, model, y, 3.0, (1, 4, 4), steps=5, generator=torch.Generator().manual_seed(0),
                   clip_denoised=None)
    t.check(isinstance(again, torch.Tensor) and torch.equal(again.cpu(), out.cpu()),
            "the same generator seed gives the same samples",
            hint="draw x_T from the generator: randn((len(y), *shape), generator, device)")
