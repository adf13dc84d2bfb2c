"""Checks for lesson 09, the SDE view.

    from minidiff.course.checks import lesson09 as check
    check.vp_sde(vp_sde, vp_marginal)                  # f, g and the marginal of the VP SDE
    check.pf_ode_drift(pf_ode_drift)                    # f − ½ g² s with s = −ε_θ(x, t·T)/σ_t
    check.euler_maruyama_step(euler_maruyama_step)      # one reverse-SDE step
    check.heun_step(heun_step)                          # Heun's method for any ODE
    check.hutchinson_divergence(hutchinson_divergence)  # vᵀ J v by one vector–Jacobian product

Closed forms first (the moments of a step on many samples, Heun on dx/dt = a x, vᵀ A v for a linear map),
then minidiff's references on random inputs (two ranks, float32 and float64, non-default arguments).
The outputs of known mistakes (a missing ½, a variance for a std, the model called at t instead of t·T,
the full g² of the reverse SDE in the ODE, Δt with the wrong sign, ...) are recomputed here so that a
hint can name the mistake.
"""

from __future__ import annotations

import torch

from ... import likelihood as lref
from ... import sde as ref
from ...schedules import NoiseSchedule
from .core import Tester, diagnose, exercise


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _col(v, x):
    return v.reshape(-1, *([1] * (x.dim() - 1)))


def _full(v, x):
    """A per-row value ((B,), (B, 1, ...) or x's shape) broadcast to x's shape, for comparisons; v as is otherwise."""
    if isinstance(v, torch.Tensor) and v.numel() == x.shape[0]:
        return _col(v, x).expand(x.shape)
    if isinstance(v, torch.Tensor) and v.numel() == x.numel():
        return v.reshape(x.shape)
    return v


# ---------------------------------------------------------------- 1. the VP SDE


def _vp_wrong(x, t, bmin, bmax, mistake):
    t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[0])
    beta = _col(bmin + t * (bmax - bmin), x)
    if mistake == "no_half":
        return -beta * x, beta.sqrt()
    if mistake == "g_beta":
        return -0.5 * beta * x, beta
    if mistake == "defaults":
        beta = _col(0.1 + t * 19.9, x)
        return -0.5 * beta * x, beta.sqrt()
    raise ValueError(mistake)


def _marg_wrong(x0, t, bmin, bmax, mistake):
    t = torch.as_tensor(t, dtype=x0.dtype).expand(x0.shape[0])
    integral = _col(bmin * t + 0.5 * (bmax - bmin) * t**2, x0)
    if mistake == "rectangle":
        integral = _col((bmin + t * (bmax - bmin)) * t, x0)
    if mistake == "no_half_t2":
        integral = _col(bmin * t + (bmax - bmin) * t**2, x0)
    abar = torch.exp(-integral)
    if mistake == "mean_abar":
        return abar * x0, (1 - abar).sqrt()
    if mistake == "variance":
        return abar.sqrt() * x0, 1 - abar
    return abar.sqrt() * x0, (1 - abar).sqrt()


