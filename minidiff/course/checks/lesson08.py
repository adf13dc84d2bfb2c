"""Checks for lesson 08, classifier-free guidance.

    from minidiff.course.checks import lesson08 as check
    check.label_dropout(label_dropout)
    check.guided_eps(guided_eps)
    check.implicit_classifier_grad(implicit_classifier_grad)
    check.guided_ddim_step(guided_ddim_step)

The conditional "network" in these checks is a tiny closed-form stand-in, so that every
expected value is known exactly and a check runs in milliseconds: ε(x, t, y) = x/2 + e_y + t/1000,
with its own vector e_∅ for the null class (index num_classes). The Bayes check uses the exact
conditional model of a Gaussian mixture (`guidance.MixtureEps`), whose classifier is known.
"""

from __future__ import annotations

import torch

from ... import guidance as ref
from ...schedules import NoiseSchedule
from .core import Tester, diagnose, exercise


class ToyConditional(torch.nn.Module):
    """ε(x, t, y) = x/2 + e_y + t/1000, with labels 0..K−1 and the null class ∅ = K.

    It refuses labels outside 0..K (a common slip: −1 or None as the null class) and
    counts its calls and the images it saw, so that checks can tell how it was used.
    """

    def __init__(self, num_classes: int = 10, shape=(1, 4, 4)):
        super().__init__()
        self.num_classes = num_classes
        g = torch.Generator().manual_seed(8)
        self.register_buffer("emb", torch.randn(num_classes + 1, *shape, generator=g))
        self.calls = 0

    def forward(self, x, t, y=None):
        self.calls += 1
        B = x.shape[0]
        if y is None:
            y = torch.full((B,), self.num_classes, dtype=torch.long)
        if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != (B,):
            raise TypeError(f"the model wants y as a LongTensor of shape ({B},), got {y!r:.80}")
        if (y < 0).any() or (y > self.num_classes).any():
            raise ValueError(f"labels must lie in 0..{self.num_classes} ({self.num_classes} is ∅), got {y.tolist()}")
        t = torch.as_tensor(t).expand(B) if torch.as_tensor(t).dim() == 0 else torch.as_tensor(t)
        return 0.5 * x + self.emb[y] + t.float().reshape(-1, *([1] * (x.dim() - 1))) / 1000


# -- exercise 1 -------------------------------------------------------------------------


@exercise("08", "label_dropout", points=2)
def label_dropout(t: Tester, fn):
    """Eq. 8.1: labels replaced by ∅ = num_classes with probability p_uncond, each independently."""
    K = 10
    y = torch.randint(0, K, (20_000,))
    y_before = y.clone()
    out = t.call(fn, y, 0.2, K)
    t.tensor(out, shape=y.shape, dtype=torch.long, what="label_dropout(y, 0.2, 10)")
    t.check(torch.equal(y, y_before), "y itself is left unchanged (a new tensor comes back)",
            hint="build the result with torch.where(...) instead of writing into y (y[mask] = ... edits the caller's labels)")
    y = y_before  # compare with the labels as they were, even if fn wrote into y
    dropped = out != y
    t.check(bool((out[dropped] == K).all()), "a dropped label becomes the null class ∅ = num_classes = 10",
            f"dropped labels became {sorted(set(out[dropped].tolist()))[:5]}",
            hint="∅ is one index past the last class (10 for MNIST), not 0 or −1: the embedding table has num_classes + 1 rows")
    t.check(bool((out[~dropped] == y[~dropped]).all()), "labels that are kept are unchanged")
    rate = (out == K).float().mean().item()
    t.check(abs(rate - 0.2) < 0.015, "about 20% of the labels are dropped when p_uncond = 0.2",
            f"dropped {rate:.1%}",
            hint="drop when torch.rand(...) < p_uncond (with > you drop 1 − p_uncond of them)" if abs(rate - 0.8) < 0.02
            else "draw one uniform number per label and compare it with p_uncond")
    t.check(0 < int(dropped[:100].sum()) < 100, "labels are dropped one by one, not the whole batch at once",
            hint="draw a random number for every label (shape y.shape), not one for the batch")
    out0 = t.call(fn, y, 0.0, K)
    t.check(isinstance(out0, torch.Tensor) and torch.equal(out0, y), "p_uncond = 0 keeps every label")
    out1 = t.call(fn, y[:50], 1.0, K)
    t.check(isinstance(out1, torch.Tensor) and bool((out1 == K).all()), "p_uncond = 1 drops every label")
    y3 = torch.randint(0, 3, (1000,))
    out3 = t.call(fn, y3, 0.5, 3)
    t.check(isinstance(out3, torch.Tensor) and set(out3.unique().tolist()) <= {0, 1, 2, 3} and bool((out3 == 3).any()),
            "with num_classes = 3 the null class is 3", hint="use the argument num_classes, do not hard-code 10")
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = t.call(fn, y[:200], 0.5, K, g1), t.call(fn, y[:200], 0.5, K, g2)
    t.check(isinstance(a, torch.Tensor) and torch.equal(a, b), "the same generator seed gives the same dropout",
            hint="pass generator=generator to torch.rand")


