"""Flow matching and rectified flow: one notation from DDPM to flows (lesson 12).

Time runs as in rectified flow (Liu et al. 2023, "Flow Straight and Fast") and Stable Diffusion 3:
t ∈ [0, 1], t = 0 is data, t = 1 is noise. (Lipman et al. 2023, "Flow Matching for Generative Modeling",
write the same straight path with time reversed: t = 1 is data, x_1 ~ q, and noise sits at t = 0.)

1. The conditional path and its velocity (a straight line from the data point x_0 to the noise ε):

       x_t = (1 − t) x_0 + t ε,       u_t = dx_t/dt = ε − x_0                            (`interpolate`)

2. Flow matching: regress a velocity network on u_t (Lipman et al. 2023; Liu et al. 2023):

       L_FM(θ) = E_{t ~ U[0,1], x_0, ε} ‖ v_θ(x_t, t) − (ε − x_0) ‖²                    (`flow_loss`)

   Its minimiser is v*(x, t) = E[ε − x_0 | x_t = x], the velocity whose ODE dx/dt = v*(x, t) carries N(0, I)
   at t = 1 to the data at t = 0. Sampling integrates it backwards with Euler steps over `sampling.simulate`:
   x ← x + (t' − t) v_θ(x, t), t = 1 → 0 (`euler_step`, `euler_sample`).

3. Every Gaussian path x_t = a_t x_0 + b_t ε (`GaussianPath`: the straight path, DDPM's VP path, the cosine
   path) has the velocity v = ȧ x_0 + ḃ ε, and any one of (v, ε, x_0, score) gives the others at a known x_t:

       x_0 = (ḃ x_t − b v) / (a ḃ − ȧ b),   ε = (a v − ȧ x_t) / (a ḃ − ȧ b),   ∇ log p_t(x_t) = −ε / b
       v = ȧ x_0 + ḃ ε with x_0 = (x_t − b ε) / a  (from ε),  ε = (x_t − a x_0) / b  (from x_0)

   (`from_velocity`, `velocity_from_eps`, `velocity_from_x0`). The straight path has a ḃ − ȧ b = 1.

4. A flow is a diffusion: signal-to-noise ratio SNR(t) = a²/b² ((1 − t)²/t² for the straight path), log-SNR
   λ = log SNR. At equal SNR, x_t / √(a² + b²) is DDPM's x_t with ᾱ = SNR / (1 + SNR). Every loss on one
   of (v, ε, x_0) is an ε-loss ½ ∫ w(λ) ‖ε̂ − ε‖² dλ with a weighting w(λ) (Kingma & Gao 2023;
   `loss_weight`); flow matching's is w(λ) = e^(−λ/2).

5. Exact quantities for Gaussian-mixture data (`mixture_velocity`, no network) and the VP probability-flow ODE of
   lesson 09 read in flow time (`pf_ode_as_flow`): the two ODEs are one ODE in different coordinates.

6. Rectified flow's reflow (Liu et al. 2023): draw pairs (ε, x_0 = ODE(ε)) from a trained flow
   (`reflow_pairs`), train again on the pairs (`reflow_loss`, starting from the first model); the paths straighten
   (`straightness`), and one or two Euler steps become usable.

Shape-generic: x may be (B, D) points or (B, C, H, W) images. A velocity model is `v_model(x_t, t)` with t a
float tensor (B,) in [0, 1]; a network built for DDPM's integer times (the U-Net) sees `TimeScaled`'s 1000 · t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data.toy import GaussianMixture
from .sampling import simulate
from .sde import check_time, pf_ode_drift
from .sde import euler_step as sde_euler_step
from .sde import heun_step as sde_heun_step
from .utils import check_float, check_positive_int, check_prediction, check_same_device, check_same_shape, randn


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor as (B, 1, ..., 1) in x's dtype, to broadcast against x."""
    return v.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def rand_time(batch: int, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """t ~ U[0, 1), shape (batch,), drawn on the generator's device (like `utils.randn`), then moved."""
    if generator is None:
        return torch.rand(batch, device=device, dtype=dtype)
    return torch.rand(batch, generator=generator, device=generator.device, dtype=dtype).to(device)


# ---------------------------------------------------------------- 1. the straight path


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """x_t = (1 − t) x_0 + t ε, the straight conditional path (t = 0 data, t = 1 noise); t a float or (B,)."""
    check_float("x0", x0)
    check_float("eps", eps)
    check_same_shape("x0", x0, "eps", eps)
    check_same_device(x0, eps)
    t = _col(check_time("t", t, x0), x0)
    return (1 - t) * x0 + t * eps


# ---------------------------------------------------------------- 2. flow matching


def flow_loss(v_model: Callable, x0: torch.Tensor, generator: torch.Generator | None = None,
              eps: torch.Tensor | None = None) -> torch.Tensor:
    """L_FM on one batch x0 (B, ...): mean ‖v_θ(x_t, t) − (ε − x_0)‖² over the batch and the coordinates.

    t ~ U[0, 1], ε ~ N(0, I) (or the given `eps`, reflow's partner of each x0), x_t = (1 − t) x_0 + t ε.
    Returns a scalar tensor; gradients flow into v_model. `partial`-free: `train(model, flow_loss, data, ...)`.
    """
    check_float("x0", x0)
    if x0.dim() < 2 or x0.shape[0] < 1:
        raise ValueError(f"x0 must be a batch of shape (B, ...) with B ≥ 1, got {tuple(x0.shape)}")
    t = rand_time(x0.shape[0], generator, x0.device, x0.dtype)  # 1. t ~ U[0, 1]
    if eps is None:
        eps = randn(x0.shape, generator, x0.device, x0.dtype)  # 2. ε ~ N(0, I)
    x_t = interpolate(x0, eps, t)  # 3. x_t = (1 − t) x_0 + t ε
    v = check_prediction("v_model(x_t, t)", v_model(x_t, t), x_t)
    return F.mse_loss(v, eps - x0)  # 4. ‖v_θ − (ε − x_0)‖²


class TimeScaled(nn.Module):
    """A network whose time embedding was made for DDPM's t = 1..1000 (the U-Net's) as a velocity model on
    t ∈ [0, 1]: forward(x, t) = net(x, scale · t). `net` keeps its own weights (and its checkpoint)."""

    def __init__(self, net: nn.Module, scale: float = 1000.0):
        super().__init__()
        self.net, self.scale = net, float(scale)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.scale * check_time("t", t, x))


