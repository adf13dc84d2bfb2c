"""minidiff.autoencoder (lesson 15): shapes, the KL's closed form, the reparameterisation, the loss, the scale."""

import math

import pytest
import torch

from minidiff.autoencoder import Autoencoder, autoencoder_loss, kl_divergence, latent_scale, reparameterize

torch.set_num_threads(1)


def small(**kw):
    torch.manual_seed(0)
    return Autoencoder(channels=(8, 8), **kw)


def test_shapes_mnist_to_8x8x4():
    ae = small()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    mean, logvar = ae.encode(x)
    assert mean.shape == logvar.shape == (3, 4, 8, 8)
    assert ae.decode(mean).shape == (3, 1, 28, 28)
    assert ae(x).shape == (3, 1, 28, 28)


def test_shapes_without_padding_and_other_channels():
    torch.manual_seed(0)
    ae = Autoencoder(in_channels=2, latent_channels=3, channels=(8, 16), pad=0)
    mean, _ = ae.encode(torch.randn(2, 2, 16, 12))
    assert mean.shape == (2, 3, 4, 3)
    assert ae.decode(mean).shape == (2, 2, 16, 12)


def test_bad_inputs_are_refused_with_clear_errors():
    ae = small()
    with pytest.raises(ValueError, match="B, 1, H, W"):
        ae.encode(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.encode(torch.randn(2, 1, 27, 27))
    with pytest.raises(ValueError, match="B, 4, h, w"):
        ae.decode(torch.randn(2, 3, 8, 8))
    with pytest.raises(TypeError):
        ae.encode(torch.zeros(2, 1, 28, 28, dtype=torch.long))


def test_kl_closed_form():
    # KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²) per entry, summed; 0 at μ = 0, σ = 1
    mean, logvar = torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
    assert torch.allclose(kl_divergence(mean, logvar), torch.zeros(2))
    mean = torch.full((1, 3), 2.0)
    logvar = torch.full((1, 3), math.log(0.25))
    want = 3 * 0.5 * (4.0 + 0.25 - 1 - math.log(0.25))
    assert torch.allclose(kl_divergence(mean, logvar), torch.tensor([want]))


def test_kl_matches_torch_distributions():
    mean, logvar = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    assert torch.allclose(kl_divergence(mean, logvar), torch.distributions.kl_divergence(q, p).sum(1))


def test_reparameterize_moments_and_gradients():
    mean = torch.tensor([1.0, -2.0], requires_grad=True)
    logvar = torch.tensor([math.log(4.0), math.log(0.01)], requires_grad=True)
    z = reparameterize(mean.expand(20000, 2), logvar.expand(20000, 2), torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mean.detach(), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([2.0, 0.1]), rtol=0.03)
    z.sum().backward()
    assert mean.grad is not None and logvar.grad is not None


def test_loss_is_reconstruction_plus_beta_kl():
    ae = small()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    l0 = autoencoder_loss(ae, x, g(), beta=0.0)
    l1 = autoencoder_loss(ae, x, g(), beta=1.0)
    mean, logvar = ae.encode(x)
    kl = kl_divergence(mean, logvar).mean() / 784
    assert torch.allclose(l1 - l0, kl, rtol=1e-4)
    # β = 0: the mean squared error of a reconstruction from z = μ + σ ε
    z = reparameterize(mean, logvar, g())
    assert torch.allclose(l0, (ae.decode(z) - x).pow(2).mean(), rtol=1e-5)


def test_a_few_steps_lower_the_loss():
    ae = small()
    x = torch.nn.functional.interpolate(torch.rand(16, 1, 7, 7) * 2 - 1, scale_factor=4)  # blocky images
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    first = None
    for i in range(30):
        loss = autoencoder_loss(ae, x, torch.Generator().manual_seed(i))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_latent_scale_gives_unit_std():
    z = 7.0 * torch.randn(100, 4, 8, 8) + 3.0
    s = latent_scale(z)
    assert isinstance(s, float)
    assert abs(float((z * s).std()) - 1.0) < 1e-5
    with pytest.raises(ValueError):
        latent_scale(torch.ones(1))