# -- exercise 2 -------------------------------------------------------------------------


@exercise("08", "guided_eps", points=2)
def guided_eps(t: Tester, fn):
    """Eq. 8.2 with a conditional model: w = 0 unconditional, w = 1 conditional, linear in w."""
    model = ToyConditional()
    B = 6
    x = torch.randn(B, 1, 4, 4)
    tt = torch.randint(1, 1000, (B,))
    y = torch.randint(0, 10, (B,))
    e_y, e_null = model(x, tt, y), model(x, tt, None)
    for w in (0.0, 1.0, 3.0):
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
            },
            hint="ε(∅) is the model called with labels num_classes (= 10), ε(y) with the labels y",
            rtol=1e-4, atol=1e-5,
        )
    x2 = torch.randn(3, 1, 4, 4)
    y2 = torch.tensor([1, 4, 7])
    out = t.call(fn, model, x2, torch.tensor([5, 500, 995]), y2, 2.0)
    t.tensor(out, shape=x2.shape, what="guided_eps on a batch of 3")
    e2y, e2n = model(x2, torch.tensor([5, 500, 995]), y2), model(x2, torch.tensor([5, 500, 995]), None)
    t.close(out, ref.combine(e2y, e2n, 2.0), "each image is guided towards its own label and t (batch of 3, w = 2)",
            hint="keep the batch order: if you stack [cond; null] into one pass, split it with .chunk(2)",
            rtol=1e-4, atol=1e-5)
    t.close(out, ref.guided_eps(model, x2, torch.tensor([5, 500, 995]), y2, 2.0),
            "matches minidiff.guidance.guided_eps", rtol=1e-4, atol=1e-5)


# -- exercise 3 -------------------------------------------------------------------------


def _mixture_model():
    from ...data import GaussianMixture

    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    schedule = NoiseSchedule.make("linear", T=1000)
    return ref.MixtureEps(GaussianMixture(means, 0.5), schedule), schedule


