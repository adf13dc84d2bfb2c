"""Checks for lesson 05, the U-Net on MNIST.

    from minidiff.course.checks import lesson05 as check
    check.resblock_forward(resblock_forward)   # a residual block with the timestep embedding
    check.unet_forward(unet_forward)           # the skip wiring of the U-Net
    check.ema_update(ema_update)               # θ_ema ← d θ_ema + (1 − d) θ

Oracles: a fresh ResBlock is its skip path (zero-initialised last conv), the embedding
shifts each channel by one number per image, two images with the same x but different
emb differ; then agreement with minidiff.unet on randomly perturbed blocks and U-Nets.
For the EMA: decay 0 copies, decay → 1 keeps, and the closed form after k updates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import unet as ref
from .core import Tester, exercise


def _perturb(module: torch.nn.Module, scale: float = 0.1) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


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
    raise ValueError(kind)


@exercise("05", "resblock_forward", points=3)
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
        expected = block(x, emb)
        for kind, hint in [("no_emb", "the embedding is missing: add block.emb(F.silu(emb))[:, :, None, None] after conv1"),
                           ("no_skip", "the skip path is missing: add block.skip(x) at the end"),
                           ("no_silu_emb", "apply SiLU to emb before block.emb (as the reference does)")]:
            wrong = _wrong_resblock(block, x, emb, kind)
            if not torch.allclose(wrong, expected, atol=1e-5) and torch.allclose(out, wrong, atol=1e-5):
                t.check(False, "matches minidiff.unet.ResBlock.forward on a perturbed block", hint=hint)
                return
        t.close(out, expected, "matches minidiff.unet.ResBlock.forward on a perturbed block",
                hint="order: norm1 → SiLU → conv1, + emb shift, norm2 → SiLU → dropout → conv2, + skip(x)",
                rtol=1e-4, atol=1e-5)
        same = ref.ResBlock(8, 8, emb_dim=32).eval()
        _perturb(same)
        xs = torch.randn(1, 8, 7, 7).expand(2, -1, -1, -1)
        out2 = t.call(fn, same, xs, torch.randn(2, 32))
        t.tensor(out2, shape=(2, 8, 7, 7), what="resblock_forward with 8 → 8 channels")
        t.check(not torch.allclose(out2[0], out2[1]), "same image, different embeddings → different outputs",
                hint="the embedding has shape (B, emb_dim): block.emb(...) gives (B, C); reshape to (B, C, 1, 1)")


@exercise("05", "unet_forward", points=3)
def unet_forward(t: Tester, fn):
    """The skip wiring: down (keep skips), middle, up (upsample, concatenate, blocks)."""
    model = ref.UNet(channels=(8, 16, 16), heads=2).eval()
    _perturb(model)
    x, ts = torch.randn(2, 1, 28, 28), torch.tensor([1, 700])
    with torch.no_grad():
        out = t.call(fn, model, x, ts)
        t.tensor(out, shape=(2, 1, 28, 28), what="unet_forward on (2, 1, 28, 28)")
        t.close(out, model(x, ts), "matches minidiff.unet.UNet.forward (3 levels, attention)",
                hint="append the skip after a level's blocks and *before* downsampling; in the up path, "
                     "upsample first, then torch.cat([h, skips.pop()], dim=1): the last skip saved is used first",
                rtol=1e-4, atol=1e-5)
        cond = ref.UNet(channels=(8, 16), num_classes=10, heads=2).eval()
        _perturb(cond)
        y = torch.tensor([3, 10])
        out = t.call(fn, cond, x, ts, y)
        t.tensor(out, shape=(2, 1, 28, 28), what="unet_forward with labels y")
        t.close(out, cond(x, ts, y), "passes y on (emb = model.embed(t, y, B)) for a class-conditional U-Net",
                hint="compute emb = model.embed(t, y, x.shape[0]) once and give it to every block",
                rtol=1e-4, atol=1e-5)


@exercise("05", "ema_update", points=2)
def ema_update(t: Tester, fn):
    """θ_ema ← d θ_ema + (1 − d) θ, in place, for every parameter."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    ema = torch.nn.Linear(4, 3)
    start = [p.detach().clone() for p in ema.parameters()]
    target = [p.detach().clone() for p in model.parameters()]
    t.call(fn, ema, model, 0.9)
    got = [p.detach().clone() for p in ema.parameters()]
    t.close(got[0], 0.9 * start[0] + 0.1 * target[0], "one update: 0.9 θ_ema + 0.1 θ (weight)",
            hint="decay weights the *old EMA*, 1 − decay the live model: ema.lerp_(p, 1 − decay)")
    t.close(got[1], 0.9 * start[1] + 0.1 * target[1], "the bias is averaged too",
            hint="loop over all parameters: zip(ema.parameters(), model.parameters())")
    t.call(fn, ema, model, 0.0)
    t.close(list(ema.parameters())[0].detach(), target[0], "decay = 0 copies the model",
            hint="θ_ema ← d θ_ema + (1 − d) θ with d = 0 is θ")
    # k updates towards a fixed θ: θ_ema − θ shrinks by d each time
    ema2 = torch.nn.Linear(4, 3)
    s0 = ema2.weight.detach().clone()
    for _ in range(5):
        t.call(fn, ema2, model, 0.5)
    t.close(ema2.weight.detach(), target[0] + 0.5**5 * (s0 - target[0]), "after k updates θ_ema − θ = d^k (θ_ema,0 − θ)",
            hint="update in place (p.mul_, p.add_ or p.lerp_ under torch.no_grad()); a new tensor is not stored in the module")
    t.check(all(not p.requires_grad or p.grad is None for p in ema2.parameters()),
            "no gradients were recorded in the EMA", hint="wrap the update in torch.no_grad()")
