"""Checks for lesson 18, GANs against diffusion, and generation in a few steps.

    from minidiff.course.checks import lesson18 as check
    check.gan_losses(gan_losses)                       # (L_D, L_G): BCE for D, the non-saturating loss for G
    check.distillation_target(distillation_target)     # x̃ that makes one DDIM step land on two teacher steps
    check.precision_recall(precision_recall)           # k-NN precision and recall (Kynkäänniemi et al. 2019)

Closed forms first (logits 0 give 2 log 2 and log 2; huge logits stay finite; one DDIM step with x̂_0 = x̃ lands on
x_{t''}; x̃ = x_{t''} when t'' = 0; identical sets have precision = recall = 1; a hand-made 1-D case), then minidiff's
references on random inputs (points and images, float32 and float64, non-default k). Known mistakes (the saturating
generator loss, swapped labels, log(sigmoid(·)) overflowing, the σ ratio inverted, ᾱ for √ᾱ, the point counted as
its own neighbour, the radii of the wrong set, ...) are recomputed so that a hint can name them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ... import gan as gan_ref
from ...ddim import ddim_step
from ...distill import alpha_sigma
from ...distill import distillation_target as target_ref
from ...eval import coverage as cov_ref
from ...schedules import NoiseSchedule, extract
from .core import Tester, diagnose, exercise, grad_close

# ---------------------------------------------------------------- 1. the non-saturating loss pair


def _pair(t: Tester, out, what: str):
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        t.check(False, f"{what}: returns the pair (loss_D, loss_G)", f"got {type(out).__name__}",
                hint="return loss_d, loss_g", decisive=True)
        return None
    return out


@exercise("18", "gan_losses", points=3)
def gan_losses(t: Tester, fn):
    """L_D = mean softplus(−D(x)) + mean softplus(D(G(z))), L_G = mean softplus(−D(G(z)))."""
    # closed form: every logit 0 (D says ½ everywhere)
    out = _pair(t, t.call(fn, torch.zeros(8), torch.zeros(8)), "logits 0")
    if out is None:
        return
    for got, want, name in ((out[0], 2 * math.log(2), "L_D"), (out[1], math.log(2), "L_G")):
        if t.tensor(got, shape=(), dtype=torch.float32, what=f"{name} at logits 0"):
            t.close(got, torch.tensor(want), f"{name} = {'2 log 2' if name == 'L_D' else 'log 2'} when every logit is 0",
                    hint="binary cross-entropy: L_D = −log σ(D(x)) − log(1 − σ(D(G(z)))), L_G = −log σ(D(G(z)))")
    # huge logits: log(sigmoid(·)) underflows to −inf; softplus does not
    big = torch.tensor([40.0, -40.0, 60.0, -60.0])
    out = _pair(t, t.call(fn, big, -big), "huge logits")
    if out is not None:
        ok = all(isinstance(o, torch.Tensor) and bool(torch.isfinite(o).all()) for o in out)
        t.check(ok, "the losses stay finite for logits ±40 and ±60", f"got {out[0]!r}, {out[1]!r}",
                hint="log σ(x) = −softplus(−x) and log(1 − σ(x)) = −softplus(x): torch.log(torch.sigmoid(x)) "
                     "gives −inf once σ rounds to 0 or 1", decisive=True)
    # random logits, with gradients, two batch sizes, float64
    for n, dtype in ((16, torch.float32), (5, torch.float64)):
        g = torch.Generator().manual_seed(n)
        r = (2 * torch.randn(n, generator=g, dtype=dtype) + 0.5).requires_grad_(True)
        f = (2 * torch.randn(n, generator=g, dtype=dtype) - 0.5).requires_grad_(True)
        out = _pair(t, t.call(fn, r, f), f"{n} random logits ({str(dtype).removeprefix('torch.')})")
        if out is None:
            return
        ld, lg = out
        if not (t.tensor(ld, shape=(), dtype=dtype, what="L_D") and t.tensor(lg, shape=(), dtype=dtype, what="L_G")):
            return
        want_d, want_g = gan_ref.discriminator_loss(r, f), gan_ref.generator_loss(f)
        rd, fd = r.detach(), f.detach()
        diagnose(t, ld, want_d, f"L_D on {n} random logits",
                 {"real images are labelled 1 and fakes 0: L_D = softplus(−D(x)) + softplus(D(G(z))), signs swapped":
                  (F.softplus(rd) + F.softplus(-fd)).mean(),
                  "average each term over its batch (mean), not sum": F.softplus(-rd).sum() + F.softplus(fd).sum(),
                  "L_D has two terms, real and fake: one is missing": F.softplus(-rd).mean(),
                  "(returned (loss_G, loss_D)? return (loss_D, loss_G))": F.softplus(-fd).mean()},
                 hint="L_D = mean softplus(−real_logits) + mean softplus(fake_logits)")
        diagnose(t, lg, want_g, f"L_G on {n} random logits",
                 {"that is the saturating loss log(1 − σ(D(G(z)))) = −softplus(D(G(z))), whose gradient vanishes when D "
                  "wins; the non-saturating loss is −log σ(D(G(z))) = softplus(−D(G(z)))": (-F.softplus(fd)).mean(),
                  "L_G is the fake term of L_D with the label flipped: softplus(−D(G(z))), not softplus(D(G(z)))":
                  F.softplus(fd).mean(),
                  "L_G depends on the fake logits only, not on the real ones": F.softplus(-rd).mean(),
                  "(returned (loss_G, loss_D)? return (loss_D, loss_G))": want_d.detach()},
                 hint="L_G = mean softplus(−fake_logits)")
        gd = torch.autograd.grad(want_d, [r, f])
        grad_close(t, ld, [r, f], gd, f"the gradient of L_D with respect to both logits ({n})")
        gg = torch.autograd.grad(want_g, [f])
        grad_close(t, lg, [f], gg, f"the gradient of L_G with respect to the fake logits ({n})",
                   mistakes={"the saturating loss: its gradient is −σ(D(G(z))) instead of −(1 − σ(D(G(z))))":
                             -torch.sigmoid(fd) / n})
    t.raises(fn, (torch.zeros(4, dtype=torch.long), torch.zeros(4)), (TypeError, ValueError),
             "integer logits raise a TypeError or ValueError", hint="check real_logits.is_floating_point() first")


# ---------------------------------------------------------------- 2. the distillation target


def _ddim_land(s, x_t, t, x0, t_next):
    """One DDIM step (η = 0) from x_t at t with x̂_0 = x0 given: the ε consistent with x0, then DDIM eq. 12
    (in float64: near t = T, α_t is tiny and float32 loses digits)."""
    x_t, x0 = x_t.double(), x0.double()
    a, sig = alpha_sigma(s, t, x_t)
    return ddim_step(s, (x_t - a * x0) / sig, x_t, t, t_next)


def _target_wrong(s, x_t, t, x_next, t_next, mistake):
    a, sig = alpha_sigma(s, t, x_t)
    a_n, sig_n = alpha_sigma(s, t_next, x_t)
    if mistake == "abar":
        ab, ab_n = extract(s.alphas_cumprod, t, x_t), extract(s.alphas_cumprod, t_next, x_t)
        a, sig, a_n, sig_n = ab, 1 - ab, ab_n, 1 - ab_n
    ratio = sig / sig_n if mistake == "inverted" else sig_n / sig
    if mistake == "no_alpha_t":
        return (x_next - ratio * x_t) / a_n
    return (x_next - ratio * x_t) / (a_n - ratio * a)


@exercise("18", "distillation_target", points=3)
def distillation_target(t: Tester, fn):
    """x̃ = (x_{t''} − (σ_{t''}/σ_t) x_t) / (α_{t''} − (σ_{t''}/σ_t) α_t), α = √ᾱ, σ = √(1 − ᾱ)."""
    s = NoiseSchedule.make("cosine", 1000)
    cases = (((6, 2), torch.float32, [1000, 750, 500, 250, 125, 60], [500, 250, 250, 0, 60, 0]),
             ((4, 1, 4, 4), torch.float64, [900, 400, 31, 2], [700, 10, 0, 1]))
    for shape, dtype, ts, tn in cases:
        g = torch.Generator().manual_seed(len(shape))
        x_t = torch.randn(shape, generator=g, dtype=dtype)
        x_next = 0.5 * torch.randn(shape, generator=g, dtype=dtype)
        tt, tnn = torch.tensor(ts), torch.tensor(tn)
        what = f"x_t {tuple(shape)} {str(dtype).removeprefix('torch.')}, t = {ts}, t'' = {tn}"
        out = t.call(fn, s, x_t, tt, x_next, tnn)
        if not t.tensor(out, shape=shape, dtype=dtype, what=f"x̃ ({what})",
                        dtype_hint="the schedule's tables are float64: extract them at x_t's dtype"):
            continue
        # oracle: one DDIM step with x̂_0 = x̃ lands on x_next
        landed = _ddim_land(s, x_t, tt, out.detach(), tnn)
        t.close(landed, x_next.double(), f"one DDIM step from x_t with x̂_0 = x̃ lands on x_{{t''}} ({what})",
                hint="solve x_{t''} = α_{t''} x̃ + σ_{t''} (x_t − α_t x̃)/σ_t for x̃", rtol=1e-3, atol=1e-4)
        last = tnn == 0
        t.close(out[last], x_next[last], "x̃ = x_{t''} where t'' = 0 (σ_0 = 0, α_0 = 1)",
                hint="at t'' = 0 the student's x̂_0 must be the teacher's final sample itself", rtol=1e-4, atol=1e-5)
        expected = target_ref(s, x_t, tt, x_next, tnn)
        diagnose(t, out, expected, f"x̃ against minidiff.distill.distillation_target ({what})",
                 {"the ratio is σ_{t''}/σ_t (the later time's σ on top), not σ_t/σ_{t''}":
                  _target_wrong(s, x_t, tt, x_next, tnn, "inverted"),
                  "the denominator is α_{t''} − (σ_{t''}/σ_t) α_t: the α_t term is missing":
                  _target_wrong(s, x_t, tt, x_next, tnn, "no_alpha_t"),
                  "α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t): take the square roots of alphas_cumprod":
                  _target_wrong(s, x_t, tt, x_next, tnn, "abar"),
                  "x_{t''} is not the target itself: x̃ is the x̂_0 whose single DDIM step reaches it": x_next,
                  "t and t'' are swapped: x_t is at the later time t, x_next at t''":
                  target_ref(s, x_t, tnn.clamp(min=1), x_next, torch.zeros_like(tnn))},
                 hint="α = schedule.alphas_cumprod.sqrt(), σ = (1 − alphas_cumprod).sqrt(), gathered at t and t''",
                 rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 3. precision and recall


def _pr_wrong(real, fake, k, mistake):
    def radii(f, kk):
        return torch.cdist(f, f).kthvalue(kk, dim=1).values

    def inside(p, support, r):
        return (torch.cdist(p, support) <= r[None, :]).any(1).double().mean().item()

    if mistake == "self":  # the point itself counted as its first neighbour
        return inside(fake, real, radii(real, k)), inside(real, fake, radii(fake, k))
    raise ValueError(mistake)


def _two(t: Tester, out, what):
    try:
        p, r = (float(v) for v in out)
        return p, r
    except (TypeError, ValueError):
        t.check(False, f"{what}: returns two numbers (precision, recall)", f"got {type(out).__name__}",
                hint="return precision, recall (Python floats)", decisive=True)
        return None


@exercise("18", "precision_recall", points=3)
def precision_recall(t: Tester, fn):
    """precision = share of fake points inside some real ball B(φ_r, r_k(φ_r)); recall: the same with the roles
    swapped; r_k = distance to the k-th nearest other point of the same set."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 3, generator=g)
    out = _two(t, t.call(fn, a, a.clone(), k=3), "identical sets")
    if out is not None:
        t.close(torch.tensor(out), torch.tensor([1.0, 1.0]), "identical sets have precision = recall = 1",
                hint="a point at distance 0 from a ball's centre is inside it (≤, not <)")
    out = _two(t, t.call(fn, a, a + 100.0, k=3), "far-apart sets")
    if out is not None:
        t.close(torch.tensor(out), torch.tensor([0.0, 0.0]), "sets 100 apart have precision = recall = 0",
                hint="a fake point counts only when it lies inside some real point's k-NN ball")
    # a hand-made 1-D case: real 0..9, fake {0.5, 1.5, 2.5, 3.5, 20, 20.5}; k = 1
    real = torch.arange(10.0)[:, None]
    fake = torch.tensor([[0.5], [1.5], [2.5], [3.5], [20.0], [20.5]])
    out = _two(t, t.call(fn, real, fake, k=1), "the 1-D case")
    if out is not None:
        diagnose(t, torch.tensor(out, dtype=torch.float64), torch.tensor([4 / 6, 0.5], dtype=torch.float64),
                 "real = 0..9, fake = {0.5, 1.5, 2.5, 3.5, 20, 20.5}, k = 1: precision 4/6, recall 5/10",
                 {"(precision, recall) are swapped: precision asks whether the FAKE points are realistic, recall whether "
                  "the REAL points are covered": torch.tensor([0.5, 4 / 6], dtype=torch.float64),
                  "the nearest neighbour of a point is not itself: skip the zero distance (the (k+1)-th smallest)":
                  torch.tensor(_pr_wrong(real, fake, 1, "self"), dtype=torch.float64)},
                 hint="radii r_k from each set's own distances; precision: fake inside the real balls; recall: the reverse")
    # a fake point exactly on the edge of a real ball counts: 10 is at distance r_1(9) = 1 from 9
    out = _two(t, t.call(fn, torch.arange(10.0)[:, None], torch.tensor([[10.0], [30.0], [31.0], [32.0], [33.0]]), k=1),
               "a point on a ball's edge")
    if out is not None:
        t.close(torch.tensor(out[0]), torch.tensor(0.2), "real = 0..9, fake = {10, 30, 31, 32, 33}, k = 1: precision 1/5 "
                "(10 lies on the edge of the ball around 9)", hint="inside a ball means distance ≤ radius, not <")
    for n_real, n_fake, d, k, dtype in ((60, 45, 4, 3, torch.float32), (50, 70, 2, 5, torch.float64)):
        real = torch.randn(n_real, d, generator=g, dtype=dtype)
        fake = 0.8 * torch.randn(n_fake, d, generator=g, dtype=dtype) + 0.6
        out = _two(t, t.call(fn, real, fake, k=k), f"random features ({n_real}, {d}), ({n_fake}, {d}), k = {k}")
        if out is None:
            return
        want = torch.tensor(cov_ref.precision_recall(real, fake, k), dtype=torch.float64)
        diagnose(t, torch.tensor(out, dtype=torch.float64), want,
                 f"against minidiff.eval.coverage.precision_recall (N = {n_real}, {n_fake}, D = {d}, k = {k})",
                 {"(precision, recall) are swapped": want.flip(0),
                  "the nearest neighbour of a point is not itself: skip the zero distance (the (k+1)-th smallest)":
                  torch.tensor(_pr_wrong(real, fake, k, "self"), dtype=torch.float64),
                  "use the k you are given, not 3": torch.tensor(cov_ref.precision_recall(real, fake, 3), dtype=torch.float64)},
                 hint="torch.cdist for distances, .kthvalue(k + 1, dim=1) for r_k, then (dist ≤ r_k of the support).any(1)",
                 rtol=1e-6, atol=1e-9)
    t.raises(fn, (torch.randn(3, 2), torch.randn(10, 2)), ValueError,
             "3 real points with k = 3 raise a ValueError (no 3 neighbours besides itself)",
             hint="check that each set has more than k points")
