"""Checks for lesson 19, diffusion as a data source and an enhancer.

    from minidiff.course.checks import lesson19 as check
    check.degrade(degrade)                          # x_lr = k×k block means; c = bicubic(x_lr) to 28×28, clamped
    check.sr_loss(sr_loss)                          # a low size per image, c, then the v-loss with v_θ([x_t; c], t)
    check.memorisation_share(memorisation_share)    # share of samples with d(s, train) < min_test d(x, train)

Closed forms first (a constant image stays constant; block means of a known pattern; a sample that copies a
training digit has distance 0), then minidiff's references on random inputs (float32 and float64, both low
sizes, images and feature vectors, non-default arguments). The outputs of known mistakes (subsampling or max
pooling instead of block means, nearest or bilinear upsampling, no clamp, one low size for the whole batch,
the condition left out, the median instead of the minimum, ...) are recomputed here so that a hint can name them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import superres as ref
from ...eval import memorisation as mem_ref
from ...eval.memorisation import nearest_neighbours
from ...schedules import NoiseSchedule
from ...utils import randint
from ...vpred import v_loss
from .core import Abort, Tester, diagnose, exercise, grad_close

# ---------------------------------------------------------------- 1. the low-resolution condition


def _pair(x_lr, mode="bicubic", clamp=True, align=False):
    kw = {} if mode == "nearest" else {"align_corners": align}
    c = F.interpolate(x_lr, size=(28, 28), mode=mode, **kw)
    return c.clamp(-1, 1) if clamp else c


@exercise("19", "degrade", points=3)
def degrade(t: Tester, fn):
    """(x_lr, c): x_lr = mean of each k×k block (k = 28 / low_size), c = bicubic(x_lr) to 28×28, clamped to [−1, 1]."""
    # closed forms: a constant image stays constant; a known 2×2 pattern averages to its mean
    const = torch.full((2, 1, 28, 28), 0.3)
    out = t.call(fn, const, 14)
    if not (isinstance(out, tuple) and len(out) == 2):
        t.check(False, "degrade returns a pair (x_lr, c)", f"got {type(out).__name__}",
                hint="return x_lr, c", decisive=True)
        raise Abort
    t.tensor(out[0], shape=(2, 1, 14, 14), dtype=torch.float32, what="x_lr for 14×14")
    t.close(out[0], torch.full((2, 1, 14, 14), 0.3), "a constant image gives a constant low-res digit",
            hint="each low-res pixel is the mean of its block (F.avg_pool2d(x0, k))")
    checker = torch.tensor([[1.0, -1.0], [-0.5, 0.5]]).repeat(14, 14).expand(1, 1, 28, 28).clone()
    out = t.call(fn, checker, 14)
    t.close(out[0], torch.zeros(1, 1, 14, 14), "a 2×2 pattern (1, −1; −0.5, 0.5) averages to 0 in every block",
            hint="take the mean of each 2×2 block, not one pixel of it (x0[..., ::2, ::2]) nor its max")
    # the reference on random digits: both low sizes, float32 and float64
    for size, dtype in ((7, torch.float32), (14, torch.float64), (7, torch.float64)):
        x0 = (torch.rand(3, 1, 28, 28, dtype=dtype) * 2.4 - 1.2).clamp(-1, 1)
        out = t.call(fn, x0, size)
        x_lr, c = ref.degrade(x0, size)
        k = 28 // size
        t.tensor(out[0], shape=(3, 1, size, size), dtype=dtype, what=f"x_lr ({size}×{size}, {dtype})")
        diagnose(t, out[0], x_lr, f"x_lr: {size}×{size} block means ({dtype})",
                 {"take the mean of each block (avg_pool2d), not one pixel of it (subsampling x0[..., ::k, ::k])":
                  x0[:, :, ::k, ::k],
                  "take the mean of each block, not its maximum (avg_pool2d, not max_pool2d)": F.max_pool2d(x0, k)},
                 hint=f"F.avg_pool2d(x0, {k})")
        t.tensor(out[1], shape=(3, 1, 28, 28), dtype=dtype, what=f"c ({size}×{size} → 28×28, {dtype})")
        diagnose(t, out[1], c, f"c: bicubic upsampling of the {size}×{size} digit to 28×28, clamped ({dtype})",
                 {"clamp c to [−1, 1]: bicubic overshoots at sharp edges": _pair(x_lr, clamp=False),
                  "upsample with mode='bicubic' (SR3), not 'nearest'": _pair(x_lr, "nearest"),
                  "upsample with mode='bicubic' (SR3), not 'bilinear'": _pair(x_lr, "bilinear"),
                  "use align_corners=False (pixel centres, as torch's default), not True": _pair(x_lr, align=True)},
                 hint="F.interpolate(x_lr, size=(28, 28), mode='bicubic', align_corners=False).clamp(-1, 1)",
                 rtol=1e-5, atol=1e-6)
    t.raises(fn, (torch.zeros(2, 1, 28, 28), 10), ValueError, "low_size = 10 raises a ValueError",
             hint="28 is not a multiple of 10: accept only 7 and 14 and raise ValueError otherwise")


# ---------------------------------------------------------------- 2. the SR3 training loss


class _Recorder(torch.nn.Module):
    """A tiny conditional v-model that records its inputs: out = a · x_t + b · c + t/1000."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.6))
        self.b = torch.nn.Parameter(torch.tensor(-0.4))
        self.calls = []

    def forward(self, x_t, t, cond):
        self.calls.append((x_t.detach(), t, cond.detach()))
        return self.a * x_t + self.b * cond + (t.to(x_t.dtype) / 1000).reshape(-1, 1, 1, 1)


