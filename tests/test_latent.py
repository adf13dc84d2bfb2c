"""minidiff.latent (lesson 15): the latent loss is the pixel loss on scaled latents, the sampler is DDIM then
decode, and a latent model refuses an autoencoder other than its own (minidiff.checkpoints.load_latent_model)."""

from functools import partial

import pytest
import torch

from minidiff.autoencoder import Autoencoder
from minidiff.checkpoints import CheckpointError, load_latent_model, save_checkpoint
from minidiff.ddim import ddim_sample
from minidiff.latent import check_autoencoder_match, decode_latents, encode_latents, latent_loss, latent_sample
from minidiff.losses import ddpm_loss
from minidiff.schedules import NoiseSchedule
from minidiff.training import train
from minidiff.unet import UNet
from minidiff.vpred import v_loss

torch.set_num_threads(1)
S = NoiseSchedule.make("cosine", 1000)


def small_ae(seed=0):
    torch.manual_seed(seed)
    return Autoencoder(channels=(8, 8)).eval()


def test_encode_decode_batches_and_scale():
    ae = small_ae()
    x = torch.rand(7, 1, 28, 28) * 2 - 1
    z = encode_latents(ae, x, scale=2.0, batch_size=3)
    assert z.shape == (7, 4, 8, 8) and not z.requires_grad
    assert torch.allclose(z, 2.0 * ae.encode(x)[0].detach(), atol=1e-5)
    x_hat = decode_latents(ae, z, scale=2.0, batch_size=3)
    assert torch.allclose(x_hat, ae.decode(z / 2.0).clamp(-1, 1).detach(), atol=1e-5)
    assert x_hat.abs().max() <= 1.0
    for bad in (0.0, -1.0, "1"):
        with pytest.raises(ValueError, match="scale"):
            encode_latents(ae, x, bad)


@pytest.mark.parametrize("loss", [v_loss, ddpm_loss])
def test_latent_loss_is_the_loss_on_scaled_latents(loss):
    ae = small_ae()
    unet = UNet(4, (8, 16), 1, False)
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    got = latent_loss(S, unet, x, torch.Generator().manual_seed(0), autoencoder=ae, scale=0.7, loss=loss)
    want = loss(S, unet, 0.7 * ae.encode(x)[0].detach(), torch.Generator().manual_seed(0))
    assert torch.allclose(got, want)
    got.backward()
    assert all(p.grad is None for p in ae.parameters())  # the autoencoder stays frozen
    assert all(p.grad is not None for p in unet.parameters())


def test_latent_sample_is_ddim_then_decode():
    ae = small_ae()

    def eps(z, t):
        return 0.2 * z

    got = latent_sample(S, eps, ae, 0.5, (3, 4, 8, 8), steps=5, eta=1.0, generator=torch.Generator().manual_seed(1))
    z0 = ddim_sample(S, eps, (3, 4, 8, 8), 5, 1.0, generator=torch.Generator().manual_seed(1))
    assert got.shape == (3, 1, 28, 28)
    assert torch.allclose(got, ae.decode(z0 / 0.5).clamp(-1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="B, 4, h, w"):
        latent_sample(S, eps, ae, 0.5, (3, 1, 28, 28))


def test_training_on_latents_lowers_the_loss():
    ae = small_ae()
    x = torch.rand(64, 1, 28, 28) * 2 - 1
    torch.manual_seed(0)
    unet = UNet(4, (8, 16), 1, False)
    res = train(unet, partial(latent_loss, S, autoencoder=ae, scale=1.0), x, 40, batch_size=16, lr=3e-3, show_progress=False)
    assert sum(res.losses[-10:]) < sum(res.losses[:10])


def test_card_match_and_refusal(tmp_path):
    ae_a, ae_b = small_ae(0), small_ae(1)
    card_a = save_checkpoint(ae_a, tmp_path / "ae_a")
    card_b = save_checkpoint(ae_b, tmp_path / "ae_b")
    torch.manual_seed(0)
    unet = UNet(4, (8, 16), 1, False)
    save_checkpoint(unet, tmp_path / "lat", card={
        "name": "lat", "schedule": {"name": "cosine", "T": 1000}, "prediction": "v",
        "autoencoder": {"name": "ae_a", "sha256": card_a["sha256"]}, "latent": {"scale": 0.5}})
    eps_model, schedule, ae, scale = load_latent_model(tmp_path / "lat", tmp_path / "ae_a")
    assert scale == 0.5 and schedule.T == 1000 and isinstance(ae, Autoencoder)
    assert eps_model(torch.randn(2, 4, 8, 8), torch.tensor([1, 500])).shape == (2, 4, 8, 8)
    with pytest.raises(CheckpointError, match="sha256"):
        load_latent_model(tmp_path / "lat", tmp_path / "ae_b")
    check_autoencoder_match({"autoencoder": {"sha256": card_b["sha256"]}}, card_b)
    with pytest.raises(ValueError, match="names no autoencoder"):
        check_autoencoder_match({"name": "unet_mnist"}, card_a)
