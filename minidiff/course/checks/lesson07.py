"""Checks for lesson 07, Langevin dynamics.

    from minidiff.course.checks import lesson07 as check
    check.langevin_sample(langevin_step, langevin_sample)   # the update and its chain
    check.annealed_langevin_sample(annealed_langevin_sample) # Song & Ermon 2019, Algorithm 1
    check.pc_sample(pc_sample)                               # DDPM predictor + SNR-rule corrector

The Langevin step is tested on many samples (the mean of a move is the drift, its variance the
noise's), then against minidiff's reference step for step with the same random generator. The
samplers are watched by spy models that record the noise levels or timesteps they are asked
about, in order, and compared with minidiff's samplers (same generator); the outputs of known
mistakes (δ·z instead of √δ·z, a missing ½, δ_i not divided by σ_L², the corrector at the wrong
level, ...) are recomputed here so that a hint can name the mistake.
"""

from __future__ import annotations

import torch

from ... import langevin as ref
from ...sampling import ddpm_sample, ddpm_step, simulate
from ...schedules import NoiseSchedule
from ...utils import randn
from .core import Tester, diagnose, exercise


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gaussian_score(x, sigma=None):
    """∇ log N(0.5, 0.8²) in every coordinate, noised by σ when σ is given (VE)."""
    var = 0.64 if sigma is None else 0.64 + torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1))) ** 2
    return (0.5 - x) / var


# ---------------------------------------------------------------- 1. the step and its chain


class _CountingScore:
    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return _gaussian_score(x)