@exercise("08", "implicit_classifier_grad", points=1)
def implicit_classifier_grad(t: Tester, fn):
    """Eq. 8.3: −(ε(y) − ε(∅))/√(1 − ᾱ_t) is the gradient of log p_t(y | x_t) (Bayes' rule)."""
    model, schedule = _mixture_model()
    x = torch.randn(8, 2, dtype=torch.float64) * 1.5
    tt = torch.tensor([1, 20, 100, 250, 400, 600, 800, 1000])
    y = torch.randint(0, 3, (8,))
    e_y, e_null = model(x, tt, y), model(x, tt, None)
    out = t.call(fn, e_y, e_null, schedule, tt)
    t.tensor(out, shape=x.shape, what="implicit_classifier_grad(...)")
    # The truth, by autograd: log p_t(y | x_t) is the log-responsibility of component y.
    xs = x.clone().requires_grad_(True)
    logp = sum(
        torch.log(model.mixture.noised(schedule.alphas_cumprod[tt[i]].item()).responsibilities(xs[i:i + 1]))[0, y[i]]
        for i in range(len(y))
    )
    truth = torch.autograd.grad(logp, xs)[0]
    sigma = (1 - schedule.alphas_cumprod[tt]).sqrt()[:, None]
    diagnose(
        t, out, truth, "equals ∇ log p_t(y | x_t) of the exact mixture classifier (autograd), at t from 1 to T",
        {
            "the sign is flipped: ∇ log p = −ε/√(1 − ᾱ_t), so the difference gets a minus sign": -truth,
            "divide by √(1 − ᾱ_t) (a standard deviation), not by 1 − ᾱ_t (a variance)": truth * sigma / sigma**2,
            "you forgot to divide by √(1 − ᾱ_t)": truth * sigma,
            "ε(y) − ε(∅), not ε(∅) alone: the unconditional score cancels in Bayes' rule": e_null / sigma,
        },
        hint="Bayes: ∇ log p(y|x) = ∇ log p(x|y) − ∇ log p(x), and each score is −ε/√(1 − ᾱ_t)",
        rtol=1e-6, atol=1e-8,
    )


# -- exercise 4 -------------------------------------------------------------------------


@exercise("08", "guided_ddim_step", points=2)
def guided_ddim_step(t: Tester, fn):
    """One DDIM step (η = 0) with the guided ε̃: x̂_0 from ε̃, then back to t_prev with the same ε̃."""
    model = ToyConditional()
    schedule = NoiseSchedule.make("linear", T=1000)
    B = 5
    x = torch.randn(B, 1, 4, 4)
    y = torch.randint(0, 10, (B,))
    tt = torch.tensor([1000, 800, 500, 100, 20])
    tp = torch.tensor([900, 600, 250, 50, 0])
    out = t.call(fn, model, schedule, x, tt, tp, y, 3.0)
    t.tensor(out, shape=x.shape, what="guided_ddim_step(...)")
    expected = ref.guided_ddim_step(model, schedule, x, tt, tp, y, 3.0)
    eps_y = model(x, tt, y)
    ab, abp = schedule.alphas_cumprod[tt].float().view(-1, 1, 1, 1), schedule.alphas_cumprod[tp].float().view(-1, 1, 1, 1)
    unguided = abp.sqrt() * (x - (1 - ab).sqrt() * eps_y) / ab.sqrt() + (1 - abp).sqrt() * eps_y
    diagnose(
        t, out, expected, "matches minidiff.guidance.guided_ddim_step (w = 3, several t → t_prev)",
        {"you used the conditional ε(y), not the guided ε̃: call guided_eps(model, x_t, t, y, w)": unguided},
        hint="x̂_0 = (x_t − √(1 − ᾱ_t) ε̃)/√ᾱ_t, then x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev) ε̃ (index ᾱ with t and t_prev)",
        rtol=1e-4, atol=1e-5,
    )
    last = t.call(fn, model, schedule, x[:1], tt[4:], tp[4:], y[:1], 3.0)
    t.tensor(last, shape=(1, 1, 4, 4), what="the step to t_prev = 0")
    eps = ref.guided_eps(model, x[:1], tt[4:], y[:1], 3.0)
    ab20 = schedule.alphas_cumprod[20].float()
    t.close(last, (x[:1] - (1 - ab20).sqrt() * eps) / ab20.sqrt(), "stepping to t_prev = 0 returns x̂_0 (ᾱ_0 = 1)",
            hint="ᾱ_0 = 1 is schedule.alphas_cumprod[0]: with t_prev = 0 the noise term vanishes", rtol=1e-4, atol=1e-5)
    same = t.call(fn, model, schedule, x, tt, tp, y, 1.0)
    t.close(same, unguided, "w = 1 is the plain conditional DDIM step", rtol=1e-4, atol=1e-5)
