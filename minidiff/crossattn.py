"""Cross-attention and a text-conditioned U-Net (lesson 14: text to digit).

    cross_attention    its forward pass, as a function (the lesson's exercise)
    CrossAttention     image features attend to the caption's tokens (Rombach et al. 2022, §3.3):
                           Q = W_Q · GN(x)      (one query per pixel, H·W of them)
                           K = W_K · c,  V = W_V · c      (one key and value per token of the context c)
                           out = x + W_O · softmax(Q Kᵀ / √d_head + mask) V
                       the mask is −∞ at padding tokens, so a pixel only attends to real words
    TextUNet           lesson 05's U-Net (`unet.UNet`, its pieces and its wiring) with a TextEncoder
                       and a CrossAttention after the ResBlocks of the lower resolutions:
                       ε_θ(x_t, t, ids)  with ids (B, L) token ids from `text.Tokenizer`
    caption_dropout    classifier-free guidance's label dropout (lesson 08) for captions: each caption
                       becomes the empty caption ∅ with probability p_uncond
    text_loss          the v-loss of a text-conditioned model on (x0, ids), with caption dropout
    guided_text_eps    ε(∅) + w (ε(c) − ε(∅)) (Ho & Salimans 2022; `guidance.combine`), one doubled batch
    text_sample        DDIM samples for a list of captions at guidance scale w
    sample_with_attention  samples of one caption and its per-token attention maps at every step
    attention_maps     the stored attention weights of one layer, averaged over heads: (B, L, H, W)

Everything about the timestep and the U-Net wiring is lesson 05's; only the conditioning is new.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ddim import ddim_sample
from .guidance import combine
from .text import START, VOCAB, TextEncoder
from .unet import UNet
from .utils import check_float, check_positive_int
from .vpred import EpsFromV, v_loss

# -- 1. cross-attention ---------------------------------------------------------------------


class CrossAttention(nn.Module):
    """x (B, C, H, W) attends to a context (B, L, D) with a key-padding mask (B, L) (True = pad):

        q = Linear_Q(GroupNorm(x)) over the H·W positions       (B, heads, HW, d)
        k, v = Linear_K(context), Linear_V(context)             (B, heads, L, d)
        a = softmax(q kᵀ / √d, masked at padding)               (B, heads, HW, L)
        out = x + Linear_O(a v)                                 (residual; Linear_O starts at zero)

    Set `store = True` to keep the last attention weights `a` in `self.attn` (for the maps).
    """

    def __init__(self, channels: int, context_dim: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} must be divisible by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(math.gcd(8, channels), channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(context_dim, channels, bias=False)
        self.to_v = nn.Linear(context_dim, channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)  # a fresh block is the identity, like ResBlock
        nn.init.zeros_(self.to_out.bias)
        self.store = False
        self.attn: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, a = cross_attention(self, x, context, mask)
        if self.store:
            self.attn = a.detach()
        return out


def cross_attention(block: CrossAttention, x: torch.Tensor, context: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward pass of a CrossAttention `block`: (out (B, C, H, W), attention weights (B, heads, H·W, L))."""
    B, C, H, W = x.shape
    h, d = block.heads, C // block.heads
    q = block.to_q(block.norm(x).flatten(2).transpose(1, 2))  # 1. queries from the pixels (B, HW, C)
    k, v = block.to_k(context), block.to_v(context)  # 2. keys and values from the tokens (B, L, C)
    q, k, v = (z.reshape(B, -1, h, d).transpose(1, 2) for z in (q, k, v))  # 3. split the heads (B, h, ·, d)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # 4. (B, h, HW, L)
    a = scores.masked_fill(mask[:, None, None, :], float("-inf")).softmax(-1)  # 5. no weight on padding
    out = (a @ v).transpose(1, 2).reshape(B, H * W, C)  # 6. merge the heads
    return x + block.to_out(out).transpose(1, 2).reshape(B, C, H, W), a  # 7. project, residual


# -- 2. the text-conditioned U-Net -------------------------------------------------------------


