"""minidiff.unet, minidiff.ddim and minidiff.train_unet: shapes, conditioning, the skip wiring,
DDIM against DDPM, and exact resumption of an interrupted training run (tiny sizes, CPU)."""

import pytest
import torch

from minidiff.ddim import ddim_sample, ddim_step, ddim_timesteps
from minidiff.sampling import ddpm_step
from minidiff.schedules import NoiseSchedule
from minidiff.train_unet import drop_labels, lr_at, train_unet
from minidiff.unet import Downsample, ResBlock, SelfAttention, UNet, Upsample, count_parameters

torch.set_num_threads(1)


def tiny(num_classes=None, seed=0, **kw):
    torch.manual_seed(seed)
    return UNet(channels=(8, 16), num_classes=num_classes, **kw)


def randomize(model, seed=1):
    """Fresh UNets start at ε = 0 (zero-initialised output convs): perturb every weight so
    that tests can see where information flows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


# ---------------------------------------------------------------- pieces


def test_resblock_shapes_and_identity_at_init():
    blk = ResBlock(8, 16, emb_dim=32)
    x, emb = torch.randn(3, 8, 14, 14), torch.randn(3, 32)
    out = blk(x, emb)
    assert out.shape == (3, 16, 14, 14)
    # conv2 starts at zero: the block is its skip path, whatever the embedding
    assert torch.allclose(out, blk.skip(x), atol=1e-6)
    same = ResBlock(8, 8, emb_dim=32)
    assert torch.equal(same(x, emb), x)


def test_resblock_uses_the_embedding_per_image():
    # 16 channels → 8 groups of 2. With one channel per group GroupNorm would subtract the
    # per-channel shift exactly and erase the embedding, so the test must not use that case.
    blk = randomize(ResBlock(16, 16, emb_dim=32))
    x = torch.randn(1, 16, 7, 7).expand(2, -1, -1, -1)
    emb = torch.randn(2, 32)
    out = blk(x, emb)
    assert (out[0] - out[1]).abs().max() > 1e-2  # same image, different t → different output


def test_attention_is_permutation_equivariant_and_residual():
    att = randomize(SelfAttention(16, heads=4))
    x = torch.randn(2, 16, 7, 7)
    out = att(x)
    assert out.shape == x.shape
    # attention has no notion of position: permuting the pixels permutes the output
    perm = torch.randperm(49)
    xp = x.flatten(2)[:, :, perm].reshape_as(x)
    assert torch.allclose(att(xp).flatten(2), out.flatten(2)[:, :, perm], atol=1e-5)
    with pytest.raises(ValueError, match="divisible by heads"):
        SelfAttention(10, heads=4)


def test_down_and_upsample_shapes():
    x = torch.randn(2, 8, 28, 28)
    assert Downsample(8)(x).shape == (2, 8, 14, 14)
    assert Downsample(8)(torch.randn(2, 8, 14, 14)).shape == (2, 8, 7, 7)
    assert Upsample(8, 4)(torch.randn(2, 8, 7, 7)).shape == (2, 4, 14, 14)


# ---------------------------------------------------------------- the U-Net


@pytest.mark.parametrize("channels", [(8,), (8, 16), (8, 16, 16)])
def test_unet_output_shape(channels):
    m = UNet(channels=channels)
    x = torch.randn(3, 1, 28, 28)
    assert m(x, torch.tensor([1, 500, 1000])).shape == x.shape


def test_unet_starts_at_zero_and_param_count():
    m = UNet()  # the default GPU-tier size
    assert torch.equal(m(torch.randn(2, 1, 28, 28), torch.tensor([3, 7])), torch.zeros(2, 1, 28, 28))
    assert 1_000_000 < count_parameters(m) < 4_000_000
    small = UNet(channels=(16, 32, 64))  # the shipped CPU-tier size
    assert 300_000 < count_parameters(small) < 1_000_000


def test_unet_depends_on_t():
    m = randomize(tiny())
    x = torch.randn(1, 1, 28, 28).expand(2, -1, -1, -1)
    out = m(x, torch.tensor([10, 900]))
    assert not torch.allclose(out[0], out[1])


def test_skip_connection_carries_fine_detail():
    """Gradient of one output pixel w.r.t. the input is non-zero only near it through the
    full-resolution path; cutting the skip (zeroing it) must change the output."""
    m = randomize(tiny()).eval()
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([5, 5])
    ref = m(x, t)
    # recompute with the top-level skip zeroed: the output must change
    orig = torch.cat

    def cat_zero_skip(tensors, dim=0):
        a, b = tensors
        return orig([a, torch.zeros_like(b)], dim=dim)

    torch.cat = cat_zero_skip
    try:
        cut = m(x, t)
    finally:
        torch.cat = orig
    assert not torch.allclose(ref, cut, atol=1e-4)


def test_unet_input_errors():
    m = tiny()
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(2, 3, 28, 28), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="divisible"):
        m(torch.randn(2, 1, 27, 27), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        m(torch.randn(2, 1, 28, 28), torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="float tensor"):
        m(torch.zeros(2, 1, 28, 28, dtype=torch.long), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unconditional"):
        m(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 1]))


def test_class_conditioning_and_null_class():
    m = randomize(tiny(num_classes=10))
    assert m.class_emb.num_embeddings == 11  # 10 digits + the null class ∅ = 10
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([300, 300])
    none = m(x, t)
    null = m(x, t, torch.tensor([10, 10]))
    assert torch.allclose(none, null)  # y = None means "all ∅"
    assert not torch.allclose(m(x, t, torch.tensor([3, 3])), none)
    with pytest.raises(TypeError, match="LongTensor"):
        m(x, t, torch.tensor([1.0, 2.0]))


def test_drop_labels_rate_and_values():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (20_000,), generator=g)
    out = drop_labels(y, 0.2, 10, g)
    dropped = out == 10
    assert abs(dropped.float().mean().item() - 0.2) < 0.015
    assert torch.equal(out[~dropped], y[~dropped])
    assert torch.equal(drop_labels(y, 0.0, 10, g), y)


# ---------------------------------------------------------------- DDIM


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 1000) == list(range(1000, 0, -1))
    ts = ddim_timesteps(1000, 10)
    assert ts[0] == 1000 and len(ts) == 10 and ts == sorted(ts, reverse=True) and ts[-1] == 100
    with pytest.raises(ValueError):
        ddim_timesteps(100, 0)


def test_ddim_eta1_single_steps_equal_ddpm_beta_tilde():
    s = NoiseSchedule.make("linear", 100)
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(4, 1, 8, 8, generator=g) for _ in range(3))
    t = torch.tensor([2, 10, 50, 100])
    a = ddim_step(s, eps, x, t, t - 1, eta=1.0, noise=z)
    b = ddpm_step(s, eps, x, t, noise=z, variance="beta_tilde")
    assert torch.allclose(a, b, atol=1e-5)


def test_ddim_eta0_recovers_x0_with_true_eps():
    """If ε_θ is the true noise, one deterministic jump from any t to 0 returns x_0 exactly."""
    s = NoiseSchedule.make("linear", 1000)
    x0, eps = torch.rand(3, 1, 28, 28) * 2 - 1, torch.randn(3, 1, 28, 28)
    t = torch.tensor([1, 400, 1000])
    abar = s.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    assert torch.allclose(ddim_step(s, eps, xt, t, torch.zeros_like(t)), x0, atol=1e-3)


def test_ddim_sample_deterministic_and_shapes():
    s = NoiseSchedule.make("linear", 50)
    m = randomize(tiny()).eval()
    a, traj = ddim_sample(m, s, (2, 1, 28, 28), steps=5, generator=torch.Generator().manual_seed(0),
                          return_trajectory=True)
    b = ddim_sample(m, s, (2, 1, 28, 28), steps=5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 1, 28, 28) and traj.shape == (6, 2, 1, 28, 28)
    assert torch.equal(a, b) and torch.equal(traj[-1], a)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(s, torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), 5, 5)


# ---------------------------------------------------------------- training


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1, rel=1e-3)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(0.09 * torch.pi)).item()))
    assert lr_at(99, 100, 1.0, 0) < 1e-3


@pytest.mark.parametrize("num_classes", [None, 10])
def test_resume_gives_identical_weights(tmp_path, num_classes):
    """N steps straight == N/2 steps, save, new process-like restart, resume N/2."""
    s = NoiseSchedule.make("linear", 100)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, 10, (40,), generator=g)
    kw = dict(labels=y if num_classes else None, num_classes=num_classes, p_uncond=0.3, batch_size=4,
              warmup=2, ema_decay=0.9, device="cpu", show_progress=False)
    straight = train_unet(tiny(num_classes), s, x, 6, **kw)
    path = tmp_path / "state.pt"
    half = train_unet(tiny(num_classes), s, x, 6, state_path=path, stop_after=3, **kw)
    assert half.step == 3 and path.exists()
    resumed = train_unet(tiny(num_classes, seed=99), s, x, 6, state_path=path, resume=True, **kw)
    assert resumed.step == 6 and resumed.losses == straight.losses
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(straight.ema.model.state_dict().values(), resumed.ema.model.state_dict().values()):
        assert torch.equal(a, b)
    # the interrupted run really differs from the finished one (the test can fail)
    assert not all(torch.equal(a, b) for a, b in zip(half.model.state_dict().values(),
                                                     straight.model.state_dict().values()))
    with pytest.raises(ValueError, match="same total steps"):
        train_unet(tiny(num_classes), s, x, 8, state_path=path, resume=True, **kw)


def test_training_reduces_loss_and_argument_errors():
    s = NoiseSchedule.make("linear", 100)
    x = (torch.rand(16, 1, 28, 28) > 0.8).float() * 2 - 1
    res = train_unet(tiny(), s, x, 40, batch_size=16, lr=3e-3, warmup=5, device="cpu", show_progress=False)
    assert sum(res.losses[-10:]) / 10 < 0.9 * sum(res.losses[:5]) / 5
    assert res.images_per_second > 0
    with pytest.raises(ValueError, match="num_classes"):
        train_unet(tiny(), s, x, 2, num_classes=10, labels=torch.zeros(16, dtype=torch.long), device="cpu")
    with pytest.raises(ValueError, match="needs labels"):
        train_unet(tiny(num_classes=10), s, x, 2, num_classes=10, device="cpu")
    with pytest.raises(TypeError, match="images"):
        train_unet(tiny(), s, x[:, 0], 2, device="cpu")
