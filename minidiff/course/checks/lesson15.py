"""Checks for lesson 15, latent diffusion.

    from minidiff.course.checks import lesson15 as check
    check.latent_scale(latent_scale)            # s = 1 / std of all entries of a batch of latents
    check.autoencoder_loss(autoencoder_loss)    # ‖x − D(z)‖² + β KL, z = μ + σ ε, per pixel, batch mean
    check.latent_loss(latent_loss)              # encode (no grad) → × s → the diffusion loss on z_0
    check.latent_sample(latent_sample)          # DDIM on latents from z_T ~ N(0, I) → D(z_0 / s), clipped

Closed forms first (the std of scaled Gaussian numbers; the KL of N(μ, σ²) at μ = 0, σ = 1 is 0; a linear
ε-model), then minidiff's references on random inputs with the same random draws (points and images, float32 and
float64, non-default arguments). The outputs of known mistakes (1/variance, the root mean square, σ = exp(log σ²),
the ½ of the KL missing, the mean decoded instead of a sample, the scale forgotten or inverted, clipping the
latents, ...) are recomputed here so that a hint can name the mistake.
"""

from __future__ import annotations

import torch

from ... import autoencoder as ae_ref
from ... import latent as ref
from ...autoencoder import Autoencoder
from ...ddim import ddim_sample
from ...losses import ddpm_loss
from ...schedules import NoiseSchedule
from ...vpred import v_loss
from .core import Tester, diagnose, exercise, grad_close

# ---------------------------------------------------------------- 1. the scale factor


@exercise("15", "latent_scale", points=2)
def latent_scale(t: Tester, fn):
    """s = 1 / std(z) over every entry of the batch, returned as a Python float."""
    z = 3.0 * torch.randn(64, 4, 8, 8) + 0.5
    out = t.call(fn, z)
    if isinstance(out, torch.Tensor) and out.numel() > 1:
        t.check(False, "latent_scale returns one number for the whole batch", f"got a tensor of shape {tuple(out.shape)}",
                hint="one scalar for all entries (flatten everything: z.std()), not one per channel or per image",
                decisive=True)
        return
    t.check(isinstance(out, float), "latent_scale returns a Python float", f"got {type(out).__name__}",
            hint="return float(...) of the 0-dim tensor: the scale is a constant stored on the model's card")
    try:
        value = float(out)
    except (TypeError, ValueError):
        t.check(False, "latent_scale returns a number", f"got {type(out).__name__}", decisive=True)
        return
    expected = float(1.0 / z.double().std())
    mistakes = {"that is 1/variance: the scale divides by the standard deviation (take the square root)":
                float(1.0 / z.double().var()),
                "that is the std itself: the scale factor is its reciprocal, 1/std, so that s·z has std 1": float(z.double().std()),
                "the std subtracts the mean; the root mean square √mean(z²) does not (these latents have mean 0.5)":
                float(1.0 / z.double().pow(2).mean().sqrt())}
    diagnose(t, torch.tensor(value), torch.tensor(expected), "s = 1/std for latents (64, 4, 8, 8) with std 3, mean 0.5",
             {k: torch.tensor(v) for k, v in mistakes.items()}, hint="s = 1 / z.std() over all entries", rtol=2e-3)
    # another rank, float64, the scaled latents have unit std
    z2 = 0.2 * torch.randn(500, 6, dtype=torch.float64) - 1.0
    out = t.call(fn, z2)
    try:
        value = float(out)
    except (TypeError, ValueError):
        t.check(False, "latent_scale returns a number", f"got {type(out).__name__}", decisive=True)
        return
    t.close(torch.tensor(value), torch.tensor(float(1.0 / z2.std())), "s = 1/std for float64 points (500, 6) with std 0.2",
            hint="flatten all entries (any shape (B, ...)) and take 1/std", rtol=2e-3)
    t.close(torch.tensor(float((z2 * value).std())), torch.tensor(1.0), "s·z has std 1", rtol=2e-3)
    t.raises(fn, (torch.ones(1),), ValueError, "a single number raises a ValueError (no std can be estimated)",
             hint="check latents.numel() ≥ 2 first and raise ValueError with a message")


# ---------------------------------------------------------------- 2. the autoencoder's loss


