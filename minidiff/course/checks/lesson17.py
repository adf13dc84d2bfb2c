"""Checks for lesson 17, short videos.

    from minidiff.course.checks import lesson17 as check
    check.bounce_track(bounce_track)                  # p_0 + k·v, reflected at the walls low and high
    check.fold_frames(fold_frames, unfold_frames)     # (B, C, F, H, W) ↔ (B·F, C, H, W), frame f of video b at row b·F + f
    check.temporal_attention(temporal_attention)      # softmax over the F frames at every pixel, per head
    check.com_track(com_track)                        # the centre of mass (row, column) of every frame

Closed forms first (a track far from the walls is a straight line; one bounce by hand; one frame's attention
returns v; q = 0 averages v over time; a single bright pixel's centre of mass is its position), then minidiff's
references on random inputs (float32 and float64, two sizes, non-default arguments). The outputs of known
mistakes (clamping instead of reflecting, wrapping around, reshaping without moving the frame axis, softmax
over the wrong axis, no 1/√d, (x, y) instead of (row, column), no clipping of the ink, ...) are recomputed here
so that a hint can name the mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import video as ref
from ...data import moving as data_ref
from .core import Tester, diagnose, exercise

# ---------------------------------------------------------------- 1. the bouncing track


def _free(start, velocity, frames, first=0):
    k = torch.arange(first, first + frames, dtype=start.dtype)
    return start[:, None, :] + k[None, :, None] * velocity[:, None, :]


def _track_mistakes(start, velocity, frames, low, high) -> dict:
    free = _free(start, velocity, frames)
    L = high - low
    return {
        "the walls reflect the point back (it moves away again), they do not stop it: clamping sticks it to the wall":
            free.clamp(low, high),
        "that wraps around (leave at high, come back in at low): a bounce folds the way back onto the way out, "
        "low + L − |L − u| with u = (p − low) mod 2L": low + torch.remainder(free - low, L),
        "the period of a bounce is 2L = 2(high − low): out and back": low + L - (L - torch.remainder(free - low, L)).abs(),
        "measure u from the wall low, u = (p − low) mod 2L, and add low back": L - (L - torch.remainder(free, 2 * L)).abs(),
        "the first frame is the start itself (k = 0, 1, ..., F − 1)":
            data_ref.bounce_track(start + velocity, velocity, frames, low, high),
    }


@exercise("17", "bounce_track", points=3)
def bounce_track(t: Tester, fn):
    """p_k = reflect(p_0 + k v) into [low, high]: the triangle wave low + L − |L − ((p − low) mod 2L)|."""
    # 1. far from the walls: a straight line, k = 0 first
    start = torch.tensor([[15.0, 15.0]])
    velocity = torch.tensor([[0.5, -1.0]])
    out = t.call(fn, start, velocity, 4)
    t.tensor(out, shape=(1, 4, 2), dtype=torch.float32, what="the track of 1 point over 4 frames")
    diagnose(t, out, _free(start, velocity, 4), "no wall reached: p_k = p_0 + k·v for k = 0..3",
             {"the first frame is the start itself (k = 0, 1, ..., F − 1)": _free(start, velocity, 4, first=1)},
             hint="p_k = start + k · velocity with k = 0, 1, ..., frames − 1")
    # 2. one bounce on each axis, worked by hand with walls 8 and 23: rows 20, 22, (24 →) 22, (26 →) 20;
    #    columns 10, 8.5, (7 →) 9, (5.5 →) 10.5
    start = torch.tensor([[20.0, 10.0]])
    velocity = torch.tensor([[2.0, -1.5]])
    out = t.call(fn, start, velocity, 4, 8.0, 23.0)
    t.tensor(out, shape=(1, 4, 2), what="the track with one bounce on each axis")
    by_hand = torch.tensor([[[20.0, 10.0], [22.0, 8.5], [22.0, 9.0], [20.0, 10.5]]])
    diagnose(t, out, by_hand, "one bounce at each wall, by hand (rows 20 → 22 → 22 → 20; columns 10 → 8.5 → 9 → 10.5)",
             _track_mistakes(start, velocity, 4, 8.0, 23.0),
             hint="past a wall the point comes back by as much as it overshot: 24 with high = 23 becomes 22")
    # 3. many points, many bounces, non-default walls and frames, float64; the reference
    g = torch.Generator().manual_seed(0)
    for dtype, frames, low, high in ((torch.float64, 9, 2.0, 10.0), (torch.float32, 6, -3.0, 3.0)):
        start = low + (high - low) * torch.rand(50, 2, generator=g, dtype=dtype)
        velocity = (high - low) * 0.9 * (2 * torch.rand(50, 2, generator=g, dtype=dtype) - 1)
        out = t.call(fn, start, velocity, frames, low, high)
        t.tensor(out, shape=(50, frames, 2), dtype=dtype, what=f"{dtype} tracks (50, {frames}, 2)")
        expected = data_ref.bounce_track(start, velocity, frames, low, high)
        diagnose(t, out, expected, f"50 tracks of {frames} frames between walls {low} and {high} (many bounces)",
                 _track_mistakes(start, velocity, frames, low, high),
                 hint="use the walls low and high you are given; u = (p − low) mod 2L, p = low + L − |L − u|",
                 rtol=1e-5, atol=1e-5)
        t.check(bool(((out >= low - 1e-5) & (out <= high + 1e-5)).all()), "every position lies between the walls",
                hint="a reflected point never leaves [low, high]")
    t.raises(fn, (torch.zeros(3, 2), torch.zeros(3, 2), 4, 5.0, 5.0), ValueError,
             "walls with low = high raise a ValueError", hint="check low < high first and raise ValueError with a message")


# ---------------------------------------------------------------- 2. frames into the batch and back


@exercise("17", "fold_frames", points=2)
def fold_frames(t: Tester, fold, unfold):
    """fold: (B, C, F, H, W) → (B·F, C, H, W) with frame f of video b at row b·F + f; unfold: the inverse."""
    x = torch.randn(2, 3, 4, 5, 6)
    out = t.call(fold, x)
    t.tensor(out, shape=(8, 3, 5, 6), dtype=torch.float32, what="fold_frames of (2, 3, 4, 5, 6)")
    rows = [f"row {b * 4 + f} (video {b}, frame {f})" for b in range(2) for f in range(4)]
    expected = torch.stack([x[b, :, f] for b in range(2) for f in range(4)])
    diagnose(t, out, expected, "row b·F + f holds frame f of video b, all its channels",
             {"x.reshape(B·F, C, H, W) without moving the frame axis mixes channels and frames: "
              "permute (B, C, F, H, W) → (B, F, C, H, W) first": x.reshape(8, 3, 5, 6),
              "that is frame-major (row f·B + b): put the video axis first, (B, F, C, H, W), so that a video's "
              "frames are neighbours": x.permute(2, 0, 1, 3, 4).reshape(8, 3, 5, 6)},
             hint="x.permute(0, 2, 1, 3, 4).reshape(B * F, C, H, W)", rows=rows)
    back = t.call(unfold, out, 4)
    t.tensor(back, shape=(2, 3, 4, 5, 6), dtype=torch.float32, what="unfold_frames(fold_frames(x), 4)")
    t.close(back, x, "unfold_frames undoes fold_frames", hint="reshape to (B, F, C, H, W), then permute back to (B, C, F, H, W)")
    # a per-frame conv that changes the channels and the size, float64, another shape
    t.crash_hints["shape"] = ("fold and unfold read the channels and the size from their input; only F is given to "
                              "unfold (and B = rows / F)")
    conv = torch.nn.Conv2d(2, 5, 3, stride=2, padding=1).double()
    x = torch.randn(3, 2, 5, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        got = t.call(unfold, conv(t.call(fold, x)), 5)
        t.tensor(got, shape=(3, 5, 5, 4, 4), dtype=torch.float64, what="a stride-2 conv 2 → 5 channels, per frame")
        per_frame = torch.stack([conv(x[:, :, f]) for f in range(5)], dim=2)
    t.close(got, per_frame, "fold → Conv2d → unfold equals the conv run on each frame alone",
            hint="fold and unfold read the channels and the size from their input; only F is given to unfold (and B = rows / F)")
    t.raises(unfold, (torch.zeros(7, 1, 4, 4), 2), ValueError, "7 rows cannot be unfolded into videos of 2 frames: ValueError",
             hint="check x.shape[0] % frames == 0 and raise ValueError naming frames")


# ---------------------------------------------------------------- 3. temporal attention


def _attn_wrong(q, k, v, heads, mistake):
    B, C, Fr, H, W = q.shape
    d = C // heads
    if mistake == "interleaved":
        def tok(z):
            return z.reshape(B, d, heads, Fr, H, W).permute(0, 4, 5, 2, 3, 1).reshape(B * H * W, heads, Fr, d)
    else:
        def tok(z):
            return z.reshape(B, heads, d, Fr, H, W).permute(0, 4, 5, 1, 3, 2).reshape(B * H * W, heads, Fr, d)
    Q, K, V = tok(q), tok(k), tok(v)
    s = Q @ K.transpose(-1, -2)
    if mistake != "no_scale":
        s = s / (C ** 0.5 if mistake == "sqrt_C" else d ** 0.5)
    a = s.softmax(-2 if mistake == "softmax_queries" else -1)
    out = a @ V
    if mistake == "interleaved":
        return out.reshape(B, H, W, heads, Fr, d).permute(0, 5, 3, 4, 1, 2).reshape(B, C, Fr, H, W)
    return out.reshape(B, H, W, heads, Fr, d).permute(0, 3, 5, 4, 1, 2).reshape(B, C, Fr, H, W)


def _space_attention(q, k, v):
    B, C, Fr, H, W = q.shape

    def tok(z):
        return z.permute(0, 2, 3, 4, 1).reshape(B * Fr, H * W, C)

    return F.scaled_dot_product_attention(tok(q), tok(k), tok(v)).reshape(B, Fr, H, W, C).permute(0, 4, 1, 2, 3)


@exercise("17", "temporal_attention", points=3)
def temporal_attention(t: Tester, fn):
    """out[:, f] = Σ_g softmax_g(q_f · k_g / √d) v_g at every pixel, heads of d = C/heads consecutive channels."""
    # 1. one frame: the softmax over one item is 1, so out = v
    q, k, v = (torch.randn(2, 4, 1, 3, 3) for _ in range(3))
    out = t.call(fn, q, k, v)
    t.tensor(out, shape=(2, 4, 1, 3, 3), dtype=torch.float32, what="the attention of one-frame videos")
    t.close(out, v, "one frame: softmax over a single frame is 1, so out = v",
            hint="the softmax runs over the frames g (the keys), not over channels or pixels")
    # 2. q = 0: every frame gets the mean of v over time, pixel by pixel
    k, v = torch.randn(2, 4, 5, 3, 3), torch.randn(2, 4, 5, 3, 3)
    out = t.call(fn, torch.zeros_like(k), k, v)
    t.tensor(out, shape=(2, 4, 5, 3, 3), what="the attention with q = 0")
    mean_t = v.mean(2, keepdim=True).expand_as(v)
    diagnose(t, out, mean_t, "q = 0: uniform weights, every frame gets v averaged over the frames at its own pixel",
             {"that averages over the pixels of each frame: attention runs along time, separately at each (h, w)":
              v.mean((3, 4), keepdim=True).expand_as(v)},
             hint="scores q·k = 0 give softmax weights 1/F over the F frames of the same pixel")
    # 3. random q, k, v against the reference, two head counts, float64
    for shape, heads, dtype in (((2, 8, 5, 4, 3), 1, torch.float32), ((3, 8, 6, 2, 2), 2, torch.float64)):
        q, k, v = (2 * torch.randn(shape, dtype=dtype) for _ in range(3))
        out = t.call(fn, q, k, v, heads)
        t.tensor(out, shape=shape, dtype=dtype, what=f"{dtype} attention {shape}, heads={heads}")
        mistakes = {"scale the scores by 1/√d, d = channels per head (Vaswani et al. 2017)": _attn_wrong(q, k, v, heads, "no_scale"),
                    "the softmax runs over the keys (the last axis of the scores, one distribution per query frame)":
                    _attn_wrong(q, k, v, heads, "softmax_queries")}
        if heads == 1:
            mistakes["that attends over the pixels of each frame (spatial attention): here the sequence is the "
                     "frames at one pixel"] = _space_attention(q, k, v)
        else:
            mistakes.update({"divide by √d with d = C/heads, the channels of one head, not √C": _attn_wrong(q, k, v, heads, "sqrt_C"),
                             "head h takes the consecutive channels h·d … (h+1)·d − 1: reshape C as (heads, d), not (d, heads)":
                             _attn_wrong(q, k, v, heads, "interleaved")})
        diagnose(t, out, ref.temporal_attention(q, k, v, heads), f"random q, k, v {shape} with heads={heads}", mistakes,
                 hint="tokens (B·H·W, heads, F, d), then softmax(QKᵀ/√d) V and back to (B, C, F, H, W)",
                 rtol=1e-4, atol=1e-5)
        # 4. permuting the frames permutes the output the same way
        perm = torch.randperm(shape[2])
        out_p = t.call(fn, q[:, :, perm], k[:, :, perm], v[:, :, perm], heads)
        t.close(out_p, out[:, :, perm], "permuting the frames of q, k, v permutes the output the same way",
                hint="attention has no notion of order: only the frame embedding tells the network which frame is which",
                rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 4. the centre-of-mass track


def _com_wrong(videos, mistake):
    x = videos[:, 0].double()
    ink = x if mistake == "raw" else ((x + 1) / 2 if mistake == "no_clip" else ((x + 1) / 2).clamp(0, 1))
    H, W = ink.shape[-2:]
    first = 1 if mistake == "one_based" else 0
    rows = torch.arange(first, H + first, dtype=ink.dtype)
    cols = torch.arange(first, W + first, dtype=ink.dtype)
    mass = ink.sum((-2, -1))
    com = torch.stack([(ink.sum(-1) * rows).sum(-1) / mass, (ink.sum(-2) * cols).sum(-1) / mass], -1)
    return com.flip(-1) if mistake == "xy" else com


@exercise("17", "com_track", points=2)
def com_track(t: Tester, fn):
    """(row, column) centre of mass of every frame, ink = (x + 1)/2 clipped to [0, 1], pixel coordinates from 0."""
    # 1. one bright pixel per frame: its centre of mass is its position
    videos = -torch.ones(2, 1, 3, 8, 10)
    spots = [(1, 2), (5, 7), (0, 9), (7, 0), (3, 3), (6, 8)]
    for i, (r, c) in enumerate(spots):
        videos[i // 3, 0, i % 3, r, c] = 1.0
    out = t.call(fn, videos)
    t.tensor(out, shape=(2, 3, 2), dtype=torch.float32, what="the track of 2 videos of 3 frames")
    expected = torch.tensor(spots, dtype=torch.float32).reshape(2, 3, 2)
    diagnose(t, out, expected, "one white pixel in each black frame: the track is its (row, column)",
             {"(row, column), not (x, y): the first coordinate runs down the rows": expected.flip(-1),
              "pixel coordinates start at 0 (row 0 is the top row)": expected + 1,
              "weigh by the ink (x + 1)/2, not by x in [−1, 1] (the black background is −1)": _com_wrong(videos, "raw")},
             hint="weights = ink, coordinates = torch.arange(H) and torch.arange(W), divide by the total ink")
    # 2. noisy generated-looking frames: values outside [−1, 1], two sizes, float64
    for shape, dtype in (((3, 1, 4, 12, 12), torch.float32), ((2, 1, 5, 9, 16), torch.float64)):
        videos = (torch.rand(shape, dtype=dtype) ** 4 * 2 - 1.05) + 0.1 * torch.randn(shape, dtype=dtype)
        out = t.call(fn, videos)
        t.tensor(out, shape=(shape[0], shape[2], 2), dtype=dtype, what=f"the track of {dtype} videos {shape}")
        mistakes = {"clip the ink (x + 1)/2 to [0, 1]: pixels below −1 would count as negative mass":
                    _com_wrong(videos, "no_clip"),
                    "weigh by the ink (x + 1)/2, not by x in [−1, 1] (the black background is −1)": _com_wrong(videos, "raw"),
                    "(row, column), not (x, y): the first coordinate runs down the rows": _com_wrong(videos, "xy"),
                    "pixel coordinates start at 0 (row 0 is the top row)": _com_wrong(videos, "one_based")}
        diagnose(t, out, ref.com_track(videos), f"noisy videos {shape} (values slightly outside [−1, 1])", mistakes,
                 hint="ink = ((x + 1)/2).clamp(0, 1); row = Σ ink·row / Σ ink, column likewise", rtol=1e-4, atol=1e-5)
    t.raises(fn, (torch.zeros(2, 3, 8, 8),), ValueError, "a 4-D tensor (no frame axis) raises a ValueError",
             hint="check videos.dim() == 5, (B, 1, F, H, W), and raise ValueError naming the shape")
