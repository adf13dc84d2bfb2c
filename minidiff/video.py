"""Video diffusion with a factorised space-time U-Net (lesson 17; Ho et al. 2022, "Video Diffusion Models").

A video is a tensor (B, C, F, H, W): F frames of C × H × W pixels. Diffusion does not care:
`add_noise`, `v_loss`, `cfg_loss`, DDIM and guidance all work on any shape. What changes is the
network. A full 3D attention over all F·H·W positions is expensive; Ho et al. (2022, section "Video diffusion models")
factorise space and time instead:

    space   every 2D layer of the image U-Net (ResBlock, Downsample, Upsample, spatial
            attention) runs on each frame alone: the frames are folded into the batch,
            (B, C, F, H, W) → (B·F, C, H, W)  (`fold_frames`, `unfold_frames`)
    time    after each block, attention along the frame axis at every pixel position:
            softmax(q_f · k_g / √d) over the F frames g, separately for each (h, w)
            (`temporal_attention`, `TemporalAttention`)

Attention by itself does not know the order of the frames: permuting them permutes its
output the same way (the lesson checks this). `TemporalAttention` adds a sinusoidal embedding
of the frame index f = 0..F−1 to its input, so the network can tell "first" from "last".

Measuring samples (`com_track`, `bounce_fit`, `per_frame_labels`): the centre-of-mass track
of each video and its residual from the best straight line with reflections; a classifier's
label for every frame, for per-frame accuracy and identity consistency.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data.moving import CANVAS, FRAMES, HIGH, LOW, PATCH, bounce_track, center_of_mass
from .embedding import timestep_embedding
from .unet import Downsample, ResBlock, SelfAttention, Upsample
from .utils import check_positive_int


# Copied from minidiff.unet._groups
def _groups(channels: int, max_groups: int = 8) -> int:
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


def check_video(name: str, x, frames: int | None = None, size: int | None = None) -> torch.Tensor:
    """x itself if it is a float video (B, C, F, H, W) with `frames` frames of size × size pixels."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != 5:
        raise ValueError(f"{name} must be a video (B, C, F, H, W), got shape {tuple(x.shape)}")
    if frames is not None and x.shape[2] != frames:
        raise ValueError(f"{name} has {x.shape[2]} frames (dim 2 of (B, C, F, H, W)), expected {frames}")
    if size is not None and x.shape[3:] != (size, size):
        raise ValueError(f"{name} has frames of {tuple(x.shape[3:])} pixels, expected ({size}, {size})")
    return x


# -- space: 2D layers on every frame ---------------------------------------------------------


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) → (B·F, C, H, W), frame f of video b at row b·F + f: every 2D layer then
    treats each frame as one image."""
    check_video("x", x)
    B, C, Fr, H, W = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(B * Fr, C, H, W)


def unfold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B·F, C, H, W) → (B, C, F, H, W): the inverse of `fold_frames`."""
    check_positive_int("frames", frames)
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] % frames:
        raise ValueError(f"x must be (B·F, C, H, W) with B·F divisible by frames={frames}, got {tuple(getattr(x, 'shape', ()))}")
    BF, C, H, W = x.shape
    return x.reshape(BF // frames, frames, C, H, W).permute(0, 2, 1, 3, 4)


# -- time: attention along the frames at each pixel ---------------------------------------------


def temporal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int = 1) -> torch.Tensor:
    """Attention along time at every pixel: q, k, v (B, C, F, H, W) → (B, C, F, H, W).

    For each video b, pixel (h, w) and head, with d = C / heads channels per head:

        out[:, f] = Σ_g softmax_g(q[:, f] · k[:, g] / √d) v[:, g]

    Permuting the frames of q, k and v permutes the output the same way.
    """
    for name, z in (("q", q), ("k", k), ("v", v)):
        check_video(name, z)
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v must have the same shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, C, Fr, H, W = q.shape
    if C % heads:
        raise ValueError(f"channels C={C} must be divisible by heads={heads}")
    d = C // heads

    def tokens(z):  # (B, C, F, H, W) → (B·H·W, heads, F, d): one sequence of F tokens per pixel and head
        return z.reshape(B, heads, d, Fr, H, W).permute(0, 4, 5, 1, 3, 2).reshape(B * H * W, heads, Fr, d)

    out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))  # softmax(QKᵀ/√d) V over F
    return out.reshape(B, H, W, heads, Fr, d).permute(0, 3, 5, 4, 1, 2).reshape(B, C, Fr, H, W)