class TextUNet(nn.Module):
    """ε_θ(x_t, t, ids): lesson 05's unconditional `UNet`, with a TextEncoder and a CrossAttention
    after the ResBlock of every level in `cross_levels` (both paths) and after the middle self-attention.

    channels:      the U-Net's feature channels per level (28, 14, 7 for three levels)
    cross_levels:  levels with cross-attention (default: all but the first; at 28×28 the 784
                   queries cost most and see the least)
    text_dim, text_layers, vocab_size, context_length: the TextEncoder's size (trained jointly)

    The U-Net's weights live in `self.unet` under lesson 05's names, so a shipped unconditional
    U-Net can be loaded into it (`self.unet.load_state_dict`); the new blocks start as the identity
    (their output projections are zero), so such a start draws exactly the old model's digits.

    forward(x, t, ids): x (B, C, H, W), t (B,) timesteps, ids (B, L) long token ids.
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (16, 32, 64), cross_levels: tuple | None = None,
                 vocab_size: int = len(VOCAB), context_length: int = 12, text_dim: int = 64, text_layers: int = 2,
                 heads: int = 4):
        super().__init__()
        self.unet = UNet(in_channels, tuple(channels), num_res_blocks=1, attention=True, heads=heads)
        channels = self.unet.channels
        cross_levels = tuple(range(1, len(channels))) if cross_levels is None else tuple(int(i) for i in cross_levels)
        self.config = dict(in_channels=in_channels, channels=list(channels), cross_levels=list(cross_levels),
                           vocab_size=vocab_size, context_length=context_length, text_dim=text_dim,
                           text_layers=text_layers, heads=heads)
        self.in_channels, self.channels = in_channels, channels
        self.text = TextEncoder(vocab_size, context_length, text_dim, text_layers, heads)
        self.cross_down = nn.ModuleDict({str(i): CrossAttention(channels[i], text_dim, heads) for i in cross_levels})
        self.cross_mid = CrossAttention(channels[-1], text_dim, heads)
        self.cross_up = nn.ModuleDict({str(i): CrossAttention(channels[i], text_dim, heads) for i in cross_levels})

    def cross_attentions(self) -> list[tuple[str, CrossAttention]]:
        """(name, module) of every CrossAttention, in the order the forward pass meets them."""
        down = [(f"down {k}", m) for k, m in self.cross_down.items()]
        up = [(f"up {k}", m) for k, m in reversed(self.cross_up.items())]
        return down + [("mid", self.cross_mid)] + up

    def forward(self, x: torch.Tensor, t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        u = self.unet
        u._check_inputs(x, t)
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.shape[0] != x.shape[0]:
            raise TypeError(f"ids must be a LongTensor (B, L) of token ids with B = {x.shape[0]}, got "
                            f"{getattr(ids, 'dtype', type(ids).__name__)} {tuple(getattr(ids, 'shape', ()))}")
        context, mask = self.text(ids)  # 1. the caption: (B, L, d) and its padding mask
        emb = u.embed(t, None, x.shape[0])  # 2. the timestep embedding, as in lesson 05
        h = u.conv_in(x)
        skips = []
        for i, level in enumerate(u.down):  # 3. down path, cross-attention after the blocks
            for block in level.blocks:
                h = block(h, emb)
            if str(i) in self.cross_down:
                h = self.cross_down[str(i)](h, context, mask)
            skips.append(h)
            h = level.downsample(h)
        h = self.cross_mid(u.mid_attn(u.mid1(h, emb)), context, mask)  # 4. middle
        h = u.mid2(h, emb)
        for j, level in enumerate(u.up):  # 5. up path
            i = len(u.up) - 1 - j
            h = level.upsample(h)
            h = torch.cat([h, skips.pop()], dim=1)
            for block in level.blocks:
                h = block(h, emb)
            h = level.attn(h)
            if str(i) in self.cross_up:
                h = self.cross_up[str(i)](h, context, mask)
        return u.conv_out(F.silu(u.norm_out(h)))


# -- 3. classifier-free guidance on captions -------------------------------------------------------


def caption_dropout(ids: torch.Tensor, p_uncond: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each caption (row of ids) becomes the empty caption ∅ = [<s>, <pad>, ...] with probability p_uncond.

    Lesson 08's label dropout (Ho & Salimans 2022, Algorithm 1) with a caption for a label. Returns a new tensor.
    """
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 2:
        raise TypeError("ids must be a LongTensor (B, L) of token ids")
    if isinstance(p_uncond, bool) or not 0.0 <= float(p_uncond) <= 1.0:
        raise ValueError(f"p_uncond must be a probability in [0, 1], got {p_uncond!r}")
    gen_dev = generator.device if generator is not None else ids.device
    drop = (torch.rand(ids.shape[0], generator=generator, device=gen_dev) < p_uncond).to(ids.device)
    empty = torch.zeros_like(ids)
    empty[:, 0] = START
    return torch.where(drop[:, None], empty, ids)


