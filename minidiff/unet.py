"""A small U-Net for 28×28 images (lesson 05; lesson 08 conditions it on a class).

    ε_θ(x_t, t, y):  (B, C, H, W) images, t ∈ 1..T, optional labels y  →  (B, C, H, W) noise

The pieces, each built and shape-checked in the lesson:

    ResBlock     h = conv(SiLU(GN(x)));  h += Linear(SiLU(emb));  h = conv(SiLU(GN(h)));  out = h + skip(x)
    SelfAttention  softmax(QKᵀ/√d) V over the H·W positions, added back to x   (lowest resolution only)
    Downsample   a stride-2 3×3 conv (28 → 14 → 7)
    Upsample     nearest-neighbour ×2, then a 3×3 conv (7 → 14 → 28)

and the wiring (Ronneberger et al. 2015; Ho et al. 2020, appendix B):

    down path  level i: blocks at resolution 28/2^i, keep the output as skip_i, then downsample
    middle     ResBlock → SelfAttention → ResBlock at 7×7
    up path    level i: upsample, concatenate skip_i along channels, blocks back to channels[i]

The timestep enters every ResBlock through emb = MLP(timestep_embedding(t)); with
`num_classes` set, a learned class embedding is added to emb (classifier-free guidance,
lesson 08): there are num_classes + 1 rows, row num_classes is the null class ∅, and
y = None means "every image is ∅" (the unconditional model).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .embedding import timestep_embedding


def _groups(channels: int, max_groups: int = 8) -> int:
    """The largest group count ≤ max_groups that divides `channels` (GroupNorm needs one).

    Keep ≥ 2 channels per group in real models: with one channel per group, GroupNorm
    subtracts each channel's mean and so erases the per-channel timestep shift of ResBlock.
    """
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """Residual block with the timestep (and class) embedding added in the middle:

        h   = Conv(SiLU(GroupNorm(x)))                     (B, c_out, H, W)
        h   = h + Linear(SiLU(emb))[:, :, None, None]      one shift per channel, per image
        h   = Conv(Dropout(SiLU(GroupNorm(h))))
        out = h + skip(x)                                  skip = 1×1 conv when c_in ≠ c_out

    The last conv starts at zero, so a fresh block is the identity (plus skip): deep
    stacks then train from the first step (Nichol & Dhariwal 2021 do the same).
    GroupNorm, not BatchNorm: batch statistics would mix images at different noise levels.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions of a feature map, residual:

        out = x + Proj(softmax(Q Kᵀ / √d_head) V),   Q, K, V = 1×1 convs of GroupNorm(x)

    At 7×7 there are only 49 positions, so attention is cheap there and lets every
    position see the whole digit; at 28×28 (784 positions) it would dominate the cost.
    """

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} must be divisible by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)  # starts as the identity, like ResBlock
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        # (B, heads, positions, d_head) for scaled_dot_product_attention
        q, k, v = (z.transpose(-1, -2) for z in (q, k, v))
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(QKᵀ/√d) V
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(h)


class Downsample(nn.Module):
    """Halve H and W with a learned stride-2 3×3 conv (28 → 14 → 7)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour copy, then a 3×3 conv that smooths the blocks and
    narrows c_in → c_out channels (narrowing here, at the lower resolution's channel count,
    costs less than a wide conv at the higher resolution)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    """ε_θ(x_t, t, y) for small images: a U-Net with timestep (and optional class) embeddings.

    in_channels:     image channels (1 for MNIST)
    channels:        feature channels per resolution level, e.g. (32, 64, 128) for 28, 14, 7
    num_res_blocks:  ResBlocks per level on each path
    attention:       add self-attention at the lowest resolution (and in the middle)
    num_classes:     None for an unconditional model; else labels y ∈ {0..num_classes−1}, and
                     index num_classes is the learned null class ∅ (classifier-free guidance)
    dropout:         inside every ResBlock

    forward(x, t, y=None): x (B, C, H, W) float, t (B,) integer timesteps, y (B,) long labels
    or None (= all ∅). H and W must be divisible by 2^(len(channels) − 1).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: tuple[int, ...] = (32, 64, 128),
        num_res_blocks: int = 1,
        attention: bool = True,
        num_classes: int | None = None,
        dropout: float = 0.0,
        heads: int = 4,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
        self.config = dict(in_channels=in_channels, channels=list(channels), num_res_blocks=num_res_blocks,
                           attention=attention, num_classes=num_classes, dropout=dropout, heads=heads)
        self.in_channels = in_channels
        self.channels = channels
        self.num_classes = num_classes
        c0 = channels[0]
        emb_dim = 4 * c0
        self.time_dim = c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None

        self.conv_in = nn.Conv2d(in_channels, c0, 3, padding=1)
        last = len(channels) - 1

        self.down = nn.ModuleList()
        c_prev = c0
        for i, c in enumerate(channels):
            level = nn.Module()
            level.blocks = nn.ModuleList(
                [ResBlock(c_prev if j == 0 else c, c, emb_dim, dropout) for j in range(num_res_blocks)]
            )
            level.downsample = Downsample(c) if i < last else nn.Identity()
            self.down.append(level)
            c_prev = c

        cm = channels[-1]
        self.mid1 = ResBlock(cm, cm, emb_dim, dropout)
        self.mid_attn = SelfAttention(cm, heads) if attention else nn.Identity()
        self.mid2 = ResBlock(cm, cm, emb_dim, dropout)

        self.up = nn.ModuleList()
        c_prev = cm
        for i in reversed(range(len(channels))):
            c = channels[i]
            level = nn.Module()
            level.upsample = Upsample(c_prev, c) if i < last else nn.Identity()
            c_up = c if i < last else c_prev
            # the first block takes the upsampled features and the skip, concatenated
            level.blocks = nn.ModuleList(
                [ResBlock(c_up + c if j == 0 else c, c, emb_dim, dropout) for j in range(num_res_blocks)]
            )
            level.attn = SelfAttention(c, heads) if attention and i == last else nn.Identity()
            self.up.append(level)
            c_prev = c

        self.norm_out = nn.GroupNorm(_groups(c0), c0)
        self.conv_out = nn.Conv2d(c0, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # predict ε = 0 at first: loss starts at E‖ε‖² = 1
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """emb = MLP(timestep_embedding(t)) (+ class_emb(y), with y = None meaning ∅ for all)."""
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))
        if self.class_emb is None:
            if y is not None:
                raise ValueError("this UNet is unconditional (num_classes=None): call it without y")
            return emb
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=t.device)
        if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != (batch,):
            raise TypeError(f"y must be a LongTensor of shape ({batch},) with labels in 0..{self.num_classes} "
                            f"({self.num_classes} = null class), got {getattr(y, 'dtype', type(y).__name__)} "
                            f"{tuple(getattr(y, 'shape', ()))}")
        return emb + self.class_emb(y)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
            raise TypeError(f"x must be a float tensor of shape (B, C, H, W), got "
                            f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels but the UNet was built with in_channels={self.in_channels}")
        k = 2 ** (len(self.channels) - 1)
        if x.shape[2] % k or x.shape[3] % k:
            raise ValueError(f"H and W must be divisible by {k} (one halving per level), got {tuple(x.shape[2:])}")
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must be a tensor of shape (B,) = ({x.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self._check_inputs(x, t)
        emb = self.embed(t, y, x.shape[0])
        h = self.conv_in(x)
        skips = []
        for level in self.down:
            for block in level.blocks:
                h = block(h, emb)
            skips.append(h)  # kept at full detail for the up path
            h = level.downsample(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level in self.up:
            h = level.upsample(h)
            h = torch.cat([h, skips.pop()], dim=1)  # the skip connection
            for block in level.blocks:
                h = block(h, emb)
            h = level.attn(h)
        return self.conv_out(F.silu(self.norm_out(h)))
