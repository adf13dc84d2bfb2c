"""Checks for lesson 05, the U-Net on MNIST.

    from minidiff.course.checks import lesson05 as check
    check.resblock_forward(resblock_forward)   # a residual block with the timestep embedding
    check.unet_forward(unet_forward)           # the skip wiring of the U-Net
    check.train_unet(train_unet)               # the training loop: AdamW on L_simple, lr schedule, EMA
    check.ddim_step(ddim_step)                 # one DDIM jump x_t → x_{t_prev} (DDIM eqs. 9, 12, 16)
    check.ddim_sample(ddim_sample)             # the DDIM loop from x_T ~ N(0, I) to x_0

Oracles: a fresh ResBlock is its skip path (zero-initialised last conv), the embedding
shifts each channel by one number per image; a fresh U-Net predicts ε = 0, so the first
training loss is E‖ε‖² ≈ 1; one DDIM jump to t_prev = 0 with the true ε returns x_0, and
with η = 1, t_prev = t − 1 it is DDPM's step with σ_t² = β̃_t. Then agreement with
minidiff (unet.ResBlock, unet.UNet, training.train, ddim.ddim_step, ddim.ddim_sample) on
random inputs and randomly perturbed networks, with hints that name the known mistakes.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F

from ... import ddim as ddim_ref
from ... import unet as ref
from ...losses import ddpm_loss
from ...sampling import ddpm_step, simulate
from ...schedules import NoiseSchedule
from ...training import train
from . import core
from .core import Tester, exercise

# float32 networks: a looser tolerance than the default
diagnose = partial(core.diagnose, rtol=1e-4, atol=1e-5)


def _perturb(module: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# ---------------------------------------------------------------- 1. the residual block


def _wrong_resblock(block, x, emb, kind):
    if kind == "no_emb":
        h = block.conv1(F.silu(block.norm1(x)))
        return block.conv2(F.silu(block.norm2(h))) + block.skip(x)
    if kind == "no_skip":
        h = block.conv1(F.silu(block.norm1(x)))
        h = h + block.emb(F.silu(emb))[:, :, None, None]
        return block.conv2(F.silu(block.norm2(h)))
    if kind == "no_silu_emb":
        h = block.conv1(F.silu(block.norm1(x)))
        h = h + block.emb(emb)[:, :, None, None]
        return block.conv2(F.silu(block.norm2(h))) + block.skip(x)
    if kind == "silu_after_conv":
        h = F.silu(block.conv1(block.norm1(x)))
        h = h + block.emb(F.silu(emb))[:, :, None, None]
        return F.silu(block.conv2(block.norm2(h))) + block.skip(x)
    raise ValueError(kind)


@exercise("05", "resblock_forward", points=2)
def resblock_forward(t: Tester, fn):
    """out = conv2(SiLU(GN2(conv1(SiLU(GN1(x))) + Linear(SiLU(emb))))) + skip(x)."""
    block = ref.ResBlock(8, 16, emb_dim=32).eval()
    x, emb = torch.randn(3, 8, 14, 14), torch.randn(3, 32)
    out = t.call(fn, block, x, emb)
    t.tensor(out, shape=(3, 16, 14, 14), what="resblock_forward on a (3, 8, 14, 14) batch, 8 → 16 channels")
    t.close(out, block.skip(x), "a fresh block (conv2 starts at zero) returns its skip path skip(x)",
            hint="the residual: return h + block.skip(x); block.skip is a 1×1 conv when channels change",
            atol=1e-5)
    _perturb(block)
    with torch.no_grad():
        out = t.call(fn, block, x, emb)
        mistakes = {
            "the embedding is missing: add block.emb(F.silu(emb))[:, :, None, None] after conv1":
                _wrong_resblock(block, x, emb, "no_emb"),
            "the skip path is missing: add block.skip(x) at the end": _wrong_resblock(block, x, emb, "no_skip"),
            "apply SiLU to emb before block.emb (as the reference does)": _wrong_resblock(block, x, emb, "no_silu_emb"),
            "pre-activation order: norm → SiLU → conv (the SiLU comes before each conv, not after it)":
                _wrong_resblock(block, x, emb, "silu_after_conv"),
        }
        diagnose(t, out, block(x, emb), "matches minidiff.unet.ResBlock.forward on a perturbed block", mistakes,
                 hint="order: norm1 → SiLU → conv1, + emb shift, norm2 → SiLU → dropout → conv2, + skip(x)")
        same = ref.ResBlock(8, 8, emb_dim=32).eval()
        _perturb(same)
        xs = torch.randn(1, 8, 7, 7).expand(2, -1, -1, -1)
        out2 = t.call(fn, same, xs, torch.randn(2, 32))
        t.tensor(out2, shape=(2, 8, 7, 7), what="resblock_forward with 8 → 8 channels")
        t.check(not torch.allclose(out2[0], out2[1]), "same image, different embeddings → different outputs",
                hint="the embedding has shape (B, emb_dim): block.emb(...) gives (B, C); reshape to (B, C, 1, 1)")


# ---------------------------------------------------------------- 2. the U-Net wiring


def _wrong_unet(model, x, t, y, kind):
    """The U-Net's forward pass with one known mistake (for the hints)."""
    emb = model.embed(t, None if kind == "no_y" else y, x.shape[0])
    h = model.conv_in(x)
    skips = []
    for level in model.down:
        for block in level.blocks:
            h = block(h, emb)
        skips.append(h)
        h = level.downsample(h)
    h = model.mid1(h, emb)
    h = model.mid2(h if kind == "no_mid_attn" else model.mid_attn(h), emb)
    for level in model.up:
        h = level.upsample(h)
        skip = skips.pop()
        h = torch.cat([skip, h] if kind == "cat_order" else [h, skip], dim=1)
        for block in level.blocks:
            h = block(h, emb)
        h = h if kind == "no_attn" else level.attn(h)
    return model.conv_out(h if kind == "no_out" else F.silu(model.norm_out(h)))


