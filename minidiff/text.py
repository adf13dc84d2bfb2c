"""Captions, a word tokenizer and a small text encoder (lesson 14: text to digit).

MNIST has no captions, so we make them from what we can *measure* in each image:

    measure_attributes(images)   ink, slant and spread of each digit, from its pixel moments:
                                 ink    = Σ p                       (p = (x + 1)/2 ∈ [0, 1]: the ink mass)
                                 slant  = μ_11 / μ_02               (x-shift per unit of height; > 0 leans right)
                                 spread = √(μ_20 + μ_02)            (how far the ink lies from its centre)
    attribute_levels(values, labels)  −1 / 0 / +1: bottom tercile, middle, top tercile of the
                                 image's *own digit class* (a thin 1 is not compared with a thin 8)
    shift_test(a, b)             the shift mean(a) − mean(b), its 95 % interval and a permutation p-value
    make_caption(digit, levels, ...)  "a thick, slanted seven", "the digit 7", "7", ...: a word is
                                 said only when the measurement is in a tercile; in between, nothing
    encode(captions, index, L)   words → ids, used by the Tokenizer
    Tokenizer                    words → ids: a fixed vocabulary, a start token <s> on every caption,
                                 padding <pad> up to `context_length`; an unknown word is an error
                                 (ValueError naming it); a longer caption is truncated with a warning
    check_tokenizer(card, tok)   refuses a checkpoint trained with another vocabulary (the card stores its hash)
    caption_batch(...)           token ids of random captions for a batch of (digit, levels), drawn
                                 with a generator (the training data of lesson 14)
    TextEncoder                  token + position embeddings and a few transformer encoder layers:
                                 (B, L) ids → (B, L, d) context vectors and the (B, L) padding mask

The empty caption ∅ is just "<s>" followed by padding: the start token gives every caption
at least one key, so cross-attention never normalises over an empty set.
"""

from __future__ import annotations

import hashlib
import math
import re
import warnings

import torch
import torch.nn as nn

from .utils import check_float, check_positive_int

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# the attribute words, per attribute: (word for level −1, word for level +1)
ATTRIBUTES = {"thickness": ("thin", "thick"), "slant": ("upright", "slanted"), "size": ("small", "large")}
SPECIAL = ("<pad>", "<s>")
VOCAB = SPECIAL + ("a", "an", "the", "digit", "number", ",", "and") + DIGIT_WORDS + tuple(str(d) for d in range(10)) \
    + tuple(w for pair in ATTRIBUTES.values() for w in pair)
PAD, START = 0, 1


# -- 1. measuring the images ------------------------------------------------------------


