"""Checks for lesson 07, Langevin dynamics.

    from minidiff.course.checks import lesson07 as check
    check.langevin_step(langevin_step)
    check.annealed_langevin(annealed_langevin)
    check.snr_step_size(snr_step_size)

The Langevin checks test the drift and the noise separately on many samples (their mean
and variance), then compare with minidiff's reference step for step with the same
random generator. The annealed loop is watched by a spy score function that records the
noise levels it is asked about, in order.
"""

from __future__ import annotations

import torch

from ... import langevin as ref
from .core import Tester, exercise


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@exercise("07", "langevin_step", points=2)
def langevin_step(t: Tester, fn):
    """x + (δ/2) s + √δ z: the drift, the noise's variance, the reference with the same generator."""
    n, delta = 20_000, 0.09
    x = torch.zeros(n, 2)
    score = torch.tensor([1.0, -2.0]).expand(n, 2).clone()
    out = t.call(fn, x.clone(), score, delta, _gen(1))
    t.tensor(out, shape=(n, 2), what="langevin_step(x, score, 0.09, generator)")
    mean, var = out.mean(0), out.var(0)
    drift_ok = t.close(mean, delta / 2 * score[0], "the average move is the drift (δ/2)·score",
                       hint="the drift is half the step size times the score: x + (δ/2)·score + √δ·z",
                       rtol=0.0, atol=0.01)
    if not drift_ok and torch.allclose(mean, delta * score[0], atol=0.01):
        t.result.messages[-1] += "\n    (you used δ·score: the drift carries a factor ½)"
    noise_ok = t.close(var, torch.full((2,), delta), "the spread has variance δ (noise √δ·z)",
                       hint="the noise is √δ·z with z ~ N(0, I): its variance is δ", rtol=0.05, atol=0.0)
    if not noise_ok and torch.allclose(var, torch.full((2,), delta**2), rtol=0.1):
        t.result.messages[-1] += "\n    (your noise has variance δ²: you used δ·z instead of √δ·z)"
    x2 = torch.randn(5, 3)
    s2 = torch.randn(5, 3)
    got = t.call(fn, x2.clone(), s2, 0.3, _gen(7))
    t.tensor(got, shape=(5, 3), what="langevin_step on a (5, 3) batch")
    t.close(got, ref.langevin_step(x2, s2, 0.3, _gen(7)), "matches minidiff.langevin.langevin_step with the same generator",
            hint="draw z with torch.randn(x.shape, generator=generator), once, after nothing else used the generator",
            rtol=1e-5, atol=1e-6)


class _Spy:
    """A score function that records the σ it is asked about and returns a zero score."""

    def __init__(self):
        self.sigmas = []

    def __call__(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=torch.float64).flatten()
        self.sigmas.append(float(s[0]))
        return torch.zeros_like(x)