@exercise("07", "langevin_sample", points=3)
def langevin_sample(t: Tester, step_fn, sample_fn):
    """langevin_step: x + (δ/2) s + √δ z; langevin_sample: `steps` of them, plugged into simulate."""
    # -- the step: its average move and its spread on 20,000 copies of one point
    n, delta = 20_000, 0.09
    x = torch.zeros(n, 2)
    score = torch.tensor([1.0, -2.0]).expand(n, 2).clone()
    out = t.call(step_fn, x.clone(), score, delta, _gen(1))
    t.tensor(out, shape=(n, 2), what="langevin_step(x, score, 0.09, generator)")
    s0 = score[0]
    diagnose(t, out.mean(0), delta / 2 * s0, "langevin_step: the average move is the drift (δ/2)·score",
             {"you used δ·score: the drift carries a factor ½, x + (δ/2)·score + √δ·z": delta * s0,
              "the drift is missing: add (δ/2)·score": torch.zeros(2)},
             hint="the drift is half the step size times the score: x + (δ/2)·score + √δ·z", rtol=0.0, atol=0.01)
    diagnose(t, out.var(0), torch.full((2,), delta), "langevin_step: the spread has variance δ (noise √δ·z)",
             {"your noise has variance δ²: you used δ·z instead of √δ·z": torch.full((2,), delta**2),
              "your noise has variance 2δ: √(2ε)·z is the other convention (ε = δ/2); here the noise is √δ·z":
                  torch.full((2,), 2 * delta),
              "there is no noise: without √δ·z the chain is gradient ascent and ends at a mode": torch.zeros(2)},
             hint="the noise is √δ·z with z ~ N(0, I): its variance is δ", rtol=0.05, atol=1e-4)
    x2, s2 = torch.randn(5, 3), torch.randn(5, 3)
    got = t.call(step_fn, x2.clone(), s2, 0.3, _gen(7))
    t.tensor(got, shape=(5, 3), dtype=torch.float32, what="langevin_step on a (5, 3) batch")
    t.close(got, ref.langevin_step(x2, s2, 0.3, _gen(7)), "langevin_step matches minidiff.langevin.langevin_step "
            "with the same generator",
            hint="draw z once with randn(x.shape, generator, x.device, x.dtype) and use nothing else that draws "
                 "random numbers", rtol=1e-5, atol=1e-6)
    # float64 images: the noise is drawn in x's dtype, and nothing depends on the rank
    x4, s4 = torch.randn(4, 1, 3, 3, dtype=torch.float64), torch.randn(4, 1, 3, 3, dtype=torch.float64)
    got = t.call(step_fn, x4.clone(), s4, 0.2, _gen(8))
    t.tensor(got, shape=(4, 1, 3, 3), dtype=torch.float64, what="langevin_step on float64 images (4, 1, 3, 3)")
    z32 = torch.randn(x4.shape, generator=_gen(8)).double()
    diagnose(t, got, ref.langevin_step(x4, s4, 0.2, _gen(8)), "float64 images: matches minidiff.langevin.langevin_step "
             "with the same generator",
             {"draw z in x's dtype, randn(x.shape, generator, x.device, x.dtype): float32 draws are other numbers than "
              "float64 ones from the same generator": x4 + 0.1 * s4 + 0.2**0.5 * z32},
             hint="x + (δ/2)·score + √δ·z with z = randn(x.shape, generator, x.device, x.dtype)", rtol=1e-9, atol=1e-12)

    # -- the chain
    x0 = torch.randn(64, 2)
    x0_before = x0.clone()
    spy = _CountingScore()
    got = t.call(sample_fn, spy, x0, 7, 0.1, _gen(2))
    t.tensor(got, shape=(64, 2), what="langevin_sample(score_fn, x0, 7, 0.1, generator)")
    t.check(spy.calls == 7, "langevin_sample: score_fn is called once per step (7 steps, 7 calls)",
            f"got {spy.calls} calls",
            hint="simulate(step, x0, list(range(steps + 1))) runs `steps` steps: one per consecutive pair", decisive=True)
    t.check(torch.equal(x0, x0_before), "x0 itself is left unchanged", hint="build new tensors (x = x + ...), "
            "do not update x0 in place (x += ...)")
    expected = ref.langevin_sample(_gaussian_score, x0, 7, 0.1, _gen(2))
    diagnose(t, got, expected, "langevin_sample matches minidiff.langevin.langevin_sample (7 steps, same generator)",
             {"one step too few: the chain must take `steps` steps (timesteps 0, 1, ..., steps)":
                  ref.langevin_sample(_gaussian_score, x0, 6, 0.1, _gen(2)),
              "one step too many: the chain must take `steps` steps (timesteps 0, 1, ..., steps)":
                  ref.langevin_sample(_gaussian_score, x0, 8, 0.1, _gen(2))},
             hint="each step is langevin_step(x, score_fn(x), step_size, generator), with the score at the "
                  "*current* x", rtol=1e-5, atol=1e-6)
    imgs = torch.randn(3, 1, 2, 2)
    got = t.call(sample_fn, _gaussian_score, imgs, 4, 0.05, _gen(9))
    t.tensor(got, shape=(3, 1, 2, 2), what="langevin_sample on images (3, 1, 2, 2)")
    t.close(got, ref.langevin_sample(_gaussian_score, imgs, 4, 0.05, _gen(9)),
            "images: matches minidiff.langevin.langevin_sample (4 steps, same generator)",
            hint="nothing in the chain depends on the rank of x0", rtol=1e-5, atol=1e-6)
    res = t.call(sample_fn, _gaussian_score, x0, 5, 0.1, _gen(3), return_trajectory=True)
    ok = isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], torch.Tensor)
    t.check(ok, "langevin_sample(..., return_trajectory=True) returns (x, trajectory)",
            hint="pass return_trajectory to simulate: it returns (x, trajectory) when asked")
    if ok:
        xe, traj = res
        t.check(tuple(traj.shape) == (6, 64, 2) and torch.equal(traj[0], x0) and torch.allclose(traj[-1], xe),
                "the trajectory holds x0 and the state after each of the 5 steps: shape (6, 64, 2)",
                f"got shape {tuple(traj.shape)}", hint="simulate's trajectory starts with x0 and ends with the last x")


# ---------------------------------------------------------------- 2. annealed Langevin


class _Spy:
    """A score model that records the σ it is asked about, and returns zero or a Gaussian's score."""

    def __init__(self, zero: bool = True):
        self.sigmas, self.shapes, self.zero = [], [], zero

    def __call__(self, x, sigma):
        s = torch.as_tensor(sigma)
        self.shapes.append(tuple(s.shape))
        self.sigmas.append(float(s.flatten()[0]))
        return torch.zeros_like(x) if self.zero else _gaussian_score(x, sigma)