UNET_MISTAKES = {
    "cat_order": "concatenate in the order torch.cat([h, skip], dim=1): the upsampled features first, then the skip",
    "no_mid_attn": "the middle is mid1 → mid_attn → mid2: the attention between the two blocks is missing",
    "no_attn": "after each up level's blocks comes h = level.attn(h) (attention at the lowest level, identity elsewhere)",
    "no_out": "the output is conv_out(SiLU(norm_out(h))): normalise and apply SiLU before the last conv",
}
WIRING = ("append the skip after a level's blocks and *before* downsampling; in the up path, upsample first, then "
          "torch.cat([h, skips.pop()], dim=1): the last skip saved is used first")


@exercise("05", "unet_forward", points=3)
def unet_forward(t: Tester, fn):
    """The skip wiring: down (keep skips), middle, up (upsample, concatenate, blocks)."""
    model = ref.UNet(channels=(8, 16, 16), heads=2).eval()
    _perturb(model)
    x, ts = torch.randn(2, 1, 28, 28), torch.tensor([1, 700])
    t.crash_hints["shape"] = "a shape mismatch in the wiring: " + WIRING
    with torch.no_grad():
        out = t.call(fn, model, x, ts)
        t.tensor(out, shape=(2, 1, 28, 28), what="unet_forward on (2, 1, 28, 28)")
        diagnose(t, out, model(x, ts), "matches minidiff.unet.UNet.forward (3 levels, attention)",
                 {hint: _wrong_unet(model, x, ts, None, kind) for kind, hint in UNET_MISTAKES.items()}, hint=WIRING)
        cond = ref.UNet(channels=(8, 16), num_classes=10, heads=2).eval()
        _perturb(cond)
        y = torch.tensor([3, 10])
        out = t.call(fn, cond, x, ts, y)
        t.tensor(out, shape=(2, 1, 28, 28), what="unet_forward with labels y")
        diagnose(t, out, cond(x, ts, y), "passes y on (emb = model.embed(t, y, B)) for a class-conditional U-Net",
                 {"the labels y are lost: emb = model.embed(t, y, x.shape[0]), not model.embed(t, None, ...)":
                      _wrong_unet(cond, x, ts, y, "no_y")},
                 hint="compute emb = model.embed(t, y, x.shape[0]) once and give it to every block")