# ---------------------------------------------------------------- 2b. sampling: Euler over `simulate`


def flow_timesteps(steps: int) -> list[float]:
    """t_i = 1 − i / steps, i = 0..steps: uniform times from noise (t = 1) to data (t = 0)."""
    check_positive_int("steps", steps)
    return [1 - i / steps for i in range(steps)] + [0.0]


def velocity_at(v_model: Callable, x: torch.Tensor, t) -> torch.Tensor:
    """v_θ(x, t) with the float t repeated for the batch (a float tensor (B,) in x's dtype), checked."""
    v = v_model(x, check_time("t", t, x))
    return check_prediction("v_model(x, t)", v, x)


def check_step_times(t, t_next) -> None:
    """Both ends of a step must lie in [0, 1] (continuous time: 0 = data, 1 = noise)."""
    for name, value in (("t", t), ("t_next", t_next)):
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1] (0 = data, 1 = noise), got {float(value)}")


def euler_step(v_model: Callable, x: torch.Tensor, t, t_next) -> torch.Tensor:
    """x + (t' − t) v_θ(x, t): one Euler step of dx/dt = v_θ(x, t) (t' < t when sampling). One network call."""
    check_step_times(t, t_next)
    return sde_euler_step(lambda y, s: velocity_at(v_model, y, s), x, t, t_next)


