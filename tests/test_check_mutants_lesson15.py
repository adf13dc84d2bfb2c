"""Lesson 15's checks catch realistic mistakes, name them in the hint, and score a wrong formula at most a
third of the exercise's points (the grading rule of minidiff.course.checks.core); minidiff's own functions
pass every test. Same layout as tests/test_check_mutants_lesson10.py."""

import pytest
import torch
from helpers import assert_mutant_caught, assert_reference_passes

from minidiff import autoencoder, latent
from minidiff.course.checks import lesson15
from minidiff.ddim import ddim_sample
from minidiff.vpred import v_loss

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")  # mutants fed one number
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = [
    (lesson15.latent_scale, (autoencoder.latent_scale,)),
    (lesson15.autoencoder_loss, (autoencoder.autoencoder_loss,)),
    (lesson15.latent_loss, (latent.latent_loss,)),
    (lesson15.latent_sample, (latent.latent_sample,)),
]


# ---------------------------------------------------------------- 1. latent_scale
def scale_var(latents):
    return float(1 / latents.var())


def scale_std(latents):
    return float(latents.std())


def scale_rms(latents):
    return float(1 / latents.pow(2).mean().sqrt())


def scale_per_channel(latents):
    return 1 / latents.transpose(0, 1).flatten(1).std(1)


def scale_tensor(latents):
    return 1 / latents.std()


MUTANTS += [
    ("15 scale: 1/variance", lesson15.latent_scale, (scale_var,), "1/variance", True),
    ("15 scale: std not 1/std", lesson15.latent_scale, (scale_std,), "reciprocal", True),
    ("15 scale: root mean square", lesson15.latent_scale, (scale_rms,), "root mean square", True),
    ("15 scale: per channel", lesson15.latent_scale, (scale_per_channel,), "one scalar for all entries", True),
    ("15 scale: a tensor, no float", lesson15.latent_scale, (scale_tensor,), "float(", False),
]


# ---------------------------------------------------------------- 2. autoencoder_loss
def _ae(model, x0, generator, beta, std_is_var=False, no_sample=False, half=0.5, kl_mean=False, detach=False):
    mean, logvar = model.encode(x0)
    std = logvar.exp() if std_is_var else (0.5 * logvar).exp()
    z = mean if no_sample else mean + std * torch.randn(mean.shape, generator=generator)
    rec = (model.decode(z) - x0).pow(2).flatten(1).sum(1)
    kl = half * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1)
    kl = kl.mean(1) if kl_mean else kl.sum(1)
    loss = ((rec + beta * kl) / x0[0].numel()).mean()
    return loss.detach() if detach else loss


def ae_std_is_var(model, x0, generator=None, beta=1e-4):
    return _ae(model, x0, generator, beta, std_is_var=True)


def ae_no_sample(model, x0, generator=None, beta=1e-4):
    return _ae(model, x0, generator, beta, no_sample=True)


def ae_no_half(model, x0, generator=None, beta=1e-4):
    return _ae(model, x0, generator, beta, half=1.0)


def ae_kl_mean(model, x0, generator=None, beta=1e-4):
    return _ae(model, x0, generator, beta, kl_mean=True)


def ae_beta_default(model, x0, generator=None, beta=1e-4):
    return _ae(model, x0, generator, 1e-4)


def ae_detached(model, x0, generator=None, beta=1e-4):
    return _ae(model, x0, generator, beta, detach=True)


MUTANTS += [
    ("15 ae loss: σ = exp(log σ²)", lesson15.autoencoder_loss, (ae_std_is_var,), "not the std", True),
    ("15 ae loss: decodes the mean", lesson15.autoencoder_loss, (ae_no_sample,), "reparameterisation", True),
    ("15 ae loss: KL without ½", lesson15.autoencoder_loss, (ae_no_half,), "has a ½", True),
    ("15 ae loss: KL averaged", lesson15.autoencoder_loss, (ae_kl_mean,), "do not average it", True),
    ("15 ae loss: β hard-coded", lesson15.autoencoder_loss, (ae_beta_default,), "not the default 1e-4", True),
    ("15 ae loss: detached", lesson15.autoencoder_loss, (ae_detached,), "detached", True),
]


