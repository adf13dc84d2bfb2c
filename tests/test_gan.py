"""minidiff.gan: the loss pair, the alternating two-player loop, divergence detection, the diffusion GAN."""

import math

import pytest
import torch
import torch.nn.functional as F

from minidiff import gan
from minidiff.forward import q_posterior_mean_var

torch.set_num_threads(1)


def test_losses_closed_forms_and_gradient():
    z = torch.zeros(5)
    assert gan.discriminator_loss(z, z).item() == pytest.approx(2 * math.log(2))
    assert gan.generator_loss(z).item() == pytest.approx(math.log(2))
    big = torch.tensor([80.0, -80.0])
    assert torch.isfinite(gan.discriminator_loss(big, -big)) and torch.isfinite(gan.generator_loss(big))
    f = torch.randn(7, requires_grad=True)
    (g,) = torch.autograd.grad(gan.generator_loss(f), f)
    assert torch.allclose(g, -(1 - torch.sigmoid(f.detach())) / 7, atol=1e-6)  # non-saturating: −(1 − σ)/n
    with pytest.raises(TypeError, match="floating-point"):
        gan.generator_loss(torch.zeros(3, dtype=torch.long))


def test_shapes_and_bad_input():
    G, D = gan.Generator(z_dim=8, channels=(8, 4)), gan.Discriminator(channels=(4, 8))
    x = G(torch.randn(3, 8))
    assert x.shape == (3, 1, 28, 28) and x.abs().max() <= 1
    assert D(x).shape == (3,)
    with pytest.raises(ValueError, match="z must be"):
        G(torch.randn(3, 7))
    with pytest.raises(ValueError, match="images"):
        D(torch.randn(3, 28, 28))


def test_each_turn_moves_one_player_only():
    torch.manual_seed(0)
    pair = gan.TwoPlayer(gan.Generator(z_dim=8, channels=(8, 4)), gan.Discriminator(channels=(4, 8)))
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    loss_fn = gan.alternating_loss(gan.dcgan_d_loss, gan.dcgan_g_loss)
    for player, other in (("discriminator", "generator"), ("generator", "discriminator")):
        pair.zero_grad(set_to_none=True)
        loss_fn(pair, x, torch.Generator().manual_seed(1)).backward()
        assert all(p.grad is not None for p in getattr(pair, player).parameters())
        assert all(p.grad is None for p in getattr(pair, other).parameters())
    assert int(pair.turn) == 2
    assert all(p.requires_grad for p in pair.parameters())  # `frozen` gives the weights back


def test_train_gan_alternates_and_sets_betas():
    torch.manual_seed(0)
    pair = gan.TwoPlayer(gan.Generator(z_dim=8, channels=(8, 4)), gan.Discriminator(channels=(4, 8)))
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    res = gan.train_gan(pair, gan.dcgan_d_loss, gan.dcgan_g_loss, x, 3, batch_size=8, lr=1e-3,
                        make_scheduler=gan.adam_betas(0.5), show_progress=False)
    assert res.step == 6 and int(pair.turn) == 6 and len(res.losses) == 6


def test_divergence_is_detected_with_the_step():
    """A huge learning rate breaks the game; the monitor stops it and names the step; nothing is saved."""
    torch.manual_seed(0)
    pair = gan.TwoPlayer(gan.Generator(z_dim=16, channels=(16, 8)), gan.Discriminator(channels=(8, 16)))
    x = torch.rand(256, 1, 28, 28) * 2 - 1
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    monitor = gan.DivergenceMonitor(lambda m: m.generator(z), probe_every=10)
    with pytest.raises(gan.GANDiverged) as err:
        gan.train_gan(pair, gan.dcgan_d_loss, gan.dcgan_g_loss, x, 200, monitor=monitor, batch_size=16, lr=10.0,
                      show_progress=False)
    assert err.value.step % 10 == 0 and f"step {err.value.step}" in str(err.value)
    # a NaN loss is caught on the step it appears
    with pytest.raises(gan.GANDiverged, match="step 7"):
        monitor(7, float("nan"), pair)


def test_class_collapse_needs_the_warmup():
    imgs = torch.rand(20, 1, 28, 28)
    m = gan.DivergenceMonitor(lambda _: imgs, probe_every=5, classify=lambda x: torch.zeros(len(x), dtype=torch.long),
                              class_check_after=10)
    model = torch.nn.Linear(1, 1)
    assert m(5, 1.0, model) is False  # before the warm-up: recorded, not raised
    with pytest.raises(gan.GANDiverged, match="one class"):
        m(10, 1.0, model)


