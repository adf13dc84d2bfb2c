"""Checks for lesson 13, what a trained diffusion model is for.

    from minidiff.course.checks import lesson13 as check
    check.repaint_step(repaint_step)          # down: reverse step + known pixels noised to t_next; up: q(x_t' | x_t)
    check.sdedit_start(sdedit_start)          # t_0 = max(1, round(s·T)), x_{t_0} = √ᾱ x^g + √(1 − ᾱ) ε
    check.tweedie_denoise(tweedie_denoise)    # x_t = √ᾱ_t y at σ_t ≈ σ, then x̂_0 (DDPM eq. 15)
    check.auroc(auroc)                        # P(anomaly scores higher) + ½ P(tie)

Closed forms first (the known pixels are exact at t_next = 0; the forward jump's coefficients; the posterior mean of
Gaussian data; AUROC of hand-counted pairs), then minidiff's references on random inputs (images and points, float32
and float64, non-default arguments). Outputs of known mistakes are recomputed here so that a hint can name them.
"""

from __future__ import annotations

import math

import torch

from ... import anomaly as ref_anomaly
from ... import editing as ref_editing
from ... import inpaint as ref_inpaint
from ...data.toy import GaussianMixture
from ...ddim import ddim_step
from ...forward import add_noise, predict_x0
from ...samplers import sigmas_from_schedule
from ...schedules import NoiseSchedule
from .core import Tester, diagnose, exercise


def _gen(seed):
    return torch.Generator().manual_seed(seed)