def _ae_loss_wrong(model, x0, generator, beta, mistake):
    mean, logvar = model.encode(x0)
    std = logvar.exp() if mistake == "std_is_var" else (0.5 * logvar).exp()
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    z = mean if mistake == "no_sample" else mean + std * eps
    x_hat = model.decode(z)
    rec = (x_hat - x0).pow(2).flatten(1).sum(1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    if mistake == "no_half":
        kl = 2 * kl
    if mistake == "kl_mean":
        kl = kl / mean[0].numel()
    if mistake == "no_beta":
        beta = 1.0
    return ((rec + beta * kl) / x0[0].numel()).mean()


def _ae_model(in_channels, latent_channels, pad, seed):
    torch.manual_seed(seed)
    model = Autoencoder(in_channels, latent_channels, (8, 8), pad)
    with torch.no_grad():  # a posterior away from N(0, I), so that the KL term is not tiny
        last = model.encoder[-1]
        last.bias.add_(0.3 * torch.randn_like(last.bias))
    return model


@exercise("15", "autoencoder_loss", points=3)
def autoencoder_loss(t: Tester, fn):
    """mean_b[‖x − D(z)‖² + β KL(q(z|x) ‖ N(0, I))] / D_x with z = μ + σ ε (one draw of ε, from the generator)."""
    for in_ch, lat, pad, shape, beta in ((1, 4, 2, (4, 1, 12, 12), 0.5), (2, 3, 0, (3, 2, 8, 8), 2.0)):
        model = _ae_model(in_ch, lat, pad, 7)
        x0 = torch.rand(shape) * 2 - 1
        out = t.call(fn, model, x0, torch.Generator().manual_seed(3), beta=beta)
        t.tensor(out, shape=(), dtype=torch.float32, what=f"the loss for images {shape}")
        expected = ae_ref.autoencoder_loss(model, x0, torch.Generator().manual_seed(3), beta=beta)
        mistakes = {"σ = exp(½ log σ²): exp(log σ²) is the variance, not the std":
                    _ae_loss_wrong(model, x0, torch.Generator().manual_seed(3), beta, "std_is_var"),
                    "decode a sample z = μ + σ ε (the reparameterisation), not the mean μ":
                    _ae_loss_wrong(model, x0, torch.Generator().manual_seed(3), beta, "no_sample"),
                    "the KL of a diagonal Gaussian has a ½: ½ Σ (μ² + σ² − 1 − log σ²)":
                    _ae_loss_wrong(model, x0, torch.Generator().manual_seed(3), beta, "no_half"),
                    "sum the KL over the latent's entries (like the squared error over pixels), do not average it":
                    _ae_loss_wrong(model, x0, torch.Generator().manual_seed(3), beta, "kl_mean"),
                    "weigh the KL by the beta you are given": _ae_loss_wrong(model, x0, torch.Generator().manual_seed(3), beta,
                                                                              "no_beta"),
                    "use the beta you are given, not the default 1e-4":
                    ae_ref.autoencoder_loss(model, x0, torch.Generator().manual_seed(3))}
        ok = diagnose(t, out, expected, f"the loss for images {shape}, β = {beta}", mistakes,
                      hint="draw ε once with randn(μ.shape, generator=generator); per image ‖x − D(z)‖² + β·KL, "
                           "divided by the pixels per image, averaged over the batch", rtol=1e-4, atol=1e-6)
        if ok:
            params = list(model.parameters())
            want = torch.autograd.grad(expected, params)
            grad_close(t, out, params, want, "its gradient reaches the encoder and the decoder",
                       hint="keep the whole computation in torch, through z = μ + σ ε")


# ---------------------------------------------------------------- 3. the latent training loss


class _Recorder(torch.nn.Module):
    """A tiny ε/v-model that records its inputs: out = w · x_t + b(t)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))
        self.b = torch.nn.Parameter(torch.tensor(0.1))
        self.calls = []

    def forward(self, x_t, t):
        self.calls.append((x_t.detach(), t))
        return self.w * x_t + self.b * (t.to(x_t.dtype) / 1000).reshape(-1, *([1] * (x_t.dim() - 1)))


@exercise("15", "latent_loss", points=2)
def latent_loss(t: Tester, fn):
    """z_0 = scale · μ(x) without gradient, then loss(schedule, model, z_0, generator)."""
    s = NoiseSchedule.make("cosine", 1000)
    ae = _ae_model(1, 4, 2, 5)
    for p in ae.parameters():
        p.requires_grad_(True)
    x0 = torch.rand(6, 1, 12, 12) * 2 - 1
    for scale, loss in ((0.37, v_loss), (2.5, ddpm_loss)):
        model = _Recorder()
        kwargs = dict(autoencoder=ae, scale=scale) if loss is v_loss else dict(autoencoder=ae, scale=scale, loss=loss)
        out = t.call(fn, s, model, x0, torch.Generator().manual_seed(2), **kwargs)
        what = f"scale {scale}" + (", loss=ddpm_loss" if loss is ddpm_loss else " (default loss, v_loss)")
        t.tensor(out, shape=(), dtype=torch.float32, what=f"the loss ({what})")
        ref_model = _Recorder()
        expected = ref.latent_loss(s, ref_model, x0, torch.Generator().manual_seed(2), autoencoder=ae, scale=scale, loss=loss)
        mean = ae.encode(x0)[0].detach()
        mistakes = {"multiply the latents by the scale (z_0 = s · μ), do not forget it":
                    loss(s, _Recorder(), mean, torch.Generator().manual_seed(2)),
                    "multiply by the scale, do not divide (z_0 = s · μ has unit std)":
                    loss(s, _Recorder(), mean / scale, torch.Generator().manual_seed(2)),
                    "use the loss you are given (ddpm_loss here), not v_loss always":
                    v_loss(s, _Recorder(), mean * scale, torch.Generator().manual_seed(2))}
        ok = diagnose(t, out, expected, f"the latent loss, {what}", mistakes,
                      hint="z0 = autoencoder.encode(x0)[0] * scale (the posterior mean, no sample), then "
                           "loss(schedule, model, z0, generator)", rtol=1e-5, atol=1e-6)
        if model.calls:
            t.check(model.calls[0][0].shape == (6, 4, 4, 4), "the model sees latents (B, 4, 4, 4), not images",
                    f"got {tuple(model.calls[0][0].shape)}", hint="encode first: the diffusion model lives in latent space")
        if ok:
            want = torch.autograd.grad(expected, [ref_model.w, ref_model.b])
            grad_close(t, out, [model.w, model.b], want, "its gradient reaches the diffusion model")
        if isinstance(out, torch.Tensor) and out.requires_grad:
            got = torch.autograd.grad(out, list(ae.parameters()), allow_unused=True)
            t.check(all(g is None or g.abs().max() == 0 for g in got), "no gradient reaches the frozen autoencoder",
                    "the autoencoder's weights get a gradient",
                    hint="encode inside torch.no_grad(): the autoencoder is trained once, before, and then frozen")


# ---------------------------------------------------------------- 4. the latent sampler


class _LinearEps:
    def __call__(self, z, t):
        tt = t.to(z.dtype).reshape(-1, *([1] * (z.dim() - 1)))
        return (0.3 + tt / 2000) * z + tt / 1000


def _sample_wrong(s, ae, scale, shape, steps, eta, seed, mistake):
    g = torch.Generator().manual_seed(seed)
    z0 = ddim_sample(s, _LinearEps(), shape, steps, eta, generator=g, clip_denoised=1.0 if mistake == "clip" else None)
    with torch.no_grad():
        if mistake == "no_scale":
            return ae.decode(z0).clamp(-1, 1)
        if mistake == "times_scale":
            return ae.decode(z0 * scale).clamp(-1, 1)
        x = ae.decode(z0 / scale)
        return x if mistake == "no_clamp" else x.clamp(-1, 1)


@exercise("15", "latent_sample", points=3)
def latent_sample(t: Tester, fn):
    """DDIM (steps, η) on latents from z_T ~ N(0, I) with the generator, then D(z_0 / s) clipped to [−1, 1]."""
    s = NoiseSchedule.make("cosine", 1000)
    ae = _ae_model(1, 4, 2, 11)
    with torch.no_grad():
        ae.decoder[-1].weight.mul_(2.0)  # decoded values beyond [−1, 1], so that the clamp matters
    for scale, shape, steps, eta in ((0.4, (3, 4, 4, 4), 7, 0.0), (1.7, (2, 4, 2, 2), 4, 1.0)):
        out = t.call(fn, s, _LinearEps(), ae, scale, shape, steps=steps, eta=eta, generator=torch.Generator().manual_seed(4))
        img = (shape[0], 1, 4 * shape[2] - 4, 4 * shape[3] - 4)
        what = f"latents {shape}, scale {scale}, {steps} steps, η = {eta:g}"
        t.tensor(out, shape=img, dtype=torch.float32, what=f"the images ({what})")
        with torch.no_grad():
            expected = ref.latent_sample(s, _LinearEps(), ae, scale, shape, steps, eta, torch.Generator().manual_seed(4))
        mistakes = {"decode z_0 / scale: the latents were multiplied by the scale for training, undo it before the decoder":
                    _sample_wrong(s, ae, scale, shape, steps, eta, 4, "no_scale"),
                    "divide by the scale before decoding (D(z_0 / s)), do not multiply":
                    _sample_wrong(s, ae, scale, shape, steps, eta, 4, "times_scale"),
                    "clip the decoded images to [−1, 1]": _sample_wrong(s, ae, scale, shape, steps, eta, 4, "no_clamp"),
                    "do not clip the latents' x̂_0 to [−1, 1] (clip_denoised): unit-std latents reach ±3 and beyond; "
                    "clip the decoded images instead": _sample_wrong(s, ae, scale, shape, steps, eta, 4, "clip"),
                    "use the steps and eta you are given, not 50 and 0":
                    _sample_wrong(s, ae, scale, shape, 50, 0.0, 4, "")}
        diagnose(t, out, expected, f"the images, {what}", mistakes,
                 hint="z = ddim_sample(schedule, eps_model, shape, steps, eta, generator=generator) (or simulate over "
                      "ddim_step), then autoencoder.decode(z / scale).clamp(-1, 1)", rtol=1e-4, atol=1e-5)