@exercise("07", "annealed_langevin_sample", points=3)
def annealed_langevin_sample(t: Tester, fn):
    """Song & Ermon 2019, Algorithm 1: levels in order, n steps each, δ_i = ε σ_i²/σ_L², the start
    N(0, σ_1² I), Tweedie's denoising step, the trajectory, and the reference."""
    sigmas = torch.tensor([2.0, 1.0, 0.5])
    spy = _Spy()
    n = 20_000
    out = t.call(fn, sigmas, spy, (n, 2), 5, 0.01, generator=_gen(0), x_init=torch.zeros(n, 2), denoise=False)
    t.tensor(out, shape=(n, 2), what="annealed_langevin_sample(sigmas, score_model, (20000, 2), 5, 0.01, ...)")
    t.check(len(spy.sigmas) == 15, "score_model is called steps_each times per level (3 levels × 5 = 15 calls)",
            f"got {len(spy.sigmas)} calls",
            hint="for each level i, steps_each Langevin steps, each calling score_model once (no call when "
                 "denoise=False)", decisive=True)
    t.check(spy.sigmas[:15] == [2.0] * 5 + [1.0] * 5 + [0.5] * 5,
            "the levels go from the largest σ to the smallest, σ_1 > … > σ_L",
            f"σ per call: {[round(s, 3) for s in spy.sigmas[:16]]}",
            hint="step through the levels in the given (decreasing) order and give the model the current σ_i",
            decisive=True)
    t.check(all(s == (n,) for s in spy.shapes), "score_model gets σ as a tensor of shape (B,), one per sample",
            f"got shapes {sorted(set(spy.shapes))[:3]}",
            hint="torch.full((x.shape[0],), float(sigmas[i])) or sigmas[i].expand(x.shape[0])")
    # With a zero score every step adds N(0, δ_i): Var = Σ_i n δ_i.
    def var_of(d):
        return torch.full((2,), float(5 * d.sum()))
    eps, s = 0.01, sigmas
    diagnose(t, out.var(0), var_of(eps * s**2 / s[-1] ** 2),
             "with a zero score the spread is Σ_i n·δ_i with δ_i = ε σ_i²/σ_L²",
             {"δ_i = ε σ_i² misses the division by σ_L² (the *last*, smallest level)": var_of(eps * s**2),
              "δ_i = ε σ_i/σ_L: square the ratio, δ_i = ε σ_i²/σ_L²": var_of(eps * s / s[-1]),
              "the step size is the same at every level: δ_i = ε σ_i²/σ_L² grows with the noise": var_of(eps + 0 * s),
              "the ratio is upside down: δ_i = ε σ_i²/σ_L², large steps at large σ": var_of(eps * s[-1] ** 2 / s**2)},
             hint="δ_i = step_lr · σ_i² / σ_L² (Song & Ermon 2019, Algorithm 1, line 3)", rtol=0.05, atol=0.0)

    # the default start x ~ N(0, σ_1² I): tiny steps, no denoising, so the end is the start
    got = t.call(fn, sigmas, _Spy(), (n, 2), 1, 1e-10, generator=_gen(1), denoise=False)
    t.tensor(got, shape=(n, 2), what="annealed_langevin_sample without x_init")
    diagnose(t, got.std(), torch.tensor(2.0), "without x_init the chain starts from N(0, σ_1² I): std σ_1 = 2",
             {"start from N(0, σ_1² I): multiply z by σ_1, not by 1": torch.tensor(1.0),
              "σ_1² is the variance: the start is σ_1 · z, not σ_1² · z": torch.tensor(4.0)},
             hint="x = σ_1 · randn(shape, generator, device) when x_init is None", rtol=0.02, atol=0.0)

    # the final denoising step (Tweedie): one more call, at σ_L
    xi = torch.randn(50, 2)
    args = (torch.tensor([1.5, 0.7, 0.2]), _gaussian_score, (50, 2), 4, 0.002)
    spy = _Spy(zero=False)
    got = t.call(fn, args[0], spy, *args[2:], generator=_gen(3), x_init=xi.clone())
    t.tensor(got, shape=(50, 2), what="annealed_langevin_sample(..., denoise=True)")
    t.check(len(spy.sigmas) == 13 and spy.sigmas[-1] == float(torch.tensor(0.2)),
            "denoise=True calls the model once more, at the last level σ_L (3 × 4 + 1 = 13 calls)",
            f"got {len(spy.sigmas)} calls, the last at σ = {spy.sigmas[-1] if spy.sigmas else None}",
            hint="after the last level: x + σ_L² · score_model(x, σ_L)")
    expected = ref.annealed_langevin_sample(*args, generator=_gen(3), x_init=xi.clone())
    raw = ref.annealed_langevin_sample(*args, generator=_gen(3), x_init=xi.clone(), denoise=False)
    diagnose(t, got, expected, "matches minidiff.langevin.annealed_langevin_sample (x_init given, denoise=True)",
             {"the final denoising step is missing (denoise=True): x + σ_L² · s(x, σ_L)": raw,
              "Tweedie's step is x + σ_L² s(x, σ_L): σ_L squared, a variance": raw + 0.2 * _gaussian_score(raw, 0.2)},
             hint="use langevin_step(x, score, δ_i, generator) for every step and nothing else that draws random "
                  "numbers", rtol=1e-4, atol=1e-5)
    imgs = torch.randn(3, 1, 2, 2)
    got = t.call(fn, args[0], _gaussian_score, (3, 1, 2, 2), 3, 0.002, generator=_gen(6), x_init=imgs.clone())
    t.tensor(got, shape=(3, 1, 2, 2), dtype=torch.float32, what="annealed_langevin_sample on images (3, 1, 2, 2)")
    t.close(got, ref.annealed_langevin_sample(args[0], _gaussian_score, (3, 1, 2, 2), 3, 0.002, generator=_gen(6),
                                              x_init=imgs.clone()),
            "images: matches minidiff.langevin.annealed_langevin_sample (x_init given, denoise=True)",
            hint="σ goes to the model as a (B,) tensor, B = x.shape[0]: nothing may assume 2-D points", rtol=1e-4, atol=1e-5)
    res = t.call(fn, *args, generator=_gen(4), return_trajectory=True)
    ok = isinstance(res, tuple) and len(res) == 2 and isinstance(res[1], torch.Tensor)
    t.check(ok and tuple(res[1].shape) == (4, 50, 2),
            "return_trajectory=True returns (x, trajectory): the start and the state after each of the 3 levels",
            f"got {type(res).__name__}" + (f" with a trajectory of shape {tuple(res[1].shape)}" if ok else ""),
            hint="let simulate run over the levels, list(range(L + 1)), with return_trajectory; denoise after it")
    if ok:
        e_x, e_traj = ref.annealed_langevin_sample(*args, generator=_gen(4), return_trajectory=True)
        t.close(res[0], e_x, "with return_trajectory: x matches minidiff (default start, denoised)",
                hint="draw the start first, σ_1 · randn(shape, generator, device), then the levels",
                rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 3. predictor–corrector


def _gaussian_eps(schedule, mu=0.5, s=0.4):
    """The exact ε-model for data N(μ, s² I): q_t = N(√ᾱ_t μ, (ᾱ_t s² + 1 − ᾱ_t) I)."""

    def eps(x, t):
        abar = schedule.alphas_cumprod[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return (1 - abar).sqrt() * (x - abar.sqrt() * mu) / (abar * s**2 + 1 - abar)

    return eps


class _TimeSpy:
    def __init__(self, eps):
        self.eps, self.ts = eps, []

    def __call__(self, x, t):
        t = torch.as_tensor(t)
        self.ts.append(int(t.flatten()[0]))
        return self.eps(x, t)


@torch.no_grad()
def _pc(schedule, eps_model, shape, corrector_steps, snr, generator, mistake=None):
    """minidiff's pc_sample, or the same sampler with one known mistake."""
    B = shape[0]

    def norm(v):
        if mistake == "dim1_norm":
            return v.norm(dim=1).mean()
        return v.norm() / B**0.5 if mistake == "global_norm" else v.flatten(1).norm(dim=1).mean()

    def step(x, t, t_next):
        tt = torch.full((B,), t, dtype=torch.long)
        x = ddpm_step(schedule, eps_model(x, tt), x, tt, generator=generator)
        if t_next >= 1:
            level = t if mistake == "sigma_t" else t_next
            sigma = (1 - schedule.alphas_cumprod[level]).sqrt().item()
            alpha = 1.0 if mistake == "alpha" else schedule.alphas[t_next].item()
            for _ in range(corrector_steps):
                score = -eps_model(x, tt if mistake == "model_t" else tt - 1) / sigma
                z = randn(x.shape, generator)
                delta = (2.0 if mistake == "half" else 4.0) * alpha * (snr * norm(z) / norm(score)) ** 2
                noise = delta if mistake == "delta_noise" else delta.sqrt()
                x = x + 0.5 * delta * score + noise * z
        return x

    return simulate(step, randn(shape, generator), list(range(schedule.T, -1, -1)))


PC_MISTAKES = {
    "alpha": "multiply δ by α_{t−1} = 1 − β_{t−1} (the α of Song et al.'s corrector, Algorithm 5)",
    "half": "δ = 4α(r‖z‖/‖s‖)²: with the drift (δ/2)·s the ratio ‖(δ/2)s‖/‖√δ z‖ = r needs the 4 "
            "(Song et al.'s 2α is for their ε = δ/2)",
    "delta_noise": "the corrector's noise is √δ·z, not δ·z",
    "global_norm": "take the norms per sample, v.flatten(1).norm(dim=1), then average them over the batch "
                   "(not one norm of the whole batch)",
    "sigma_t": "the corrector works at level t − 1: its score is −ε_θ(x, t − 1)/√(1 − ᾱ_{t−1}), not /√(1 − ᾱ_t)",
    "model_t": "after the predictor x is at level t − 1: call the model with t − 1 in the corrector",
    "dim1_norm": "the norms run over all of a sample's coordinates: v.flatten(1).norm(dim=1) (v.norm(dim=1) covers "
                 "only dimension 1, which is all of them for 2-D points but not for images)",
}


@exercise("07", "pc_sample", points=3)
def pc_sample(t: Tester, fn):
    """DDPM predictor + Langevin corrector at level t − 1 with the SNR step size; the reference."""
    schedule = NoiseSchedule.make("linear", 6, beta_1=0.02, beta_T=0.4)
    spy = _TimeSpy(_gaussian_eps(schedule))
    out = t.call(fn, schedule, spy, (16, 2), corrector_steps=2, snr=0.16, generator=_gen(0))
    t.tensor(out, shape=(16, 2), what="pc_sample(schedule (T = 6), eps_model, (16, 2), corrector_steps=2, ...)")
    expected_ts = [6] + [u for s in range(5, 0, -1) for u in (s, s, s)]
    t.check(spy.ts == expected_ts,
            "the model is called at t (predictor), then corrector_steps times at t − 1 (corrector); no corrector "
            "after the last step", f"expected t = {expected_ts}, got {spy.ts[:20]}",
            hint="predictor: ddpm_step at t; then, if t − 1 ≥ 1, corrector_steps Langevin steps with the model "
                 "at t − 1", decisive=True)

    schedule = NoiseSchedule.make("linear", 20, beta_1=5e-3, beta_T=0.3)
    eps = _gaussian_eps(schedule)
    got = t.call(fn, schedule, eps, (64, 2), corrector_steps=0, generator=_gen(1))
    t.tensor(got, shape=(64, 2), what="pc_sample(..., corrector_steps=0)")
    t.close(got, ddpm_sample(schedule, eps, (64, 2), generator=_gen(1)),
            "with corrector_steps=0 it is exactly ddpm_sample (same generator)",
            hint="draw x_T = randn(shape, generator, device) first, then let ddpm_step(..., generator=generator) "
                 "draw the predictor's noise", rtol=1e-5, atol=1e-6)

    for k in (1, 2):
        got = t.call(fn, schedule, eps, (64, 2), corrector_steps=k, snr=0.2, generator=_gen(2))
        t.tensor(got, shape=(64, 2), dtype=torch.float32, what=f"pc_sample(..., corrector_steps={k})")
        expected = ref.pc_sample(schedule, eps, (64, 2), corrector_steps=k, snr=0.2, generator=_gen(2))
        wrong = {hint: _pc(schedule, eps, (64, 2), k, 0.2, _gen(2), mistake) for mistake, hint in PC_MISTAKES.items()}
        wrong["the corrector does nothing: after each predictor step, corrector_steps Langevin steps"] = \
            ddpm_sample(schedule, eps, (64, 2), generator=_gen(2))
        diagnose(t, got, expected, f"corrector_steps={k}: matches minidiff.langevin.pc_sample (same generator)",
                 wrong, hint="in each corrector step draw z = randn(x.shape, generator, device) *after* the "
                             "predictor, then δ = 4 α_{t−1} (r ‖z‖/‖s‖)² and x + (δ/2)·s + √δ·z",
                 rtol=1e-4, atol=1e-5)

    # images: the norms in the step size run over every coordinate of a sample
    shape = (6, 1, 2, 3)
    got = t.call(fn, schedule, eps, shape, corrector_steps=1, snr=0.2, generator=_gen(3))
    t.tensor(got, shape=shape, dtype=torch.float32, what="pc_sample on images (6, 1, 2, 3)")
    expected = ref.pc_sample(schedule, eps, shape, corrector_steps=1, snr=0.2, generator=_gen(3))
    wrong = {hint: _pc(schedule, eps, shape, 1, 0.2, _gen(3), mistake) for mistake, hint in PC_MISTAKES.items()}
    diagnose(t, got, expected, "images (6, 1, 2, 3): matches minidiff.langevin.pc_sample (same generator)", wrong,
             hint="per-sample norms over every coordinate: v.flatten(1).norm(dim=1).mean()", rtol=1e-4, atol=1e-5)
