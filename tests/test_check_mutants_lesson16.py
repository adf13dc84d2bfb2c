"""Lesson 16's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson15.py."""

import pytest
import torch
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff.course.checks import lesson16
from minidiff.data.sound import karplus_strong
from minidiff.egnn import com_free_loss, egcl_update, remove_mean
from minidiff.eval.molecules import wasserstein1
from minidiff.forward import add_noise
from minidiff.losses import sample_timesteps
from minidiff.utils import randn

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson16.karplus_strong, (karplus_strong,)),
    (lesson16.com_free_loss, (com_free_loss,)),
    (lesson16.egcl_update, (egcl_update,)),
    (lesson16.wasserstein1, (wasserstein1,)),
]


# ---------------------------------------------------------------- 1. karplus_strong
def _ks(f0, decay, length=4096, sample_rate=8000, generator=None, floor=False, half=0.5, use_decay=True, lag=0,
        fixed_sr=False, float32=False, fresh_noise=False):
    sr = 8000 if fixed_sr else sample_rate
    P = (sr / f0.double()).floor().long() if floor else torch.round(sr / f0.double()).long()
    B = f0.shape[0]
    if fresh_noise:
        y = torch.zeros(B, length, dtype=torch.float64)
        y[:, :] = 2 * torch.rand(B, length, generator=generator, dtype=torch.float64).flip(1) - 1
    else:
        y = 2 * torch.rand(B, length, generator=generator, dtype=torch.float64) - 1
    for b in range(B):
        p = int(P[b])
        d = float(decay[b]) if use_decay else 1.0
        for n in range(p + 1 + lag, length):
            y[b, n] = d * half * (y[b, n - p - lag] + y[b, n - p - 1 - lag])
    return y.float() if float32 else y


MUTANTS += [
    ("16 ks: floor", lesson16.karplus_strong, (lambda *a, **k: _ks(*a, **k, floor=True),), "floor", True),
    ("16 ks: no half", lesson16.karplus_strong, (lambda *a, **k: _ks(*a, **k, half=1.0),), "without the ½", True),
    ("16 ks: no decay", lesson16.karplus_strong, (lambda *a, **k: _ks(*a, **k, use_decay=False),), "never fades", True),
    ("16 ks: off by one", lesson16.karplus_strong, (lambda *a, **k: _ks(*a, **k, lag=1),), "the delay is P samples", True),
    ("16 ks: sample rate ignored", lesson16.karplus_strong, (lambda *a, **k: _ks(*a, **k, fixed_sr=True),),
     "round(sample_rate / f0)", True),
    ("16 ks: float32", lesson16.karplus_strong, (lambda *a, **k: _ks(*a, **k, float32=True),), "dtype", False),
    ("16 ks: other noise", lesson16.karplus_strong, (lambda *a, **k: _ks(*a, **k, fresh_noise=True),),
     "draw the pluck first", True),
]


# ---------------------------------------------------------------- 2. com_free_loss
def _cfl(schedule, model, batch, generator=None, project=True, masked_mean=True, mean_all=False, per_atom=False,
         order=False, detach=False):
    x0, h, bonds, mask = batch
    if order:
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
        t = sample_timesteps(schedule, x0.shape[0], x0.device, generator)
    else:
        t = sample_timesteps(schedule, x0.shape[0], x0.device, generator)
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
    if project:
        noise = remove_mean(noise, mask) if masked_mean else noise - noise.mean(1, keepdim=True)
    x_t = add_noise(schedule, x0, noise, t)
    eps = model(x_t, t, h, bonds, mask)
    if detach:
        eps = eps.detach()
    m = mask.to(x0.dtype)[..., None]
    if mean_all:
        return ((eps - noise) ** 2).mean()
    if per_atom:
        return ((eps - noise) ** 2 * m).sum() / m.sum()
    return ((eps - noise) ** 2 * m).sum() / (m.sum() * x0.shape[-1])


MUTANTS += [
    ("16 loss: noise not projected", lesson16.com_free_loss, (lambda *a: _cfl(*a, project=False),),
     "project ε to zero centre of mass", True),
    ("16 loss: mean over padding too", lesson16.com_free_loss, (lambda *a: _cfl(*a, masked_mean=False),),
     "real atoms only", True),
    ("16 loss: padding in the average", lesson16.com_free_loss, (lambda *a: _cfl(*a, mean_all=True),),
     "padding rows are not atoms", True),
    ("16 loss: per atom, D forgotten", lesson16.com_free_loss, (lambda *a: _cfl(*a, per_atom=True),),
     "mask.sum() · D", True),
    ("16 loss: noise before t", lesson16.com_free_loss, (lambda *a: _cfl(*a, order=True),), "sample_timesteps", True),
    ("16 loss: detached", lesson16.com_free_loss, (lambda *a: _cfl(*a, detach=True),), "detached", True),
]


