"""minidiff.superres: the degradation, the condition, the network's wiring, the loss and the sampler."""

import pytest
import torch

from minidiff import superres
from minidiff.schedules import NoiseSchedule
from minidiff.vpred import EpsFromV, v_loss

torch.set_num_threads(1)


def test_downsample_is_block_mean():
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    for h in (7, 14):
        k = 28 // h
        low = superres.downsample(x, h)
        assert low.shape == (2, 1, h, h)
        blocks = x.reshape(2, 1, h, k, h, k).mean(dim=(3, 5))
        assert torch.allclose(low, blocks, atol=1e-6)


def test_condition_of_constant_is_constant_and_clamped():
    x_lr = torch.full((3, 1, 7, 7), 0.25, dtype=torch.float64)
    c = superres.lowres_condition(x_lr)
    assert c.shape == (3, 1, 28, 28) and c.dtype == torch.float64
    assert torch.allclose(c, torch.full_like(c, 0.25))
    edge = -torch.ones(1, 1, 14, 14)
    edge[..., 7:] = 1.0
    c = superres.lowres_condition(edge)
    assert c.min() >= -1 and c.max() <= 1  # bicubic alone overshoots a sharp edge
    assert torch.nn.functional.interpolate(edge, size=(28, 28), mode="bicubic").abs().max() > 1


def test_degrade_matches_its_parts():
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    x_lr, c = superres.degrade(x, 7)
    assert torch.equal(x_lr, superres.downsample(x, 7)) and torch.equal(c, superres.lowres_condition(x_lr))


@pytest.mark.parametrize("bad", [torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 7, 14),
                                 torch.zeros(2, 3, 7, 7)])
def test_wrong_low_resolution_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="low-resolution|square"):
        superres.lowres_condition(bad)


def test_wrong_inputs():
    with pytest.raises(ValueError, match="7×7 or 14×14"):
        superres.downsample(torch.zeros(1, 1, 28, 28), 4)
    with pytest.raises(ValueError, match="28×28"):
        superres.downsample(torch.zeros(1, 1, 32, 32), 8)
    with pytest.raises(TypeError):
        superres.lowres_condition(torch.zeros(1, 1, 7, 7, dtype=torch.long))


def test_srunet_sees_the_condition():
    torch.manual_seed(0)
    net = superres.SRUNet((8, 16))
    with torch.no_grad():  # the zero-initialised output conv would hide the input
        net.unet.conv_out.weight.normal_()
    x_t, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 900])
    a = net(x_t, t, torch.zeros(2, 1, 28, 28))
    b = net(x_t, t, torch.ones(2, 1, 28, 28))
    assert a.shape == (2, 1, 28, 28) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="one condition per image"):
        net(x_t, t, torch.zeros(3, 1, 28, 28))
    assert net.config == {"channels": [8, 16], "num_res_blocks": 1, "attention": True}


def test_sr_loss_is_v_loss_with_the_drawn_conditions():
    s = NoiseSchedule.make("cosine", 1000)
    x0 = torch.rand(6, 1, 28, 28) * 2 - 1
    seen = []

    def model(x_t, t, cond):
        seen.append(cond)
        return 0.5 * x_t + 0.1 * cond

    loss = superres.sr_loss(s, model, x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    pick = torch.randint(2, (6,), generator=g)
    cond = torch.cat([superres.degrade(x0[i:i + 1], (7, 14)[int(pick[i])])[1] for i in range(6)])
    assert torch.allclose(seen[0], cond, atol=1e-6)
    assert torch.allclose(loss, v_loss(s, lambda x_t, t: model(x_t, t, cond), x0, g))


def test_sr_sample_shape_and_determinism():
    s = NoiseSchedule.make("cosine", 1000)
    torch.manual_seed(0)
    eps = EpsFromV(superres.SRUNet((8, 16)).eval(), s)
    x_lr = torch.rand(2, 1, 14, 14) * 2 - 1
    a = superres.sr_sample(s, eps, x_lr, steps=3, generator=torch.Generator().manual_seed(1))
    b = superres.sr_sample(s, eps, x_lr, steps=3, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 1, 28, 28) and torch.equal(a, b) and a.abs().max() <= 1 + 1e-5
    with pytest.raises(ValueError, match="7×7 or 14×14"):
        superres.sr_sample(s, eps, torch.rand(2, 1, 10, 10), steps=3)


def test_shipped_checkpoint_loads_with_its_card():
    from minidiff.checkpoints import checkpoint_paths, load_eps_model, read_card

    if not checkpoint_paths("superres")[0].exists():
        pytest.skip("superres not shipped")
    card = read_card("superres")
    assert card["command"].startswith("python -m minidiff.scripts.train_superres ")
    assert card["metrics"]["psnr_14x14"] > card["metrics"]["psnr_bicubic_14x14"]
    eps_model, schedule = load_eps_model("superres", superres.SRUNet)
    assert isinstance(eps_model.net, superres.SRUNet) and schedule.T == 1000
