"""A 1D U-Net for sound: ε_θ(x_t, t, y) on clips of shape (B, C, L) (lesson 16).

Lesson 05's U-Net with one change of dimension: every Conv2d becomes a Conv1d, and because
sound is long (4096 samples for half a second at 8 kHz) each level shortens the signal by a
`factor` of 4 instead of 2, so that three levels reach 4096 → 1024 → 256 → 64 positions and a
kernel of 5 at the bottom spans 5·64 = 320 samples (40 ms: several periods of a 110 Hz string).

    ResBlock1d   h = conv(SiLU(GN(x)));  h += Linear(SiLU(emb));  h = conv(SiLU(GN(h)));  out = h + skip(x)
    Downsample   a strided conv (kernel 2·factor, stride factor)
    Upsample     nearest-neighbour × factor, then a conv
    middle       ResBlock1d → self-attention over the L/factor^(levels−1) positions → ResBlock1d

The timestep (and, with `num_classes`, a learned class embedding whose row `num_classes` is the
null class ∅ of classifier-free guidance, as in `minidiff.unet`) enters every block through emb.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .embedding import timestep_embedding


# Copied from minidiff.unet._groups
def num_groups(channels: int, max_groups: int = 8) -> int:
    """The largest group count ≤ max_groups dividing `channels` (GroupNorm needs one)."""
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


class ResBlock1d(nn.Module):
    """Residual block on (B, C, L) with the embedding added as one shift per channel:

        h   = Conv1d(SiLU(GroupNorm(x)))
        h   = h + Linear(SiLU(emb))[:, :, None]
        h   = Conv1d(SiLU(GroupNorm(h)))          (starts at zero: a fresh block is the identity)
        out = h + skip(x)                         (skip = 1×1 conv when c_in ≠ c_out)
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, kernel: int = 5):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (so that padding keeps the length), got {kernel}")
        self.norm1 = nn.GroupNorm(num_groups(c_in), c_in)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(num_groups(c_out), c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class Attention1d(nn.Module):
    """Residual multi-head self-attention over the L positions of (B, C, L)."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} must be divisible by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(num_groups(channels), channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, L = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, L).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, L))


class UNet1d(nn.Module):
    """ε_θ(x_t, t, y) for (B, C, L) signals.

    in_channels:  1 for mono sound
    channels:     feature channels per level, e.g. (32, 64, 96): lengths L, L/4, L/16
    factor:       how much each level shortens the signal (4)
    kernel:       the ResBlocks' kernel size (odd)
    num_classes:  None (unconditional) or K; labels y in 0..K−1, and K is the null class ∅
    L must be divisible by factor^(len(channels) − 1).
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 96), factor: int = 4,
                 kernel: int = 5, num_classes: int | None = None, heads: int = 4, patch: int = 1):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels}")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be an int ≥ 2, got {factor!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
        self.config = dict(in_channels=in_channels, channels=list(channels), factor=factor, kernel=kernel,
                           num_classes=num_classes, heads=heads, patch=patch)
        self.in_channels, self.channels, self.factor, self.num_classes = in_channels, channels, factor, num_classes
        self.patch = patch
        c0 = channels[0]
        emb_dim = 4 * c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None
        self.conv_in = nn.Conv1d(in_channels * patch, c0, kernel, padding=kernel // 2)
        last = len(channels) - 1

        self.down_blocks, self.downs = nn.ModuleList(), nn.ModuleList()
        c_prev = c0
        for i, c in enumerate(channels):
            self.down_blocks.append(ResBlock1d(c_prev, c, emb_dim, kernel))
            self.downs.append(nn.Conv1d(c, c, 2 * factor, stride=factor, padding=factor // 2)
                              if i < last else nn.Identity())
            c_prev = c
        cm = channels[-1]
        self.mid1 = ResBlock1d(cm, cm, emb_dim, kernel)
        self.mid_attn = Attention1d(cm, heads)
        self.mid2 = ResBlock1d(cm, cm, emb_dim, kernel)

        self.ups, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        c_prev = cm
        for i in reversed(range(len(channels))):
            c = channels[i]
            self.ups.append(nn.Conv1d(c_prev, c, kernel, padding=kernel // 2) if i < last else nn.Identity())
            self.up_blocks.append(ResBlock1d((c if i < last else c_prev) + c, c, emb_dim, kernel))
            c_prev = c
        self.norm_out = nn.GroupNorm(num_groups(c0), c0)
        self.conv_out = nn.Conv1d(c0, in_channels * patch, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """emb = MLP(timestep_embedding(t)) (+ class_emb(y); y = None means ∅ for every clip)."""
        emb = self.time_mlp(timestep_embedding(t, self.channels[0]))
        if self.class_emb is None:
            if y is not None:
                raise ValueError("this UNet1d is unconditional (num_classes=None): call it without y")
            return emb
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=t.device)
        if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != (batch,):
            raise TypeError(f"y must be a LongTensor of shape ({batch},) with labels in 0..{self.num_classes}, got "
                            f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")
        return emb + self.class_emb(y)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3:
            raise TypeError(f"x must be a float tensor of shape (B, C, L), got "
                            f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels but the UNet1d was built with in_channels={self.in_channels}")
        k = self.patch * self.factor ** (len(self.channels) - 1)
        if x.shape[2] % k:
            raise ValueError(f"the length L must be divisible by {k} (factor {self.factor} per level), got {x.shape[2]}")
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            raise ValueError(f"t must be a tensor of shape (B,) = ({x.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")
        emb = self.embed(t, y, x.shape[0])
        B, C, L = x.shape
        p = self.patch  # fold p neighbouring samples into channels: (B, C, L) → (B, C·p, L/p)
        h = self.conv_in(x.reshape(B, C, L // p, p).transpose(2, 3).reshape(B, C * p, L // p))
        skips = []
        for block, down in zip(self.down_blocks, self.downs):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for up, block in zip(self.ups, self.up_blocks):
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=self.factor, mode="nearest"))
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, C·p, L/p) → back to (B, C, L)
        return out.reshape(B, C, p, L // p).transpose(2, 3).reshape(B, C, L)
