"""GANs against diffusion: a DCGAN, its two-player training, and the denoising diffusion GAN (lesson 18).

A GAN (Goodfellow et al. 2014) has two networks. The generator G maps noise z ~ N(0, I) to an image in
one call; the discriminator D maps an image to a logit, "real" when positive. They play a game:

    D step:  L_D = −log σ(D(x)) − log(1 − σ(D(G(z))))  = softplus(−D(x)) + softplus(D(G(z)))
    G step:  L_G = −log σ(D(G(z)))                      = softplus(−D(G(z)))   (the non-saturating loss)

(The two steps play the minimax game of Goodfellow et al. 2014, eq. 1, min_G max_D V(D, G); their §3:
G minimising log(1 − σ(D(G(z)))) gets no gradient once D wins, so G
maximises log σ(D(G(z))) instead.) The DCGAN architecture is Radford, Metz & Chintala (2016).

Two players, one training loop: `training.train` takes one AdamW step per call of its loss. `TwoPlayer`
holds G and D and a counter of turns; its loss (`alternating_loss`) returns D's loss on even turns (with
G's output detached, so only D's weights get gradients) and G's loss on odd turns (with D frozen, so only
G's). AdamW skips parameters without a gradient, so each step moves one player: alternating updates,
with one optimiser whose moment estimates are per weight. A training run of K rounds is 2K loop steps.

Divergence: `DivergenceMonitor` is a training hook. It raises `GANDiverged` (with the step) on a
non-finite loss, and, every `probe_every` steps, on a collapsed probe: samples from fixed z whose
pixels barely differ (mode collapse to one image), or, given a classifier, one class above
`max_class_fraction` of the probe. The exception leaves the loop before anything is saved.

Denoising diffusion GAN (Xiao, Kreis & Vahdat 2022, "Tackling the Generative Learning Trilemma with
Denoising Diffusion GANs"): with only T = 2–4 large steps, q(x_{t−1} | x_t) is far from Gaussian, so the
reverse step is a conditional GAN instead of a Gaussian. G(x_t, z, t) predicts x̂_0; the step samples
the diffusion posterior q(x_{t−1} | x_t, x̂_0) (DDPM eqs. 6–7); a time-conditional discriminator
D(x_{t−1}, x_t, t) tells real pairs (x_{t−1} ~ q(x_{t−1} | x_0), x_t ~ q(x_t | x_{t−1})) from generated
ones. Here z enters G as a second image channel (the paper injects it through adaptive group norm).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .embedding import timestep_embedding
from .forward import add_noise, q_posterior_mean_var, q_step
from .sampling import simulate
from .schedules import NoiseSchedule
from .training import train
from .utils import check_float, check_positive_int, randint, randn

# -- the non-saturating loss pair ---------------------------------------------------------------


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """L_D = mean softplus(−D(x)) + mean softplus(D(G(z))): binary cross-entropy, real = 1, fake = 0."""
    check_float("real_logits", real_logits)
    check_float("fake_logits", fake_logits)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating L_G = mean softplus(−D(G(z))) = −mean log σ(D(G(z)))."""
    check_float("fake_logits", fake_logits)
    return F.softplus(-fake_logits).mean()