# ---------------------------------------------------------------- 3. latent_loss
def ll_no_scale(schedule, model, x0, generator=None, *, autoencoder, scale, loss=v_loss):
    with torch.no_grad():
        z0 = autoencoder.encode(x0)[0]
    return loss(schedule, model, z0, generator)


def ll_divide(schedule, model, x0, generator=None, *, autoencoder, scale, loss=v_loss):
    with torch.no_grad():
        z0 = autoencoder.encode(x0)[0] / scale
    return loss(schedule, model, z0, generator)


def ll_always_v(schedule, model, x0, generator=None, *, autoencoder, scale, loss=v_loss):
    with torch.no_grad():
        z0 = autoencoder.encode(x0)[0] * scale
    return v_loss(schedule, model, z0, generator)


def ll_grad_into_encoder(schedule, model, x0, generator=None, *, autoencoder, scale, loss=v_loss):
    return loss(schedule, model, autoencoder.encode(x0)[0] * scale, generator)


MUTANTS += [
    ("15 latent loss: scale forgotten", lesson15.latent_loss, (ll_no_scale,), "do not forget it", True),
    ("15 latent loss: divides by scale", lesson15.latent_loss, (ll_divide,), "do not divide", True),
    ("15 latent loss: always v_loss", lesson15.latent_loss, (ll_always_v,), "use the loss you are given", True),
    ("15 latent loss: gradient into the autoencoder", lesson15.latent_loss, (ll_grad_into_encoder,), "torch.no_grad()", False),
]


# ---------------------------------------------------------------- 4. latent_sample
def _sample(schedule, eps_model, autoencoder, scale, shape, steps=50, eta=0.0, generator=None, device=None,
            decode=lambda z, s: z / s, clamp=True, clip=None, fixed=False):
    if fixed:
        steps, eta = 50, 0.0
    z0 = ddim_sample(schedule, eps_model, shape, steps, eta, generator=generator, clip_denoised=clip)
    x = autoencoder.decode(decode(z0, scale))
    return x.clamp(-1, 1) if clamp else x


def ls_no_scale(schedule, eps_model, autoencoder, scale, shape, steps=50, eta=0.0, generator=None, device=None):
    return _sample(schedule, eps_model, autoencoder, scale, shape, steps, eta, generator, decode=lambda z, s: z)


def ls_times_scale(schedule, eps_model, autoencoder, scale, shape, steps=50, eta=0.0, generator=None, device=None):
    return _sample(schedule, eps_model, autoencoder, scale, shape, steps, eta, generator, decode=lambda z, s: z * s)


def ls_no_clamp(schedule, eps_model, autoencoder, scale, shape, steps=50, eta=0.0, generator=None, device=None):
    return _sample(schedule, eps_model, autoencoder, scale, shape, steps, eta, generator, clamp=False)


def ls_clip_latents(schedule, eps_model, autoencoder, scale, shape, steps=50, eta=0.0, generator=None, device=None):
    return _sample(schedule, eps_model, autoencoder, scale, shape, steps, eta, generator, clip=1.0)


def ls_fixed_steps(schedule, eps_model, autoencoder, scale, shape, steps=50, eta=0.0, generator=None, device=None):
    return _sample(schedule, eps_model, autoencoder, scale, shape, steps, eta, generator, fixed=True)


MUTANTS += [
    ("15 sample: scale not undone", lesson15.latent_sample, (ls_no_scale,), "undo it before the decoder", True),
    ("15 sample: multiplies by scale", lesson15.latent_sample, (ls_times_scale,), "do not multiply", True),
    ("15 sample: no clamp", lesson15.latent_sample, (ls_no_clamp,), "clip the decoded images", True),
    ("15 sample: clips the latents", lesson15.latent_sample, (ls_clip_latents,), "do not clip the latents", True),
    ("15 sample: steps hard-coded", lesson15.latent_sample, (ls_fixed_steps,), "not 50 and 0", True),
]


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("check,objs", REFERENCES, ids=lambda v: getattr(v, "__name__", ""))
def test_references_pass_every_test(check, objs):
    assert_reference_passes(check, objs)


@pytest.mark.parametrize("mid,check,objs,needle,wrong_formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_fails_with_its_hint(mid, check, objs, needle, wrong_formula):
    assert_mutant_caught(mid, check, objs, needle, wrong_formula)
