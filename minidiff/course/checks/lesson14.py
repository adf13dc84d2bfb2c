"""Checks for lesson 14, text to digit.

    from minidiff.course.checks import lesson14 as check
    check.encode(encode)                    # words → [<s>, ids..., <pad>...], truncation with a warning
    check.cross_attention(cross_attention)  # Q from pixels, K, V from tokens, padding mask, residual
    check.caption_dropout(caption_dropout)  # a caption becomes ∅ = [<s>, <pad>, ...] with probability p

Closed forms first (one real token: every pixel puts all its weight on it; p = 0 and p = 1; a caption
spelled out id by id), then minidiff's references on random inputs (two shapes, two head counts, float32
and float64, two context lengths, a shuffled vocabulary). The outputs of known mistakes (no <s>, padding
not masked, √C for √d, softmax over the pixels, no residual, keep-probability for drop-probability, ...)
are recomputed here so that a hint can name the mistake.
"""

from __future__ import annotations

import math
import warnings

import torch

from ... import crossattn as ref
from ... import text
from .core import Tester, diagnose, exercise

# ---------------------------------------------------------------- 1. encode


def _index(shuffle: bool = False) -> dict[str, int]:
    words = list(text.VOCAB[2:])
    if shuffle:
        words = [words[i] for i in torch.randperm(len(words), generator=torch.Generator().manual_seed(5)).tolist()]
    return {w: i for i, w in enumerate(list(text.SPECIAL) + words)}