def heun_step(v_model: Callable, x: torch.Tensor, t, t_next) -> torch.Tensor:
    """Heun's step (`sde.heun_step`) on the flow ODE: two network calls, second order."""
    check_step_times(t, t_next)
    return sde_heun_step(lambda y, s: velocity_at(v_model, y, s), x, t, t_next)


@torch.no_grad()
def euler_sample(v_model: Callable, noise: torch.Tensor, steps: int, return_trajectory: bool = False,
                 method: str = "euler"):
    """Integrate dx/dt = v_θ(x, t) from x = noise at t = 1 to t = 0 in `steps` uniform steps through
    `sampling.simulate` (method "euler": 1 call a step; "heun": 2). Returns x_0 (and the trajectory)."""
    check_float("noise", noise)
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    step = euler_step if method == "euler" else heun_step
    return simulate(lambda x, t, t_next: step(v_model, x, t, t_next), noise, flow_timesteps(steps),
                    return_trajectory=return_trajectory, desc=f"flow {method}")


# ---------------------------------------------------------------- 3. Gaussian paths and conversions


@dataclass(frozen=True)
class GaussianPath:
    """x_t = a(t) x_0 + b(t) ε on t ∈ [0, 1], with the derivatives ȧ, ḃ. Each is a function of a float64
    tensor t (B,); `coefficients(t, x)` returns (a, b, ȧ, ḃ) shaped (B, 1, ..., 1) in x's dtype."""

    name: str
    a: Callable
    b: Callable
    da: Callable
    db: Callable

    def coefficients(self, t, x: torch.Tensor):
        t = check_time("t", t, x).double()
        return tuple(_col(f(t), x) for f in (self.a, self.b, self.da, self.db))

    def log_snr(self, t) -> torch.Tensor:
        """λ(t) = log SNR(t) = 2 log(a/b), float64."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return 2 * (torch.log(self.a(t)) - torch.log(self.b(t)))

    def dlog_snr(self, t) -> torch.Tensor:
        """dλ/dt = 2 (ȧ/a − ḃ/b), float64 (negative: the SNR falls as t grows)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return 2 * (self.da(t) / self.a(t) - self.db(t) / self.b(t))


def straight_path() -> GaussianPath:
    """Rectified flow / flow matching: a = 1 − t, b = t (ȧ = −1, ḃ = 1)."""
    return GaussianPath("straight", lambda t: 1 - t, lambda t: t, lambda t: -torch.ones_like(t), lambda t: torch.ones_like(t))


def cosine_path() -> GaussianPath:
    """The cosine VP path (Nichol & Dhariwal 2021 without their offset): a = cos(πt/2), b = sin(πt/2)."""
    h = math.pi / 2
    return GaussianPath("cosine", lambda t: torch.cos(h * t), lambda t: torch.sin(h * t),
                        lambda t: -h * torch.sin(h * t), lambda t: h * torch.cos(h * t))


def vp_path(sde) -> GaussianPath:
    """The VP SDE's marginals (lesson 09) as a path: a = √ᾱ(t), b = √(1 − ᾱ(t)), ȧ = −½ β(t) a, ḃ = ½ β(t) a² / b."""
    a = sde.mean_scale
    b = sde.std
    return GaussianPath("vp", a, b, lambda t: -0.5 * sde.beta(t) * a(t), lambda t: 0.5 * sde.beta(t) * a(t) ** 2 / b(t))


def from_velocity(path: GaussianPath, x_t: torch.Tensor, v: torch.Tensor, t):
    """(x̂_0, ε̂, score) from a velocity v at x_t: solve x_t = a x_0 + b ε, v = ȧ x_0 + ḃ ε for (x_0, ε):

        x_0 = (ḃ x_t − b v) / (a ḃ − ȧ b),   ε = (a v − ȧ x_t) / (a ḃ − ȧ b),   score = −ε / b
    """
    check_float("x_t", x_t)
    check_same_shape("x_t", x_t, "v", v)
    a, b, da, db = path.coefficients(t, x_t)
    det = a * db - da * b
    x0 = (db * x_t - b * v) / det
    eps = (a * v - da * x_t) / det
    return x0, eps, -eps / b