@exercise("07", "annealed_langevin", points=3)
def annealed_langevin(t: Tester, fn):
    """Song & Ermon's Algorithm 1: levels in order, n steps each, δ_i = ε σ_i²/σ_L², the reference."""
    sigmas = torch.tensor([2.0, 1.0, 0.5])
    spy = _Spy()
    x0 = torch.zeros(4000, 2)
    out = t.call(fn, spy, sigmas, x0.clone(), 5, 0.01, _gen(0))
    t.tensor(out, shape=(4000, 2), what="annealed_langevin(score_fn, sigmas, x, 5, 0.01, generator)")
    expected_calls = [2.0] * 5 + [1.0] * 5 + [0.5] * 5
    t.check(len(spy.sigmas) == 15, "score_fn is called n_steps_each times per level (3 levels × 5 = 15 calls)",
            f"got {len(spy.sigmas)} calls",
            hint="two nested loops: for each σ_i, n_steps_each Langevin steps, each calling score_fn once")
    t.check(spy.sigmas == expected_calls, "the levels go from the largest σ to the smallest, σ_1 > … > σ_L",
            f"σ per call: {[round(s, 3) for s in spy.sigmas[:16]]}",
            hint="loop over sigmas in the given (decreasing) order and pass the current σ_i to score_fn")
    # With a zero score every step adds N(0, δ_i): Var = Σ_i n δ_i, δ_i = ε σ_i² / σ_L².
    var = 5 * 0.01 * (sigmas**2 / sigmas[-1] ** 2).sum()
    wrong = 5 * 0.01 * (sigmas**2).sum()
    ok = t.close(out.var(0), torch.full((2,), float(var)), "with a zero score the spread has variance Σ_i n·δ_i, δ_i = ε σ_i²/σ_L²",
                 hint="δ_i = step_lr · σ_i² / σ_L²: divide by the *last* (smallest) σ squared", rtol=0.06, atol=0.0)
    if not ok and torch.allclose(out.var(0), torch.full((2,), float(wrong)), rtol=0.06):
        t.result.messages[-1] += "\n    (you used δ_i = ε σ_i²: the division by σ_L² is missing)"
    sig2 = torch.tensor([1.5, 0.7, 0.2])
    score_fn = lambda x, s: -x / (1 + torch.as_tensor(s, dtype=x.dtype).reshape(-1, 1) ** 2)  # noqa: E731
    xi = torch.randn(50, 2)
    got = t.call(fn, score_fn, sig2, xi.clone(), 4, 0.002, _gen(3))
    t.tensor(got, shape=(50, 2), what="annealed_langevin on a Gaussian score")
    exp = ref.annealed_langevin_sample(score_fn, sig2, (50, 2), 4, 0.002, generator=_gen(3), x_init=xi.clone(), denoise=False)
    t.close(got, exp, "matches minidiff.langevin.annealed_langevin_sample(..., x_init=x, denoise=False), same generator",
            hint="use langevin_step(x, score_fn(x, sigma), step, generator) for every step and nothing else that draws "
                 "random numbers; pass sigma as a (B,) tensor, sigma_i.expand(len(x))", rtol=1e-4, atol=1e-5)


@exercise("07", "snr_step_size", points=2)
def snr_step_size(t: Tester, fn):
    """δ = 4α (r‖z‖/‖s‖)²: the ratio it guarantees, batch-averaged norms, α, the reference."""
    score = torch.tensor([[3.0, 4.0]])  # ‖s‖ = 5
    z = torch.tensor([[1.0, 0.0]])  # ‖z‖ = 1
    d = t.call(fn, score, z, 0.16, 1.0)
    if not isinstance(d, torch.Tensor):
        d = torch.as_tensor(d, dtype=torch.float64)
    t.tensor(d.reshape(()), shape=(), what="snr_step_size(...)")
    ratio = (0.5 * d * score).norm() / (d.sqrt() * z).norm()
    t.close(ratio, 0.16, "with that δ, ‖(δ/2)·s‖ / ‖√δ·z‖ equals the target r = 0.16",
            hint="solve (δ/2)‖s‖ = r √δ ‖z‖ for δ: δ = 4 (r ‖z‖ / ‖s‖)²", rtol=1e-4)
    d2 = t.call(fn, score, z, 0.16, 0.5)
    t.close(torch.as_tensor(d2).reshape(()), 0.5 * torch.as_tensor(d).reshape(()), "δ is proportional to α (α_t = 1 − β_t for VP)",
            hint="multiply by alpha", rtol=1e-4)
    B = 64
    s = torch.randn(B, 3, 4) * (1 + torch.rand(B, 1, 1))
    zz = torch.randn(B, 3, 4)
    got = torch.as_tensor(t.call(fn, s, zz, 0.2, 0.9)).reshape(())
    exp = ref.snr_step_size(s, zz, 0.2, 0.9)
    per_elem = 4 * 0.9 * (0.2 * zz.norm() / s.norm()) ** 2
    msg = None
    if torch.allclose(got.double(), per_elem.double(), rtol=1e-4):
        msg = "norms are taken per sample (flatten(1).norm(dim=1)) and then averaged over the batch, not over the whole tensor"
    t.close(got, exp, "a batch of (3, 4) samples: matches minidiff.langevin.snr_step_size",
            hint=msg or "‖s‖ = s.flatten(1).norm(dim=1).mean(), the same for z", rtol=1e-4)