def _encode_no_start(captions, index, L):
    out = torch.zeros(len(captions), L, dtype=torch.long)
    for r, c in enumerate(captions):
        ids = [index[w] for w in text.split_words(c)][:L]
        out[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


@exercise("14", "encode", points=3)
def encode(t: Tester, fn):
    """[<s>, word ids..., <pad>, ...] per caption; commas are words; unknown words raise; long captions are cut."""
    index = _index()
    caps = ["a thick seven", "7"]
    out = t.call(fn, caps, index, 6)
    t.tensor(out, shape=(2, 6), dtype=torch.long, what="encode(['a thick seven', '7'], index, 6)",
             dtype_hint="token ids are integers: build the tensor with dtype=torch.long")
    want = torch.tensor([[1, index["a"], index["thick"], index["seven"], 0, 0], [1, index["7"], 0, 0, 0, 0]])
    diagnose(t, out, want, "each caption is [<s>, a, thick, seven, <pad>, <pad>] (ids from index)",
             {"every caption starts with the start token <s> (id 1) before its first word": _encode_no_start(caps, index, 6)},
             hint="ids = [START] + [index[w] for w in words], then PAD (0) up to context_length")
    # commas and capitals
    try:
        got = fn(["The digit 7", "a thick, slanted seven"], index, 8)
    except ValueError as e:
        t.check(False, "commas and capital letters are handled", f"raised ValueError: {e}",
                hint="lower-case the caption and make each comma a word of its own: text.split_words(caption) "
                     "(re.findall(r'[^\\s,]+|,', caption.lower()))", decisive=True)
        return
    out = got
    t.tensor(out, shape=(2, 8), what="encode(['The digit 7', 'a thick, slanted seven'], index, 8)")
    t.close(out, text.encode(["The digit 7", "a thick, slanted seven"], index, 8),
            "capitals are lower-cased and the comma is a word (',' has its own id)",
            hint="split with text.split_words(caption): lower case, commas as words")
    # another vocabulary order and context length: nothing hard-coded
    shuffled = _index(shuffle=True)
    caps = ["an eight", "the thin, upright digit 4", "large 0"]
    out = t.call(fn, caps, shuffled, 9)
    t.tensor(out, shape=(3, 9), what="encode(three captions, a shuffled index, 9)")
    diagnose(t, out, text.encode(caps, shuffled, 9), "a shuffled vocabulary and context length 9: matches minidiff.text.encode",
             {"look the words up in the `index` you are given, not in text.VOCAB": text.encode(caps, _index(), 9)},
             hint="use index[word] for every word and pad to context_length")
    # truncation with a warning
    long_caption = "a thick, slanted, large seven and a thin 1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = t.call(fn, [long_caption], index, 5)
    t.tensor(out, shape=(1, 5), what=f"encode([{long_caption!r}], index, 5)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = text.encode([long_caption], index, 5)
    t.close(out, want,
            "a long caption keeps its first context_length ids, <s> included",
            hint="cut ids = [START] + words to ids[:context_length]: <s> counts towards the context")
    t.check(any(issubclass(w.category, UserWarning) for w in caught), "truncating a caption warns",
            "no warning was raised", hint="warnings.warn(f'caption ... truncated to {context_length}') before cutting")
    t.raises(fn, (["a purple seven"], index, 8), ValueError, "an unknown word raises a ValueError",
             hint="check every word: if w not in index: raise ValueError(f'unknown word {w!r} ...')")
    try:
        fn(["a purple seven"], index, 8)
    except ValueError as e:
        t.check("purple" in str(e), "the error names the unknown word", f"message: {e}",
                hint="put the unknown word in the message, so the learner knows what to change")
    except Exception:  # learner code may raise anything; the test above already reported it
        pass


# ---------------------------------------------------------------- 2. cross-attention


def _block(C, D, heads, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    block = ref.CrossAttention(C, D, heads)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if p.dim() == 1 and p is block.norm.weight else 0.0))
    return block.to(dtype)


def _wrong_attention(block, x, context, mask, mistake):
    B, C, H, W = x.shape
    h, d = block.heads, C // block.heads
    xn = x if mistake == "no_norm" else block.norm(x)
    q = block.to_q(xn.flatten(2).transpose(1, 2))
    k, v = block.to_k(context), block.to_v(context)
    if mistake == "one_head":
        h, d = 1, C
    q, k, v = (z.reshape(B, -1, h, d).transpose(1, 2) for z in (q, k, v))
    scale = {"sqrt_c": math.sqrt(C), "no_scale": 1.0}.get(mistake, math.sqrt(d))
    scores = q @ k.transpose(-1, -2) / scale
    if mistake != "no_mask":
        scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
    a = scores.softmax(-2 if mistake == "softmax_pixels" else -1)
    a = torch.nan_to_num(a)
    out = (a @ v).transpose(1, 2).reshape(B, H * W, C)
    out = block.to_out(out).transpose(1, 2).reshape(B, C, H, W)
    return out if mistake == "no_residual" else x + out


def _mistakes(block, x, context, mask):
    with torch.no_grad():
        return {
            "the scores are divided by √d_head (d = C / heads), not √C": _wrong_attention(block, x, context, mask, "sqrt_c"),
            "scale the scores by 1/√d_head before the softmax": _wrong_attention(block, x, context, mask, "no_scale"),
            "padding tokens get weight: set their scores to −inf (masked_fill with the mask) before the softmax":
                _wrong_attention(block, x, context, mask, "no_mask"),
            "the softmax runs over the tokens (last axis): each pixel's weights over the L tokens sum to 1":
                _wrong_attention(block, x, context, mask, "softmax_pixels"),
            "add the input back: out = x + to_out(...) (the block is residual)":
                _wrong_attention(block, x, context, mask, "no_residual"),
            "the queries come from the normalised features block.norm(x)": _wrong_attention(block, x, context, mask, "no_norm"),
            "split the channels into block.heads heads of d = C / heads before the dot products":
                _wrong_attention(block, x, context, mask, "one_head"),
        }


def _pair(out, what, t, shape, dtype):
    if not isinstance(out, tuple) or len(out) != 2:
        t.check(False, f"{what} returns (out, attention weights)", f"got {type(out).__name__}",
                hint="return two tensors: the block's output (B, C, H, W) and the weights (B, heads, H·W, L)", decisive=True)
        return None, None
    o, a = out
    t.tensor(o, shape=shape, dtype=dtype, what=f"{what}: out")
    return o, a


@exercise("14", "cross_attention", points=4)
def cross_attention(t: Tester, fn):
    """out = x + W_O softmax(Q Kᵀ/√d, masked) V, Q from GroupNorm(x), K and V from the context; and the weights."""
    t.crash_hints["shape"] = ("q is (B, H·W, C) from x.flatten(2).transpose(1, 2); k and v are (B, L, C); split the "
                              "heads with .reshape(B, -1, heads, d).transpose(1, 2)")
    C, D, heads = 8, 6, 2
    block = _block(C, D, heads)
    # one real token: every pixel attends only to it, whatever the scores
    x = torch.randn(2, C, 3, 3)
    context = torch.randn(2, 4, D)
    mask = torch.tensor([[False, True, True, True], [False, True, True, True]])
    with torch.no_grad():
        o, a = _pair(t.call(fn, block, x, context, mask), "cross_attention(block, x (2, 8, 3, 3), one real token)",
                     t, (2, C, 3, 3), torch.float32)
    if a is None:
        return
    t.tensor(a, shape=(2, heads, 9, 4), what="the attention weights (B, heads, H·W, L)")
    want_a = torch.zeros(2, heads, 9, 4)
    want_a[..., 0] = 1.0
    diagnose(t, a, want_a, "one real token (the rest padding): all the weight is on it",
             {"padding tokens get weight: set their scores to −inf (masked_fill with the mask) before the softmax":
              torch.full((2, heads, 9, 4), 0.25)},
             hint="scores.masked_fill(mask[:, None, None, :], float('-inf')).softmax(-1)", rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        v0 = block.to_out(block.to_v(context[:, :1]))  # (2, 1, C): what every pixel receives
    t.close(o, x + v0.reshape(2, C, 1, 1), "with one token, out = x + W_O W_V c_0 at every pixel",
            hint="out = x + to_out(a @ v), with the heads merged back to (B, H·W, C) before to_out", rtol=1e-4, atol=1e-5)
    # random inputs: two shapes, H ≠ W, two head counts, float32 and float64
    for (B, C, H, W, D, L, heads, dtype) in ((2, 8, 4, 4, 6, 5, 2, torch.float32), (3, 16, 2, 6, 10, 7, 4, torch.float64)):
        block = _block(C, D, heads, dtype, seed=C)
        x = torch.randn(B, C, H, W, dtype=dtype)
        context = torch.randn(B, L, D, dtype=dtype)
        lengths = torch.randint(1, L + 1, (B,))
        mask = torch.arange(L)[None, :] >= lengths[:, None]
        what = f"cross_attention on x {(B, C, H, W)} {str(dtype)[6:]}, L = {L}, heads = {heads}"
        with torch.no_grad():
            o, a = _pair(t.call(fn, block, x, context, mask), what, t, (B, C, H, W), dtype)
            want_o, want_a = ref.cross_attention(block, x, context, mask)
            mistakes = _mistakes(block, x, context, mask)
        if a is None:
            return
        diagnose(t, o, want_o, f"{what}: matches minidiff.crossattn.cross_attention", mistakes,
                 hint="Q from block.norm(x), K and V from the context, softmax(QKᵀ/√d) over the tokens, merge heads, "
                      "to_out, + x", rtol=1e-4, atol=1e-5)
        t.tensor(a, shape=(B, heads, H * W, L), what=f"{what}: the attention weights")
        t.close(a, want_a, f"{what}: the attention weights (B, heads, H·W, L)",
                hint="return the softmax weights a, before they multiply v", rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- 3. caption dropout


@exercise("14", "caption_dropout", points=2)
def caption_dropout(t: Tester, fn):
    """Each caption becomes ∅ = [<s>, <pad>, ...] with probability p_uncond, one uniform draw per caption."""
    tok = text.Tokenizer(context_length=8)
    ids = tok.encode(["a thick seven", "the digit 3", "1", "an upright, small eight"])
    before = ids.clone()
    out = t.call(fn, ids, 0.0, torch.Generator().manual_seed(0))
    t.tensor(out, shape=(4, 8), dtype=torch.long, what="caption_dropout(ids (4, 8), p_uncond=0)")
    t.close(out, ids, "p_uncond = 0 leaves every caption alone",
            hint="a caption is dropped when its uniform draw u < p_uncond: never for p = 0")
    out = t.call(fn, ids, 1.0, torch.Generator().manual_seed(0))
    t.tensor(out, shape=(4, 8), what="caption_dropout(ids, p_uncond=1)")
    diagnose(t, out, tok.empty(4), "p_uncond = 1: every caption is the empty caption [<s>, <pad>, ...]",
             {"the empty caption keeps its start token: [<s>, <pad>, ...], not all <pad> (a row of padding only "
              "would leave nothing to attend to)": torch.zeros(4, 8, dtype=torch.long)},
             hint="empty = torch.zeros_like(ids); empty[:, 0] = START; torch.where(drop[:, None], empty, ids)")
    t.check(torch.equal(ids, before), "the input ids are not modified", "ids changed in place",
            hint="build a new tensor (torch.where) instead of writing into ids")
    # the rate, whole rows, and the same draws as minidiff (another context length)
    tok = text.Tokenizer(context_length=5)
    many = tok.encode(["a seven", "the digit 2", "thin 9"] * 1000)
    out = t.call(fn, many, 0.3, torch.Generator().manual_seed(3))
    t.tensor(out, shape=(3000, 5), what="caption_dropout(ids (3000, 5), p_uncond=0.3)")
    empty = tok.empty(3000)
    dropped = (out == empty).all(1)
    kept = (out == many).all(1)
    t.check(bool((dropped | kept).all()), "each caption is either kept whole or replaced whole by ∅",
            f"{int((~(dropped | kept)).sum())} rows are neither",
            hint="draw one number per caption (shape (B,)), not one per token", decisive=True)
    rate = dropped.float().mean().item()
    t.check(0.27 < rate < 0.33, "about 30 % of the captions are dropped at p_uncond = 0.3", f"dropped {rate:.1%}",
            hint="drop when u < p_uncond (u uniform in [0, 1)); u > p_uncond keeps with probability p instead",
            decisive=True)
    want = ref.caption_dropout(many, 0.3, torch.Generator().manual_seed(3))
    t.close(out, want, "the same captions as minidiff.crossattn.caption_dropout for the same generator",
            hint="draw torch.rand(B, generator=generator) once and drop where it is < p_uncond")