# ---------------------------------------------------------------- 3. the training loop


def _reference_run(model, s, images, steps, kw, **changes):
    """training.train on a copy of `model`; also tracks the EMA a swapped decay would give."""
    decay = kw["ema_decay"]
    m = copy.deepcopy(model)
    swapped = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def track(step, loss, live):
        for e, p in zip(swapped.parameters(), live.parameters()):
            e.lerp_(p, decay)
        return False

    args = dict(kw, **changes)
    res = train(m, partial(ddpm_loss, s), images, steps, batch_size=args["batch_size"], lr=args["lr"],
                warmup=args["warmup"], lr_decay=args.get("lr_decay", True), weight_decay=args.get("weight_decay", 0.0),
                ema_decay=decay, generator=torch.Generator().manual_seed(args["seed"]), hooks=[track],
                show_progress=False)
    return res, swapped


@exercise("05", "train_unet", points=3)
def train_unet(t: Tester, fn):
    """train_unet(model, schedule, images, steps, ...) -> (ema_model, losses), as minidiff.training.train."""
    s = NoiseSchedule.make("linear", 100)
    images = torch.rand(64, 1, 16, 16) * 2 - 1
    torch.manual_seed(0)
    model = ref.UNet(channels=(8, 16), heads=2)
    start = copy.deepcopy(model)
    steps = 6
    kw = dict(batch_size=4, lr=2e-3, warmup=3, ema_decay=0.8, seed=0)
    out = t.call(fn, model, s, images, steps, batch_size=4, lr=2e-3, warmup=3, ema_decay=0.8,
                 generator=torch.Generator().manual_seed(0))
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.nn.Module)):
        t.check(False, "train_unet returns (ema_model, losses)", f"got {type(out).__name__}",
                hint="return ema, losses: the averaged copy of the model and the list of the step losses", decisive=True)
        return
    ema, losses = out
    try:
        losses = [float(v) for v in losses]
    except (TypeError, ValueError):
        t.check(False, "losses is a list of floats, one per step", f"got {type(losses).__name__}",
                hint="append loss.item() after every step", decisive=True)
        return
    if not t.check(len(losses) == steps, f"one loss per step ({steps} steps)", f"got {len(losses)} losses",
                   hint="loop `for s in range(steps)` and append loss.item() once per step", decisive=True):
        return
    t.check(0.6 < losses[0] < 1.4, "the first loss is E‖ε‖² ≈ 1 (a fresh U-Net predicts ε = 0)",
            f"got {losses[0]:.4f}", hint="loss = ddpm_loss(schedule, model, x0, generator): L_simple of DDPM eq. 14",
            decisive=True)
    t.check(ema is not model and all(e is not p for e, p in zip(ema.parameters(), model.parameters())),
            "the EMA is a separate copy of the model",
            hint="ema = copy.deepcopy(model) before training; averaging the live weights into themselves does nothing")
    t.check(not torch.equal(_flat(model), _flat(start)), "the model passed in is trained in place",
            hint="build the optimiser on model.parameters() and call opt.step() after loss.backward()")

    res, swapped = _reference_run(start, s, images, steps, kw)
    no_warmup, _ = _reference_run(start, s, images, steps, kw, warmup=0)
    no_decay, _ = _reference_run(start, s, images, steps, kw, lr_decay=False)
    constant, _ = _reference_run(start, s, images, steps, kw, warmup=0, lr_decay=False)
    default_wd, _ = _reference_run(start, s, images, steps, kw, weight_decay=0.01)
    diagnose(t, losses, res.losses, "the losses match minidiff.training.train with the same generator",
             {"the warm-up is missing: set the learning rate of step s to lr_at(s, steps, lr, warmup)": no_warmup.losses,
              "the cosine decay is missing: lr_at(s, steps, lr, warmup) warms up *and* decays": no_decay.losses,
              "the learning rate must change every step: opt.param_groups[0]['lr'] = lr_at(s, steps, lr, warmup)":
                  constant.losses},
             hint="draw the batch first (x0 = images[randint(len(images), (batch_size,), generator, images.device)]), "
                  "then loss = ddpm_loss(schedule, model, x0, generator); set the lr before opt.step()")
    diagnose(t, _flat(model), _flat(res.model), "the trained weights match minidiff.training.train",
             {"AdamW's default weight_decay is 0.01: pass weight_decay=0.0, as train does": _flat(default_wd.model),
              "the warm-up is missing: lr_at(s, steps, lr, warmup)": _flat(no_warmup.model)},
             hint="one AdamW step per batch: opt.zero_grad(), loss.backward(), opt.step()")
    diagnose(t, _flat(ema), _flat(res.ema.model), "the EMA weights match minidiff's (θ_ema ← d θ_ema + (1 − d) θ)",
             {"the EMA was never updated: after every opt.step(), move each EMA parameter towards the model's":
                  _flat(start),
              "decay and 1 − decay are swapped: ema_p.lerp_(p, 1 − decay) keeps a fraction `decay` of the old EMA":
                  _flat(swapped),
              "the EMA equals the live model: average (lerp_ with weight 1 − decay), don't copy": _flat(res.model)},
             hint="after each optimiser step: for e, p in zip(ema.parameters(), model.parameters()): "
                  "e.lerp_(p.detach(), 1 − ema_decay)")