@exercise("09", "vp_sde", points=2)
def vp_sde(t: Tester, sde_fn, marginal_fn):
    """vp_sde: f = −½ β(t) x, g = √β(t); vp_marginal: √ᾱ(t) x_0 and √(1 − ᾱ(t)), ᾱ = exp(−∫β)."""
    x = torch.randn(5, 2)
    tt = torch.tensor([0.05, 0.2, 0.5, 0.8, 1.0])
    out = t.call(sde_fn, x, tt)
    ok = isinstance(out, tuple) and len(out) == 2
    t.check(ok, "vp_sde returns a pair (drift, diffusion)", f"got {type(out).__name__}",
            hint="return drift, diffusion", decisive=True)
    if not ok:
        return
    drift, g = out
    t.tensor(drift, shape=(5, 2), dtype=torch.float32, what="the drift f(x, t)")
    t.tensor(g, what="the diffusion g(t)")
    e_drift, e_g = ref.vp_sde(x, tt)
    wrong = {"drift": {"the drift is −½ β(t) x: the ½ is missing": _vp_wrong(x, tt, 0.1, 20.0, "no_half")[0]},
             "g": {"g(t) = √β(t): β(t) is the *variance* rate of the noise, g its square root":
                   _vp_wrong(x, tt, 0.1, 20.0, "g_beta")[1].expand(5, 2)}}
    diagnose(t, drift, e_drift, "the drift at t = 0.05, ..., 1: −½ β(t) x with β(t) = β_min + t (β_max − β_min)",
             wrong["drift"], hint="β(t) = beta_min + t · (beta_max − beta_min), one per row of x", rtol=1e-5, atol=1e-6)
    diagnose(t, _full(g, x), e_g.expand(5, 2), "the diffusion g(t) = √β(t)",
             wrong["g"], hint="shape it (B, 1, ...) so that g * z broadcasts over x", rtol=1e-5, atol=1e-6)
    # images, float64, a float t, non-default β_min and β_max
    imgs = torch.randn(3, 1, 2, 2, dtype=torch.float64)
    out = t.call(sde_fn, imgs, 0.3, 0.5, 10.0)
    if isinstance(out, tuple) and len(out) == 2:
        t.tensor(out[0], shape=(3, 1, 2, 2), dtype=torch.float64, what="the drift of float64 images (3, 1, 2, 2)")
        diagnose(t, out[0], ref.vp_sde(imgs, 0.3, 0.5, 10.0)[0],
                 "images, t = 0.3 (a float), beta_min = 0.5, beta_max = 10: the drift matches minidiff.sde.vp_sde",
                 {"use the beta_min and beta_max you are given, not the defaults 0.1 and 20":
                  _vp_wrong(imgs, 0.3, 0.5, 10.0, "defaults")[0]},
                 hint="t may be a float (one time for the whole batch) or a (B,) tensor; reshape β to (B, 1, 1, …)",
                 rtol=1e-9, atol=1e-12)

    # the marginal
    x0 = torch.randn(5, 2)
    out = t.call(marginal_fn, x0, tt, 0.5, 10.0)
    ok = isinstance(out, tuple) and len(out) == 2
    t.check(ok, "vp_marginal returns a pair (mean, std)", f"got {type(out).__name__}",
            hint="return mean, std", decisive=True)
    if not ok:
        return
    mean, std = out
    t.tensor(mean, shape=(5, 2), dtype=torch.float32, what="the mean of x_t | x_0")
    t.tensor(std, what="the std of x_t | x_0")
    e_mean, e_std = ref.vp_marginal(x0, tt, 0.5, 10.0)
    mistakes = {"the mean is √ᾱ(t) x_0 = exp(−½ ∫β) x_0: you used ᾱ(t) x_0 (the ½ is missing)":
                _marg_wrong(x0, tt, 0.5, 10.0, "mean_abar")[0],
                "∫_0^t β(s) ds = β_min t + ½ (β_max − β_min) t²: the area under a line, not β(t) · t":
                _marg_wrong(x0, tt, 0.5, 10.0, "rectangle")[0],
                "∫_0^t β(s) ds = β_min t + ½ (β_max − β_min) t²: the ½ of the t² term is missing":
                _marg_wrong(x0, tt, 0.5, 10.0, "no_half_t2")[0]}
    diagnose(t, mean, e_mean, "beta_min = 0.5, beta_max = 10: the mean √ᾱ(t) x_0 with ᾱ(t) = exp(−∫_0^t β)", mistakes,
             hint="∫_0^t β = beta_min · t + ½ (beta_max − beta_min) · t²", rtol=1e-4, atol=1e-6)
    diagnose(t, _full(std, x0), e_std.expand(5, 2), "the std √(1 − ᾱ(t))",
             {"that is the variance 1 − ᾱ(t): the std is its square root":
              _marg_wrong(x0, tt, 0.5, 10.0, "variance")[1].expand(5, 2)},
             hint="std = √(1 − exp(−∫β)), shaped (B, 1, ...)", rtol=1e-4, atol=1e-6)
    out = t.call(marginal_fn, imgs, 0.7)
    if isinstance(out, tuple) and len(out) == 2:
        t.tensor(out[0], shape=(3, 1, 2, 2), dtype=torch.float64, what="the mean for float64 images (3, 1, 2, 2)")
        t.close(out[0], ref.vp_marginal(imgs, 0.7)[0], "images, t = 0.7, default β: the mean matches minidiff.sde.vp_marginal",
                hint="nothing may assume 2-D points: reshape per-row values to (B, 1, 1, …)", rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- shared: exact ε-models of Gaussian data


class _GaussianEps:
    """The exact ε-model of data N(μ, s² I) under an SDE: p_t = N(a μ, (a² s² + σ_t²) I); records its times."""

    def __init__(self, sde, mu=0.5, s=0.4):
        self.sde, self.mu, self.s, self.times = sde, mu, s, []

    def __call__(self, x, t_model):
        t_model = torch.as_tensor(t_model)
        self.times.append(float(t_model.flatten()[0]))
        t = (t_model.double() / self.sde.T).clamp(0, 1)
        a, sig = _col(self.sde.mean_scale(t), x).to(x.dtype), _col(self.sde.std(t), x).to(x.dtype)
        return sig * (x - a * self.mu) / (a**2 * self.s**2 + sig**2)


def _sdes():
    return {"VPSDE() (linear β, T = 1000)": ref.VPSDE(),
            "VPSDE.from_schedule(cosine, T = 50)": ref.VPSDE.from_schedule(NoiseSchedule.make("cosine", 50)),
            "VESDE(0.01, 50)": ref.VESDE(0.01, 50.0)}


# ---------------------------------------------------------------- 2. the PF-ODE drift


def _pf_wrong(sde, eps_model, x, t, mistake):
    tt = torch.full((x.shape[0],), float(t), dtype=x.dtype)
    g = sde.diffusion(tt, x)
    sig = _col(sde.std(tt), x).to(x.dtype)
    t_model = tt if mistake == "time" else tt * sde.T
    eps = eps_model(x, t_model)
    score = {"times_sigma": -eps * sig, "sign": eps / sig, "variance": -eps / sig**2}.get(mistake, -eps / sig)
    f = torch.zeros_like(x) if mistake == "no_f" else sde.drift(x, tt)
    return f - (g**2 if mistake == "full_g2" else 0.5 * g**2) * score


PF_MISTAKES = {
    "time": "call the model at its own time scale, t · sde.T (a DDPM step number), not at t ∈ [0, 1]",
    "full_g2": "the probability-flow ODE takes ½ g² s: the full g² s belongs to the reverse SDE, whose noise makes up "
               "the other half",
    "times_sigma": "s = −ε/σ_t: divide by the std, do not multiply",
    "sign": "s = −ε/σ_t: the score points *against* the noise (a minus sign)",
    "variance": "σ_t = sde.std(t) is already the std √(1 − ᾱ(t)): divide by it once, not by its square",
    "no_f": "the forward drift f(x, t) = sde.drift(x, t) is part of the velocity: f − ½ g² s",
}


@exercise("09", "pf_ode_drift", points=3)
def pf_ode_drift(t: Tester, fn):
    """f(x, t) − ½ g(t)² s(x, t) with s = −ε_θ(x, t·T)/σ_t, for VP and VE SDEs, points and images."""
    sde = ref.VPSDE.from_schedule(NoiseSchedule.make("cosine", 50))
    spy = _GaussianEps(sde)
    x = torch.randn(6, 2)
    out = t.call(fn, sde, spy, x, 0.4)
    t.tensor(out, shape=(6, 2), dtype=torch.float32, what="pf_ode_drift(sde (T = 50), eps_model, x (6, 2), 0.4)")
    t.check(spy.times[:1] == [float(torch.tensor(0.4) * 50)], "the model is called once, at its time t · T = 0.4 · 50 = 20",
            f"called at {spy.times[:3]}", hint="eps_model(x, t * sde.T) with t a (B,) tensor", decisive=True)
    for name, s in _sdes().items():
        for x, tv in ((torch.randn(8, 2), 0.37), (torch.randn(3, 1, 2, 2, dtype=torch.float64), 0.81)):
            eps = _GaussianEps(s)
            got = t.call(fn, s, eps, x, tv)
            t.tensor(got, shape=tuple(x.shape), dtype=x.dtype, what=f"{name}, x {tuple(x.shape)} {x.dtype}")
            wrong = {hint: _pf_wrong(s, eps, x, tv, m) for m, hint in PF_MISTAKES.items()}
            diagnose(t, got, ref.pf_ode_drift(s, eps, x, tv), f"{name}, x {tuple(x.shape)}, t = {tv}: matches "
                     "minidiff.sde.pf_ode_drift", wrong, hint="f − ½ g² s with f = sde.drift(x, t), g = sde.diffusion(t, x), "
                     "s = −eps_model(x, t·T)/σ_t and σ_t = sde.std(t) reshaped to (B, 1, …)", rtol=1e-4, atol=1e-6)
    t.raises(fn, (ref.VPSDE(), _GaussianEps(ref.VPSDE()), torch.randn(4, 2), 1.5), ValueError,
             "t = 1.5 (outside [0, 1]) raises a ValueError", hint="let sde.drift / sde.diffusion see t: they check it")


# ---------------------------------------------------------------- 3. Euler–Maruyama on the reverse SDE


def _em_wrong(sde, eps_model, x, t, t_next, generator, mistake):
    tt = torch.full((x.shape[0],), float(t), dtype=x.dtype)
    dt = float(t_next) - float(t)
    g = sde.diffusion(tt, x)
    score = ref.score_from_eps(sde, eps_model, x, tt)
    f = sde.drift(x, tt)
    drift = {"plus": f + g**2 * score, "half": f - 0.5 * g**2 * score}.get(mistake, f - g**2 * score)
    z = torch.zeros_like(x) if generator is None else torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if mistake == "forward_dt":
        return x - drift * dt + g * abs(dt) ** 0.5 * z
    if mistake == "no_sqrt":
        return x + drift * dt + g * abs(dt) * z
    if mistake == "g2_noise":
        return x + drift * dt + g**2 * abs(dt) ** 0.5 * z
    return x + drift * dt + g * abs(dt) ** 0.5 * z


EM_MISTAKES = {
    "plus": "the reverse drift is f − g² s: with + g² s the step pushes away from the data",
    "half": "the reverse SDE takes the full g² s; ½ g² s belongs to the probability-flow ODE (no noise)",
    "forward_dt": "Δt = t_next − t is negative (time runs backwards): x + drift · Δt, not x − drift · Δt",
    "no_sqrt": "the noise is g √|Δt| z: Brownian increments have variance |Δt|, so their size is √|Δt|",
    "g2_noise": "the noise is g(t) √|Δt| z, with g (not g²)",
}


@exercise("09", "euler_maruyama_step", points=3)
def euler_maruyama_step(t: Tester, fn):
    """x + [f − g² s] Δt + g √|Δt| z, Δt = t_next − t < 0: moments on many samples, then the reference."""
    sde = ref.VPSDE()
    n, t0, t1 = 20_000, 0.5, 0.45
    x = torch.zeros(n, 2) + torch.tensor([0.3, -0.6])
    eps = _GaussianEps(sde)
    out = t.call(fn, sde, eps, x.clone(), t0, t1, _gen(1))
    t.tensor(out, shape=(n, 2), what="euler_maruyama_step(VPSDE(), eps, x (20000, 2), 0.5, 0.45, generator)")
    tt = torch.full((1,), t0)
    g2 = float(sde.diffusion(tt, x[:1]) ** 2)
    mean_move = (ref.euler_maruyama_step(sde, eps, x[:1], t0, t1, noise=torch.zeros(1, 2)) - x[:1])[0]
    diagnose(t, (out - x).mean(0), mean_move, "the average move is the reverse drift [f − g² s] · Δt",
             {hint: (_em_wrong(sde, eps, x[:1], t0, t1, None, m) - x[:1])[0]
              for m, hint in EM_MISTAKES.items() if m in ("plus", "half", "forward_dt")},
             hint="Δt = t_next − t < 0; drift = sde.drift(x, t) − g² · score_from_eps(sde, eps_model, x, t)",
             rtol=0.0, atol=0.01)
    diagnose(t, out.var(0), torch.full((2,), g2 * 0.05), "the spread has variance g(t)² |Δt| (noise g √|Δt| z)",
             {"your noise has variance g² Δt²: the noise is g √|Δt| z, not g |Δt| z": torch.full((2,), g2 * 0.05**2),
              "your noise has variance g⁴ |Δt|: multiply z by g, not by g²": torch.full((2,), g2**2 * 0.05),
              "there is no noise: the reverse SDE adds g √|Δt| z at every step": torch.zeros(2)},
             hint="z = randn(x.shape, generator, x.device, x.dtype), times g(t) · √|Δt|", rtol=0.05, atol=1e-4)
    # the reference, the same generator: VP and VE, points and float64 images
    for name, s in _sdes().items():
        for x, (a, b) in ((torch.randn(8, 2), (0.62, 0.6)), (torch.randn(3, 1, 2, 2, dtype=torch.float64), (0.3, 0.1))):
            eps = _GaussianEps(s)
            got = t.call(fn, s, eps, x.clone(), a, b, _gen(5))
            t.tensor(got, shape=tuple(x.shape), dtype=x.dtype, what=f"{name}, x {tuple(x.shape)} {x.dtype}")
            wrong = {hint: _em_wrong(s, eps, x, a, b, _gen(5), m) for m, hint in EM_MISTAKES.items()}
            diagnose(t, got, ref.euler_maruyama_step(s, eps, x, a, b, _gen(5)),
                     f"{name}, x {tuple(x.shape)}, t = {a} → {b}: matches minidiff.sde.euler_maruyama_step (same generator)",
                     wrong, hint="draw z once with randn(x.shape, generator, x.device, x.dtype); nothing else draws "
                                 "random numbers", rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- 4. Heun's method


def _heun_wrong(drift, x, t, t_next, mistake):
    h = float(t_next) - float(t)
    d1 = drift(x, t)
    if mistake == "euler":
        return x + h * d1
    if mistake == "same_t":
        return x + 0.5 * h * (d1 + drift(x + h * d1, t))
    if mistake == "at_x":
        return x + 0.5 * h * (d1 + drift(x, t_next))
    if mistake == "no_half":
        return x + h * (d1 + drift(x + h * d1, t_next))
    raise ValueError(mistake)


HEUN_MISTAKES = {
    "euler": "that is Euler's step x + h d₁: Heun adds a second slope d₂ at the Euler guess and averages the two",
    "same_t": "evaluate the second slope at the *end* of the step: d₂ = drift(x + h d₁, t_next)",
    "at_x": "the second slope is taken at the Euler guess x + h d₁, not at x",
    "no_half": "average the two slopes: x + h (d₁ + d₂)/2",
}


def _tdrift(x, t):
    """dx/dt = −(1 + t) x + sin(x): depends on both x and t."""
    return -(1.0 + float(t)) * x + torch.sin(x)


@exercise("09", "heun_step", points=2)
def heun_step(t: Tester, fn):
    """x + h (d₁ + d₂)/2 with d₁ = drift(x, t), d₂ = drift(x + h d₁, t_next): dx/dt = a x, then a t-dependent drift."""
    x = torch.randn(6, 2, dtype=torch.float64)
    a, h = -1.3, 0.2
    out = t.call(fn, lambda y, s: a * y, x, 0.5, 0.5 + h)
    t.tensor(out, shape=(6, 2), dtype=torch.float64, what="heun_step on dx/dt = a x")
    expected = x * (1 + a * h + (a * h) ** 2 / 2)
    diagnose(t, out, expected, "on dx/dt = a x one Heun step multiplies x by 1 + ah + (ah)²/2 (second order)",
             {"that is Euler's step x (1 + ah): Heun adds a second slope at the Euler guess and averages the two":
              x * (1 + a * h),
              "average the two slopes: x + h (d₁ + d₂)/2, not x + h (d₁ + d₂)": x * (1 + 2 * a * h + (a * h) ** 2)},
             hint="d₁ = drift(x, t); x̃ = x + h d₁; d₂ = drift(x̃, t_next); x + h (d₁ + d₂)/2", rtol=1e-10, atol=1e-12)
    for x, (s0, s1) in ((torch.randn(7, 3), (0.2, 0.5)), (torch.randn(2, 1, 3, 3, dtype=torch.float64), (0.9, 0.6))):
        got = t.call(fn, _tdrift, x.clone(), s0, s1)
        t.tensor(got, shape=tuple(x.shape), dtype=x.dtype, what=f"heun_step on x {tuple(x.shape)} {x.dtype}")
        wrong = {hint: _heun_wrong(_tdrift, x, s0, s1, m) for m, hint in HEUN_MISTAKES.items()}
        diagnose(t, got, ref.heun_step(_tdrift, x, s0, s1), f"dx/dt = −(1 + t) x + sin x from t = {s0} to {s1}: matches "
                 "minidiff.sde.heun_step", wrong, hint="h = t_next − t may be negative (backwards in time)",
                 rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- 5. the Hutchinson divergence


def _mlp_fn(x):
    """A per-sample nonlinear map of any shape: tanh of a fixed mixing of the coordinates, plus x²/4."""
    flat = x.flatten(1)
    W = torch.linspace(-1, 1, flat.shape[1] ** 2, dtype=x.dtype).reshape(flat.shape[1], flat.shape[1])
    return (torch.tanh(flat @ W) + flat**2 / 4).reshape(x.shape)


@exercise("09", "hutchinson_divergence", points=3)
def hutchinson_divergence(t: Tester, fn):
    """(fn(x), vᵀ J v): a linear map A first (vᵀ A v, E_v = tr A), then a nonlinear map against minidiff."""
    A = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 3.0, 0.5], [0.0, 4.0, -2.0]])
    x = torch.randn(5, 3)
    v = torch.randn(5, 3)
    out = t.call(fn, lambda y: y @ A.T, x, v)
    ok = isinstance(out, tuple) and len(out) == 2
    t.check(ok, "hutchinson_divergence returns a pair (fn(x), estimate)", f"got {type(out).__name__}",
            hint="return f, div", decisive=True)
    if not ok:
        return
    f, div = out
    t.tensor(div, shape=(5,), dtype=torch.float32, what="the estimate, one per sample")
    t.close(f, x @ A.T, "the first output is fn(x)", hint="return fn(x) itself (detached) as the first element")
    expected = torch.einsum("bi,ij,bj->b", v, A, v)
    diagnose(t, div, expected, "for f(x) = A x the estimate is vᵀ A v for each sample",
             {"that is vᵀ v: the Jacobian is missing; take autograd.grad(f, x, v) (that is vᵀ J), then dot it with v":
              (v * v).sum(1),
              "that is 1ᵀ J v (or vᵀ J 1): both sides of J need the same probe v": torch.einsum("bi,ij,bj->b",
                                                                                                 v, A, torch.ones_like(v)),
              "that is the sum over the whole batch: keep one estimate per sample, (vjp * v).flatten(1).sum(1)":
              expected.sum().expand(5)},
             hint="vjp = torch.autograd.grad(f, x, v)[0] with x.requires_grad_(True) inside torch.enable_grad(); "
                  "then (vjp * v).flatten(1).sum(1)", rtol=1e-4, atol=1e-5)
    # unbiased: the average over many Rademacher probes is the trace of A
    xs = torch.randn(4000, 3)
    vs = lref.probe_vectors(xs.shape, "rademacher", _gen(2))
    out = t.call(fn, lambda y: y @ A.T, xs, vs)
    if isinstance(out, tuple) and len(out) == 2:
        t.close(out[1].mean(), torch.trace(A), "over 4,000 Rademacher probes the estimates average to tr A = 2",
                hint="E[vᵀ A v] = tr A when E[v vᵀ] = I", rtol=0.0, atol=0.15)
    # nonlinear, images, float64
    with torch.no_grad():
        for x in (torch.randn(4, 3), torch.randn(3, 1, 2, 2, dtype=torch.float64)):
            v = lref.probe_vectors(x.shape, "gaussian", _gen(3), dtype=x.dtype)
            out = t.call(fn, _mlp_fn, x, v)
            ok = isinstance(out, tuple) and len(out) == 2
            t.check(ok, f"x {tuple(x.shape)}: returns a pair", decisive=True, hint="return f, div")
            if not ok:
                continue
            t.tensor(out[1], shape=(x.shape[0],), dtype=x.dtype, what=f"the estimate for x {tuple(x.shape)} {x.dtype}")
            t.close(out[1], lref.hutchinson_divergence(_mlp_fn, x, v)[1],
                    f"a nonlinear map on x {tuple(x.shape)} {x.dtype}, called under torch.no_grad(): matches "
                    "minidiff.likelihood.hutchinson_divergence",
                    hint="switch gradients on inside (with torch.enable_grad():), since samplers run under no_grad; "
                         "sum over every coordinate of a sample: .flatten(1).sum(1)", rtol=1e-4, atol=1e-6)