def text_loss(schedule, model, batch, generator: torch.Generator | None = None, p_uncond: float = 0.2,
              loss: Callable = v_loss) -> torch.Tensor:
    """The v-loss (`vpred.v_loss`) of a text-conditioned model on a batch (x0, ids), captions dropped to ∅
    with probability p_uncond. `functools.partial(text_loss, schedule)` is a loss for `training.train`."""
    x0, ids = batch
    ids = caption_dropout(ids, p_uncond, generator)
    return loss(schedule, lambda x_t, t: model(x_t, t, ids), x0, generator)


def guided_text_eps(model, x_t: torch.Tensor, t: torch.Tensor, ids: torch.Tensor, w, empty: torch.Tensor) -> torch.Tensor:
    """ε̃ = ε(x_t, t, ∅) + w (ε(x_t, t, c) − ε(x_t, t, ∅)), both from one pass on the doubled batch."""
    out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([ids, empty]))
    eps_cond, eps_uncond = out.chunk(2)
    return combine(eps_cond, eps_uncond, w)


class GuidedText(nn.Module):
    """An eps_model(x_t, t) for any sampler: a v-prediction TextUNet, guided towards fixed captions."""

    def __init__(self, net: TextUNet, schedule, ids: torch.Tensor, w):
        super().__init__()
        self.eps = EpsFromV(net, schedule)
        self.ids, self.w = ids, w
        self.empty = torch.zeros_like(ids)
        self.empty[:, 0] = START

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return guided_text_eps(self.eps, x_t, t, self.ids, self.w, self.empty)


@torch.no_grad()
def text_sample(schedule, net: TextUNet, tokenizer, captions, w: float = 3.0, steps: int = 20,
                generator: torch.Generator | None = None, device=None, return_trajectory: bool = False):
    """DDIM samples (η = 0, x̂_0 clipped to [−1, 1]) of a v-prediction TextUNet for a list of captions
    (one image each), guided at scale w. Returns (N, 1, 28, 28) on the CPU (and the trajectory if asked)."""
    check_positive_int("steps", steps)
    device = torch.device(device) if device is not None else next(net.parameters()).device
    ids = tokenizer.encode(list(captions)).to(device)
    model = GuidedText(net, schedule, ids, w)
    out = ddim_sample(schedule, model, (ids.shape[0], net.in_channels, 28, 28), steps=steps, device=device,
                      generator=generator, clip_denoised=1.0, return_trajectory=return_trajectory)
    return tuple(o.cpu() for o in out) if return_trajectory else out.cpu()


# -- 4. attention maps ---------------------------------------------------------------------------


def attention_maps(attn: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Stored weights (B, heads, H·W, L) of a CrossAttention → per-token maps (B, L, H, W), heads averaged.

    Entry [b, l, i, j] is how much pixel (i, j) attends to token l; over l, each pixel's weights sum to 1.
    """
    check_float("attn", attn)
    if attn.dim() != 4 or attn.shape[2] != size[0] * size[1]:
        raise ValueError(f"attn must have shape (B, heads, H·W = {size[0] * size[1]}, L), got {tuple(attn.shape)}")
    return attn.mean(1).transpose(1, 2).reshape(attn.shape[0], attn.shape[3], *size)


@torch.no_grad()
def sample_with_attention(schedule, net: TextUNet, tokenizer, caption: str, w: float = 3.0, steps: int = 20,
                          where: str = "up 1", n: int = 1, generator: torch.Generator | None = None):
    """n DDIM samples of one caption, and the attention maps of the cross-attention `where` (a name of
    `net.cross_attentions()`) at every step: maps (steps, n, L, H, W), heads averaged, for the
    conditional half of the guided batch. Returns (images (n, 1, 28, 28), maps)."""
    block = dict(net.cross_attentions())[where]
    maps = []
    level = where.partition(" ")[2]  # "up 1" → level 1 (14×14); "mid" → the lowest resolution
    size = 28 // 2 ** (int(level) if level else len(net.channels) - 1)
    block.store = True
    try:
        device = next(net.parameters()).device
        ids = tokenizer.encode([caption] * n).to(device)
        model = GuidedText(net, schedule, ids, w)

        def eps(x_t, t):
            out = model(x_t, t)
            maps.append(attention_maps(block.attn[:n], (size, size)).cpu())
            return out

        x = ddim_sample(schedule, eps, (n, net.in_channels, 28, 28), steps=steps, device=device,
                        generator=generator, clip_denoised=1.0)
    finally:
        block.store, block.attn = False, None
    return x.cpu(), torch.stack(maps)