def _sr_wrong(s, x0, seed, low_sizes, mistake):
    g = torch.Generator().manual_seed(seed)
    model = _Recorder()
    if mistake == "one_size":
        h = low_sizes[int(randint(len(low_sizes), (1,), g, x0.device))]
        cond = ref.degrade(x0, h)[1]
    else:
        pick = randint(len(low_sizes), (x0.shape[0],), g, x0.device)
        cond = torch.stack([ref.degrade(x0[i:i + 1], low_sizes[int(pick[i])])[1][0] for i in range(x0.shape[0])])
    if mistake == "zero_cond":
        cond = torch.zeros_like(x0)
    if mistake == "cond_is_x0":
        cond = x0
    return v_loss(s, lambda x_t, t: model(x_t, t, cond), x0, g)


@exercise("19", "sr_loss", points=4)
def sr_loss(t: Tester, fn):
    """pick = randint(len(low_sizes), (B,)) from the generator; c per image; then v_loss with v_θ(x_t, t, c)."""
    s = NoiseSchedule.make("cosine", 1000)
    for B, low_sizes, dtype in ((6, (7, 14), torch.float32), (5, (14,), torch.float64), (8, (14, 7), torch.float32)):
        x0 = (torch.rand(B, 1, 28, 28, dtype=dtype) * 2 - 1)
        model = _Recorder()
        kwargs = {} if low_sizes == (7, 14) else {"low_sizes": low_sizes}
        out = t.call(fn, s, model, x0, torch.Generator().manual_seed(5), **kwargs)
        what = f"B = {B}, low_sizes = {low_sizes}, {dtype}"
        t.tensor(out, shape=(), dtype=dtype, what=f"the loss ({what})")
        ref_model = _Recorder()
        expected = ref.sr_loss(s, ref_model, x0, torch.Generator().manual_seed(5), low_sizes=low_sizes)
        mistakes = {"draw one low size per image (randint(len(low_sizes), (B,), ...)), not one for the whole batch":
                    _sr_wrong(s, x0, 5, low_sizes, "one_size"),
                    "pass the condition c = bicubic(x_lr) to the model, not zeros": _sr_wrong(s, x0, 5, low_sizes, "zero_cond"),
                    "the condition is the degraded digit, never the clean x0 (the model would just copy it)":
                    _sr_wrong(s, x0, 5, low_sizes, "cond_is_x0")}
        if low_sizes != (7, 14):
            mistakes["use the low_sizes you are given, not (7, 14) always"] = ref.sr_loss(
                s, _Recorder(), x0, torch.Generator().manual_seed(5))
        ok = diagnose(t, out, expected, f"the SR loss, {what}", mistakes,
                      hint="pick = randint(len(low_sizes), (B,), generator, x0.device) first; c from degrade(...)[1] for "
                           "each image's size; then v_loss(schedule, lambda x_t, t: model(x_t, t, c), x0, generator)",
                      rtol=1e-5, atol=1e-6)
        if model.calls:
            c = model.calls[0][2]
            t.check(c.shape == x0.shape, "the model sees a 28×28 condition c", f"got {tuple(c.shape)}",
                    hint="upsample the low-res digit to 28×28 before it reaches the model")
        if ok:
            want = torch.autograd.grad(expected, [ref_model.a, ref_model.b])
            grad_close(t, out, [model.a, model.b], want, f"its gradient reaches the model ({what})")
    t.raises(fn, (s, _Recorder(), torch.zeros(2, 1, 14, 14)), ValueError, "x0 of 14×14 raises a ValueError",
             hint="x0 are the 28×28 digits; degrade (or your own check) must refuse other sizes with a ValueError")


# ---------------------------------------------------------------- 3. the memorisation statistic


def _share(d_gen, d_test, how):
    if how == "median":
        return float((d_gen < d_test.median()).double().mean())
    if how == "pairwise":
        return float((d_gen < d_test).double().mean())
    if how == "le":
        return float((d_gen <= d_test.min()).double().mean())
    return float((d_gen < d_test.min()).double().mean())


