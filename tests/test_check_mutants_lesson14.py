"""Lesson 14's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson10.py."""

import math
import warnings

import pytest
import torch

from minidiff import crossattn, text
from minidiff.course.checks import lesson14

torch.set_num_threads(1)
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson14.encode, (text.encode,)),
    (lesson14.cross_attention, (crossattn.cross_attention,)),
    (lesson14.caption_dropout, (crossattn.caption_dropout,)),
]


# ---------------------------------------------------------------- 1. encode
def _encode(captions, index, L, split=text.split_words, start=True, warn=True, cut_words=False, check=True,
            pad=text.PAD):
    out = torch.full((len(captions), L), pad, dtype=torch.long)
    for r, c in enumerate(captions):
        words = split(c)
        if check and any(w not in index for w in words):
            raise ValueError(f"unknown word in {c!r}: {[w for w in words if w not in index]}")
        ids = ([text.START] if start else []) + [index.get(w, 0) for w in words]
        limit = L + 1 if cut_words else L
        if len(ids) > L and warn:
            warnings.warn("truncated")
        ids = ids[:limit]
        out[r, : min(len(ids), L)] = torch.tensor(ids[:L], dtype=torch.long)
        if cut_words and len(ids) > L:
            return out[:, :L - 1]
    return out


def encode_no_start(captions, index, L):
    return _encode(captions, index, L, start=False)


def encode_plain_split(captions, index, L):
    return _encode(captions, index, L, split=lambda c: c.lower().split())


def encode_no_warning(captions, index, L):
    return _encode(captions, index, L, warn=False)


def encode_global_vocab(captions, index, L):
    return text.encode(captions, {w: i for i, w in enumerate(text.VOCAB)}, L)


def encode_float(captions, index, L):
    return text.encode(captions, index, L).float()


def encode_no_unknown_check(captions, index, L):
    return _encode(captions, index, L, check=False)


def encode_hard_coded_length(captions, index, L):
    return text.encode(captions, index, 6)


MUTANTS += [
    ("14 encode: no <s>", lesson14.encode, (encode_no_start,), "start token <s>", True),
    ("14 encode: str.split", lesson14.encode, (encode_plain_split,), "comma a word of its own", True),
    ("14 encode: no warning", lesson14.encode, (encode_no_warning,), "warnings.warn", False),
    ("14 encode: text.VOCAB", lesson14.encode, (encode_global_vocab,), "`index` you are given", True),
    ("14 encode: float ids", lesson14.encode, (encode_float,), "dtype=torch.long", False),
    ("14 encode: unknown words pass", lesson14.encode, (encode_no_unknown_check,), "unknown", False),
    ("14 encode: L = 6 hard-coded", lesson14.encode, (encode_hard_coded_length,), "wrong shape", True),
]


# ---------------------------------------------------------------- 2. cross_attention
def _attn(block, x, context, mask, scale=None, use_mask=True, dim=-1, residual=True, norm=True, heads=None):
    B, C, H, W = x.shape
    h = heads or block.heads
    d = C // h
    q = block.to_q((block.norm(x) if norm else x).flatten(2).transpose(1, 2))
    k, v = block.to_k(context), block.to_v(context)
    q, k, v = (z.reshape(B, -1, h, d).transpose(1, 2) for z in (q, k, v))
    s = q @ k.transpose(-1, -2) / (scale(C, d) if scale else math.sqrt(d))
    if use_mask:
        s = s.masked_fill(mask[:, None, None, :], float("-inf"))
    a = torch.nan_to_num(s.softmax(dim))
    out = block.to_out((a @ v).transpose(1, 2).reshape(B, H * W, C)).transpose(1, 2).reshape(B, C, H, W)
    return (x + out if residual else out), a


def attn_sqrt_c(block, x, context, mask):
    return _attn(block, x, context, mask, scale=lambda C, d: math.sqrt(C))


def attn_no_scale(block, x, context, mask):
    return _attn(block, x, context, mask, scale=lambda C, d: 1.0)


def attn_no_mask(block, x, context, mask):
    return _attn(block, x, context, mask, use_mask=False)


def attn_softmax_pixels(block, x, context, mask):
    return _attn(block, x, context, mask, dim=-2)


