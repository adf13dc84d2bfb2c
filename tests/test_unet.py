"""minidiff.unet and minidiff.ddim: shapes, conditioning, the skip wiring, DDIM against DDPM
(tiny sizes, CPU). The training loop that trains the U-Net is tested in tests/test_training.py."""

import pytest
import torch

from minidiff.ddim import ddim_sample, ddim_step, ddim_timesteps
from minidiff.sampling import ddpm_step
from minidiff.schedules import NoiseSchedule
from minidiff.unet import Downsample, ResBlock, SelfAttention, UNet, Upsample
from minidiff.utils import count_parameters

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
    b = ddpm_step(s, eps, x, t, noise=z, sigma2="beta_tilde")
    assert torch.allclose(a, b, atol=1e-5)


def test_ddim_eta0_recovers_x0_with_true_eps():
    """If ε_θ is the true noise, one deterministic jump from any t to 0 returns x_0 exactly."""
    s = NoiseSchedule.make("linear", 1000)
    x0, eps = torch.rand(3, 1, 28, 28) * 2 - 1, torch.randn(3, 1, 28, 28)
    t = torch.tensor([1, 400, 1000])
    abar = s.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    assert torch.allclose(ddim_step(s, eps, x_t, t, torch.zeros_like(t)), x0, atol=1e-3)


def test_ddim_sample_deterministic_and_shapes():
    s = NoiseSchedule.make("linear", 50)
    m = randomize(tiny()).eval()
    a, traj = ddim_sample(s, m, (2, 1, 28, 28), steps=5, generator=torch.Generator().manual_seed(0),
                          return_trajectory=True)
    b = ddim_sample(s, m, (2, 1, 28, 28), steps=5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 1, 28, 28) and traj.shape == (6, 2, 1, 28, 28)
    assert torch.equal(a, b) and torch.equal(traj[-1], a)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(s, torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), 5, 5)


def test_ddim_sample_eta_one_uses_the_generator():
    s = NoiseSchedule.make("linear", 50)
    m = randomize(tiny()).eval()

    def run(seed, eta):
        return ddim_sample(s, m, (2, 1, 28, 28), steps=4, eta=eta, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0, 1.0), run(0, 1.0))
    assert not torch.allclose(run(0, 1.0), run(0, 0.0))  # same x_T, fresh noise at every jump
    assert not torch.allclose(run(0, 1.0), run(1, 1.0))


# ---------------------------------------------------------------- lesson 05's checks


def test_lesson05_checks_pass_minidiff_and_name_mistakes():
    """minidiff's own functions get full marks; known mistakes fail with the hint that names them."""
    from functools import partial

    from minidiff.course.checks import lesson05 as check
    from minidiff.losses import ddpm_loss
    from minidiff.training import train

    def train_ref(model, schedule, images, steps, batch_size=128, lr=2e-3, warmup=100, ema_decay=0.999, generator=None):
        run = train(model, partial(ddpm_loss, schedule), images, steps, batch_size=batch_size, lr=lr, warmup=warmup,
                    ema_decay=ema_decay, generator=generator, show_progress=False)
        return run.ema.model, run.losses

    def no_warmup(model, schedule, images, steps, **kw):
        return train_ref(model, schedule, images, steps, **dict(kw, warmup=0))

    def no_final_jump(schedule, eps_model, shape, steps=50, eta=0.0, device=None, generator=None,
                      return_trajectory=False, clip_denoised=None):
        x = torch.randn(shape, generator=generator)
        for t in ddim_timesteps(schedule.T, steps)[:-1]:
            tt = torch.full((shape[0],), t, dtype=torch.long)
            x = ddim_step(schedule, eps_model(x, tt), x, tt, t - schedule.T // steps)
        return x

    def no_sigma_in_direction(schedule, eps, x_t, t, t_prev, eta=0.0, noise=None, clip_denoised=None):
        a = schedule.alphas_cumprod[t].float().reshape(-1, *[1] * (x_t.dim() - 1))
        ap = schedule.alphas_cumprod[t_prev].float().reshape(-1, *[1] * (x_t.dim() - 1))
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        sigma = eta * ((1 - ap) / (1 - a) * (1 - a / ap)).sqrt()
        return ap.sqrt() * x0 + (1 - ap).sqrt() * eps + (sigma * noise if eta > 0 else 0)

    good = {"resblock_forward": lambda block, x, emb: block(x, emb), "unet_forward": lambda m, x, t, y=None: m(x, t, y),
            "train_unet": train_ref, "ddim_step": ddim_step, "ddim_sample": ddim_sample}
    for name, fn in good.items():
        res = getattr(check, name)(fn, quiet=True)
        assert res.score == res.points and res.status == "ok", (name, res.messages)
    for name, fn, hint in [("train_unet", no_warmup, "the warm-up is missing"),
                           ("ddim_sample", no_final_jump, "append 0 to the timesteps"),
                           ("ddim_step", no_sigma_in_direction, "√(1 − ᾱ_{t_prev} − σ²) ε")]:
        res = getattr(check, name)(fn, quiet=True)
        assert res.score < res.points and any(hint in m for m in res.messages), (name, res.messages)
