"""Exact log-likelihoods through the probability-flow ODE (lesson 09).

The PF-ODE dx/dt = f̃(x, t) (`sde.pf_ode_drift`) is a continuous normalising flow. Along a solution x(t)
the log-density changes by the divergence of the velocity (instantaneous change of variables, Chen et al.
2018, "Neural ODEs", Theorem 1; Song et al. 2021, §4.3 and Appendix D):

    d/dt log p_t(x(t)) = −∇·f̃(x(t), t)
    ⇒  log p_{t0}(x(t0)) = log p_{t1}(x(t1)) + ∫_{t0}^{t1} ∇·f̃(x(t), t) dt   (Chen et al. 2018, Theorem 1)

Integrate the pair (x, ℓ) forward from x(t0) = x_0, ℓ(t0) = 0 with dℓ/dt = ∇·f̃, and read off
log p_{t0}(x_0) = log N(x(t1); 0, I) + ℓ(t1). The divergence is the trace of the Jacobian ∂f̃/∂x:

    exact:       Σ_i ∂f̃_i/∂x_i, one backward pass per dimension (fine in 2D, 784 passes for MNIST);
    Hutchinson:  E_v[vᵀ (∂f̃/∂x) v] for any v with E[v vᵀ] = I (Rademacher ±1 or Gaussian), one backward
                 pass (Hutchinson 1989; Skilling 1989; FFJORD, Grathwohl et al. 2019, keeps v fixed per solve).

Bits per dimension of discrete data (MNIST's 256 levels): dequantise with uniform noise inside each level's
bin of width w (in the model's units), then −log₂ P(x) ≤ E_u[−log p(x + u)]/ln 2 − D log₂ w  (uniform dequantisation, Theis et al. 2016).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, NamedTuple

import torch

from .sde import check_time, euler_step, heun_step, pf_ode_drift, solve_ode
from .utils import check_float, check_positive_int, randn

# ---------------------------------------------------------------- divergences


def exact_divergence(fn: Callable, x: torch.Tensor):
    """(fn(x), ∇·fn(x)) per sample: the trace of the Jacobian by one backward pass per dimension of a sample.

    fn must treat the samples of a batch independently (no batch norm). Returns (f detached, div (B,))."""
    check_float("x", x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        f = fn(x)
        flat_f, D = f.flatten(1), x[0].numel()
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(D):
            (g,) = torch.autograd.grad(flat_f[:, i].sum(), x, retain_graph=i < D - 1)
            div = div + g.flatten(1)[:, i]
    return f.detach(), div


def hutchinson_divergence(fn: Callable, x: torch.Tensor, v: torch.Tensor):
    """(fn(x), vᵀ (∂fn/∂x) v) per sample: the Skilling–Hutchinson estimate of the divergence  (Hutchinson 1989; Grathwohl et al. 2019).

    One vector–Jacobian product: autograd gives vᵀJ, then a dot product with v. Unbiased when
    E[v vᵀ] = I. v: shaped like x. Returns (f detached, estimate (B,))."""
    check_float("x", x)
    check_float("v", v)
    if v.shape != x.shape:
        raise ValueError(f"v must be shaped like x {tuple(x.shape)}, got {tuple(v.shape)}")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        f = fn(x)
        (vjp,) = torch.autograd.grad(f, x, v)
    return f.detach(), (vjp * v).flatten(1).sum(1)


def probe_vectors(shape, kind: str = "rademacher", generator: torch.Generator | None = None, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """Random v with E[v vᵀ] = I: "rademacher" (±1, each with probability ½) or "gaussian" (N(0, I))."""
    if kind == "gaussian":
        return randn(shape, generator, device, dtype)
    if kind == "rademacher":
        gdev = generator.device if generator is not None else device
        return (torch.randint(0, 2, tuple(shape), generator=generator, device=gdev) * 2 - 1).to(device=device, dtype=dtype)
    raise ValueError(f"kind must be 'rademacher' or 'gaussian', got {kind!r}")


# ---------------------------------------------------------------- the ODE likelihood


def likelihood_timesteps(steps: int, t0: float, t1: float) -> list[float]:
    """steps + 1 times from t0 up to t1, evenly spaced in log t: near t = 0 the velocity grows like 1/σ_t
    (the score of nearly clean data), so the steps must shrink there; a uniform grid wastes them at large t."""
    check_positive_int("steps", steps)
    if not 0 < t0 < t1:
        raise ValueError(f"need 0 < t0 < t1, got t0={t0}, t1={t1}")
    return torch.logspace(math.log10(t0), math.log10(t1), steps + 1, dtype=torch.float64).tolist()


class ODELikelihood(NamedTuple):
    """log p_{t0}(x_0) per sample (nats), its two parts, the latent x(t1), and the cost."""

    log_prob: torch.Tensor  # (B,) = prior_log_prob + delta
    prior_log_prob: torch.Tensor  # (B,) log N(x(t1); 0, prior_std² I)
    delta: torch.Tensor  # (B,) ∫_{t0}^{t1} ∇·f̃ dt
    z: torch.Tensor  # x(t1)
    nfe: int  # drift evaluations (each one forward and one or D backward passes)


def ode_log_likelihood(sde, eps_model: Callable, x0: torch.Tensor, *, t0: float = 1e-5, t1: float = 1.0,
                       method: str = "rk45", steps: int = 100, rtol: float = 1e-5, atol: float = 1e-5,
                       max_steps: int = 10_000, divergence: str = "exact", probe: str = "rademacher",
                       generator: torch.Generator | None = None, prior_log_prob: Callable | None = None) -> ODELikelihood:
    """log p_{t0}(x_0) of the probability-flow ODE's density, by the instantaneous change of variables above.

    method: "rk45" (adaptive `solve_ode`, tolerances rtol/atol on x and ℓ together, at most max_steps steps),
        "heun" or "euler" (`steps` fixed steps from t0 to t1 on `likelihood_timesteps`, evenly spaced in log t).
    divergence: "exact" (D backward passes per evaluation) or "hutchinson" (one, with one probe v per sample
        drawn from `generator` and kept for the whole solve; `probe` = "rademacher" or "gaussian").
    prior_log_prob: log p_{t1}(z) per sample; default `sde.prior_log_prob` (N(0, I) for VP).
    Computes in x0's dtype (float64 for tight tolerances).
    """
    check_float("x0", x0)
    t0 = check_time("t0", t0, x0)[0].item()
    t1 = check_time("t1", t1, x0)[0].item()
    if t0 <= 0:
        raise ValueError(f"t0 must be > 0, got {t0}: at t = 0 the score −ε/σ_t divides by σ_0 = 0 (start at 1e-5, or 1/T)")
    if not t0 < t1:
        raise ValueError(f"need t0 < t1 (the flow runs from the data at t0 to the prior at t1), got t0={t0}, t1={t1}")
    if divergence not in ("exact", "hutchinson"):
        raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
    shape, B, D = x0.shape, x0.shape[0], x0[0].numel()
    v = probe_vectors(shape, probe, generator, x0.device, x0.dtype) if divergence == "hutchinson" else None
    calls = [0]

    def augmented(y: torch.Tensor, t) -> torch.Tensor:  # d/dt [x, ℓ] = [f̃(x, t), ∇·f̃(x, t)]
        calls[0] += 1
        x = y[:, :D].reshape(shape)
        fn = partial(pf_ode_drift, sde, eps_model, t=float(t))
        f, div = exact_divergence(fn, x) if v is None else hutchinson_divergence(fn, x, v)
        return torch.cat([f.flatten(1), div[:, None]], dim=1)

    y0 = torch.cat([x0.detach().flatten(1), torch.zeros(B, 1, dtype=x0.dtype, device=x0.device)], dim=1)
    with torch.no_grad():
        if method == "rk45":
            y1 = solve_ode(augmented, y0, t0, t1, rtol, atol, max_steps).x
        elif method in ("heun", "euler"):
            check_positive_int("steps", steps)
            stepper = heun_step if method == "heun" else euler_step
            y1, ts = y0, likelihood_timesteps(steps, t0, t1)
            for a, b in zip(ts[:-1], ts[1:]):
                y1 = stepper(augmented, y1, a, b)
        else:
            raise ValueError(f"method must be 'rk45', 'heun' or 'euler', got {method!r}")
    z, delta = y1[:, :D].reshape(shape), y1[:, D]
    prior = (prior_log_prob or sde.prior_log_prob)(z)
    return ODELikelihood(prior + delta, prior, delta, z, calls[0])


# ---------------------------------------------------------------- discrete data: dequantisation and bits/dim


def dequantize(x: torch.Tensor, bin_width: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x + w (u − ½), u ~ U[0, 1)^D: uniform noise over each value's bin of width w, centred on the value."""
    check_float("x", x)
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    gdev = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=gdev, dtype=x.dtype).to(x.device)
    return x + bin_width * (u - 0.5)


def bits_per_dim(log_prob, dims: int, bin_width: float = 1.0):
    """−(log p(y) + D log w) / (D ln 2)  (the dequantisation bound above): nats of a density over dequantised y, turned into bits per
    dimension of the discrete data whose bins have width w in y's units (w = 2/255 for images in [−1, 1])."""
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive int (numbers per example), got {dims!r}")
    if not bin_width > 0:
        raise ValueError(f"bin_width must be positive, got {bin_width!r}")
    return -(log_prob + dims * math.log(bin_width)) / (dims * math.log(2.0))