class _LinearEps:
    """ε(x_t, t) = a(t) x_t + b(t): records what it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_t, t):
        self.calls.append((x_t.detach().clone(), t))
        tt = torch.as_tensor(t, dtype=torch.float64).reshape(-1, *([1] * (x_t.dim() - 1)))
        return ((0.3 + tt / 2000) * x_t + tt / 1000 - 0.2).to(x_t.dtype)


def _mixture_eps(schedule, mix):
    def eps(x, t):
        ab = schedule.alphas_cumprod[torch.as_tensor(t).cpu()]
        score = mix.noised_score(x.flatten(1).double(), ab)
        return (-(1 - ab).sqrt()[:, None] * score).reshape(x.shape).to(x.dtype)

    return eps


# ---------------------------------------------------------------- 1. the RePaint step


def _noise(shape, g, x):
    return torch.randn(shape, generator=g, dtype=x.dtype).to(x.device)


def _repaint_wrong(s, x, t, t_next, known, mask, eta, seed, mistake):
    g = _gen(seed)
    model = _LinearEps()
    if t_next > t:
        z = _noise(x.shape, g, x)
        ab, ab_next = s.alphas_cumprod[t].item(), s.alphas_cumprod[t_next].item()
        if mistake == "as_x0":
            return math.sqrt(ab_next) * x + math.sqrt(1 - ab_next) * z
        if mistake == "one_step":
            return math.sqrt(s.alphas[t_next].item()) * x + math.sqrt(s.betas[t_next].item()) * z
        if mistake == "variance":
            return math.sqrt(ab_next / ab) * x + (1 - ab_next / ab) * z
        return None
    tt = torch.full((x.shape[0],), t, dtype=torch.long)
    if mistake == "replace_first":
        x = mask * add_noise(s, known, _noise(x.shape, g, x), t) + (1 - mask) * x
        return ddim_step(s, model(x, tt), x, tt, t_next, eta=eta, generator=g)
    x_new = ddim_step(s, model(x, tt), x, tt, t_next, eta=1.0 if mistake == "eta_ignored" else eta, generator=g)
    noise = _noise(x.shape, g, x)
    known_t = {"noised_at_t": add_noise(s, known, noise, t), "clean": known}.get(mistake, add_noise(s, known, noise, t_next))
    if mistake == "inverted":
        return (1 - mask) * known_t + mask * x_new
    return mask * known_t + (1 - mask) * x_new


REPAINT_MISTAKES = {
    "inverted": "the mask is 1 where the pixel is *known*: keep m ⊙ (noised original) + (1 − m) ⊙ (model's step)",
    "noised_at_t": "noise the known pixels to t_next, the time of the state you return, not to t",
    "clean": "the known pixels must be noised to t_next (DDPM eq. 4) before they are pasted in; only at t_next = 0 are they clean",
    "replace_first": "first the reverse step x_t → x_{t_next}, then the replacement at t_next (not the replacement at t, then the step)",
    "eta_ignored": "pass your eta to ddim_step (η = 0 is deterministic DDIM, η = 1 DDPM's ancestral step)",
}
JUMP_MISTAKES = {
    "as_x0": "going up, x_t is not x_0: q(x_{t'} | x_t) = N(√(ᾱ_{t'}/ᾱ_t) x_t, (1 − ᾱ_{t'}/ᾱ_t) I), the ratio of the ᾱ's",
    "one_step": "a jump over several steps uses ᾱ_{t'}/ᾱ_t, not the one-step α_{t'} and β_{t'} of DDPM eq. 2",
    "variance": "the noise is multiplied by the *std* √(1 − ᾱ_{t'}/ᾱ_t), not by the variance",
}
DRAW_HINT = ("draw every noise from `generator` (randn(x.shape, generator, x.device, x.dtype)), in this order: the reverse "
             "step's (ddim_step draws it when you pass generator=), then the one for the known pixels")


@exercise("13", "repaint_step", points=3)
def repaint_step(t: Tester, fn):
    """Down: DDIM step (η) then the known pixels noised to t_next; up: the forward jump q(x_{t'} | x_t)."""
    s = NoiseSchedule.make("cosine", 1000)
    g = _gen(0)
    known = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    x = torch.randn(3, 1, 4, 4, generator=g)
    mask = ref_inpaint.make_mask("half", size=4)
    cases = [((400, 300, 0.0), "a deterministic down step (η = 0), t = 400 → 300"),
             ((300, 250, 1.0), "an ancestral down step (η = 1), t = 300 → 250")]
    for (tt, tn, eta), what in cases:
        model = _LinearEps()
        out = t.call(fn, s, model, x, tt, tn, known, mask, eta=eta, generator=_gen(5))
        t.tensor(out, shape=x.shape, dtype=torch.float32, what=what)
        t.check(len(model.calls) == 1, f"{what}: the model is called once", f"called {len(model.calls)} times",
                hint="one network call per down step: eps_model(x, t) with t a LongTensor (B,)")
        expected = ref_inpaint.repaint_step(s, _LinearEps(), x, tt, tn, known, mask, eta=eta, generator=_gen(5))
        mistakes = {REPAINT_MISTAKES[k]: _repaint_wrong(s, x, tt, tn, known, mask, eta, 5, k) for k in REPAINT_MISTAKES}
        diagnose(t, out, expected, f"{what} matches minidiff.inpaint.repaint_step", mistakes, hint=DRAW_HINT, rtol=1e-4, atol=1e-5)
    # the last step: the known pixels come back exactly, the rest is x̂_0
    out = t.call(fn, s, _LinearEps(), x, 20, 0, known, mask, eta=1.0, generator=_gen(6))
    t.tensor(out, shape=x.shape, what="the last step, t = 20 → 0")
    t.close(out * mask, known * mask, "at t_next = 0 the known pixels are the original ones exactly",
            hint="at t_next = 0, ᾱ_0 = 1: add_noise(schedule, known, noise, 0) is `known` itself", atol=1e-5)
    t.close(out * (1 - mask), predict_x0(s, x, torch.full((3,), 20), _LinearEps()(x, torch.full((3,), 20))) * (1 - mask),
            "at t_next = 0 the unknown pixels are the model's x̂_0", hint="the last reverse step returns x̂_0", atol=1e-5)
    # up: RePaint's jump back
    for tt, tn in ((300, 400), (100, 101)):
        model = _LinearEps()
        out = t.call(fn, s, model, x, tt, tn, known, mask, eta=1.0, generator=_gen(7))
        t.tensor(out, shape=x.shape, dtype=torch.float32, what=f"a jump up, t = {tt} → {tn}")
        t.check(not model.calls, f"the jump up {tt} → {tn} does not call the model", f"called {len(model.calls)} times",
                hint="going up is the forward process: noise only, no network call and no replacement")
        expected = ref_inpaint.repaint_step(s, _LinearEps(), x, tt, tn, known, mask, generator=_gen(7))
        diagnose(t, out, expected, f"the jump up {tt} → {tn} is √(ᾱ_t'/ᾱ_t) x_t + √(1 − ᾱ_t'/ᾱ_t) z",
                 {h: _repaint_wrong(s, x, tt, tn, known, mask, 1.0, 7, k) for k, h in JUMP_MISTAKES.items()},
                 hint="z drawn from generator: randn(x.shape, generator, x.device, x.dtype)", rtol=1e-4, atol=1e-5)
    # points (B, D), float64, a random mask, the default eta
    xp = torch.randn(5, 3, generator=g, dtype=torch.float64)
    kp = (torch.rand(5, 3, generator=g, dtype=torch.float64) * 2 - 1)
    mp = (torch.rand(5, 3, generator=g) < 0.5).double()
    out = t.call(fn, s, _LinearEps(), xp, 500, 480, kp, mp, generator=_gen(8))
    t.tensor(out, shape=(5, 3), dtype=torch.float64, what="float64 points (5, 3), a mask per point, default η")
    t.close(out, ref_inpaint.repaint_step(s, _LinearEps(), xp, 500, 480, kp, mp, generator=_gen(8)),
            "points (5, 3) with the default η = 1 match minidiff.inpaint.repaint_step",
            hint="the default eta is 1.0; nothing may assume images of shape (B, 1, H, W)", rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- 2. SDEdit's start


def _sdedit_wrong(s, guide, strength, noise, mistake):
    T = s.T
    t0 = {"floor": max(1, int(strength * T)), "no_clamp": int(round(strength * T)), "keep": max(1, int(round((1 - strength) * T))),
          "T1000": max(1, int(round(strength * 1000)))}.get(mistake, max(1, int(round(strength * T))))
    t0 = min(max(t0, 0), T)
    ab = s.alphas_cumprod[t0].item()
    if mistake == "no_sqrt":
        return ab * guide + (1 - ab) * noise, t0
    if mistake == "swapped":
        return math.sqrt(ab) * noise + math.sqrt(1 - ab) * guide, t0
    return math.sqrt(ab) * guide + math.sqrt(1 - ab) * noise, t0


SDEDIT_MISTAKES = {
    "floor": "round s·T to the nearest integer (int() truncates: 0.6666 · 1000 must give 667)",
    "no_clamp": "t_0 must be at least 1: max(1, round(s·T)) (t = 0 is the clean image)",
    "keep": "the strength s is how far to noise: t_0 = s·T (s = 1 starts from pure noise), not (1 − s)·T",
    "T1000": "use the schedule's T (schedule.T), not 1000",
    "no_sqrt": "DDPM eq. 4 has square roots: √ᾱ_{t_0} x^g + √(1 − ᾱ_{t_0}) ε",
    "swapped": "the guide is scaled by √ᾱ_{t_0} and the noise by √(1 − ᾱ_{t_0}), not the other way round",
}


@exercise("13", "sdedit_start", points=2)
def sdedit_start(t: Tester, fn):
    """(x_{t_0}, t_0) with t_0 = max(1, round(s·T)) and x_{t_0} = add_noise(guide, noise, t_0); bad s and guides raise."""
    g = _gen(1)
    for T, shape, dtype, strengths in ((1000, (3, 1, 5, 5), torch.float32, (0.3, 0.6666, 0.0004, 1.0)),
                                       (200, (4, 3), torch.float64, (0.1, 0.6666, 0.001, 1.0))):
        s = NoiseSchedule.make("cosine", T)
        guide = (torch.rand(shape, generator=g, dtype=dtype) * 2 - 1)
        noise = torch.randn(shape, generator=g, dtype=dtype)
        for strength in strengths:
            out = t.call(fn, s, guide, strength, noise)
            ok = isinstance(out, tuple) and len(out) == 2
            t.check(ok, f"sdedit_start returns (x_t0, t0) (T = {T}, s = {strength})", f"got {type(out).__name__}",
                    hint="return x_t0, t0", decisive=True)
            if not ok:
                return
            x, t0 = out
            exp_x, exp_t = ref_editing.sdedit_start(s, guide, strength, noise)
            wrong = {h: _sdedit_wrong(s, guide, strength, noise, k) for k, h in SDEDIT_MISTAKES.items()}
            diagnose(t, torch.as_tensor(t0, dtype=torch.float64), float(exp_t), f"t_0 for T = {T}, s = {strength}",
                     {h: float(w[1]) for h, w in wrong.items()}, hint="t_0 = max(1, round(s · schedule.T))")
            t.tensor(x, shape=shape, dtype=dtype, what=f"x_t0 for {dtype} guides of shape {shape}")
            diagnose(t, x, exp_x, f"x_t0 = √ᾱ x^g + √(1 − ᾱ) ε at t_0 (T = {T}, s = {strength})",
                     {h: w[0] for h, w in wrong.items()}, hint="x_t0 = add_noise(schedule, guide, noise, t0)", rtol=1e-5, atol=1e-6)
    s = NoiseSchedule.make("cosine", 1000)
    guide, noise = torch.rand(2, 1, 3, 3) * 2 - 1, torch.randn(2, 1, 3, 3)
    for bad in (0.0, -0.2, 1.5):
        t.raises(fn, (s, guide, bad, noise), ValueError, f"strength = {bad} raises a ValueError",
                 hint="check 0 < strength ≤ 1 first: raise ValueError('strength must lie in (0, 1]')")
    t.raises(fn, (s, (guide + 1) * 127.5, 0.5, noise), ValueError, "a guide in [0, 255] raises a ValueError",
             hint="images live in [-1, 1]: check the guide with check_image_range('guide', guide)")


# ---------------------------------------------------------------- 3. Tweedie's denoiser


def _tweedie_wrong(s, y, sigma, mistake):
    t = ref_editing.matching_t(s, sigma)
    if mistake == "vp_std":  # σ read as the VP std √(1 − ᾱ)
        t = int(((1 - s.alphas_cumprod[1:]).sqrt() - sigma).abs().argmin()) + 1
    if mistake == "round_t":
        t = min(max(1, int(round(sigma * s.T))), s.T)
    ab = s.alphas_cumprod[t].item()
    x_t = {"no_scale": y, "divide": y / math.sqrt(ab)}.get(mistake, math.sqrt(ab) * y)
    tt = torch.full((y.shape[0],), t, dtype=torch.long)
    eps = _LinearEps()(x_t, tt)
    if mistake == "eps":
        return eps
    if mistake == "no_divide":
        return x_t - math.sqrt(1 - ab) * eps
    return predict_x0(s, x_t, tt, eps)


TWEEDIE_MISTAKES = {
    "no_scale": "the network was trained on x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: feed it √ᾱ_t · y, not y",
    "divide": "multiply y by √ᾱ_t to get x_t (y = x_t / √ᾱ_t), do not divide",
    "vp_std": "σ is the noise std of y = x_0 + σ n, which is σ_t = √((1 − ᾱ_t)/ᾱ_t) (use matching_t), not √(1 − ᾱ_t)",
    "round_t": "t is not σ·T: use matching_t(schedule, sigma), the t whose σ_t is nearest",
    "eps": "return x̂_0 (DDPM eq. 15), not the model's ε",
    "no_divide": "x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t: the division by √ᾱ_t is missing",
}


@exercise("13", "tweedie_denoise", points=3)
def tweedie_denoise(t: Tester, fn):
    """E[x_0 | y] in one call: t = matching_t(σ), x_t = √ᾱ_t y, x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t."""
    s = NoiseSchedule.make("cosine", 1000)
    g = _gen(2)
    # closed form: Gaussian data N(μ, s² I), at a σ on the table
    mu, sd = 0.2, 0.3
    mix = GaussianMixture(torch.full((1, 4), mu), sd)
    sigma = float(sigmas_from_schedule(s)[250])
    y = torch.randn(5, 1, 2, 2, generator=g, dtype=torch.float64)
    out = t.call(fn, s, _mixture_eps(s, mix), y, sigma)
    t.tensor(out, shape=y.shape, dtype=torch.float64, what="x̂_0 for float64 images (5, 1, 2, 2)")
    t.close(out, mu + sd**2 / (sd**2 + sigma**2) * (y - mu),
            "Gaussian data: x̂_0 is the posterior mean μ + s²/(s² + σ²) (y − μ)",
            hint="x_t = √ᾱ_t y at t = matching_t(schedule, sigma), then x̂_0 = predict_x0(schedule, x_t, t, eps)",
            rtol=1e-6, atol=1e-8)
    # the reference, with a linear model, at σ off the table, on images and points, float32
    for shape, sigma in (((3, 1, 4, 4), 0.37), ((6, 3), 1.3)):
        y = torch.randn(shape, generator=g) * 1.2
        model = _LinearEps()
        out = t.call(fn, s, model, y, sigma)
        t.tensor(out, shape=shape, dtype=torch.float32, what=f"x̂_0 for float32 {shape}, σ = {sigma}",
                 dtype_hint="ᾱ is float64: use .item() or .to(y.dtype) so that float32 images stay float32")
        t.check(len(model.calls) == 1, f"σ = {sigma}: the model is called once", f"called {len(model.calls)} times",
                hint="Tweedie's estimate is one network call")
        if model.calls:
            tt = torch.as_tensor(model.calls[0][1])
            t.check(not tt.is_floating_point() and tt.shape == (shape[0],), f"σ = {sigma}: the model's t is a LongTensor (B,)",
                    f"got {tt.dtype} {tuple(tt.shape)}", hint="call eps_model(x_t, torch.full((B,), t, dtype=torch.long))")
        diagnose(t, out, ref_editing.tweedie_denoise(s, _LinearEps(), y, sigma),
                 f"x̂_0 for {shape}, σ = {sigma} matches minidiff.editing.tweedie_denoise",
                 {h: _tweedie_wrong(s, y, sigma, k) for k, h in TWEEDIE_MISTAKES.items()},
                 hint="t = matching_t(schedule, sigma); x_t = √ᾱ_t y; x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t", rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 4. AUROC


def _auroc_pairs(a, b, tie):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float(((b[None, :] > a[:, None]).double() + tie * (b[None, :] == a[:, None]).double()).mean())


def _auroc_no_tie_average(a, b):
    both = torch.cat([torch.as_tensor(a).double(), torch.as_tensor(b).double()])
    ranks = torch.empty_like(both)
    ranks[both.argsort(stable=True)] = torch.arange(1, both.numel() + 1, dtype=torch.float64)
    n_in, n_out = len(a), len(b)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


AUROC_MISTAKES = {
    "reversed": "the score is high for anomalies: count the pairs where the *anomaly* (scores_out) scores higher",
    "tie0": "a tie counts ½, not 0",
    "tie1": "a tie counts ½, not 1 (with ranks: tied scores must share the average of their ranks)",
    "no_avg": "tied scores must share the average of their ranks",
}


def _auroc_wrong(a, b):
    return {AUROC_MISTAKES["reversed"]: 1 - _auroc_pairs(a, b, 0.5), AUROC_MISTAKES["tie0"]: _auroc_pairs(a, b, 0.0),
            AUROC_MISTAKES["tie1"]: _auroc_pairs(a, b, 1.0), AUROC_MISTAKES["no_avg"]: _auroc_no_tie_average(a, b)}


@exercise("13", "auroc", points=2)
def auroc(t: Tester, fn):
    """P(score_out > score_in) + ½ P(equal): hand-counted cases, then random scores with ties of unequal sizes."""
    def value(out, what):
        ok = isinstance(out, (float, int)) or (isinstance(out, torch.Tensor) and out.numel() == 1)
        t.check(ok, f"{what} is a number", f"got {type(out).__name__}", hint="return a float (or a one-element tensor)",
                decisive=True)
        return float(out) if ok else math.nan

    cases = [(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 3.0]), "in = [0, 1, 2], out = [1, 3]: 4.5 of 6 pairs"),
             (torch.tensor([0.0, 1.0]), torch.tensor([5.0, 6.0, 7.0]), "every anomaly above every normal image: 1"),
             (torch.ones(4), torch.ones(3), "all scores equal: ½")]
    for a, b, what in cases:
        got = value(t.call(fn, a, b), what)
        diagnose(t, got, _auroc_pairs(a, b, 0.5), what, _auroc_wrong(a, b), hint="AUROC = P(s_out > s_in) + ½ P(s_out = s_in)")
    g = _gen(3)
    a = torch.randn(120, generator=g).round(decimals=1)
    b = (torch.randn(70, generator=g) + 0.8).round(decimals=1)
    got = value(t.call(fn, a, b), "120 normal and 70 anomalous scores with ties")
    diagnose(t, got, ref_anomaly.auroc(a, b), "120 normal and 70 anomalous scores with ties match minidiff.anomaly.auroc",
             _auroc_wrong(a, b), hint="divide by n_in · n_out, the number of pairs", rtol=1e-9, atol=1e-12)
