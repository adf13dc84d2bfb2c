"""Checks for lesson 16, diffusion beyond images: sound and molecules.

    from minidiff.course.checks import lesson16 as check
    check.karplus_strong(karplus_strong)   # plucked strings: y[n] = d · ½ (y[n − P] + y[n − P − 1]), P = round(sr/f0)
    check.com_free_loss(com_free_loss)     # L_simple with noise projected to zero centre of mass, over real atoms
    check.egcl_update(egcl_update)         # one EGNN layer: messages, equivariant coordinate step, feature step
    check.wasserstein1(wasserstein1)       # W1 of two 1D samples: the area between their CDFs

Oracles first (the recurrence on the learner's own output; a centred x_t; equivariance under rotations,
reflections and permutations; W1 of a shifted sample is the shift), then minidiff's references on random inputs
with the same random draws (two lengths and sample rates, 2D and 3D point clouds, padding, float64). The outputs
of known mistakes (floor instead of round, the noise not projected, padding counted in the mean, x_j − x_i,
an unnormalised step, samples not sorted, ...) are recomputed here so that a hint can name the mistake.
"""

from __future__ import annotations

import torch

from ...data import sound as sound_ref
from ...egnn import EGCL, remove_mean
from ...egnn import com_free_loss as ref_com_free_loss
from ...egnn import egcl_update as ref_egcl_update
from ...eval import molecules as mol_ref
from ...schedules import NoiseSchedule
from .core import Tester, diagnose, exercise, grad_close

# ---------------------------------------------------------------- 1. Karplus–Strong


def _ks_wrong(f0, decay, length, sample_rate, seed, mistake):
    g = torch.Generator().manual_seed(seed)
    B = f0.shape[0]
    P = (sample_rate / f0.double()).floor().long() if mistake == "floor" else torch.round(sample_rate / f0.double()).long()
    y = 2 * torch.rand(B, length, generator=g, dtype=torch.float64) - 1
    d = torch.ones_like(decay.double()) if mistake == "no_decay" else decay.double()
    half = 1.0 if mistake == "no_half" else 0.5
    lag = 1 if mistake == "lag" else 0
    for b in range(B):
        p = int(P[b])
        for n in range(p + 1 + lag, length):
            y[b, n] = d[b] * half * (y[b, n - p - lag] + y[b, n - p - 1 - lag])
    return y


