"""minidiff.crossattn: cross-attention against a direct formula and its invariants (padding ignored, identity at
init), the TextUNet's shapes, its identity start from a plain UNet, caption dropout, guidance, the attention maps."""

import math

import pytest
import torch

from minidiff import crossattn, text
from minidiff.schedules import NoiseSchedule
from minidiff.unet import UNet

torch.set_num_threads(1)


def random_block(C=8, D=6, heads=2, seed=0):
    torch.manual_seed(seed)
    block = crossattn.CrossAttention(C, D, heads)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.5)
    return block


def test_cross_attention_matches_a_per_head_loop():
    block = random_block()
    x, context = torch.randn(2, 8, 3, 4), torch.randn(2, 5, 6)
    mask = torch.tensor([[False, False, True, True, True], [False] * 5])
    out, a = crossattn.cross_attention(block, x, context, mask)
    xn = block.norm(x).flatten(2).transpose(1, 2)
    q, k, v = block.to_q(xn), block.to_k(context), block.to_v(context)
    heads = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(4)
        s = s.masked_fill(mask[:, None, :], -math.inf)
        heads.append(s.softmax(-1) @ v[..., sl])
    want = x + block.to_out(torch.cat(heads, -1)).transpose(1, 2).reshape(2, 8, 3, 4)
    assert torch.allclose(out, want, atol=1e-5)
    assert a.shape == (2, 2, 12, 5) and torch.allclose(a.sum(-1), torch.ones(2, 2, 12))
    assert (a[0, ..., 2:] == 0).all()


def test_padding_content_does_not_matter_and_fresh_block_is_identity():
    block = random_block()
    x, context = torch.randn(1, 8, 2, 2), torch.randn(1, 4, 6)
    mask = torch.tensor([[False, False, True, True]])
    other = context.clone()
    other[0, 2:] = 100.0
    assert torch.allclose(block(x, context, mask), block(x, other, mask), atol=1e-6)
    fresh = crossattn.CrossAttention(8, 6, 2)
    assert torch.equal(fresh(x, context, mask), x)


def test_text_unet_starts_as_the_plain_unet():
    torch.manual_seed(0)
    net = crossattn.TextUNet(channels=(8, 16, 32), text_dim=16, text_layers=1).eval()
    unet = UNet(1, (8, 16, 32))
    with torch.no_grad():  # a trained-looking U-Net: non-zero output layers
        for p in unet.parameters():
            p.normal_(0, 0.1)
    net.unet.load_state_dict(unet.state_dict())
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 500, 1000])
    ids = text.Tokenizer().encode(["a thick seven", "3", "the digit 5"])
    assert torch.allclose(net(x, t, ids), unet(x, t), atol=1e-5)
    assert [n for n, _ in net.cross_attentions()] == ["down 1", "down 2", "mid", "up 2", "up 1"]
    with pytest.raises(TypeError, match="ids"):
        net(x, t, ids.float())
    with pytest.raises(ValueError, match="channels"):
        net(torch.randn(3, 2, 28, 28), t, ids)


def test_caption_dropout_rate_and_rows():
    ids = text.Tokenizer(context_length=5).encode(["a seven"] * 4000)
    out = crossattn.caption_dropout(ids, 0.25, torch.Generator().manual_seed(0))
    empty = (out[:, 0] == text.START) & (out[:, 1:] == text.PAD).all(1)
    assert ((out == ids).all(1) | empty).all()
    assert abs(empty.float().mean().item() - 0.25) < 0.03
    assert torch.equal(crossattn.caption_dropout(ids, 0.0), ids)
    with pytest.raises(ValueError, match="p_uncond"):
        crossattn.caption_dropout(ids, 1.5)


def test_text_loss_has_gradients_everywhere():
    torch.manual_seed(0)
    net = crossattn.TextUNet(channels=(8, 16), text_dim=16, text_layers=1)
    with torch.no_grad():  # the zero-initialised output layers would block the gradient of everything else
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.1)
    s = NoiseSchedule.make("cosine", 100)
    ids = text.Tokenizer().encode(["a thick seven", "3"])
    loss = crossattn.text_loss(s, net, (torch.randn(2, 1, 28, 28), ids), torch.Generator().manual_seed(0), p_uncond=0.0)
    loss.backward()
    assert torch.isfinite(loss) and net.text.token.weight.grad.abs().sum() > 0


def test_guidance_mix_and_attention_maps():
    torch.manual_seed(0)
    net = crossattn.TextUNet(channels=(8, 16, 32), text_dim=16, text_layers=1).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)
    s = NoiseSchedule.make("cosine", 1000)
    tok = text.Tokenizer()
    ids = tok.encode(["a thick seven", "a 3"])
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([300, 300])
    with torch.no_grad():
        e_c, e_u = net(x, t, ids), net(x, t, tok.empty(2))
        got = crossattn.guided_text_eps(net, x, t, ids, 2.5, tok.empty(2))
    assert torch.allclose(got, e_u + 2.5 * (e_c - e_u), atol=1e-5)
    imgs, maps = crossattn.sample_with_attention(s, net, tok, "a thick seven", steps=3, n=2,
                                                 generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (2, 1, 28, 28) and maps.shape == (3, 2, 12, 14, 14)
    assert torch.allclose(maps.sum(2), torch.ones(3, 2, 14, 14), atol=1e-5)  # weights over tokens sum to 1
    assert (maps[:, :, 4:] == 0).all()  # padding gets nothing
    a = torch.rand(2, 4, 6, 3)
    m = crossattn.attention_maps(a, (2, 3))
    assert m.shape == (2, 3, 2, 3) and torch.allclose(m[1, 2, 1, 0], a[1, :, 3, 2].mean())
    with pytest.raises(ValueError, match="H·W"):
        crossattn.attention_maps(a, (3, 3))