# ---------------------------------------------------------------- 4. one DDIM step


def _ddim_parts(s, x_t, t, t_prev, eps):
    abar = s.alphas_cumprod[t].float().reshape(-1, 1)
    abar_prev = s.alphas_cumprod[t_prev].float().reshape(-1, 1)
    return abar, abar_prev, (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()


@exercise("05", "ddim_step", points=3)
def ddim_step(t: Tester, fn):
    """ddim_step(schedule, eps, x_t, t, t_prev, eta, noise, clip_denoised) -> x_{t_prev} (DDIM eqs. 9, 12, 16)."""
    s = NoiseSchedule.make("linear", 1000)
    x0, eps = torch.rand(5, 6) * 2 - 1, torch.randn(5, 6)
    ts = torch.tensor([1, 10, 300, 700, 1000])
    abar = s.alphas_cumprod[ts].float().reshape(-1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    t.crash_hints["shape"] = core.BROADCAST_HINT
    out = t.call(fn, s, eps, x_t, ts, torch.zeros_like(ts))
    t.tensor(out, shape=(5, 6), dtype=torch.float32, what="ddim_step on a (5, 6) batch")
    wrong_x0 = (x_t - (1 - abar).sqrt() * eps) / abar
    t.close(out, x0, "with the true ε and η = 0, one jump to t_prev = 0 returns x_0 (ᾱ_0 = 1)",
            hint=("x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t: divide by √ᾱ_t, not by ᾱ_t (DDIM eq. 9)"
                  if torch.allclose(out, wrong_x0, atol=1e-4) else
                  "x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (DDIM eq. 9), and at t_prev = 0: x_0 = x̂_0"),
            rtol=1e-4, atol=1e-4)

    x_t, eps, z = torch.randn(5, 6), torch.randn(5, 6), torch.randn(5, 6)
    ts, prev = torch.tensor([2, 10, 300, 700, 1000]), torch.tensor([1, 3, 150, 650, 500])
    a, ap, x0_hat = _ddim_parts(s, x_t, ts, prev, eps)
    out = t.call(fn, s, eps, x_t, ts, prev)
    t.tensor(out, shape=(5, 6), what="ddim_step with η = 0")
    diagnose(t, out, ddim_ref.ddim_step(s, eps, x_t, ts, prev), "η = 0 matches minidiff.ddim.ddim_step (a t per row)",
             {"the direction term uses ᾱ_{t_prev}: √(1 − ᾱ_{t_prev}) ε, not √(1 − ᾱ_t) ε (DDIM eq. 12)":
                  ap.sqrt() * x0_hat + (1 - a).sqrt() * eps,
              "x_{t_prev} starts from √ᾱ_{t_prev} x̂_0, not √ᾱ_t x̂_0 (DDIM eq. 12)":
                  a.sqrt() * x0_hat + (1 - ap).sqrt() * eps,
              "missing square roots: x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 − ᾱ_{t_prev}) ε when η = 0":
                  ap * x0_hat + (1 - ap) * eps},
             hint="x̂_0 (DDIM eq. 9), then x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 − ᾱ_{t_prev} − σ²) ε + σ z (eq. 12); "
                  "index ᾱ with t and with t_prev via extract(schedule.alphas_cumprod, t, x_t)")

    eta = 0.6
    out = t.call(fn, s, eps, x_t, ts, prev, eta=eta, noise=z)
    t.tensor(out, shape=(5, 6), what="ddim_step with η = 0.6")
    sig = eta * ((1 - ap) / (1 - a) * (1 - a / ap)).sqrt()
    var = eta * (1 - ap) / (1 - a) * (1 - a / ap)
    sig1 = ((1 - ap) / (1 - a) * (1 - a / ap)).sqrt()
    diagnose(t, out, ddim_ref.ddim_step(s, eps, x_t, ts, prev, eta=eta, noise=z), "η = 0.6 matches minidiff.ddim.ddim_step",
             {"the direction term shrinks when noise is added: √(1 − ᾱ_{t_prev} − σ²) ε (DDIM eq. 12)":
                  ap.sqrt() * x0_hat + (1 - ap).sqrt() * eps + sig * z,
              "the noise σ z is missing when η > 0": ap.sqrt() * x0_hat + (1 - ap - sig**2).sqrt() * eps,
              "σ scales with η: σ = η √((1 − ᾱ_{t_prev})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t_prev}) (DDIM eq. 16)":
                  ap.sqrt() * x0_hat + (1 - ap - sig1**2).sqrt() * eps + sig1 * z,
              "σ is a standard deviation: take the square root of the product in DDIM eq. 16":
                  ap.sqrt() * x0_hat + (1 - ap - var**2).clamp(min=0).sqrt() * eps + var * z},
             hint="σ = η √((1 − ᾱ_{t_prev})/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t_prev}) (DDIM eq. 16); add σ · noise")

    one = torch.tensor([2, 10, 300, 700, 1000])
    out = t.call(fn, s, eps, x_t, one, one - 1, eta=1.0, noise=z)
    t.tensor(out, shape=(5, 6), what="ddim_step with η = 1, t_prev = t − 1")
    t.close(out, ddpm_step(s, eps, x_t, one, noise=z, sigma2="beta_tilde"),
            "η = 1 and t_prev = t − 1 is DDPM's ancestral step with σ_t² = β̃_t", rtol=1e-4, atol=1e-4,
            hint="σ² at η = 1 is β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t: check eq. 16 term by term")

    big = 3 * torch.randn(5, 6)  # predicted x̂_0 far outside [−1, 1]
    _, _, x0_big = _ddim_parts(s, x_t, ts, prev, big)
    for c in (1.0, 0.5):
        out = t.call(fn, s, big, x_t, ts, prev, clip_denoised=c)
        t.tensor(out, shape=(5, 6), what=f"ddim_step with clip_denoised={c:g}")
        clipped = x0_big.clamp(-c, c)
        diagnose(t, out, ddim_ref.ddim_step(s, big, x_t, ts, prev, clip_denoised=c),
                 f"clip_denoised={c:g} matches minidiff.ddim.ddim_step",
                 {"after clipping x̂_0, recompute ε = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t), so that the step stays consistent":
                      ap.sqrt() * clipped + (1 - ap).sqrt() * big,
                  "clip_denoised was ignored: clamp x̂_0 to [−c, c] when it is given":
                      ddim_ref.ddim_step(s, big, x_t, ts, prev),
                  "you clip to [−1, 1] whatever clip_denoised is: clamp(−clip_denoised, clip_denoised)":
                      ddim_ref.ddim_step(s, big, x_t, ts, prev, clip_denoised=1.0)},
                 hint="x̂_0 ← clamp(x̂_0, −c, c), then ε ← (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t), then eq. 12 as before")

    # images (any rank), an int t_prev (as ddim_sample passes it), and float64
    imgs, e_img, z_img = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t_img = torch.tensor([50, 400, 999])
    out = t.call(fn, s, e_img, imgs, t_img, 20, eta=0.5, noise=z_img)
    t.tensor(out, shape=(3, 1, 4, 4), dtype=torch.float32, what="ddim_step on images (3, 1, 4, 4), t_prev = 20 (an int)")
    t.close(out, ddim_ref.ddim_step(s, e_img, imgs, t_img, 20, eta=0.5, noise=z_img),
            "images and an int t_prev: matches minidiff.ddim.ddim_step (η = 0.5)",
            hint="index ᾱ with extract(schedule.alphas_cumprod, t_prev, x_t): it takes an int or a (B,) tensor and "
                 "reshapes to (B, 1, 1, 1)")
    x64, e64, z64 = x_t.double(), eps.double(), z.double()
    out = t.call(fn, s, e64, x64, ts, prev, eta=0.6, noise=z64)
    t.tensor(out, shape=(5, 6), dtype=torch.float64, what="ddim_step on float64 points (5, 6)")
    t.close(out, ddim_ref.ddim_step(s, e64, x64, ts, prev, eta=0.6, noise=z64),
            "float64 points: matches minidiff.ddim.ddim_step to float64 precision",
            rtol=1e-4 if out.dtype == torch.float32 else 1e-9, atol=1e-5 if out.dtype == torch.float32 else 1e-12)


# ---------------------------------------------------------------- 5. the DDIM loop


class _Counted(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.times = model, 0, []

    def forward(self, x, t):
        self.calls += 1
        self.times.append(int(t[0]) if isinstance(t, torch.Tensor) and t.numel() else t)
        return self.model(x, t)


@exercise("05", "ddim_sample", points=2)
def ddim_sample(t: Tester, fn):
    """ddim_sample(schedule, eps_model, shape, steps, eta, device, generator, return_trajectory, clip_denoised)."""
    s = NoiseSchedule.make("linear", 50)
    model = _perturb(ref.UNet(channels=(8, 16), heads=2).eval(), 0.2)
    shape = (3, 1, 8, 8)

    def gen():
        return torch.Generator().manual_seed(5)

    counted = _Counted(model)
    out = t.call(fn, s, counted, shape, 5, generator=gen())
    t.tensor(out, shape=shape, dtype=torch.float32, what="ddim_sample(schedule, model, (3, 1, 8, 8), steps=5)")
    t.check(counted.calls == 5, "5 steps call the network 5 times", f"it was called {counted.calls} times",
            hint="one network call per jump: loop over consecutive pairs of ddim_timesteps(schedule.T, steps) + [0]",
            decisive=True)
    times = ddim_ref.ddim_timesteps(s.T, 5)
    t.check(counted.times == times, "the network is called at t = 50, 40, 30, 20, 10", f"got {counted.times}",
            hint="the last jump, from τ_S = 10 to t_prev = 0, is missing: loop over ddim_timesteps(T, steps) + [0]"
            if counted.times == times[:-1] else
            "call eps_model(x, t) at the *current* t of each jump, t = ddim_timesteps(T, steps)", decisive=True)
    with torch.no_grad():
        expected = ddim_ref.ddim_sample(s, model, shape, steps=5, generator=gen())

        def step(x, tt, tp):
            b = torch.full((shape[0],), tt, dtype=torch.long)
            return ddim_ref.ddim_step(s, model(x, b), x, b, tp)

        no_last = simulate(step, torch.randn(shape, generator=gen()), ddim_ref.ddim_timesteps(s.T, 5))
    diagnose(t, out, expected, "η = 0 matches minidiff.ddim.ddim_sample (same generator)",
             {"the last jump goes to t_prev = 0 (x_0 = x̂_0): append 0 to the timesteps": no_last},
             hint="x_T = randn(shape, generator, device) first; then x ← ddim_step(schedule, eps_model(x, t), x, t, t_prev, "
                  "...) for consecutive pairs of ddim_timesteps(schedule.T, steps) + [0]")

    with torch.no_grad():
        expected, ref_traj = ddim_ref.ddim_sample(s, model, shape, steps=4, eta=1.0, generator=gen(), return_trajectory=True)
    res = t.call(fn, s, model, shape, 4, eta=1.0, generator=gen(), return_trajectory=True)
    if t.check(isinstance(res, tuple) and len(res) == 2, "with return_trajectory=True it returns (x_0, trajectory)",
               f"got {type(res).__name__}", hint="return (x, torch.stack(trajectory)) if return_trajectory else x"):
        out, traj = res
        if t.check(isinstance(traj, torch.Tensor) and tuple(traj.shape) == (5, *shape),
                   "4 steps give a trajectory of 5 states x_T, ..., x_0, stacked: shape (5, 3, 1, 8, 8)",
                   f"got {tuple(traj.shape) if isinstance(traj, torch.Tensor) else type(traj).__name__}",
                   hint="start the list with x_T, append x.cpu() after every jump, return torch.stack(trajectory)"):
            t.check(torch.equal(traj[-1], torch.as_tensor(out).cpu()), "the trajectory ends with the returned x_0",
                    hint="append x.cpu() after every jump, and start the list with x_T")
            t.close(traj[0], ref_traj[0], "the trajectory starts at x_T = randn(shape, generator, device)",
                    hint="draw x_T from the generator before anything else", decisive=False)
    else:
        out = t.call(fn, s, model, shape, 4, eta=1.0, generator=gen())
    t.tensor(out, shape=shape, what="x_0 of ddim_sample(..., eta=1.0)")
    t.close(out, expected, "η = 1 matches minidiff.ddim.ddim_sample (same generator)", rtol=1e-4, atol=1e-5,
            hint="when η > 0 draw one noise = randn(shape, generator, device) per jump, after x_T, and pass it to ddim_step")
    with torch.no_grad():
        expected = ddim_ref.ddim_sample(s, model, shape, steps=5, generator=gen(), clip_denoised=0.5)
        plain = ddim_ref.ddim_sample(s, model, shape, steps=5, generator=gen())
        one = ddim_ref.ddim_sample(s, model, shape, steps=5, generator=gen(), clip_denoised=1.0)
    out = t.call(fn, s, model, shape, 5, generator=gen(), clip_denoised=0.5)
    diagnose(t, out, expected, "clip_denoised=0.5 is passed on to every step",
             {"clip_denoised is ignored: pass clip_denoised=clip_denoised to ddim_step": plain,
              "you clip to [−1, 1] whatever clip_denoised is: pass clip_denoised=clip_denoised on": one},
             hint="ddim_step(..., eta=eta, noise=noise, clip_denoised=clip_denoised)")

    # 2-D points: nothing in the sampler depends on the rank of `shape`
    def toy(x, tt):
        return 0.5 * x + (tt.float() / s.T).reshape(-1, *([1] * (x.dim() - 1)))

    out = t.call(fn, s, toy, (6, 2), 5, eta=0.5, generator=gen())
    t.tensor(out, shape=(6, 2), dtype=torch.float32, what="ddim_sample(schedule, eps_model, (6, 2), steps=5, eta=0.5)")
    t.close(out, ddim_ref.ddim_sample(s, toy, (6, 2), steps=5, eta=0.5, generator=gen()),
            "2-D points (shape (6, 2)), η = 0.5: matches minidiff.ddim.ddim_sample",
            hint="t is (B,) = (shape[0],) and x_T, the noise are randn(shape): nothing may assume images",
            rtol=1e-4, atol=1e-5)
