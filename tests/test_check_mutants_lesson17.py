"""Lesson 17's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson15.py."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import video
from minidiff.course.checks import lesson17
from minidiff.data import moving

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson17.bounce_track, (moving.bounce_track,)),
    (lesson17.fold_frames, (video.fold_frames, video.unfold_frames)),
    (lesson17.temporal_attention, (video.temporal_attention,)),
    (lesson17.com_track, (video.com_track,)),
]


# ---------------------------------------------------------------- 1. bounce_track
def _free(start, velocity, frames, first=0):
    k = torch.arange(first, first + frames, dtype=start.dtype)
    return start[:, None, :] + k[None, :, None] * velocity[:, None, :]


def track_clamp(start, velocity, frames=4, low=8.0, high=23.0):
    return _free(start, velocity, frames).clamp(low, high)


def track_wrap(start, velocity, frames=4, low=8.0, high=23.0):
    return low + torch.remainder(_free(start, velocity, frames) - low, high - low)


def track_from_zero(start, velocity, frames=4, low=8.0, high=23.0):
    L = high - low
    return L - (L - torch.remainder(_free(start, velocity, frames), 2 * L)).abs()


def track_off_by_one(start, velocity, frames=4, low=8.0, high=23.0):
    L = high - low
    u = torch.remainder(_free(start, velocity, frames, first=1) - low, 2 * L)
    return low + L - (L - u).abs()


def track_default_walls(start, velocity, frames=4, low=8.0, high=23.0):
    return moving.bounce_track(start, velocity, frames)


def track_stepwise(start, velocity, frames=4, low=8.0, high=23.0):
    """A loop that reflects at most once per frame and forgets to flip the velocity."""
    if not high > low:
        raise ValueError("low < high")
    p, out = start.clone(), [start.clone()]
    for _ in range(frames - 1):
        p = p + velocity
        p = torch.where(p > high, 2 * high - p, p)
        p = torch.where(p < low, 2 * low - p, p)
        out.append(p.clone())
    return torch.stack(out, 1)


def track_float32(start, velocity, frames=4, low=8.0, high=23.0):
    return moving.bounce_track(start.float(), velocity.float(), frames, low, high)


def track_no_error(start, velocity, frames=4, low=8.0, high=23.0):
    if high <= low:
        return start[:, None, :].expand(-1, frames, -1).clone()
    return moving.bounce_track(start, velocity, frames, low, high)


MUTANTS += [
    ("17 track: clamps at the walls", lesson17.bounce_track, (track_clamp,), "clamping", True),
    ("17 track: wraps around", lesson17.bounce_track, (track_wrap,), "wraps around", True),
    ("17 track: measured from 0 not low", lesson17.bounce_track, (track_from_zero,), "measure u from the wall low", True),
    ("17 track: starts at k = 1", lesson17.bounce_track, (track_off_by_one,), "k = 0", True),
    ("17 track: default walls", lesson17.bounce_track, (track_default_walls,), "use the walls", True),
    ("17 track: velocity never flips", lesson17.bounce_track, (track_stepwise,), "comes back", True),
    ("17 track: float64 → float32", lesson17.bounce_track, (track_float32,), "float64 inputs came back float32", False),
    ("17 track: no ValueError", lesson17.bounce_track, (track_no_error,), "low < high", False),
]


# ---------------------------------------------------------------- 2. fold_frames / unfold_frames
def fold_no_permute(x):
    B, C, Fr, H, W = x.shape
    return x.reshape(B * Fr, C, H, W)


def unfold_no_permute(x, frames):
    BF, C, H, W = x.shape
    return x.reshape(BF // frames, C, frames, H, W)


def fold_frame_major(x):
    B, C, Fr, H, W = x.shape
    return x.permute(2, 0, 1, 3, 4).reshape(B * Fr, C, H, W)


def unfold_frame_major(x, frames):
    BF, C, H, W = x.shape
    return x.reshape(frames, BF // frames, C, H, W).permute(1, 2, 0, 3, 4)


def unfold_fixed_size(x, frames):
    if x.shape[0] % frames:
        raise ValueError("frames")
    return x.reshape(x.shape[0] // frames, frames, 3, 5, 6).permute(0, 2, 1, 3, 4)


def unfold_no_error(x, frames):
    B = x.shape[0] // frames
    return x[: B * frames].reshape(B, frames, *x.shape[1:]).permute(0, 2, 1, 3, 4)


MUTANTS += [
    ("17 fold: reshape without permute", lesson17.fold_frames, (fold_no_permute, unfold_no_permute), "without moving the frame axis", True),
    ("17 fold: frame-major", lesson17.fold_frames, (fold_frame_major, unfold_frame_major), "frame-major", True),
    ("17 fold: unfold with a hard-coded shape", lesson17.fold_frames, (video.fold_frames, unfold_fixed_size),
     "the channels and the size from their input", True),
    ("17 fold: unfold drops rows silently", lesson17.fold_frames, (video.fold_frames, unfold_no_error), "raise ValueError", False),
]


# ---------------------------------------------------------------- 3. temporal_attention
def _tokens(z, heads, interleaved=False):
    B, C, Fr, H, W = z.shape
    d = C // heads
    if interleaved:
        return z.reshape(B, d, heads, Fr, H, W).permute(0, 4, 5, 2, 3, 1).reshape(B * H * W, heads, Fr, d)
    return z.reshape(B, heads, d, Fr, H, W).permute(0, 4, 5, 1, 3, 2).reshape(B * H * W, heads, Fr, d)


def _back(out, shape, interleaved=False):
    B, C, Fr, H, W = shape
    heads, d = out.shape[1], out.shape[3]
    if interleaved:
        return out.reshape(B, H, W, heads, Fr, d).permute(0, 5, 3, 4, 1, 2).reshape(B, C, Fr, H, W)
    return out.reshape(B, H, W, heads, Fr, d).permute(0, 3, 5, 4, 1, 2).reshape(B, C, Fr, H, W)


def attn_manual(q, k, v, heads=1, scale=None, axis=-1, interleaved=False):
    Q, K, V = (_tokens(z, heads, interleaved) for z in (q, k, v))
    d = Q.shape[-1]
    s = Q @ K.transpose(-1, -2) / (d ** 0.5 if scale is None else scale)
    return _back(s.softmax(axis) @ V, q.shape, interleaved)


def attn_no_scale(q, k, v, heads=1):
    return attn_manual(q, k, v, heads, scale=1.0)


def attn_softmax_queries(q, k, v, heads=1):
    return attn_manual(q, k, v, heads, axis=-2)


def attn_sqrt_C(q, k, v, heads=1):
    return attn_manual(q, k, v, heads, scale=q.shape[1] ** 0.5)


def attn_interleaved(q, k, v, heads=1):
    return attn_manual(q, k, v, heads, interleaved=True)


def attn_space(q, k, v, heads=1):
    B, C, Fr, H, W = q.shape

    def tok(z):
        return z.permute(0, 2, 3, 4, 1).reshape(B * Fr, H * W, C)

    return F.scaled_dot_product_attention(tok(q), tok(k), tok(v)).reshape(B, Fr, H, W, C).permute(0, 4, 1, 2, 3)


def attn_heads_ignored(q, k, v, heads=1):
    return video.temporal_attention(q, k, v, 1)


def attn_float32(q, k, v, heads=1):
    return video.temporal_attention(q.float(), k.float(), v.float(), heads)


MUTANTS += [
    ("17 attention: no 1/sqrt(d)", lesson17.temporal_attention, (attn_no_scale,), "1/√d", True),
    ("17 attention: softmax over queries", lesson17.temporal_attention, (attn_softmax_queries,), "over the keys", True),
    ("17 attention: sqrt(C) with heads", lesson17.temporal_attention, (attn_sqrt_C,), "not √C", True),
    ("17 attention: interleaved heads", lesson17.temporal_attention, (attn_interleaved,), "(heads, d), not (d, heads)", True),
    ("17 attention: over space", lesson17.temporal_attention, (attn_space,), "separately at each (h, w)", True),
    ("17 attention: heads ignored", lesson17.temporal_attention, (attn_heads_ignored,), "heads=2", True),
    ("17 attention: float64 → float32", lesson17.temporal_attention, (attn_float32,), "float64 inputs came back float32", False),
]


# ---------------------------------------------------------------- 4. com_track
def _com(videos, clip=True, raw=False, flip=False, shift=0.0):
    ink = videos[:, 0] if raw else (videos[:, 0] + 1) / 2
    if clip and not raw:
        ink = ink.clamp(0, 1)
    H, W = ink.shape[-2:]
    rows = torch.arange(H, dtype=ink.dtype) + shift
    cols = torch.arange(W, dtype=ink.dtype) + shift
    mass = ink.sum((-2, -1))
    com = torch.stack([(ink.sum(-1) * rows).sum(-1) / mass, (ink.sum(-2) * cols).sum(-1) / mass], -1)
    return com.flip(-1) if flip else com


def com_no_clip(videos):
    return _com(videos, clip=False)


def com_raw(videos):
    return _com(videos, raw=True)


def com_xy(videos):
    return _com(videos, flip=True)


def com_one_based(videos):
    return _com(videos, shift=1.0)


def com_float32(videos):
    return _com(videos.float())


MUTANTS += [
    ("17 com: ink not clipped", lesson17.com_track, (com_no_clip,), "clip the ink", True),
    ("17 com: weights x not ink", lesson17.com_track, (com_raw,), "weigh by the ink", True),
    ("17 com: (x, y) order", lesson17.com_track, (com_xy,), "not (x, y)", True),
    ("17 com: coordinates from 1", lesson17.com_track, (com_one_based,), "start at 0", True),
    ("17 com: float64 → float32", lesson17.com_track, (com_float32,), "float64 inputs came back float32", False),
]


# ---------------------------------------------------------------- the tests
@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_reference_passes(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula)


def test_there_are_enough_mutants():
    assert len(MUTANTS) >= 15