@exercise("19", "memorisation_share", points=3)
def memorisation_share(t: Tester, fn):
    """A dict: share = mean 1[d(s) < min_test d(x)], threshold, d_gen, d_test, nearest, null = 1/(n_test + 1)."""
    # closed form: two samples copy training rows 3 and 5 exactly (d = 0), two are far away
    train = torch.randn(10, 1, 4, 4)
    test = train[:4] + 0.5
    samples = torch.cat([train[3:4], train[5:6], train[:2] + 3.0])
    out = t.call(fn, samples, train, test)
    if not isinstance(out, dict) or not {"share", "threshold", "d_gen", "d_test", "nearest", "null"} <= set(out):
        t.check(False, "memorisation_share returns a dict with share, threshold, d_gen, d_test, nearest, null",
                f"got {type(out).__name__}" + (f" with keys {sorted(out)}" if isinstance(out, dict) else ""),
                hint="return {'share': ..., 'threshold': ..., 'd_gen': ..., 'd_test': ..., 'nearest': ..., 'null': ...}",
                decisive=True)
        raise Abort
    t.close(torch.as_tensor(float(out["share"])), torch.tensor(0.5),
            "two exact copies of training digits among four samples: share 0.5",
            hint="share = fraction of samples whose nearest-training distance is below the smallest test distance")
    t.close(out["d_gen"][:2], torch.zeros(2, dtype=torch.float64), "a copy of a training digit has distance 0",
            hint="d(s) is the distance to the nearest *training* digit", atol=1e-6)
    t.close(torch.as_tensor(out["nearest"][:2]), torch.tensor([3, 5]), "the nearest training digits of the copies are rows 3 and 5",
            hint="return the index of each sample's nearest training row (nearest_neighbours(samples, train)[1])")
    t.close(torch.as_tensor(float(out["null"])), torch.tensor(1 / 5), "null = 1/(n_test + 1) = 1/5 for 4 test digits",
            hint="a fresh sample is the smallest of n_test + 1 exchangeable distances with probability 1/(n_test + 1)")
    # the reference on random images and on feature vectors
    for shape_tr, shape_q, n_gen, n_test in (((300, 1, 8, 8), (1, 8, 8), 40, 30), ((200, 16), (16,), 25, 50)):
        train = torch.randn(*shape_tr)
        test = torch.randn(n_test, *shape_q)
        samples = torch.cat([train[:n_gen // 2] + 0.3 * torch.randn(n_gen // 2, *shape_q),
                             torch.randn(n_gen - n_gen // 2, *shape_q)])
        out = t.call(fn, samples, train, test)
        expected = mem_ref.memorisation_share(samples, train, test)
        what = f"train {shape_tr}, {n_gen} samples, {n_test} test rows"
        d_gen, _ = nearest_neighbours(samples, train)
        d_test, _ = nearest_neighbours(test, train)
        d_gen_test, _ = nearest_neighbours(samples, test)
        diagnose(t, torch.as_tensor(float(out["share"])), torch.tensor(expected["share"]), f"share ({what})",
                 {"compare with the *smallest* test distance (min over the test digits), not the median":
                  torch.tensor(_share(d_gen, d_test, "median")),
                  "compare each sample with the minimum of all test distances, not sample i with test digit i":
                  torch.tensor(_share(d_gen, d_test[:n_gen], "pairwise")) if n_test >= n_gen else torch.tensor(-1.0),
                  "measure each sample's distance to the *training* set, not to the test set":
                  torch.tensor(_share(d_gen_test, d_test, "min")),
                  "give the share as a fraction in [0, 1], not a percentage": torch.tensor(100 * expected["share"])},
                 hint="share = (d_gen < d_test.min()).double().mean()")
        t.close(torch.as_tensor(out["d_gen"]), expected["d_gen"], f"d_gen ({what})",
                hint="nearest_neighbours(samples, train)[0]: Euclidean distances of the flattened rows", rtol=1e-6)
        t.close(torch.as_tensor(out["d_test"]), expected["d_test"], f"d_test ({what})",
                hint="nearest_neighbours(test, train)[0]: the test digits' distances to the *training* set", rtol=1e-6)
        t.close(torch.as_tensor(float(out["threshold"])), torch.tensor(expected["threshold"]),
                f"threshold = min d_test ({what})", rtol=1e-6)
        t.close(torch.as_tensor(float(out["null"])), torch.tensor(expected["null"]), f"null = 1/(n_test + 1) ({what})",
                hint="n_test + 1, not n_test")
        t.check(isinstance(out["share"], float), "share is a Python float", f"got {type(out['share']).__name__}",
                hint="float(...) of the 0-dim tensor")
