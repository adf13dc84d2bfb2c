"""minidiff.unet1d: shapes, patches, class conditioning, errors, and a few training steps."""

from functools import partial

import pytest
import torch

from minidiff.guidance import cfg_loss, guided_sample
from minidiff.schedules import NoiseSchedule
from minidiff.training import train
from minidiff.unet1d import UNet1d

torch.set_num_threads(1)


@pytest.mark.parametrize("patch,factor,channels", [(1, 2, (8, 16)), (8, 4, (16, 32, 32)), (4, 4, (8,))])
def test_shapes(patch, factor, channels):
    net = UNet1d(2, channels, factor=factor, kernel=3, patch=patch)
    L = patch * factor ** (len(channels) - 1) * 4
    x = torch.randn(3, 2, L)
    assert net(x, torch.tensor([1, 5, 9])).shape == x.shape


def test_fresh_model_predicts_zero_and_patches_keep_positions():
    net = UNet1d(1, (8, 16), factor=4, kernel=3, num_classes=3, patch=8)
    x = torch.randn(2, 1, 256)
    assert torch.equal(net(x, torch.tensor([3, 4])), torch.zeros_like(x))  # conv_out starts at zero
    # with conv_out set to pass one channel through, sample k of the output depends on x near k only at t fixed:
    # the patch fold/unfold round trip is exact
    B, C, L, p = 2, 1, 256, 8
    h = x.reshape(B, C, L // p, p).transpose(2, 3).reshape(B, C * p, L // p)
    assert torch.equal(h.reshape(B, C, p, L // p).transpose(2, 3).reshape(B, C, L), x)


def test_class_conditioning_changes_the_output():
    torch.manual_seed(0)
    net = UNet1d(1, (8, 16), factor=4, kernel=3, num_classes=3, patch=4)
    for p in net.parameters():  # the zero-initialised last convs would hide the label
        if p.dim() > 1 and not p.abs().sum():
            torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 1, 64), torch.tensor([10, 10])
    a, b = net(x, t, torch.tensor([0, 0])), net(x, t, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    assert torch.equal(net(x, t), net(x, t, torch.tensor([3, 3])))  # y = None is the null class


def test_errors():
    net = UNet1d(1, (8, 16), factor=4, kernel=3, num_classes=3, patch=4)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 1, 40), torch.tensor([1]))
    with pytest.raises(TypeError, match=r"\(B, C, L\)"):
        net(torch.randn(1, 64), torch.tensor([1]))
    with pytest.raises(ValueError, match="channels"):
        net(torch.randn(1, 2, 64), torch.tensor([1]))
    with pytest.raises(TypeError, match="LongTensor"):
        net(torch.randn(1, 1, 64), torch.tensor([1]), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="odd"):
        UNet1d(1, (8,), kernel=4)
    with pytest.raises(ValueError, match="factor"):
        UNet1d(1, (8,), factor=1)


def test_trains_with_the_library_loop_and_samples_with_guidance():
    s = NoiseSchedule.make("cosine", 50)
    net = UNet1d(1, (8, 16), factor=4, kernel=3, num_classes=2, patch=4)
    x = torch.sin(torch.linspace(0, 20, 64)).repeat(8, 1, 1) * torch.tensor([1.0, -1.0]).repeat(4)[:, None, None]
    y = torch.tensor([0, 1] * 4)
    res = train(net, partial(cfg_loss, s, p_uncond=0.2), (x, y), 30, batch_size=8, lr=3e-3, show_progress=False)
    assert sum(res.losses[-5:]) / 5 < sum(res.losses[:5]) / 5
    out = guided_sample(s, net, torch.tensor([0, 1]), 2.0, (1, 64), steps=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 64) and torch.isfinite(out).all()