def gan_losses(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_D, L_G): `discriminator_loss(real_logits, fake_logits)` and `generator_loss(fake_logits)`."""
    return discriminator_loss(real_logits, fake_logits), generator_loss(fake_logits)


# -- DCGAN ---------------------------------------------------------------------------------------


class Generator(nn.Module):
    """DCGAN generator for 28×28: z (B, z_dim) → linear to (c1, 7, 7) → ×2 up to (c2, 14, 14) → ×2 up to
    (1, 28, 28), tanh (images in [−1, 1]). Batch norm and ReLU between layers (Radford et al. 2016)."""

    def __init__(self, z_dim: int = 64, channels: tuple[int, int] = (128, 32)):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.config = dict(z_dim=z_dim, channels=[c1, c2])
        self.z_dim = z_dim
        self.fc = nn.Sequential(nn.Linear(z_dim, c1 * 49, bias=False), nn.BatchNorm1d(c1 * 49), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),  # 7 → 14
            nn.ConvTranspose2d(c2, 1, 4, 2, 1), nn.Tanh())  # 14 → 28

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be a float tensor (B, {self.z_dim}), got "
                             f"{getattr(z, 'dtype', type(z).__name__)} {tuple(getattr(z, 'shape', ()))}")
        h = self.fc(z).view(z.shape[0], -1, 7, 7)
        return self.net(h)


class Discriminator(nn.Module):
    """DCGAN discriminator: (B, 1, 28, 28) → strided convs 28 → 14 → 7 with leaky ReLU → one logit (B,).
    No batch norm: real and fake batches then never see each other's statistics."""

    def __init__(self, channels: tuple[int, int] = (32, 64)):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.config = dict(channels=[c1, c2])
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c1, c2, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(c2 * 49, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        return self.net(x).squeeze(1)


def check_images(x, channels: int = 1) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4 or x.shape[1:] != (channels, 28, 28):
        raise ValueError(f"expected float images (B, {channels}, 28, 28), got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
    return x


# -- two players in one training loop ------------------------------------------------------------


class TwoPlayer(nn.Module):
    """G and D in one module, with `turn` (a buffer, so a resumed run knows whose turn it is)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.register_buffer("turn", torch.zeros((), dtype=torch.long))


def frozen(module: nn.Module, *args):
    """module(*args) without recording gradients for module's weights (they still flow to the inputs)."""
    module.requires_grad_(False)
    try:
        return module(*args)
    finally:
        module.requires_grad_(True)


def alternating_loss(d_loss_fn: Callable, g_loss_fn: Callable) -> Callable:
    """A `loss_fn(pair, batch, generator)` for `training.train` that alternates the players:
    even turns return d_loss_fn(pair, batch, generator), odd turns g_loss_fn(pair, batch, generator)."""

    def loss_fn(pair, batch, generator):
        d_turn = int(pair.turn) % 2 == 0
        pair.turn += 1
        return d_loss_fn(pair, batch, generator) if d_turn else g_loss_fn(pair, batch, generator)

    return loss_fn


def dcgan_d_loss(pair: TwoPlayer, x: torch.Tensor, generator=None) -> torch.Tensor:
    """D's turn: real images against G's samples (detached: G gets no gradient)."""
    G, D = pair.generator, pair.discriminator
    with torch.no_grad():
        fake = G(randn((x.shape[0], G.z_dim), generator, x.device))
    return discriminator_loss(D(x), D(fake))


def dcgan_g_loss(pair: TwoPlayer, x: torch.Tensor, generator=None) -> torch.Tensor:
    """G's turn: the non-saturating loss through a frozen D."""
    G, D = pair.generator, pair.discriminator
    fake = G(randn((x.shape[0], G.z_dim), generator, x.device))
    return generator_loss(frozen(D, fake))


class GANDiverged(RuntimeError):
    """Training stopped because the game diverged; `step` is the loop step where it was seen."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"GAN training diverged at step {step}: {reason}")
        self.step, self.reason = step, reason


class DivergenceMonitor:
    """A training hook: raises GANDiverged on a non-finite loss, or on a collapsed probe every
    `probe_every` steps, and once more at the end of `train_gan`. probe(model) -> images (N, 1, 28, 28) from fixed noise; collapsed when the
    mean over pixels of the per-pixel std across the probe is below `min_pixel_std`, or (with
    `classify(images) -> labels`, from step `class_check_after` on) when one class holds more than
    `max_class_fraction` of the probe."""

    def __init__(self, probe: Callable, probe_every: int = 500, min_pixel_std: float = 0.02,
                 classify: Callable | None = None, max_class_fraction: float = 0.5, class_check_after: int = 1000):
        self.probe, self.classify = probe, classify
        self.class_check_after = class_check_after
        self.probe_every = check_positive_int("probe_every", probe_every)
        self.min_pixel_std, self.max_class_fraction = min_pixel_std, max_class_fraction
        self.history: list[dict] = []

    def __call__(self, step: int, loss: float, model) -> bool:
        if not math.isfinite(loss):
            raise GANDiverged(step, f"the loss is {loss}")
        if step % self.probe_every:
            return False
        return self.check_probe(step, model)

    def check_probe(self, step: int, model) -> bool:
        """Draw the probe now and raise GANDiverged if it collapsed (also run once at the end of training)."""
        was_training = model.training
        model.eval()
        with torch.no_grad():
            x = self.probe(model)
        model.train(was_training)
        if not torch.isfinite(x).all():
            raise GANDiverged(step, "the probe's samples are not finite")
        spread = x.std(0).mean().item()
        record = dict(step=step, pixel_std=spread)
        if self.classify is not None:
            counts = torch.bincount(self.classify(x).flatten().cpu(), minlength=10).double()
            record["max_class_fraction"] = (counts.max() / counts.sum()).item()
        self.history.append(record)
        if spread < self.min_pixel_std:
            raise GANDiverged(step, f"mode collapse: the probe's pixel std across samples is {spread:.3g} "
                                    f"< {self.min_pixel_std}")
        if step >= self.class_check_after and record.get("max_class_fraction", 0.0) > self.max_class_fraction:
            raise GANDiverged(step, f"mode collapse: one class is {record['max_class_fraction']:.0%} of the probe "
                                    f"(> {self.max_class_fraction:.0%})")
        return False


def adam_betas(beta1: float = 0.5, beta2: float = 0.999) -> Callable:
    """A `make_scheduler(optimizer, steps)` for `training.train` that sets AdamW's (β1, β2) and keeps the
    learning rate constant. GANs use β1 = 0.5 (Radford et al. 2016, §4): with the default 0.9 the momentum
    of one player keeps pushing after the other has moved."""

    def make(opt, steps):
        for group in opt.param_groups:
            group["betas"] = (beta1, beta2)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)

    return make


def train_gan(pair: TwoPlayer, d_loss_fn: Callable, g_loss_fn: Callable, images: torch.Tensor, rounds: int,
              monitor: DivergenceMonitor | None = None, **kwargs):
    """`rounds` alternating D and G steps with `training.train` (2·rounds loop steps); kwargs go to train
    (batch_size, lr, ema_decay, seed, max_seconds, state_path, ...). Raises GANDiverged from the monitor."""
    check_positive_int("rounds", rounds)
    hooks = list(kwargs.pop("hooks", ())) + ([monitor] if monitor is not None else [])
    res = train(pair, alternating_loss(d_loss_fn, g_loss_fn), images, 2 * rounds, hooks=hooks, **kwargs)
    if monitor is not None and res.step % monitor.probe_every:
        monitor.check_probe(res.step, res.sampling_model)  # a run that ends between probes is probed once more
    return res


@torch.no_grad()
def gan_sample(G: Generator, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """n images from G in one call (eval mode: batch norm uses its running statistics)."""
    check_positive_int("n", n)
    device = device if device is not None else next(G.parameters()).device
    was_training = G.training
    G.eval()
    x = G(randn((n, G.z_dim), generator, device))
    G.train(was_training)
    return x


# -- the denoising diffusion GAN -----------------------------------------------------------------


def ddgan_schedule(T: int = 4, beta_min: float = 0.1, beta_max: float = 20.0) -> NoiseSchedule:
    """The few-step schedule of Xiao et al. (2022): the VP SDE's β(τ) = β_min + τ(β_max − β_min)
    integrated over T equal slices of τ ∈ [0, 1]: β_t = 1 − exp(−β_min/T − (β_max − β_min)(2t − 1)/(2T²))."""
    check_positive_int("T", T)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    betas = 1 - torch.exp(-beta_min / T - (beta_max - beta_min) * (2 * t - 1) / (2 * T**2))
    return NoiseSchedule(betas.clamp(max=0.999), name=f"ddgan{T}")


class DDGANGenerator(nn.Module):
    """G(x_t, z, t) → x̂_0: a small encoder–decoder with skips on the two channels (x_t, z),
    28 → 14 → 7 → 14 → 28, the time embedding added as a per-channel bias at 28 and at 7.

    The output is linear by default: with `tanh=True` (as the DCGAN's generator) every run we made drew
    the all-black image within 50 rounds and never left it (MNIST is 81 % background at −1, and a
    saturated tanh passes no gradient). `ddgan_sample` clips the final x_0 to [−1, 1]; during training
    the discriminator keeps x̂_0 in range."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), tanh: bool = False):
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.config = dict(channels=[c0, c1, c2], tanh=bool(tanh))
        self.tanh = bool(tanh)
        self.c0 = c0
        self.time = nn.Sequential(nn.Linear(c0, 4 * c0), nn.SiLU(), nn.Linear(4 * c0, c0 + c2))
        self.conv_in = nn.Conv2d(2, c0, 3, padding=1)
        self.down1, self.down2 = nn.Conv2d(c0, c1, 4, 2, 1), nn.Conv2d(c1, c2, 4, 2, 1)
        self.up2, self.mix2 = nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.Conv2d(2 * c1, c1, 3, padding=1)
        self.up1, self.out = nn.ConvTranspose2d(c1, c0, 4, 2, 1), nn.Conv2d(2 * c0, 1, 3, padding=1)

    def forward(self, x_t: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_images(x_t)
        check_images(z)
        emb = self.time(timestep_embedding(t, self.c0))[:, :, None, None]
        h0 = F.silu(self.conv_in(torch.cat([x_t, z], 1)) + emb[:, :self.c0])  # 28×28
        h1 = F.silu(self.down1(h0))  # 14×14
        h2 = F.silu(self.down2(h1) + emb[:, self.c0:])  # 7×7
        u1 = F.silu(self.mix2(torch.cat([self.up2(h2), h1], 1)))  # 14×14, with the skip
        u0 = F.silu(self.up1(u1))  # 28×28
        x0 = self.out(torch.cat([u0, h0], 1))
        return torch.tanh(x0) if self.tanh else x0


class DDGANDiscriminator(nn.Module):
    """D(x_{t−1}, x_t, t) → logit (B,): strided convs on the pair, the time embedding added after the first."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        c0, c1, c2 = (int(c) for c in channels)
        self.config = dict(channels=[c0, c1, c2])
        self.c0 = c0
        self.conv_in = nn.Conv2d(2, c0, 3, padding=1)
        self.time = nn.Sequential(nn.Linear(c0, c0), nn.SiLU(), nn.Linear(c0, c0))
        self.net = nn.Sequential(
            nn.LeakyReLU(0.2), nn.Conv2d(c0, c1, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c1, c2, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(c2 * 49, 1))

    def forward(self, x_prev: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_images(x_prev)
        check_images(x_t)
        emb = self.time(timestep_embedding(t, self.c0))[:, :, None, None]
        return self.net(self.conv_in(torch.cat([x_prev, x_t], 1)) + emb).squeeze(1)


def ddgan_step(schedule: NoiseSchedule, G: DDGANGenerator, x_t: torch.Tensor, t: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One reverse step: x̂_0 = G(x_t, z, t), then x_{t−1} ~ q(x_{t−1} | x_t, x̂_0) (DDPM eqs. 6–7)."""
    z = randn(x_t.shape, generator, x_t.device)
    x0 = G(x_t, z, t)
    mean, var = q_posterior_mean_var(schedule, x0, x_t, t)
    return mean + var.sqrt() * randn(x_t.shape, generator, x_t.device)


def ddgan_pairs(schedule: NoiseSchedule, x0: torch.Tensor, generator=None):
    """Real training pairs: t ~ U{1..T}, x_{t−1} ~ q(x_{t−1} | x_0) (eq. 4), x_t ~ q(x_t | x_{t−1}) (eq. 2)."""
    b = x0.shape[0]
    t = randint(schedule.T + 1, (b,), generator, x0.device, low=1)
    x_prev = add_noise(schedule, x0, randn(x0.shape, generator, x0.device), t - 1)
    x_t = q_step(schedule, x_prev, t, randn(x0.shape, generator, x0.device))
    return x_prev, x_t, t


def ddgan_losses(schedule: NoiseSchedule) -> tuple[Callable, Callable]:
    """(d_loss_fn, g_loss_fn) for `train_gan` on a TwoPlayer(DDGANGenerator, DDGANDiscriminator)."""

    def d_loss(pair, x0, generator=None):
        x_prev, x_t, t = ddgan_pairs(schedule, x0, generator)
        with torch.no_grad():
            fake = ddgan_step(schedule, pair.generator, x_t, t, generator)
        D = pair.discriminator
        return discriminator_loss(D(x_prev, x_t, t), D(fake, x_t, t))

    def g_loss(pair, x0, generator=None):
        _, x_t, t = ddgan_pairs(schedule, x0, generator)
        fake = ddgan_step(schedule, pair.generator, x_t, t, generator)
        return generator_loss(frozen(pair.discriminator, fake, x_t, t))

    return d_loss, g_loss


@torch.no_grad()
def ddgan_sample(schedule: NoiseSchedule, G: DDGANGenerator, n: int, generator: torch.Generator | None = None,
                 device=None, return_trajectory: bool = False):
    """x_T ~ N(0, I), then T generator steps t = T, ..., 1 through `sampling.simulate`; the last step's
    x_0 is clipped to the image range [−1, 1]."""
    check_positive_int("n", n)
    device = device if device is not None else next(G.parameters()).device

    def step(x, t, t_next):
        x_prev = ddgan_step(schedule, G, x, torch.full((n,), t, dtype=torch.long, device=device), generator)
        return x_prev.clamp(-1, 1) if t_next == 0 else x_prev

    x_T = randn((n, 1, 28, 28), generator, device)
    return simulate(step, x_T, list(range(schedule.T, -1, -1)), return_trajectory=return_trajectory)