def test_ddgan_schedule_and_step():
    s = gan.ddgan_schedule(4)
    t = torch.arange(1, 5, dtype=torch.float64)
    want = 1 - torch.exp(-0.1 / 4 - 19.9 * (2 * t - 1) / 32)
    assert torch.allclose(s.betas[1:], want) and s.alphas_cumprod[-1] < 1e-3
    G = gan.DDGANGenerator(channels=(4, 8, 8))
    D = gan.DDGANDiscriminator(channels=(4, 8, 8))
    x_t, tt = torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 4])
    g = torch.Generator().manual_seed(0)
    out = gan.ddgan_step(s, G, x_t, tt, g)
    # by hand: the same z and noise through the posterior q(x_{t−1} | x_t, x̂_0)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(x_t.shape, generator=g)
    mean, var = q_posterior_mean_var(s, G(x_t, z, tt), x_t, tt)
    assert torch.allclose(out, mean + var.sqrt() * torch.randn(x_t.shape, generator=g), atol=1e-6)
    assert torch.equal(out[0], mean[0])  # t = 1: no noise (β̃_1 = 0)
    assert D(out, x_t, tt).shape == (3,)
    xs = gan.ddgan_sample(s, G, 2, torch.Generator().manual_seed(0))
    assert xs.shape == (2, 1, 28, 28) and xs.abs().max() <= 1 + 1e-6


def test_ddgan_pairs_follow_the_forward_process():
    s = gan.ddgan_schedule(2)
    x0 = torch.full((4000, 1, 28, 28), 0.5)
    x_prev, x_t, t = gan.ddgan_pairs(s, x0, torch.Generator().manual_seed(0))
    for k in (1, 2):
        rows = x_t[t == k]
        abar = s.alphas_cumprod[k].item()
        assert rows.mean().item() == pytest.approx(0.5 * math.sqrt(abar), abs=0.01)
        assert rows.var().item() == pytest.approx(1 - abar, abs=0.01)
    assert torch.equal(x_prev[t == 1], x0[t == 1])  # x_0 itself at t − 1 = 0
    d_loss, g_loss = gan.ddgan_losses(s)
    pair = gan.TwoPlayer(gan.DDGANGenerator(channels=(4, 8, 8)), gan.DDGANDiscriminator(channels=(4, 8, 8)))
    assert torch.isfinite(d_loss(pair, x0[:4])) and torch.isfinite(g_loss(pair, x0[:4]))
    assert F.softplus(torch.zeros(1)).item() == pytest.approx(math.log(2))


def test_a_run_ending_between_probes_is_probed_at_the_end():
    torch.manual_seed(0)
    pair = gan.TwoPlayer(gan.Generator(z_dim=8, channels=(8, 4)), gan.Discriminator(channels=(4, 8)))
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    monitor = gan.DivergenceMonitor(lambda m: torch.zeros(16, 1, 28, 28), probe_every=1000)  # a collapsed probe
    with pytest.raises(gan.GANDiverged, match="step 6"):
        gan.train_gan(pair, gan.dcgan_d_loss, gan.dcgan_g_loss, x, 3, monitor=monitor, batch_size=8, show_progress=False)


def test_ddgan_generator_output_is_linear_unless_tanh_is_asked_for():
    torch.manual_seed(0)
    x_t, z, t = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28), torch.tensor([1, 3])
    for tanh in (False, True):
        G = gan.DDGANGenerator(channels=(4, 8, 8), tanh=tanh)
        assert G.config["tanh"] is tanh
        with torch.no_grad():
            G.out.bias.fill_(3.0)  # a pre-activation far above the image range
            out = G(x_t, z, t)
        if tanh:
            assert out.max() <= 1.0  # squashed: saturated, so its gradient 1 − tanh² is ≈ 0 there
        else:
            assert out.min() > 1.5  # linear: x̂_0 can leave [−1, 1]; only ddgan_sample's last step clips
    G = gan.DDGANGenerator(channels=(4, 8, 8))
    with torch.no_grad():
        G.out.bias.fill_(3.0)
    xs = gan.ddgan_sample(gan.ddgan_schedule(2), G, 3, torch.Generator().manual_seed(0))
    assert torch.equal(xs, torch.ones_like(xs))  # clipped to the image range