def velocity_from_eps(path: GaussianPath, x_t: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """v = ȧ x_0 + ḃ ε with x_0 = (x_t − b ε) / a (an ε-model read as a velocity model; a > 0)."""
    check_float("x_t", x_t)
    check_same_shape("x_t", x_t, "eps", eps)
    a, b, da, db = path.coefficients(t, x_t)
    return da * (x_t - b * eps) / a + db * eps


def velocity_from_x0(path: GaussianPath, x_t: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
    """v = ȧ x_0 + ḃ ε with ε = (x_t − a x_0) / b (a denoiser read as a velocity model; b > 0)."""
    check_float("x_t", x_t)
    check_same_shape("x_t", x_t, "x0", x0)
    a, b, da, db = path.coefficients(t, x_t)
    return da * x0 + db * (x_t - a * x0) / b


# ---------------------------------------------------------------- 4. a flow is a diffusion: SNR and weighting

PREDICTIONS = ("eps", "x0", "v", "velocity")


def loss_weight(path: GaussianPath, t, prediction: str = "velocity") -> torch.Tensor:
    """The weighting w(λ) that makes E_{t ~ U[0,1]} ‖pred − target‖² equal to ½ ∫ w(λ) ‖ε̂ − ε‖² dλ
    (Kingma & Gao 2023's weighted loss), at the log-SNR λ(t) of each t (float64, t's shape):

        w(λ) = 2 |dt/dλ| · r(t),   r = ‖pred error‖² / ‖ε error‖² at the same x_t:
        "eps": 1;  "x0": b²/a² = e^(−λ);  "v" (Salimans & Ho, a² + b² = 1): 1/a²;  "velocity" (the path's ẋ_t): (det/a)²

    with det = a ḃ − ȧ b. For the straight path and "velocity": w(λ) = e^(−λ/2).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    t = torch.as_tensor(t, dtype=torch.float64)
    if ((t <= 0) | (t >= 1)).any():
        raise ValueError("loss_weight needs t strictly inside (0, 1), where λ is finite")
    a, b, da, db = (f(t) for f in (path.a, path.b, path.da, path.db))
    ratio = {"eps": torch.ones_like(t), "x0": (b / a) ** 2, "v": 1 / a**2, "velocity": ((a * db - da * b) / a) ** 2}[prediction]
    return 2 * ratio / path.dlog_snr(t).abs()


# ---------------------------------------------------------------- 5. exact quantities: mixtures, the VP PF-ODE


def mixture_velocity(mixture: GaussianMixture, path: GaussianPath | None = None) -> Callable:
    """The exact flow velocity v*(x, t) = E[ȧ x_0 + ḃ ε | x_t = x] of Gaussian-mixture data on `path` (default: the
    straight path), a function v(x, t) with no network. Given component k (mean μ_k, std s_k), x_t ~ N(a μ_k, c_k² I),
    c_k² = a² s_k² + b², and E[x_0 | x_t, k] = μ_k + a s_k² (x_t − a μ_k)/c_k², E[ε | x_t, k] = b (x_t − a μ_k)/c_k²;
    weighted by the responsibilities p(k | x_t). Finite at t = 0 and at t = 1. Computes in float64."""
    path = straight_path() if path is None else path

    def v(x: torch.Tensor, t) -> torch.Tensor:
        check_float("x", x)
        tt = check_time("t", t, x).double()
        a, b, da, db = (f(tt)[:, None, None] for f in (path.a, path.b, path.da, path.db))  # (B, 1, 1)
        mu = mixture.means.to(x.device)[None]  # (1, K, D)
        s2 = (mixture.std.to(x.device) ** 2)[None, :, None]  # (1, K, 1)
        c2 = a**2 * s2 + b**2  # (B, K, 1)
        r = x.double()[:, None, :] - a * mu  # x_t − a μ_k, (B, K, D)
        logits = torch.log(mixture.weights.to(x.device)) - 0.5 * mixture.dim * torch.log(c2[..., 0]) - (r**2).sum(-1) / (2 * c2[..., 0])
        w = torch.softmax(logits, dim=1)[..., None]  # p(k | x_t), (B, K, 1)
        x0 = (w * (mu + a * s2 * r / c2)).sum(1)
        eps = (w * (b * r / c2)).sum(1)
        return (da[:, 0] * x0 + db[:, 0] * eps).to(x.dtype)

    return v


def pf_ode_as_flow(sde, eps_model: Callable, x_vp: torch.Tensor, s):
    """The VP probability-flow ODE (lesson 09) at VP time s, in flow coordinates: with α = √ᾱ(s), σ = √(1 − ᾱ(s)),

        t = σ / (α + σ),   x = x_vp / (α + σ)          (the straight path at equal SNR: (1 − t)/t = α/σ)
        dx/dt = [f_pf(x_vp, s)/(α + σ) − x_vp (α̇ + σ̇)/(α + σ)²] / (dt/ds),   dt/ds = (σ̇ α − σ α̇)/(α + σ)²

    Returns (x, t, dx/dt) with t a float64 tensor (B,). With the exact score, dx/dt equals `mixture_velocity`."""
    check_float("x_vp", x_vp)
    s = check_time("s", s, x_vp).double()
    path = vp_path(sde)
    al, sg, dal, dsg = path.a(s), path.b(s), path.da(s), path.db(s)
    c = al + sg
    dt_ds = (dsg * al - sg * dal) / c**2
    f = pf_ode_drift(sde, eps_model, x_vp, s.to(x_vp.dtype))
    dx_ds = f / _col(c, x_vp) - x_vp * _col((dal + dsg) / c**2, x_vp)
    return x_vp / _col(c, x_vp), sg / c, dx_ds / _col(dt_ds, x_vp)


# ---------------------------------------------------------------- 6. reflow


@torch.no_grad()
def reflow_pairs(v_model: Callable, n: int, shape: tuple = (2,), steps: int = 100, generator: torch.Generator | None = None,
                 device=None, method: str = "euler"):
    """n pairs (x_0, ε): ε ~ N(0, I) of shape (n, *shape), x_0 = the flow's ODE solution from ε (`steps` steps of
    `method`), both detached. Training on them (`reflow_loss`) is Liu et al.'s reflow."""
    check_positive_int("n", n)
    eps = randn((n, *shape), generator, device)
    x0 = euler_sample(v_model, eps, steps, method=method)
    return x0.detach(), eps


def reflow_loss(v_model: Callable, pairs, generator: torch.Generator | None = None) -> torch.Tensor:
    """`flow_loss` on a batch of pairs (x_0, ε) from `reflow_pairs`: the straight line between partners."""
    if not (isinstance(pairs, (tuple, list)) and len(pairs) == 2):
        raise TypeError("pairs must be a tuple (x0, eps) of two tensors (train on data=(x0, eps))")
    x0, eps = pairs
    check_float("eps", eps)
    check_same_shape("x0", x0, "eps", eps)
    return flow_loss(v_model, x0, generator, eps=eps)


@torch.no_grad()
def straightness(v_model: Callable, noise: torch.Tensor, steps: int = 100) -> float:
    """S = E ∫_0^1 ‖v(x_t, t) − (x_1 − x_0)‖² dt along the model's own ODE path from x_1 = noise to x_0 (Liu et al.
    2023): 0 for straight paths. The rectangle rule (left ends) on the Euler path of `steps` steps; the squared
    norm is summed over the coordinates and averaged over the batch."""
    ts = flow_timesteps(steps)
    x, vs = noise, []
    for t, t_next in zip(ts, ts[1:]):
        v = velocity_at(v_model, x, t)
        vs.append(v)
        x = x + (t_next - t) * v
    line = noise - x  # x_1 − x_0: the velocity of the straight line from x_0 to x_1
    return float(torch.stack([((v - line) ** 2).flatten(1).sum(1) for v in vs]).mean())