def measure_attributes(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ink mass, slant and spread of (B, 1, H, W) images in [−1, 1], from their pixel moments.

    With p = (x + 1)/2 the ink of each pixel, m = Σ p, centre (x̄, ȳ) and central moments
    μ_ab = Σ p (x − x̄)^a (y − ȳ)^b / m (x to the right, y *up*, in pixels):

        ink = m,   slant = μ_11 / μ_02,   spread = √(μ_20 + μ_02)

    slant is the least-squares shear: x − x̄ ≈ slant · (y − ȳ), so a digit that leans right has
    slant > 0. Returns a dict of float64 (B,) tensors: "thickness" (the ink), "slant", "size" (the spread).
    """
    check_float("images", images)
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    out = {"thickness": [], "slant": [], "size": []}
    H, W = images.shape[-2:]
    ys = -torch.arange(H, dtype=torch.float64, device=images.device)  # rows go down, y goes up
    xs = torch.arange(W, dtype=torch.float64, device=images.device)
    for chunk in images.split(4096):  # float64 moments, a chunk at a time
        p = ((chunk.double() + 1) / 2).clamp(0, 1).sum(1)  # (B, H, W) ink
        m = p.sum((1, 2)).clamp_min(1e-8)
        px, py = p.sum(1), p.sum(2)  # column and row marginals
        xbar, ybar = px @ xs / m, py @ ys / m
        mu20 = px @ xs**2 / m - xbar**2
        mu02 = py @ ys**2 / m - ybar**2
        mu11 = torch.einsum("bhw,h,w->b", p, ys, xs) / m - xbar * ybar
        out["thickness"].append(m)
        out["slant"].append(mu11 / mu02.clamp_min(1e-8))
        out["size"].append((mu20 + mu02).clamp_min(0).sqrt())
    return {k: torch.cat(v) for k, v in out.items()}


def attribute_levels(values: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """−1, 0 or +1 for each value: below the class's 1/3 quantile, between, above its 2/3 quantile.

    Quantiles are taken within each digit class, so "thick" means thick *for that digit*.
    Returns a long tensor shaped like `values`.
    """
    out = torch.zeros_like(labels)
    for k in range(num_classes):
        sel = labels == k
        if sel.any():
            v = values[sel].double()
            lo, hi = torch.quantile(v, torch.tensor([1 / 3, 2 / 3], dtype=v.dtype, device=v.device))
            out[sel] = (v > hi).long() - (v < lo).long()
    return out


def shift_test(a: torch.Tensor, b: torch.Tensor, permutations: int = 10000,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """Is mean(a) − mean(b) real? The shift, its 95 % interval (normal, Welch's standard error
    √(s_a²/n_a + s_b²/n_b)) and a two-sided permutation p-value: the share of random relabellings of
    the pooled values whose |shift| is at least the observed one, counted as (k + 1)/(permutations + 1).
    """
    a, b = check_float("a", a).double().flatten(), check_float("b", b).double().flatten()
    shift = (a.mean() - b.mean()).item()
    se = math.sqrt(a.var().item() / a.numel() + b.var().item() / b.numel())
    pooled = torch.cat([a, b])
    idx = torch.argsort(torch.rand(permutations, pooled.numel(), generator=generator), dim=1)
    perm = pooled[idx]
    null = perm[:, : a.numel()].mean(1) - perm[:, a.numel():].mean(1)
    k = int((null.abs() >= abs(shift) - 1e-12).sum())
    return {"shift": shift, "low": shift - 1.96 * se, "high": shift + 1.96 * se, "p": (k + 1) / (permutations + 1)}


# -- 2. captions --------------------------------------------------------------------------


def make_caption(digit: int, levels: dict[str, int] | None = None, template: int = 0) -> str:
    """A caption of `digit` saying the attribute words of the non-zero `levels`.

    template 0: "a thick, slanted seven"; 1: "the thick, slanted digit 7"; 2: "thick, slanted 7".
    With no attribute words: "a seven", "the digit 7", "7". ("an eight" takes "an".)
    """
    words = [ATTRIBUTES[name][0 if lv < 0 else 1] for name, lv in (levels or {}).items() if lv != 0]
    adj = ", ".join(words)
    if template == 0:
        head = f"{adj} {DIGIT_WORDS[digit]}".strip()
        return ("an " if head.startswith(("eight", "upright")) else "a ") + head
    if template == 1:
        return f"the {adj} digit {digit}".replace("  ", " ")
    return f"{adj} {digit}".strip()


def caption_batch(tokenizer, labels: torch.Tensor, levels: torch.Tensor, p_word: float = 0.7,
                  generator: torch.Generator | None = None, holdout: tuple = ()) -> torch.Tensor:
    """Token ids (B, L) of random captions for digits `labels` (B,) with attribute levels (B, 3)
    (columns in the order of ATTRIBUTES). Each true attribute word is said with probability p_word,
    the template is drawn uniformly; `holdout` pairs (digit, word), e.g. ((3, "thick"),), are never
    said (the word is dropped from those captions), to test compositions never seen in training."""
    device = labels.device
    gen_dev = generator.device if generator is not None else device
    B = labels.shape[0]
    said = torch.rand((B, len(ATTRIBUTES)), generator=generator, device=gen_dev) < p_word
    templates = torch.randint(0, 3, (B,), generator=generator, device=gen_dev)
    said, templates, labels, levels = said.cpu(), templates.cpu(), labels.cpu(), levels.cpu()
    captions = []
    for i in range(B):
        d = int(labels[i])
        lv = {}
        for j, (name, pair) in enumerate(ATTRIBUTES.items()):
            level = int(levels[i, j]) if said[i, j] else 0
            if level and (d, pair[0 if level < 0 else 1]) in holdout:
                level = 0
            lv[name] = level
        captions.append(make_caption(d, lv, int(templates[i])))
    return tokenizer.encode(captions).to(device)


# -- 3. the tokenizer ---------------------------------------------------------------------


def split_words(caption: str) -> list[str]:
    """Lower-case words, with commas as their own words: "A thick, slanted 7" → [a, thick, ",", slanted, 7]."""
    return re.findall(r"[^\s,]+|,", caption.lower())


def encode(captions: list[str], index: dict[str, int], context_length: int) -> torch.Tensor:
    """(B, context_length) long ids: [<s>, word ids..., <pad>, ...] for each caption.

    An unknown word raises a ValueError naming it; a caption with more than context_length ids
    (counting <s>) is cut to context_length with a warning.
    """
    out = torch.full((len(captions), context_length), PAD, dtype=torch.long)
    for row, caption in enumerate(captions):
        words = split_words(caption)
        unknown = [w for w in words if w not in index]
        if unknown:
            raise ValueError(f"unknown word(s) {unknown} in caption {caption!r}; the vocabulary is: "
                             + " ".join(w for w in index if w not in SPECIAL))
        ids = [START] + [index[w] for w in words]
        if len(ids) > context_length:
            warnings.warn(f"caption {caption!r} has {len(ids)} tokens (with <s>), more than the context "
                          f"length {context_length}: truncated to {context_length}", stacklevel=2)
            ids = ids[:context_length]
        out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out



class Tokenizer:
    """Words → ids with a fixed vocabulary; every caption starts with <s> and is padded with <pad>.

    encode("a thick seven") = [<s>, a, thick, seven, <pad>, ...] (context_length ids). A caption
    longer than the context is cut to context_length ids with a warning; an unknown word raises a
    ValueError that names it (a model cannot mean anything by a word it never saw). Commas are words.
    """

    def __init__(self, vocab: tuple[str, ...] = VOCAB, context_length: int = 12):
        self.vocab = tuple(vocab)
        if self.vocab[:2] != SPECIAL:
            raise ValueError(f"the vocabulary must start with {SPECIAL}, got {self.vocab[:2]}")
        self.context_length = check_positive_int("context_length", context_length)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def vocab_hash(self) -> str:
        """sha256 of the vocabulary and context length: a checkpoint's card stores it."""
        return hashlib.sha256(("\n".join(self.vocab) + f"\n#{self.context_length}").encode()).hexdigest()

    def encode(self, captions) -> torch.Tensor:
        """(B, context_length) long ids of a list of captions (or (context_length,) for one string)."""
        if isinstance(captions, str):
            return encode([captions], self.index, self.context_length)[0]
        return encode(list(captions), self.index, self.context_length)

    def decode(self, ids: torch.Tensor) -> str:
        """The words of one row of ids, without <s> and <pad>."""
        return " ".join(self.vocab[i] for i in ids.tolist() if i >= len(SPECIAL)).replace(" ,", ",")

    def empty(self, n: int, device=None) -> torch.Tensor:
        """n copies of the empty caption ∅ = [<s>, <pad>, ...] (the unconditional input)."""
        out = torch.full((n, self.context_length), PAD, dtype=torch.long, device=device)
        out[:, 0] = START
        return out


def check_tokenizer(card: dict, tokenizer: Tokenizer) -> Tokenizer:
    """The tokenizer itself, if it is the one a checkpoint's card was trained with (same vocabulary,
    same order, same context length: `card["tokenizer"]["vocab_sha256"]`); a ValueError otherwise.
    A text model reads ids, not words: with another vocabulary every id means another word."""
    spec = card.get("tokenizer") if isinstance(card, dict) else None
    if not spec or "vocab_sha256" not in spec:
        raise ValueError("this card records no tokenizer: it is not a text-conditioned checkpoint")
    if spec["vocab_sha256"] != tokenizer.vocab_hash:
        raise ValueError(f"the checkpoint was trained with another tokenizer (vocabulary hash "
                         f"{spec['vocab_sha256'][:12]}…, context length {spec.get('context_length')}); this one hashes "
                         f"to {tokenizer.vocab_hash[:12]}… (context length {tokenizer.context_length}): "
                         "build Tokenizer(tuple(card['tokenizer']['vocab']), card['tokenizer']['context_length'])")
    return tokenizer


# -- 4. the text encoder ------------------------------------------------------------------


class TextEncoder(nn.Module):
    """(B, L) token ids → (B, L, dim) context vectors, and the (B, L) key-padding mask (True = pad).

        h = TokenEmbedding(ids) + PositionEmbedding(0..L−1)
        h = TransformerEncoder(h, src_key_padding_mask = ids == <pad>)      (pre-norm layers)
        h = LayerNorm(h)
    """

    def __init__(self, vocab_size: int = len(VOCAB), context_length: int = 12, dim: int = 64, layers: int = 2,
                 heads: int = 4):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, context_length=context_length, dim=dim, layers=layers, heads=heads)
        self.token = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(context_length, dim)
        nn.init.normal_(self.token.weight, std=1 / math.sqrt(dim))
        nn.init.normal_(self.position.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 2:
            raise TypeError(f"ids must be a LongTensor (B, L) of token ids, got {getattr(ids, 'dtype', type(ids).__name__)} "
                            f"{tuple(getattr(ids, 'shape', ()))}")
        L = self.position.num_embeddings
        if ids.shape[1] != L:
            raise ValueError(f"ids must have the context length {L} as dim 1, got {ids.shape[1]}: encode with the same Tokenizer")
        mask = ids == PAD
        h = self.token(ids) + self.position(torch.arange(L, device=ids.device))
        h = self.layers(h, src_key_padding_mask=mask)
        return self.norm(h), mask