# ---------------------------------------------------------------- 3. egcl_update
def _egcl(layer, h, x, a, mask, sign=1, norm=True, real_n=True, pair_mask=True, sq=True, residual=True,
          mask_h=True, use_x=False):
    B, N, _ = h.shape
    m = mask.to(x.dtype)
    pair = (m[:, :, None] * m[:, None, :] if pair_mask else torch.ones(B, N, N)) * (1 - torch.eye(N))
    diff = sign * (x[:, :, None, :] - x[:, None, :, :])
    d2 = diff.pow(2).sum(-1, keepdim=True)
    hi, hj = h[:, :, None, :].expand(B, N, N, -1), h[:, None, :, :].expand(B, N, N, -1)
    feat = d2 if sq else d2.sqrt()
    if use_x:  # absolute coordinates leak into the message: not invariant
        feat = feat + x[:, :, None, :1]
    msg = layer.phi_e(torch.cat([hi, hj, feat, a], -1)) * pair[..., None]
    dist = torch.where(pair[..., None] > 0, d2, torch.ones_like(d2)).sqrt()
    n = m.sum(1).clamp(min=2)[:, None, None] if real_n else torch.full((B, 1, 1), float(N))
    x = x + (diff / (dist + 1 if norm else 1) * layer.phi_x(msg) * pair[..., None]).sum(2) / (n - 1)
    upd = layer.phi_h(torch.cat([h, msg.sum(2)], -1))
    h = (h + upd if residual else upd) * (m[..., None] if mask_h else 1)
    return h, x


MUTANTS += [
    ("16 egcl: x_j − x_i", lesson16.egcl_update, (lambda *a: _egcl(*a, sign=-1),), "not x_j − x_i", True),
    ("16 egcl: no normalisation", lesson16.egcl_update, (lambda *a: _egcl(*a, norm=False),), "(‖x_i − x_j‖ + 1)", True),
    ("16 egcl: padded n", lesson16.egcl_update, (lambda *a: _egcl(*a, real_n=False),), "number of real atoms", True),
    ("16 egcl: padding sends messages", lesson16.egcl_update, (lambda *a: _egcl(*a, pair_mask=False),),
     "only between real atoms", True),
    ("16 egcl: distance not squared", lesson16.egcl_update, (lambda *a: _egcl(*a, sq=False),), "squared distance", True),
    ("16 egcl: h not residual", lesson16.egcl_update, (lambda *a: _egcl(*a, residual=False),), "residual", True),
    ("16 egcl: absolute x in messages", lesson16.egcl_update, (lambda *a: _egcl(*a, use_x=True),), "never x itself", True),
    ("16 egcl: returns x only", lesson16.egcl_update, (lambda *a: _egcl(*a)[1],), "return h, x", True),
]


# ---------------------------------------------------------------- 4. wasserstein1
def w1_unsorted(a, b):
    n = min(len(a), len(b))
    return float((a[:n] - b[:n]).abs().double().mean())


def w1_truncate(a, b):
    n = min(len(a), len(b))
    return float((a.sort().values[:n].double() - b.sort().values[:n].double()).abs().mean())


def w1_w2(a, b):
    n = min(len(a), len(b))
    return float((a.sort().values[:n].double() - b.sort().values[:n].double()).pow(2).mean().sqrt())


def w1_means(a, b):
    return float((a.double().mean() - b.double().mean()).abs())


def w1_tensor(a, b):
    return torch.tensor(wasserstein1(a, b))


def w1_no_check(a, b):
    if a.numel() == 0 or b.numel() == 0:
        return 0.0
    return wasserstein1(a, b)


MUTANTS += [
    ("16 w1: not sorted", lesson16.wasserstein1, (w1_unsorted,), "sort both samples", True),
    ("16 w1: cuts the longer sample", lesson16.wasserstein1, (w1_truncate,), "do not cut the longer sample", True),
    ("16 w1: W2", lesson16.wasserstein1, (w1_w2,), "W2", True),
    ("16 w1: difference of means", lesson16.wasserstein1, (w1_means,), "difference of the means", True),
    ("16 w1: a tensor", lesson16.wasserstein1, (w1_tensor,), "float(", False),
    ("16 w1: no ValueError", lesson16.wasserstein1, (w1_no_check,), "ValueError", False),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula)