def attn_no_residual(block, x, context, mask):
    return _attn(block, x, context, mask, residual=False)


def attn_no_norm(block, x, context, mask):
    return _attn(block, x, context, mask, norm=False)


def attn_one_head(block, x, context, mask):
    return _attn(block, x, context, mask, heads=1)


def attn_out_only(block, x, context, mask):
    return _attn(block, x, context, mask)[0]


def attn_square_reshape(block, x, context, mask):
    B, C, H, W = x.shape
    out, a = _attn(block, x, context, mask)
    side = int(math.isqrt(H * W))
    return out.reshape(B, C, side, (H * W) // side), a


MUTANTS += [
    ("14 attn: √C", lesson14.cross_attention, (attn_sqrt_c,), "not √C", True),
    ("14 attn: no scale", lesson14.cross_attention, (attn_no_scale,), "1/√d_head", True),
    ("14 attn: no mask", lesson14.cross_attention, (attn_no_mask,), "padding tokens get weight", True),
    ("14 attn: softmax over pixels", lesson14.cross_attention, (attn_softmax_pixels,), "over the tokens", True),
    ("14 attn: no residual", lesson14.cross_attention, (attn_no_residual,), "add the input back", True),
    ("14 attn: no norm", lesson14.cross_attention, (attn_no_norm,), "block.norm(x)", True),
    ("14 attn: one head", lesson14.cross_attention, (attn_one_head,), "heads", True),
    ("14 attn: weights not returned", lesson14.cross_attention, (attn_out_only,), "return two tensors", True),
    ("14 attn: square reshape", lesson14.cross_attention, (attn_square_reshape,), "wrong shape", True),
]


# ---------------------------------------------------------------- 3. caption_dropout
def dropout_all_pad(ids, p_uncond, generator=None):
    drop = torch.rand(ids.shape[0], generator=generator) < p_uncond
    return torch.where(drop[:, None], torch.zeros_like(ids), ids)


def dropout_keep_prob(ids, p_uncond, generator=None):
    drop = torch.rand(ids.shape[0], generator=generator) > p_uncond
    empty = torch.zeros_like(ids)
    empty[:, 0] = text.START
    return torch.where(drop[:, None], empty, ids)


def dropout_per_token(ids, p_uncond, generator=None):
    drop = torch.rand(ids.shape, generator=generator) < p_uncond
    drop[:, 0] = False
    return torch.where(drop, torch.zeros_like(ids), ids)


def dropout_in_place(ids, p_uncond, generator=None):
    drop = torch.rand(ids.shape[0], generator=generator) < p_uncond
    ids[drop] = 0
    ids[drop, 0] = text.START
    return ids


def dropout_other_draws(ids, p_uncond, generator=None):
    drop = torch.rand(ids.shape[0], 1, generator=generator)[:, 0].flip(0) < p_uncond
    empty = torch.zeros_like(ids)
    empty[:, 0] = text.START
    return torch.where(drop[:, None], empty, ids)


MUTANTS += [
    ("14 dropout: all <pad>", lesson14.caption_dropout, (dropout_all_pad,), "keeps its start token", True),
    ("14 dropout: keep probability", lesson14.caption_dropout, (dropout_keep_prob,), "u < p_uncond", True),
    ("14 dropout: per token", lesson14.caption_dropout, (dropout_per_token,), "one number per caption", True),
    ("14 dropout: in place", lesson14.caption_dropout, (dropout_in_place,), "torch.where", False),
    ("14 dropout: other draws", lesson14.caption_dropout, (dropout_other_draws,), "torch.rand(B, generator", True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    res = check(*objs, quiet=True)
    assert res.status == "ok" and res.passed == res.total and res.score == res.points, res.messages


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    res = check(*objs, quiet=True)
    text_ = "\n".join(res.messages)
    assert res.passed < res.total, f"{mid}: the check passed a wrong function"
    for n in (needle,) if isinstance(needle, str) else needle:
        assert n in text_, f"{mid}: hint should contain {n!r}; got:\n{text_}"
    if wrong_formula:
        assert res.score <= res.points / 3 + 1e-9, f"{mid}: a wrong formula scored {res.score} of {res.points}"
    else:
        assert res.score > res.points / 3, f"{mid}: a slip (not a wrong formula) scored only {res.score} of {res.points}"