@exercise("16", "karplus_strong", points=3)
def karplus_strong(t: Tester, fn):
    """(B, length) float64: noise on y[0..P], then y[n] = d · ½ (y[n − P] + y[n − P − 1]), P = round(sr / f0)."""
    cases = ((torch.tensor([440.0, 261.0, 1000.0]), torch.tensor([0.99, 0.95, 1.0]), 400, 8000),
             (torch.tensor([330.0, 150.0], dtype=torch.float64), torch.tensor([0.9, 0.97], dtype=torch.float64), 250, 4000))
    for f0, decay, length, sr in cases:
        what = f"f0 = {[round(float(f), 1) for f in f0]} Hz at {sr} Hz, length {length}"
        out = t.call(fn, f0, decay, length=length, sample_rate=sr, generator=torch.Generator().manual_seed(5))
        if not t.tensor(out, shape=(f0.shape[0], length), dtype=torch.float64, what=what):
            return
        # oracle: the recurrence holds on the learner's own output
        P = torch.round(sr / f0.double()).long()
        ok = True
        for b in range(f0.shape[0]):
            p = int(P[b])
            n = torch.arange(p + 1, length)
            want = decay[b].double() * 0.5 * (out[b, n - p] + out[b, n - p - 1])
            ok = ok and torch.allclose(out[b, n], want, rtol=1e-9, atol=1e-12)
        expected = sound_ref.karplus_strong(f0, decay, length, sr, torch.Generator().manual_seed(5))
        mistakes = {"P = round(sample_rate / f0): floor (int()) gives a string tuned slightly sharp":
                    _ks_wrong(f0, decay, length, sr, 5, "floor"),
                    "multiply by the decay d every period, or the string never fades": _ks_wrong(f0, decay, length, sr, 5, "no_decay"),
                    "average the two taps: ½ (y[n − P] + y[n − P − 1]); without the ½ the string grows":
                    _ks_wrong(f0, decay, length, sr, 5, "no_half"),
                    "the delay is P samples: y[n] uses y[n − P] and y[n − P − 1], starting at n = P + 1":
                    _ks_wrong(f0, decay, length, sr, 5, "lag")}
        if not ok:
            diagnose(t, out, expected, f"the recurrence y[n] = d · ½ (y[n − P] + y[n − P − 1]), {what}", mistakes,
                     hint="P = round(sample_rate / f0); for n > P: y[n] = decay · 0.5 · (y[n − P] + y[n − P − 1])",
                     rtol=1e-9, atol=1e-12)
            return
        t.check(True, f"the recurrence holds, {what}", decisive=True)
        diagnose(t, out, expected, f"matches minidiff.data.sound.karplus_strong, {what}", mistakes,
                 hint="draw the pluck first, all at once: y = 2 * torch.rand(B, length, generator=generator, "
                      "dtype=torch.float64) − 1, and keep y[:, :P + 1] as it is", rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- 2. the zero-CoM loss


class _Recorder(torch.nn.Module):
    """A tiny ε-model on point clouds that records its inputs: out = w · x_t + b · t/1000 · x_t²."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))
        self.b = torch.nn.Parameter(torch.tensor(0.3))
        self.calls = []

    def forward(self, x_t, t, h, bonds, mask):
        self.calls.append((x_t.detach().clone(), t.clone()))
        out = self.w * x_t + self.b * (t.to(x_t.dtype) / 1000)[:, None, None] * x_t ** 2
        return out * mask[..., None].to(x_t.dtype)


def _cloud(B, N, D, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, N)
    for b in range(B):
        mask[b, N - b % 3:] = 0  # molecules of N, N − 1, N − 2 atoms
    x0 = remove_mean(torch.randn(B, N, D, generator=g, dtype=dtype), mask)
    h = torch.zeros(B, N, 3)
    bonds = torch.zeros(B, N, N, 5)
    return x0, h, bonds, mask


def _loss_wrong(schedule, batch, seed, mistake):
    from ...forward import add_noise
    from ...losses import sample_timesteps
    from ...utils import randn

    x0, h, bonds, mask = batch
    g = torch.Generator().manual_seed(seed)
    model = _Recorder()
    t = sample_timesteps(schedule, x0.shape[0], x0.device, g)
    noise = randn(x0.shape, g, x0.device, x0.dtype)
    if mistake == "no_mask_noise":
        noise = noise - noise.mean(1, keepdim=True)
    elif mistake != "no_projection":
        noise = remove_mean(noise, mask)
    x_t = add_noise(schedule, x0, noise, t)
    eps = model(x_t, t, h, bonds, mask)
    m = mask.to(x0.dtype)[..., None]
    if mistake == "mean_all":
        return ((eps - noise) ** 2).mean()
    if mistake == "no_dim":
        return ((eps - noise) ** 2 * m).sum() / m.sum()
    return ((eps - noise) ** 2 * m).sum() / (m.sum() * x0.shape[-1])


@exercise("16", "com_free_loss", points=3)
def com_free_loss(t: Tester, fn):
    """t ~ U{1..T}, ε ~ N(0, I) minus its mean over the real atoms, x_t by eq. 4, mean squared error over real atoms."""
    for sched, (B, N, D), dtype in ((NoiseSchedule.make("cosine", 1000), (5, 6, 3), torch.float32),
                                    (NoiseSchedule.make("linear", 200), (4, 5, 2), torch.float64)):
        batch = _cloud(B, N, D, dtype, 3)
        x0, h, bonds, mask = batch
        what = f"point clouds ({B}, {N}, {D}) {str(dtype).removeprefix('torch.')}, {sched.name} T = {sched.T}"
        model = _Recorder()
        out = t.call(fn, sched, model, batch, torch.Generator().manual_seed(11))
        if not t.tensor(out, shape=(), dtype=dtype, what=f"the loss, {what}"):
            return
        if model.calls:
            x_t = model.calls[0][0]
            m = mask.to(x_t.dtype)[..., None]
            centre = ((x_t * m).sum(1) / m.sum(1)).abs().max()
            pads = (x_t * (1 - m)).abs().max()
            t.check(bool(centre < 1e-5 and pads < 1e-6), f"the model sees a centred x_t (Σ_i x_i = 0 over the real atoms), {what}",
                    f"largest centre {float(centre):.3g}, largest padding entry {float(pads):.3g}",
                    hint="project the noise with remove_mean(noise, mask) (the mean over the real atoms only, and 0 "
                         "on padding rows): x_0 is centred, so x_t is centred only if ε is too", decisive=True)
        ref_model = _Recorder()
        expected = ref_com_free_loss(sched, ref_model, batch, torch.Generator().manual_seed(11))
        mistakes = {"project ε to zero centre of mass (remove_mean(noise, mask)) before noising":
                    _loss_wrong(sched, batch, 11, "no_projection"),
                    "the centre of mass is the mean over the real atoms only: use remove_mean(noise, mask), "
                    "not noise.mean(1)": _loss_wrong(sched, batch, 11, "no_mask_noise"),
                    "average over the real atoms' coordinates only: padding rows are not atoms "
                    "(sum the masked squares, divide by mask.sum() · D)": _loss_wrong(sched, batch, 11, "mean_all"),
                    "divide by the number of real coordinates, mask.sum() · D, not by the number of atoms":
                    _loss_wrong(sched, batch, 11, "no_dim")}
        ok = diagnose(t, out, expected, f"the loss, {what}", mistakes,
                      hint="t = sample_timesteps(schedule, B, device, generator) first, then noise = "
                           "com_free_noise(x0.shape, mask, generator, x0.dtype), then add_noise", rtol=1e-5, atol=1e-7)
        if ok:
            want = torch.autograd.grad(expected, [ref_model.w, ref_model.b])
            grad_close(t, out, [model.w, model.b], want, f"its gradient reaches the model, {what}")


# ---------------------------------------------------------------- 3. one EGNN layer


def _layer(hidden, edge_dim, seed):
    torch.manual_seed(seed)
    layer = EGCL(hidden, edge_dim)
    torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.5)  # large coordinate steps, so that mistakes show
    torch.nn.init.normal_(layer.phi_x[-1].bias, std=0.2)
    return layer


def _egcl_inputs(B, N, D, hidden, edge_dim, seed):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, N)
    mask[0, -2:] = 0
    h = torch.randn(B, N, hidden, generator=g) * mask[..., None]
    x = torch.randn(B, N, D, generator=g) * 1.5 * mask[..., None]
    a = torch.randn(B, N, N, edge_dim, generator=g)
    a = (a + a.transpose(1, 2)) / 2
    return h, x, a, mask


def _egcl_wrong(layer, h, x, a, mask, mistake):
    B, N, _ = h.shape
    m = mask.to(x.dtype)
    pair = m[:, :, None] * m[:, None, :] * (1 - torch.eye(N))
    if mistake == "no_pair_mask":
        pair = torch.ones_like(pair) * (1 - torch.eye(N))
    diff = x[:, :, None, :] - x[:, None, :, :]
    if mistake == "sign":
        diff = -diff
    d2 = diff.pow(2).sum(-1, keepdim=True)
    feat = d2.sqrt() if mistake == "distance" else d2
    hi, hj = h[:, :, None, :].expand(B, N, N, -1), h[:, None, :, :].expand(B, N, N, -1)
    msg = layer.phi_e(torch.cat([hi, hj, feat, a], -1)) * pair[..., None]
    dist = torch.where(pair[..., None] > 0, d2, torch.ones_like(d2)).sqrt()
    n = m.sum(1).clamp(min=2)[:, None, None]
    scale = 1 if mistake == "no_norm" else dist + 1
    c = N - 1 if mistake == "padded_n" else n - 1
    x2 = x + (diff / scale * layer.phi_x(msg) * pair[..., None]).sum(2) / c
    upd = layer.phi_h(torch.cat([h, msg.sum(2)], -1))
    h2 = (upd if mistake == "no_residual" else h + upd) * m[..., None]
    return h2, x2


@exercise("16", "egcl_update", points=4)
def egcl_update(t: Tester, fn):
    """(h', x') of one EGCL with the layer's φ_e, φ_x, φ_h: messages, normalised equivariant step, residual h."""
    for B, N, D, hidden, edge_dim in ((3, 5, 3, 8, 5), (2, 4, 2, 6, 2)):
        layer = _layer(hidden, edge_dim, 1)
        h, x, a, mask = _egcl_inputs(B, N, D, hidden, edge_dim, 2)
        what = f"{B} molecules of ≤ {N} atoms in {D}D (one padded), hidden {hidden}"
        with torch.no_grad():
            out = t.call(fn, layer, h, x, a, mask)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                t.check(False, "egcl_update returns the pair (h, x)", f"got {type(out).__name__}",
                        hint="return h, x: the new features and the new coordinates", decisive=True)
                return
            h2, x2 = out
            if not (t.tensor(h2, shape=(B, N, hidden), dtype=torch.float32, what=f"h', {what}")
                    and t.tensor(x2, shape=(B, N, D), dtype=torch.float32, what=f"x', {what}")):
                return
            # oracle: equivariance under an orthogonal map with a reflection, a shift and a permutation
            g = torch.Generator().manual_seed(4)
            Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
            Q[:, 0] = -Q[:, 0]
            shift = torch.randn(1, 1, D, generator=g)
            perm = torch.randperm(N, generator=g)
            out2 = t.call(fn, layer, h[:, perm], (x @ Q.T + shift)[:, perm], a[:, perm][:, :, perm], mask[:, perm])
            if not isinstance(out2, (tuple, list)) or len(out2) != 2:
                return
            m = mask[:, perm, None]
            want_x = ((x2 @ Q.T + shift)[:, perm]) * m
            err = max(float(((out2[1] * m) - want_x).abs().max()), float((out2[0] - h2[:, perm]).abs().max()))
            t.check(err < 1e-4, f"equivariant: rotating, reflecting, shifting and renumbering the atoms moves x' the "
                    f"same way and leaves h' unchanged, {what}", f"largest error {err:.3g}",
                    hint="use only x_i − x_j and ‖x_i − x_j‖² (never x itself) inside the MLPs and sums", decisive=True)
            eh, ex = ref_egcl_update(layer, h, x, a, mask)
            mistakes = {kind: _egcl_wrong(layer, h, x, a, mask, k) for k, kind in (
                ("sign", "the step is along x_i − x_j (diff = x[:, :, None] − x[:, None, :]), not x_j − x_i"),
                ("no_norm", "divide each direction by (‖x_i − x_j‖ + 1) before weighting it with φ_x(m_ij)"),
                ("padded_n", "C = 1/(n − 1) with n the number of real atoms of each molecule (mask.sum(1)), not N − 1"),
                ("no_pair_mask", "messages only between real atoms i ≠ j: multiply by pair = mask_i · mask_j · (1 − δ_ij)"),
                ("distance", "φ_e takes the squared distance ‖x_i − x_j‖², not the distance"),
                ("no_residual", "the feature update is residual: h_i + φ_h(h_i, Σ_j m_ij)"))}
            diagnose(t, x2, ex, f"x' matches minidiff.egnn.egcl_update, {what}", {k: v[1] for k, v in mistakes.items()},
                     hint="x_i + Σ_j (x_i − x_j)/(‖x_i − x_j‖ + 1) · φ_x(m_ij) · pair_ij / (n − 1)", rtol=1e-4, atol=1e-5)
            diagnose(t, h2, eh, f"h' matches minidiff.egnn.egcl_update, {what}", {k: v[0] for k, v in mistakes.items()},
                     hint="h' = (h + φ_h(cat[h, Σ_j m_ij])) · mask", rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 4. the Wasserstein-1 distance


def _w1_wrong(a, b, mistake):
    if mistake == "unsorted":
        n = min(len(a), len(b))
        return float((a[:n] - b[:n]).abs().double().mean())
    sa, sb = a.double().sort().values, b.double().sort().values
    n = min(len(a), len(b))
    if mistake == "truncate":
        return float((sa[:n] - sb[:n]).abs().mean())
    if mistake == "w2":
        return float((sa[:n] - sb[:n]).pow(2).mean().sqrt())
    if mistake == "means":
        return float((a.double().mean() - b.double().mean()).abs())
    raise ValueError(mistake)


@exercise("16", "wasserstein1", points=3)
def wasserstein1(t: Tester, fn):
    """W1 = ∫ |F_a(u) − F_b(u)| du for two 1D samples of any sizes, as a Python float."""
    g = torch.Generator().manual_seed(8)
    a = torch.randn(50, generator=g, dtype=torch.float64)
    b = 2 * torch.randn(50, generator=g, dtype=torch.float64) + 0.3
    cases = (
        (a, a + 0.25, "a sample and the same sample shifted by 0.25 (closed form: 0.25)", 0.25),
        (torch.tensor([0.0]), torch.tensor([1.0, 3.0]), "{0} and {1, 3} (closed form: ½·1 + ½·3 = 2)", 2.0),
        (a, b, "two samples of 50 (closed form: the mean |difference| of the sorted samples)",
         float((a.sort().values - b.sort().values).abs().mean())),
        (a.float(), b[:30].float(), "samples of 50 and 30, float32", None),
        (torch.randn(7, generator=g) * 3, torch.rand(12, generator=g), "samples of 7 and 12", None),
    )
    for x, y, what, closed in cases:
        out = t.call(fn, x, y)
        try:
            value = float(out)
        except (TypeError, ValueError):
            t.check(False, "wasserstein1 returns a number", f"got {type(out).__name__}", decisive=True)
            return
        expected = mol_ref.wasserstein1(x, y) if closed is None else closed
        mistakes = {"sort both samples first: W1 pairs the i-th smallest of a with the i-th smallest of b":
                    _w1_wrong(x, y, "unsorted"),
                    "with samples of different sizes, compare the CDFs (or the quantile functions), "
                    "do not cut the longer sample": _w1_wrong(x, y, "truncate"),
                    "W1 averages |differences|; the root mean square is W2": _w1_wrong(x, y, "w2"),
                    "W1 is not the difference of the means (that is only a lower bound)": _w1_wrong(x, y, "means")}
        diagnose(t, torch.tensor(value, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
                 f"W1 of {what}", {k: torch.tensor(v, dtype=torch.float64) for k, v in mistakes.items()},
                 hint="merge and sort both samples into u; W1 = Σ |F_a(u_k) − F_b(u_k)| (u_{k+1} − u_k) with the "
                      "empirical CDFs F(u) = (number of samples ≤ u) / n", rtol=1e-6, atol=1e-9)
    t.check(isinstance(out, float), "wasserstein1 returns a Python float", f"got {type(out).__name__}",
            hint="return float(...) of the 0-dim tensor")
    t.raises(fn, (torch.tensor([]), torch.ones(3)), ValueError, "an empty sample raises a ValueError",
             hint="check a.numel() > 0 and b.numel() > 0 and raise ValueError naming the empty one")
