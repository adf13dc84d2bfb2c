"""Checks for lesson 12, flow matching and rectified flow.

    from minidiff.course.checks import lesson12 as check
    check.flow_loss(flow_loss)            # E ‖v_θ((1 − t) x_0 + t ε, t) − (ε − x_0)‖², t ~ U[0, 1]
    check.from_velocity(from_velocity)    # (x_0, ε, score) from v on a Gaussian path x_t = a x_0 + b ε
    check.euler_sample(euler_sample)      # x ← x + (t' − t) v(x, t) from t = 1 to 0 over simulate
    check.reflow_pairs(reflow_pairs)      # (x_0 = ODE(ε), ε), detached

Closed forms first (a model with a known loss and gradient; the straight path's x_0 = x_t − t v; Euler on
v = c x and v = t), then minidiff's references on random inputs (points and images, float32 and float64, non-default
arguments). The outputs of known mistakes (the path or the time reversed, the target's sign flipped, the ε target
of DDPM, the score divided by b², the slope taken at t', ...) are recomputed here so that a hint can name them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import flow as ref
from ...sampling import simulate
from ...sde import VPSDE
from .core import Abort, Tester, diagnose, exercise, grad_close


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _col(v, x):
    return torch.as_tensor(v).reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


# ---------------------------------------------------------------- 1. the flow-matching loss


class _LinearV(torch.nn.Module):
    """v(x_t, t) = a x_t + (t − ½): one parameter a; records (x_t, t) of every call."""

    def __init__(self, a: float, dtype=torch.float32):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=dtype))
        self.seen = []

    def forward(self, x_t, t):
        self.seen.append((x_t.detach().clone(), t.detach().clone() if isinstance(t, torch.Tensor) else t))
        return self.a * x_t + _col(t, x_t) - 0.5


def _draws(model, x0):
    """(x_t, t, ε) the learner's loss used: read back from the model's last call, ε = (x_t − (1 − t) x_0) / t."""
    x_t, tt = model.seen[-1]
    tc = _col(tt, x0).double()
    eps = (x_t.double() - (1 - tc) * x0.double()) / tc
    return x_t, tt, eps


def _ref_loss(a, x_t, tt, eps, x0, target="velocity"):
    """The loss on these draws for v = a x_t + t − ½, and its gradient in a."""
    a = torch.tensor(float(a), dtype=torch.float64, requires_grad=True)
    v = a * x_t.double() + _col(tt, x_t).double() - 0.5
    goal = {"velocity": eps - x0.double(), "flipped": x0.double() - eps, "eps": eps, "x0": x0.double()}[target]
    loss = F.mse_loss(v, goal)
    (g,) = torch.autograd.grad(loss, [a])
    return loss.detach(), [g]


def _check_draws(t: Tester, model, x0, what: str) -> bool:
    """t has shape (B,) in [0, 1] and looks uniform; the x_t the model saw is (1 − t) x_0 + t ε with ε ~ N(0, I)."""
    if not model.seen:
        t.check(False, f"{what}: flow_loss calls v_model(x_t, t)", hint="the model predicts the velocity from x_t and t",
                decisive=True)
        raise Abort
    x_t, tt = model.seen[-1]
    ok = t.check(isinstance(tt, torch.Tensor) and tuple(tt.shape) == (x0.shape[0],) and tt.is_floating_point(),
                 f"{what}: t is a float tensor of shape (B,), one time per example",
                 f"got {getattr(tt, 'dtype', type(tt).__name__)} of shape {tuple(getattr(tt, 'shape', ()))}",
                 hint="t = torch.rand(B, generator=generator): continuous times, one per row, shape (B,) (not (B, 1))",
                 decisive=True)
    if not ok or tuple(x_t.shape) != tuple(x0.shape):
        raise Abort
    return True


@exercise("12", "flow_loss", points=3)
def flow_loss(t: Tester, fn):
    """flow_loss(v_model, x0, generator, eps=None) -> mean ‖v_θ(x_t, t) − (ε − x_0)‖², x_t = (1 − t) x_0 + t ε."""
    x0 = torch.randn(20_000, 2) + torch.tensor([1.0, -2.0])
    model = _LinearV(0.3)
    loss = t.call(fn, model, x0, _gen(0))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        t.check(False, "flow_loss returns the loss as a tensor with one element", f"got {type(loss).__name__}",
                hint="return F.mse_loss(...), not loss.item(): the training loop calls loss.backward()", decisive=True)
        raise Abort
    _check_draws(t, model, x0, "points (B, 2)")
    x_t, tt, eps = _draws(model, x0)
    t.check(float(tt.min()) >= 0 and float(tt.max()) <= 1 and abs(float(tt.mean()) - 0.5) < 0.02
            and abs(float(tt.std()) - 12 ** -0.5) < 0.02, "t ~ U[0, 1]",
            f"t has mean {float(tt.mean()):.3f} and std {float(tt.std()):.3f} (uniform: 0.5 and 0.289)",
            hint="t = torch.rand(B, generator=generator) (uniform on [0, 1]; randn is normal, randint gives integers)",
            decisive=True)
    rev = (x_t.double() - _col(tt, x0).double() * x0.double()) / (1 - _col(tt, x0).double())
    normal = abs(eps.mean().item()) < 0.03 and abs(eps.std().item() - 1) < 0.03
    reversed_path = abs(rev.mean().item()) < 0.03 and abs(rev.std().item() - 1) < 0.03
    t.check(normal, "the model sees x_t = (1 − t) x_0 + t ε with ε ~ N(0, I)",
            f"(x_t − (1 − t) x_0)/t has mean {eps.mean().item():.3f} and std {eps.std().item():.3f}",
            hint="time runs from data to noise: t = 0 is x_0, t = 1 is ε; x_t = (1 − t) x_0 + t ε, not t x_0 + (1 − t) ε"
            if reversed_path else "ε = torch.randn(x0.shape, generator=generator), x_t = (1 − t) x_0 + t ε "
            "(t reshaped to (B, 1, ...))", decisive=True)
    if not normal:
        raise Abort
    want, grad = _ref_loss(0.3, x_t, tt, eps, x0)
    mistakes = {"the target is the velocity ε − x_0 (noise minus data), not x_0 − ε": _ref_loss(0.3, x_t, tt, eps, x0, "flipped")[0],
                "the target is the velocity ε − x_0, not the noise ε (that is DDPM's ε-prediction)":
                _ref_loss(0.3, x_t, tt, eps, x0, "eps")[0],
                "the target is the velocity ε − x_0, not the data x_0": _ref_loss(0.3, x_t, tt, eps, x0, "x0")[0],
                "average over the coordinates too (F.mse_loss), not only over the batch": 2 * want}
    diagnose(t, loss.detach(), want, "points: the loss is mean ‖v_θ(x_t, t) − (ε − x_0)‖² on the t and ε you drew", mistakes,
             hint="loss = F.mse_loss(v_model(x_t, t), eps - x0)", rtol=1e-4, atol=1e-6)
    grad_close(t, loss, [model.a], grad, "points: ∂L/∂a by autograd equals L_FM's on the same t and ε",
               hint="loss = F.mse_loss(v_model(x_t, t), eps - x0), built from the model's output", rtol=1e-3, atol=1e-6)
    # the same generator, the same numbers; minidiff's order of draws (t, then ε)
    small = x0[:256]
    a = t.call(fn, model, small, _gen(1))
    b = t.call(fn, model, small, _gen(1))
    t.check(torch.equal(torch.as_tensor(a).detach(), torch.as_tensor(b).detach()),
            "the same generator gives the same loss (t and ε are drawn from `generator`)",
            hint="pass generator=generator to torch.rand and torch.randn")
    t.close(a, ref.flow_loss(model, small, _gen(1)), "with the same generator, the same loss as minidiff.flow.flow_loss",
            hint="draw t first (torch.rand(B, generator=generator)), then ε (torch.randn(x0.shape, generator=generator))",
            rtol=1e-5, atol=1e-6, decisive=False)
    # images in float64, three coordinates wide rows, and a given ε (reflow's pairs)
    imgs = torch.randn(6, 1, 4, 4, dtype=torch.float64)
    img_model = _LinearV(-0.2, torch.float64)
    out = t.call(fn, img_model, imgs, _gen(2))
    t.tensor(out, shape=(), dtype=torch.float64, what="the loss on float64 images (6, 1, 4, 4)")
    _check_draws(t, img_model, imgs, "images (B, 1, 4, 4)")
    x_t, tt, eps = _draws(img_model, imgs)
    want, grad = _ref_loss(-0.2, x_t, tt, eps, imgs)
    diagnose(t, out.detach(), want, "images: the loss is mean ‖v_θ(x_t, t) − (ε − x_0)‖² over all 16 coordinates",
             {"average over every coordinate (F.mse_loss), not only over the batch": 16 * want,
              "the target is the velocity ε − x_0, not x_0 − ε": _ref_loss(-0.2, x_t, tt, eps, imgs, "flipped")[0]},
             hint="t must broadcast over (B, C, H, W): reshape it to (B, 1, 1, 1), not (B, 1)", rtol=1e-6, atol=1e-9)
    grad_close(t, out, [img_model.a], grad, "images: ∂L/∂a by autograd equals L_FM's on the same t and ε",
               rtol=1e-5, atol=1e-9)
    given = torch.randn(6, 1, 4, 4, dtype=torch.float64)
    pair_model = _LinearV(0.1, torch.float64)
    out = t.call(fn, pair_model, imgs, _gen(3), eps=given)
    t.tensor(out, shape=(), what="the loss with a given eps")
    x_t, tt = pair_model.seen[-1]
    expected_xt = (1 - _col(tt, imgs)) * imgs + _col(tt, imgs) * given
    t.close(x_t, expected_xt, "with eps given (reflow's pairs), x_t = (1 − t) x_0 + t·eps uses that eps",
            hint="draw ε only when eps is None: `if eps is None: eps = torch.randn(...)`", rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- 2. conversions on a Gaussian path


def _from_v_wrong(path, x_t, v, tt, mistake):
    a, b, da, db = path.coefficients(tt, x_t)
    det = a * db - da * b
    if mistake == "det_sign":
        det = a * db + da * b
    x0 = (db * x_t - b * v) / det
    eps = (a * v - da * x_t) / det
    score = {"var": -eps / b**2, "no_b": -eps, "sign": eps / b}.get(mistake, -eps / b)
    if mistake == "swap":
        return eps, x0, -x0 / b
    return x0, eps, score


@exercise("12", "from_velocity", points=3)
def from_velocity(t: Tester, fn):
    """from_velocity(path, x_t, v, t) -> (x0, eps, score) on x_t = a x_0 + b ε, v = ȧ x_0 + ḃ ε."""
    straight = ref.straight_path()
    x_t = torch.randn(5, 2)
    v = torch.randn(5, 2)
    tt = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    out = t.call(fn, straight, x_t, v, tt)
    ok = t.check(isinstance(out, (tuple, list)) and len(out) == 3, "from_velocity returns three tensors (x0, eps, score)",
                 f"got {type(out).__name__}", hint="return x0, eps, score", decisive=True)
    if not ok:
        raise Abort
    names = ("x0", "eps", "score")
    for name, o in zip(names, out):
        t.tensor(o, shape=(5, 2), dtype=torch.float32, what=f"{name} for float32 points (5, 2)",
                 dtype_hint="the path's coefficients are float64: path.coefficients(t, x_t) casts them to x_t's dtype")
    tc = tt[:, None]
    closed = (x_t - tc * v, x_t + (1 - tc) * v, -(x_t + (1 - tc) * v) / tc)
    for name, o, want, hint in zip(names, out, closed,
                                   ("the straight path: x_0 = x_t − t v", "the straight path: ε = x_t + (1 − t) v",
                                    "score = −ε / b = −ε / t on the straight path")):
        diagnose(t, o, want, f"straight path: {name} in closed form",
                 {"the determinant is a ḃ − ȧ b (with a minus)": _from_v_wrong(straight, x_t, v, tt, "det_sign")[names.index(name)],
                  "x_0 and ε are swapped: x_0 = (ḃ x_t − b v)/det, ε = (a v − ȧ x_t)/det":
                  _from_v_wrong(straight, x_t, v, tt, "swap")[names.index(name)],
                  "the score is −ε / b (b is the std), not −ε / b² (the variance)": _from_v_wrong(straight, x_t, v, tt, "var")[2],
                  "the score is −ε / b: divide by the noise's std b": _from_v_wrong(straight, x_t, v, tt, "no_b")[2],
                  "the score points towards the data: −ε / b, with a minus": _from_v_wrong(straight, x_t, v, tt, "sign")[2]},
                 hint=hint, rtol=1e-5, atol=1e-6)
    # curved paths (a ḃ − ȧ b ≠ 1), images, float64, t as a float
    for path in (ref.cosine_path(), ref.vp_path(VPSDE(0.1, 20.0))):
        imgs = torch.randn(3, 1, 4, 4, dtype=torch.float64)
        vel = torch.randn(3, 1, 4, 4, dtype=torch.float64)
        for when in (torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64), 0.35):
            out = t.call(fn, path, imgs, vel, when)
            if not (isinstance(out, (tuple, list)) and len(out) == 3):
                t.check(False, "from_velocity returns (x0, eps, score)", hint="return x0, eps, score", decisive=True)
                raise Abort
            expected = ref.from_velocity(path, imgs, vel, when)
            wrong = {m: _from_v_wrong(path, imgs, vel, when, m) for m in ("det_sign", "swap", "var", "no_b", "sign")}
            for i, (name, o) in enumerate(zip(names, out)):
                t.tensor(o, shape=(3, 1, 4, 4), dtype=torch.float64, what=f"{path.name} path: {name} of float64 images")
                diagnose(t, o, expected[i], f"{path.name} path, t = {when if isinstance(when, float) else 'per image'}: "
                         f"{name} matches minidiff.flow.from_velocity",
                         {"the determinant is a ḃ − ȧ b (with a minus); on the straight path it is 1, not here":
                          wrong["det_sign"][i],
                          "x_0 and ε are swapped": wrong["swap"][i],
                          "the score is −ε / b (b is the std), not −ε / b²": wrong["var"][2],
                          "the score is −ε / b: divide by b": wrong["no_b"][2],
                          "the score is −ε / b, with a minus": wrong["sign"][2]},
                         hint="a, b, ȧ, ḃ = path.coefficients(t, x_t); det = a ḃ − ȧ b; x_0 = (ḃ x_t − b v)/det; "
                              "ε = (a v − ȧ x_t)/det (the 1 of the straight path is not general)",
                         rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- 3. the Euler sampler


class _Recorder:
    def __init__(self, fn):
        self.fn, self.ts = fn, []

    def __call__(self, x, tt):
        self.ts.append(tt)
        return self.fn(x, tt)


@exercise("12", "euler_sample", points=2)
def euler_sample(t: Tester, fn):
    """euler_sample(v_model, noise, steps) -> x_0: Euler steps x ← x + (t' − t) v(x, t), t = 1 → 0 uniformly."""
    noise = torch.randn(4, 2)
    c = 0.7
    rec = _Recorder(lambda x, tt: c * x)
    out = t.call(fn, rec, noise, 5)
    t.tensor(out, shape=(4, 2), dtype=torch.float32, what="x_0 for float32 points (4, 2), 5 steps")
    t.check(len(rec.ts) == 5, "5 steps call the model 5 times", f"called {len(rec.ts)} times",
            hint="one network call per Euler step: simulate(step, noise, timesteps) with steps + 1 times")
    tt = rec.ts[0] if rec.ts else None
    t.check(isinstance(tt, torch.Tensor) and tuple(tt.shape) == (4,) and tt.is_floating_point(),
            "the model gets t as a float tensor of shape (B,)", f"got {type(tt).__name__} {tuple(getattr(tt, 'shape', ()))}",
            hint="v_model(x, torch.full((B,), t, dtype=x.dtype)): one time per row")
    diagnose(t, out, noise * (1 - c / 5) ** 5, "v = c x: Euler gives x_0 = (1 − c/N)^N ε",
             {"sampling runs from t = 1 (noise) down to t = 0 (data): t' − t < 0": noise * (1 + c / 5) ** 5},
             hint="x ← x + (t' − t) v(x, t) with t' − t = −1/N", rtol=1e-5, atol=1e-6)
    # v = t: the slope must be taken at the step's start t, not at t'
    n = 4
    rec = _Recorder(lambda x, tt: _col(tt, x) * torch.ones_like(x))
    out = t.call(fn, rec, torch.zeros(3, 1, 2, 2, dtype=torch.float64), n)
    t.tensor(out, shape=(3, 1, 2, 2), dtype=torch.float64, what="x_0 for float64 images (3, 1, 2, 2)")
    diagnose(t, out, torch.full((3, 1, 2, 2), -(n + 1) / (2 * n), dtype=torch.float64),
             "v = t on images: Euler sums −(1/N) Σ t_i over t_i = 1, 1 − 1/N, ..., 1/N",
             {"take the slope at the step's start t, not at t' (that is the implicit Euler step)":
              torch.full((3, 1, 2, 2), -(n - 1) / (2 * n), dtype=torch.float64),
              "sampling runs from t = 1 down to t = 0": torch.full((3, 1, 2, 2), (n + 1) / (2 * n), dtype=torch.float64)},
             hint="timesteps t_i = 1 − i/N, i = 0..N; step i uses v(x, t_i)", rtol=1e-9, atol=1e-12)
    # a nonlinear velocity (the exact gmm8 flow) and a non-default number of steps
    from ...data.toy import gmm8
    v = ref.mixture_velocity(gmm8())
    z = torch.randn(16, 2, generator=_gen(5))
    out = t.call(fn, v, z, 7)
    t.tensor(out, shape=(16, 2), what="x_0 of the exact gmm8 flow, 7 steps")
    t.close(out, ref.euler_sample(v, z, 7), "the exact gmm8 velocity, 7 steps: matches minidiff.flow.euler_sample",
            hint="use the `steps` you are given and uniform times from 1 to 0", rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 4. reflow pairs


class _ParamV(torch.nn.Module):
    """v(x, t) = w x + t: a parameter, so that pairs made with gradients on carry a graph."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(-0.4))

    def forward(self, x, tt):
        return self.w * x + _col(tt, x)


@exercise("12", "reflow_pairs", points=2)
def reflow_pairs(t: Tester, fn):
    """reflow_pairs(v_model, n, shape, steps, generator) -> (x0, eps): ε ~ N(0, I), x_0 = Euler ODE solution from ε."""
    model = _ParamV()
    out = t.call(fn, model, 64, (2,), 6, _gen(0))
    ok = t.check(isinstance(out, (tuple, list)) and len(out) == 2, "reflow_pairs returns two tensors (x0, eps)",
                 f"got {type(out).__name__}", hint="return x0, eps", decisive=True)
    if not ok:
        raise Abort
    x0, eps = out
    t.tensor(x0, shape=(64, 2), dtype=torch.float32, what="x0 of 64 pairs of shape (2,)")
    t.tensor(eps, shape=(64, 2), dtype=torch.float32, what="eps of 64 pairs of shape (2,)")
    t.check(not x0.requires_grad and not eps.requires_grad, "the pairs are detached (no autograd graph)",
            hint="sample under torch.no_grad() (minidiff's euler_sample does) or .detach() the pairs: they are data")
    if torch.equal(x0, torch.randn(64, 2, generator=_gen(0))):
        t.check(False, "the pairs come back in the order (x0, eps)", "the first tensor is the noise",
                hint="return (x0, eps): the data end first, the noise second", decisive=True)
        raise Abort
    t.check(torch.equal(eps, torch.randn(64, 2, generator=_gen(0))), "eps = torch.randn((n, *shape), generator=generator)",
            hint="draw the noise from the generator you are given, once, shaped (n, *shape)")
    with torch.no_grad():
        want = ref.euler_sample(model, eps, 6)
        backwards = simulate(lambda x, a, b: ref.euler_step(model, x, a, b), eps, [i / 6 for i in range(7)])
        default_steps = ref.euler_sample(model, eps, 100)
    diagnose(t, x0, want, "x0 is the flow's Euler solution from eps (6 steps, t = 1 → 0)",
             {"integrate from t = 1 (noise) down to t = 0 (data)": backwards,
              "use the `steps` you are given, not 100": default_steps},
             hint="x0 = euler_sample(v_model, eps, steps)", rtol=1e-5, atol=1e-6)
    # images: another shape, another rank
    out = t.call(fn, model, 5, (1, 4, 4), 3, _gen(1))
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise Abort
    x0, eps = out
    t.tensor(eps, shape=(5, 1, 4, 4), what="eps of 5 image pairs of shape (1, 4, 4)")
    t.tensor(x0, shape=(5, 1, 4, 4), what="x0 of 5 image pairs")
    with torch.no_grad():
        t.close(x0, ref.euler_sample(model, eps, 3), "images: x0 is the Euler solution from eps (3 steps)",
                hint="noise of shape (n, *shape): torch.randn((n, *shape), generator=generator)", rtol=1e-5, atol=1e-6)
