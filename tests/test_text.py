"""minidiff.text: measured attributes (closed forms on drawn shapes), honest terciles, captions, the tokenizer
(start token, padding, truncation with a warning, unknown words), the tokenizer check, the text encoder's mask,
and the permutation test."""

import warnings

import pytest
import torch

from minidiff import text

torch.set_num_threads(1)


def sheared_bar(shear, width=3):
    img = -torch.ones(1, 1, 28, 28, dtype=torch.float64)
    for row in range(4, 24):
        col = 14 + shear * (14 - row)
        img[0, 0, row, int(col) - width // 2: int(col) - width // 2 + width] = 1.0
    return img


def test_measure_attributes_closed_forms():
    upright = text.measure_attributes(sheared_bar(0))
    assert upright["thickness"].item() == pytest.approx(60.0)  # 20 rows × 3 pixels of ink 1
    assert upright["slant"].item() == pytest.approx(0.0, abs=1e-12)
    # a bar of 20 rows, one pixel per row at x = x̄ + s (y − ȳ): slant s exactly (integer shear keeps pixels whole)
    leaning = text.measure_attributes(sheared_bar(1, width=1))
    assert leaning["slant"].item() == pytest.approx(1.0, abs=1e-12)
    assert text.measure_attributes(sheared_bar(-1, width=1))["slant"].item() == pytest.approx(-1.0, abs=1e-12)
    # spread² = var_x + var_y: a vertical 1-px bar of 20 rows has var_y = (20² − 1)/12
    assert upright["size"].item() ** 2 == pytest.approx((20**2 - 1) / 12 + 2 / 3)  # width 3: var_x = 2/3
    thick = text.measure_attributes(sheared_bar(0, width=5))
    assert thick["thickness"].item() > upright["thickness"].item()


def test_measure_attributes_rejects_bad_input():
    with pytest.raises(TypeError, match="images"):
        text.measure_attributes(torch.zeros(2, 1, 28, 28, dtype=torch.long))
    with pytest.raises(ValueError, match="B, C, H, W"):
        text.measure_attributes(torch.zeros(28, 28))


def test_attribute_levels_are_per_class_terciles():
    labels = torch.tensor([0] * 9 + [1] * 9)
    values = torch.cat([torch.arange(9.0), 100 + torch.arange(9.0)])  # class 1 is all larger
    lv = text.attribute_levels(values, labels)
    expected = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1])
    assert torch.equal(lv[:9], expected) and torch.equal(lv[9:], expected)


def test_captions_say_only_nonzero_levels():
    assert text.make_caption(7, {"thickness": 1, "slant": 0, "size": -1}) == "a thick, small seven"
    assert text.make_caption(8, {}) == "an eight"
    assert text.make_caption(3, {"slant": -1}, template=1) == "the upright digit 3"
    assert text.make_caption(3, {}, template=1) == "the digit 3"
    assert text.make_caption(5, {}, template=2) == "5"


def test_caption_batch_never_says_a_held_out_pair():
    tok = text.Tokenizer()
    labels = torch.tensor([3, 3, 4] * 200)
    levels = torch.tensor([[1, 0, 0]] * 600)  # everything is thick
    ids = text.caption_batch(tok, labels, levels, p_word=1.0, generator=torch.Generator().manual_seed(0),
                             holdout=((3, "thick"),))
    thick = tok.index["thick"]
    has_thick = (ids == thick).any(1)
    assert not has_thick[labels == 3].any() and has_thick[labels == 4].all()
    for row in ids[:6]:  # every caption starts with <s> and decodes to words of the vocabulary
        assert row[0] == text.START and tok.decode(row)


def test_tokenizer_encode_pad_truncate_unknown():
    tok = text.Tokenizer(context_length=6)
    ids = tok.encode("A thick, seven")
    assert ids.tolist() == [1, tok.index["a"], tok.index["thick"], tok.index[","], tok.index["seven"], 0]
    assert tok.decode(ids) == "a thick, seven"
    with pytest.warns(UserWarning, match="truncated to 6"):
        cut = tok.encode(["the thick, slanted digit 7 and 1"])
    assert cut.shape == (1, 6) and cut[0, 0] == text.START and (cut != text.PAD).all()
    with pytest.raises(ValueError, match="purple"):
        tok.encode("a purple seven")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tok.encode(["1", "2"]).shape == (2, 6)  # short captions: no warning


def test_check_tokenizer_refuses_another_vocabulary():
    tok = text.Tokenizer()
    card = {"tokenizer": {"vocab": list(tok.vocab), "context_length": 12, "vocab_sha256": tok.vocab_hash}}
    assert text.check_tokenizer(card, tok) is tok
    with pytest.raises(ValueError, match="another tokenizer"):
        text.check_tokenizer(card, text.Tokenizer(context_length=16))
    swapped = text.VOCAB[:2] + tuple(reversed(text.VOCAB[2:]))
    with pytest.raises(ValueError, match="another tokenizer"):
        text.check_tokenizer(card, text.Tokenizer(swapped))
    with pytest.raises(ValueError, match="no tokenizer"):
        text.check_tokenizer({}, tok)


def test_text_encoder_ignores_padding_and_checks_input():
    torch.manual_seed(0)
    enc = text.TextEncoder(context_length=8, dim=16, layers=1).eval()
    tok = text.Tokenizer(context_length=8)
    ids = tok.encode(["a thick seven"])
    h, mask = enc(ids)
    assert h.shape == (1, 8, 16) and mask.tolist() == [[False] * 4 + [True] * 4]
    other = ids.clone()
    other[0, 5] = tok.index["thin"]  # a real word where there was padding: the other tokens now see it
    h2, _ = enc(other)
    assert not torch.allclose(h[0, :4], h2[0, :4])
    with pytest.raises(TypeError, match="LongTensor"):
        enc(ids.float())
    with pytest.raises(ValueError, match="context length"):
        enc(ids[:, :5])


def test_shift_test_finds_a_real_shift_and_no_fake_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, generator=g, dtype=torch.float64) + 1.0
    b = torch.randn(200, generator=g, dtype=torch.float64)
    r = text.shift_test(a, b, 2000, g)
    assert r["low"] < r["shift"] < r["high"] and r["low"] > 0.5 and r["p"] == pytest.approx(1 / 2001)
    same = text.shift_test(b[:100], b[100:], 2000, g)
    assert same["p"] > 0.01 and same["low"] < 0 < same["high"]