def frame_embedding(frames: int, channels: int, device=None) -> torch.Tensor:
    """The sinusoidal embedding of the frame index f = 0..F−1, as (1, C, F, 1, 1) (added to every pixel)."""
    f = torch.arange(frames, device=device)
    return timestep_embedding(f, channels).T[None, :, :, None, None]


class TemporalAttention(nn.Module):
    """out = x + Proj(temporal_attention(Q, K, V)),  Q, K, V = Linear(GroupNorm(x) + frame embedding).

    Works on folded tensors (B·F, C, H, W), as the 2D layers around it do. The output projection
    starts at zero, so a fresh block is the identity: the network starts as a per-frame image model.
    """

    def __init__(self, channels: int, frames: int, heads: int = 4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels={channels} must be divisible by heads={heads}")
        self.frames, self.heads = frames, heads
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)  # a Linear on the channels at every (f, h, w)
        self.proj = nn.Conv3d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.register_buffer("pos", frame_embedding(frames, channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        video = unfold_frames(x, self.frames)  # (B, C, F, H, W)
        h = self.norm(video) + self.pos.to(video.dtype)
        q, k, v = self.qkv(h).chunk(3, dim=1)
        return x + fold_frames(self.proj(temporal_attention(q, k, v, self.heads)))


# -- the factorised space-time U-Net ------------------------------------------------------------


class VideoUNet(nn.Module):
    """ε_θ(x_t, t, y) (or v_θ) for videos (B, C, F, H, W): lesson 05's U-Net run on every frame,
    with a `TemporalAttention` after every ResBlock (Ho et al. 2022, section "Video diffusion models").

    channels:   feature channels per resolution level, e.g. (32, 64, 64) for 32, 16, 8 pixels
    frames:     F, the number of frames (fixed: the frame embedding and the checks use it)
    size:       H = W of each frame
    num_classes: None, or labels y ∈ {0..K−1} with K the null class ∅ (classifier-free guidance)
    temporal:   False builds the same network without temporal layers: a per-frame image model,
                whose frames of one video share only the label and the timestep
    patch:      fold patch × patch pixels into channels first (pixel-unshuffle; 2: a 32×32 frame
                becomes 16×16 × 4 channels, four times cheaper), and unfold them at the end
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 64), frames: int = FRAMES,
                 size: int = CANVAS, num_classes: int | None = 10, heads: int = 4, temporal: bool = True,
                 patch: int = 1):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 1 or any(c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {channels}")
        check_positive_int("frames", frames)
        check_positive_int("size", size)
        check_positive_int("patch", patch)
        if size % (patch * 2 ** (len(channels) - 1)):
            raise ValueError(f"size={size} must be divisible by patch · 2^(levels − 1) = {patch * 2 ** (len(channels) - 1)}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
        self.config = dict(in_channels=in_channels, channels=list(channels), frames=frames, size=size,
                           num_classes=num_classes, heads=heads, temporal=temporal, patch=patch)
        self.in_channels, self.channels, self.frames, self.size, self.patch = in_channels, channels, frames, size, patch
        self.num_classes = num_classes
        c0 = channels[0]
        emb_dim = 4 * c0
        self.time_dim = c0
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes is not None else None

        def time_attn(c):
            return TemporalAttention(c, frames, heads) if temporal else nn.Identity()

        self.conv_in = nn.Conv2d(in_channels * patch**2, c0, 3, padding=1)
        last = len(channels) - 1
        self.down = nn.ModuleList()
        c_prev = c0
        for i, c in enumerate(channels):
            level = nn.Module()
            level.block, level.time = ResBlock(c_prev, c, emb_dim), time_attn(c)
            level.downsample = Downsample(c) if i < last else nn.Identity()
            self.down.append(level)
            c_prev = c
        cm = channels[-1]
        self.mid1, self.mid_space, self.mid_time = ResBlock(cm, cm, emb_dim), SelfAttention(cm, heads), time_attn(cm)
        self.mid2 = ResBlock(cm, cm, emb_dim)
        self.up = nn.ModuleList()
        for i in reversed(range(len(channels))):
            c = channels[i]
            level = nn.Module()
            level.upsample = Upsample(c_prev, c) if i < last else nn.Identity()
            c_up = c if i < last else c_prev
            level.block, level.time = ResBlock(c_up + c, c, emb_dim), time_attn(c)
            self.up.append(level)
            c_prev = c
        self.norm_out = nn.GroupNorm(_groups(c0), c0)
        self.conv_out = nn.Conv2d(c0, in_channels * patch**2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    # Copied from minidiff.unet.UNet.embed
    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """emb = MLP(timestep_embedding(t)) (+ class_emb(y), with y = None meaning ∅ for all)."""
        emb = self.time_mlp(timestep_embedding(t, self.time_dim))
        if self.class_emb is None:
            if y is not None:
                raise ValueError("this VideoUNet is unconditional (num_classes=None): call it without y")
            return emb
        if y is None:
            y = torch.full((batch,), self.num_classes, dtype=torch.long, device=t.device)
        if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != (batch,):
            raise TypeError(f"y must be a LongTensor of shape ({batch},) with labels in 0..{self.num_classes} "
                            f"({self.num_classes} = null class), got {getattr(y, 'dtype', type(y).__name__)} "
                            f"{tuple(getattr(y, 'shape', ()))}")
        return emb + self.class_emb(y)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        check_video("x", x, self.frames, self.size)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels but the VideoUNet was built with in_channels={self.in_channels}")
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must be a tensor of shape (B,) = ({x.shape[0]},), got {tuple(getattr(t, 'shape', ()))}")
        # 1. one embedding per video, repeated for each of its frames (row b·F + f of the folded batch)
        emb = self.embed(t, y, x.shape[0]).repeat_interleave(self.frames, 0)
        # 2. the image U-Net on the folded frames, with attention along time after every block
        h = self.conv_in(F.pixel_unshuffle(fold_frames(x), self.patch))
        skips = []
        for level in self.down:
            h = level.time(level.block(h, emb))
            skips.append(h)
            h = level.downsample(h)
        h = self.mid2(self.mid_time(self.mid_space(self.mid1(h, emb))), emb)
        for level in self.up:
            h = level.upsample(h)
            h = level.time(level.block(torch.cat([h, skips.pop()], dim=1), emb))
        # 3. back to videos
        return unfold_frames(F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.patch), self.frames)


# -- measuring videos -------------------------------------------------------------------------


def com_track(videos: torch.Tensor) -> torch.Tensor:
    """The centre of mass (row, column) of every frame, (B, F, 2), of videos (B, 1, F, H, W) in [−1, 1]:
    the ink is (x + 1)/2 clipped to [0, 1] (a slightly grey background then pulls nothing)."""
    check_video("videos", videos)
    if videos.shape[1] != 1:
        raise ValueError(f"videos must have one channel, got {videos.shape[1]}")
    ink = ((videos[:, 0].double() + 1) / 2).clamp(0, 1)
    return center_of_mass(ink).to(videos.dtype)


def bounce_fit(tracks: torch.Tensor, low: float = LOW, high: float = HIGH,
               steps: tuple[float, float] = (0.1, 0.005)) -> tuple[torch.Tensor, torch.Tensor]:
    """The best straight line with reflections (`bounce_track`) through each track (B, F, 2):
    least squares over the start p_0 ∈ [low, high] and velocity |v| ≤ (high − low)/2 of each axis, by
    a grid search at spacing steps[0] refined by a second grid of spacing steps[1] around the best.

    Returns (the fitted tracks (B, F, 2), the RMS residual (B,) in pixels over the frames and axes).
    A real video of `minidiff.data.moving` has residual ≈ 0 (up to the grid spacing).
    """
    if not isinstance(tracks, torch.Tensor) or not tracks.is_floating_point() or tracks.dim() != 3 or tracks.shape[2] != 2:
        raise ValueError(f"tracks must be a float tensor (B, F, 2), got {tuple(getattr(tracks, 'shape', ()))}")
    B, Fr, _ = tracks.shape
    obs = tracks.double().permute(0, 2, 1).reshape(B * 2, Fr)  # one row per (video, axis)

    def search(rows, p0, v0, half, step):
        """The best (start, velocity) of each observed row on a grid of ± half around (p0, v0)."""
        n = int(round(2 * half / step)) + 1
        grid = -half + step * torch.arange(n, dtype=torch.float64)
        P = (p0[:, None, None] + grid[None, :, None]).expand(-1, n, n).clamp(low, high)  # (R, n, n)
        V = (v0[:, None, None] + grid[None, None, :]).expand(-1, n, n)
        zeros = torch.zeros(P.numel(), dtype=torch.float64)
        fit = bounce_track(torch.stack([P.reshape(-1), zeros], 1), torch.stack([V.reshape(-1), zeros], 1),
                           Fr, low, high)[:, :, 0].reshape(rows.shape[0], n * n, Fr)
        best = (fit - rows[:, None, :]).pow(2).mean(-1).argmin(1, keepdim=True)  # least squares
        return P.reshape(-1, n * n).gather(1, best)[:, 0], V.reshape(-1, n * n).gather(1, best)[:, 0]

    p, v = [], []
    for rows in obs.split(16):  # 16 rows at a time keep the grids small
        mid = torch.full((rows.shape[0],), (low + high) / 2, dtype=torch.float64)
        p1, v1 = search(rows, mid, torch.zeros_like(mid), (high - low) / 2, steps[0])  # 1. coarse
        p2, v2 = search(rows, p1, v1, steps[0], steps[1])  # 2. fine, around the coarse optimum
        p.append(p2)
        v.append(v2)
    p, v = torch.cat(p).reshape(B, 2), torch.cat(v).reshape(B, 2)
    fit = bounce_track(p, v, Fr, low, high)
    rms = (fit - tracks.double()).pow(2).mean((1, 2)).sqrt()
    return fit.to(tracks.dtype), rms.to(tracks.dtype)


def frame_crops(videos: torch.Tensor, size: int = PATCH) -> torch.Tensor:
    """Every frame's digit as an MNIST-like image (B·F, 1, 28, 28) in [−1, 1]: the size × size crop
    centred on the frame's centre of mass (rounded to whole pixels), enlarged to 28 × 28.
    The inverse of `data.moving`'s shrink: an MNIST digit's 28 × 28 box became PATCH × PATCH."""
    check_video("videos", videos)
    B, _, Fr, H, W = videos.shape
    com = com_track(videos).reshape(B * Fr, 2)
    frames = fold_frames(videos)  # (B·F, 1, H, W)
    half = size // 2
    padded = F.pad(frames, (half, half, half, half), value=-1.0)
    top = (com[:, 0] - (size - 1) / 2).round().long().clamp(-half, H - size + half) + half
    left = (com[:, 1] - (size - 1) / 2).round().long().clamp(-half, W - size + half) + half
    rows = top[:, None] + torch.arange(size)  # (B·F, size)
    cols = left[:, None] + torch.arange(size)
    n = torch.arange(B * Fr)[:, None, None]
    crops = padded[:, 0][n, rows[:, :, None], cols[:, None, :]][:, None]
    return F.interpolate(crops, size=(28, 28), mode="bilinear", align_corners=False).clamp(-1, 1)


@torch.no_grad()
def per_frame_labels(classifier: nn.Module, videos: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The classifier's label (B, F) for every frame (its `frame_crops`)."""
    check_video("videos", videos)
    classifier.eval()
    device = next(classifier.parameters()).device
    crops = frame_crops(videos)
    labels = torch.cat([classifier(crops[i:i + batch_size].to(device)).argmax(1).cpu()
                        for i in range(0, crops.shape[0], batch_size)])
    return labels.reshape(videos.shape[0], videos.shape[2])


def video_scores(frame_labels: torch.Tensor, labels: torch.Tensor) -> dict:
    """Per-frame accuracy (share of frames showing the requested class) and identity consistency
    (share of videos whose frames all get the same label, right or wrong)."""
    if frame_labels.dim() != 2 or labels.shape != (frame_labels.shape[0],):
        raise ValueError(f"need frame_labels (B, F) and labels (B,), got {tuple(frame_labels.shape)} and {tuple(labels.shape)}")
    acc = (frame_labels == labels[:, None]).double().mean().item()
    consistent = (frame_labels == frame_labels[:, :1]).all(1).double().mean().item()
    return {"per_frame_accuracy": acc, "identity_consistency": consistent}


def speed(tracks: torch.Tensor) -> torch.Tensor:
    """Mean distance moved per frame (B,), in pixels."""
    return (tracks[:, 1:] - tracks[:, :-1]).norm(dim=-1).mean(1)

