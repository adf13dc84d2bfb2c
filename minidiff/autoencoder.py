"""A small convolutional autoencoder for MNIST, KL-regularised (lesson 15, latent diffusion).

    encoder   x (B, 1, 28, 28) → pad to 32×32 → conv 16 → ↓ 16×16 conv 32 → ↓ 8×8 conv 32, block → (μ, log σ²) (B, 4, 8, 8)
    decoder   z (B, 4, 8, 8) → conv 32, block → ↑ 16×16 conv 32 → ↑ 32×32 conv 16 → conv 1 → crop to 28×28

Rombach et al. 2022 ("High-Resolution Image Synthesis with Latent Diffusion Models", sec. 3.1)
train such a "perceptual compression" model once, then run diffusion on z instead of x. Their
"KL-reg." variant makes the encoder a diagonal Gaussian q(z|x) = N(μ(x), diag σ²(x)) and adds
a small KL penalty towards N(0, I); we do the same, with a squared-error reconstruction:

    autoencoder_loss = ‖x − D(z)‖² / D_x  +  β · KL(q(z|x) ‖ N(0, I)) / D_x,    z = μ + σ ⊙ ε   (reparameterisation)
    KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1 − log σ²)        (summed over the latent's entries)

(D_x = 784 pixels: both terms per pixel, so β does not depend on the image size.) With a small β
nothing forces the latents to unit variance: lesson 15 measures their std and rescales them
(`latent_scale`), the paper's scale factor.

Contents: `ConvBlock`, `Autoencoder` (encode → (μ, log σ²), decode, `config` for checkpoints),
`kl_divergence`, `reparameterize`, `autoencoder_loss`, `latent_scale`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .utils import check_float, randn


class ConvBlock(nn.Module):
    """GroupNorm (8 groups) → SiLU → 3×3 conv, twice, with a residual connection (a ResBlock without time)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return self.conv2(F.silu(self.norm2(h))) + self.skip(x)


class Autoencoder(nn.Module):
    """x (B, C, H, W) in [−1, 1]  ⇄  z (B, latent_channels, (H + 2·pad)/4, (W + 2·pad)/4).

    in_channels:      image channels (1 for MNIST)
    latent_channels:  channels of z (4, as in Rombach et al.'s f = 4 models)
    channels:         feature channels at full resolution, and at half and quarter resolution
    pad:              zero-padding added on every side before encoding (28 + 2·2 = 32 → an 8×8
                      latent, which the lesson-05 U-Net can halve once more); removed after decoding
    """

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, channels: tuple[int, int] = (16, 32), pad: int = 2):
        super().__init__()
        c0, c1 = (int(c) for c in channels)
        self.config = dict(in_channels=in_channels, latent_channels=latent_channels, channels=[c0, c1], pad=pad)
        self.in_channels, self.latent_channels, self.pad = in_channels, latent_channels, pad
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c0, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1), nn.SiLU(),  # 32 → 16
            nn.Conv2d(c1, c1, 3, stride=2, padding=1), ConvBlock(c1, c1),  # 16 → 8
            nn.GroupNorm(8, c1), nn.SiLU(), nn.Conv2d(c1, 2 * latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, c1, 3, padding=1), ConvBlock(c1, c1),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c1, 3, padding=1), nn.SiLU(),  # 8 → 16
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c1, c0, 3, padding=1), nn.SiLU(),  # 16 → 32
            nn.Conv2d(c0, in_channels, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior q(z|x) = N(μ, diag σ²): returns (μ, log σ²), each (B, latent_channels, h, w)."""
        check_float("x", x)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be images (B, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if (x.shape[2] + 2 * self.pad) % 4 or (x.shape[3] + 2 * self.pad) % 4:
            raise ValueError(f"H + 2·pad and W + 2·pad must be divisible by 4 (two halvings), got {tuple(x.shape[2:])} "
                             f"with pad={self.pad}")
        h = self.encoder(F.pad(x, (self.pad,) * 4))
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x̂ = D(z): (B, latent_channels, h, w) → (B, in_channels, 4h − 2·pad, 4w − 2·pad)."""
        check_float("z", z)
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"z must be latents (B, {self.latent_channels}, h, w), got shape {tuple(z.shape)}")
        x = self.decoder(z)
        p = self.pad
        return x[:, :, p:x.shape[2] - p, p:x.shape[3] - p] if p else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction from the posterior mean, D(μ(x))."""
        return self.decode(self.encode(x)[0])


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per example: ½ Σ (μ² + σ² − 1 − log σ²) over all but the first dim."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ ⊙ ε, ε ~ N(0, I): a sample of q(z|x) through which gradients reach μ and log σ²."""
    return mean + (0.5 * logvar).exp() * randn(mean.shape, generator, mean.device, mean.dtype)


def autoencoder_loss(model: Autoencoder, x0: torch.Tensor, generator: torch.Generator | None = None,
                     beta: float = 1e-4) -> torch.Tensor:
    """Reconstruction + β·KL on one batch x0 (B, C, H, W), both per pixel and averaged over the batch:

        mean_b [ ‖x − D(z)‖² + β · KL(q(z|x) ‖ N(0, I)) ] / D_x,   z = μ + σ ⊙ ε.
    """
    check_float("x0", x0)
    mean, logvar = model.encode(x0)  # 1. the posterior q(z|x)
    z = reparameterize(mean, logvar, generator)  # 2. one sample of it
    x_hat = model.decode(z)  # 3. the reconstruction
    rec = (x_hat - x0).pow(2).flatten(1).sum(1)  # 4. ‖x − D(z)‖² per image
    kl = kl_divergence(mean, logvar)  # 5. KL per image
    return ((rec + beta * kl) / x0[0].numel()).mean()


def latent_scale(latents: torch.Tensor) -> float:
    """Rombach et al.'s scale factor: 1 / (standard deviation of all entries of a batch of latents).

    Pass posterior means μ(x) (lesson 15 does). z · latent_scale(z) then has unit variance, the
    variance the forward process x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε assumes of its data.
    """
    check_float("latents", latents)
    if latents.numel() < 2:
        raise ValueError(f"latents must hold at least 2 numbers to estimate a std, got shape {tuple(latents.shape)}")
    return float(1.0 / latents.detach().double().std())
