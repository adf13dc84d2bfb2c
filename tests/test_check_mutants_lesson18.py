"""Lesson 18's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson15.py."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import distill, gan
from minidiff.course.checks import lesson18
from minidiff.eval import coverage

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson18.gan_losses, (gan.gan_losses,)),
    (lesson18.distillation_target, (distill.distillation_target,)),
    (lesson18.precision_recall, (coverage.precision_recall,)),
]


# ---------------------------------------------------------------- 1. gan_losses
def gl_saturating(r, f):
    return F.softplus(-r).mean() + F.softplus(f).mean(), -F.softplus(f).mean()


def gl_swapped_labels(r, f):
    return F.softplus(r).mean() + F.softplus(-f).mean(), F.softplus(-f).mean()


def gl_log_sigmoid(r, f):
    return -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean(), -torch.log(torch.sigmoid(f)).mean()


def gl_sum(r, f):
    return F.softplus(-r).sum() + F.softplus(f).sum(), F.softplus(-f).sum()


def gl_no_fake_term(r, f):
    return F.softplus(-r).mean(), F.softplus(-f).mean()


def gl_detached(r, f):
    return (F.softplus(-r).mean() + F.softplus(f).mean()).detach(), F.softplus(-f).mean().detach()


def gl_order(r, f):
    return F.softplus(-f).mean(), F.softplus(-r).mean() + F.softplus(f).mean()


def gl_g_plus(r, f):
    return F.softplus(-r).mean() + F.softplus(f).mean(), F.softplus(f).mean()


MUTANTS += [
    ("18 gan: saturating G loss", lesson18.gan_losses, (gl_saturating,), "saturating", True),
    ("18 gan: labels swapped", lesson18.gan_losses, (gl_swapped_labels,), "signs swapped", True),
    ("18 gan: log(sigmoid) overflows", lesson18.gan_losses, (gl_log_sigmoid,), "softplus", True),
    ("18 gan: sum not mean", lesson18.gan_losses, (gl_sum,), "not sum", True),
    ("18 gan: D loss without fake term", lesson18.gan_losses, (gl_no_fake_term,), "one is missing", True),
    ("18 gan: detached", lesson18.gan_losses, (gl_detached,), "detached", True),
    ("18 gan: (L_G, L_D) order", lesson18.gan_losses, (gl_order,), "return (loss_D, loss_G)", True),
    ("18 gan: G loss label not flipped", lesson18.gan_losses, (gl_g_plus,), "label flipped", True),
]


# ---------------------------------------------------------------- 2. distillation_target
def _ab(schedule, t, x, sqrt=True):
    abar = schedule.alphas_cumprod
    a, s = (abar.sqrt(), (1 - abar).sqrt()) if sqrt else (abar, 1 - abar)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return a[t].to(x.dtype).reshape(shape), s[t].to(x.dtype).reshape(shape)


def dt_inverted(schedule, x_t, t, x_next, t_next):
    a, s = _ab(schedule, t, x_t)
    an, sn = _ab(schedule, t_next, x_t)
    return (x_next - s / sn * x_t) / (an - s / sn * a)


def dt_no_alpha_t(schedule, x_t, t, x_next, t_next):
    a, s = _ab(schedule, t, x_t)
    an, sn = _ab(schedule, t_next, x_t)
    return (x_next - sn / s * x_t) / an


def dt_abar(schedule, x_t, t, x_next, t_next):
    a, s = _ab(schedule, t, x_t, sqrt=False)
    an, sn = _ab(schedule, t_next, x_t, sqrt=False)
    return (x_next - sn / s * x_t) / (an - sn / s * a)


def dt_x_next(schedule, x_t, t, x_next, t_next):
    return x_next.clone()


def dt_float64(schedule, x_t, t, x_next, t_next):
    abar = schedule.alphas_cumprod
    shape = (-1,) + (1,) * (x_t.dim() - 1)
    a, s = abar[t].sqrt().reshape(shape), (1 - abar[t]).sqrt().reshape(shape)
    an, sn = abar[t_next].sqrt().reshape(shape), (1 - abar[t_next]).sqrt().reshape(shape)
    return (x_next - sn / s * x_t) / (an - sn / s * a)


def dt_flat(schedule, x_t, t, x_next, t_next):
    a, s = (v.reshape(-1, 1) for v in _ab(schedule, t, x_t[:, :1].flatten(1)))
    an, sn = (v.reshape(-1, 1) for v in _ab(schedule, t_next, x_t[:, :1].flatten(1)))
    return (x_next.flatten(1) - sn / s * x_t.flatten(1)) / (an - sn / s * a)


MUTANTS += [
    ("18 target: σ ratio inverted", lesson18.distillation_target, (dt_inverted,), "division by zero", True),
    ("18 target: α_t term missing", lesson18.distillation_target, (dt_no_alpha_t,), "α_t term is missing", True),
    ("18 target: ᾱ not √ᾱ", lesson18.distillation_target, (dt_abar,), "square roots", True),
    ("18 target: returns x_next", lesson18.distillation_target, (dt_x_next,), "not the target itself", True),
    ("18 target: float64 result", lesson18.distillation_target, (dt_float64,), "dtype", False),
    ("18 target: flattens images", lesson18.distillation_target, (dt_flat,), "shape", True),
]


# ---------------------------------------------------------------- 3. precision_recall
def _pr(real, fake, k, kth, swap=False, strict=False):
    if min(len(real), len(fake)) <= k:
        raise ValueError("need more than k points")

    def inside(p, support):
        r = torch.cdist(support, support).kthvalue(kth, dim=1).values
        d = torch.cdist(p, support)
        return ((d < r[None]) if strict else (d <= r[None])).any(1).double().mean().item()

    p, r = inside(fake, real), inside(real, fake)
    return (r, p) if swap else (p, r)


def pr_self(real, fake, k=3):
    return _pr(real, fake, k, k)


def pr_swapped(real, fake, k=3):
    return _pr(real, fake, k, k + 1, swap=True)


def pr_k3(real, fake, k=3):
    return _pr(real, fake, 3, 4)


def pr_strict(real, fake, k=3):
    return _pr(real, fake, k, k + 1, strict=True)


def pr_no_check(real, fake, k=3):
    return coverage.precision_recall(real, fake, k) if min(len(real), len(fake)) > k else (0.0, 0.0)


def pr_other_radii(real, fake, k=3):
    """precision with the FAKE set's radii around the real points."""
    if min(len(real), len(fake)) <= k:
        raise ValueError("need more than k points")
    rf = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    rr = torch.cdist(real, real).kthvalue(k + 1, dim=1).values
    p = (torch.cdist(fake, real) <= rf[:, None]).any(1).double().mean().item()
    r = (torch.cdist(real, fake) <= rr[:, None]).any(1).double().mean().item()
    return p, r


MUTANTS += [
    ("18 pr: self as neighbour", lesson18.precision_recall, (pr_self,), "not itself", True),
    ("18 pr: swapped", lesson18.precision_recall, (pr_swapped,), "swapped", True),
    ("18 pr: k hard-coded", lesson18.precision_recall, (pr_k3,), "not 3", True),
    ("18 pr: strict <", lesson18.precision_recall, (pr_strict,), "not <", True),
    ("18 pr: no ValueError", lesson18.precision_recall, (pr_no_check,), "more than k points", False),
    ("18 pr: radii of the wrong set", lesson18.precision_recall, (pr_other_radii,), "precision", True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula)
