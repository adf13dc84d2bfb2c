"""The exercise checks catch realistic mistakes, name them in the hint, and score a wrong formula at
most a third of the exercise's points (the grading rule of minidiff.course.checks.core).

Each mutant is a learner's function with one known mistake, one or more per class of mistake:
a loss detached from the model, a (B, 1) reshape that only fits 2-D points, a dimension folded
into a constant, a dtype lost on one input path, a non-default argument ignored, a wrong formula,
and a crash inside the learner's code (whose line the hint must quote). The references (minidiff's
own functions, which the solution notebooks match) must pass every check.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from minidiff import ddim, elbo, embedding, forward, guidance, langevin, losses, sampling, schedules, score
from minidiff.course.checks import core, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08
from minidiff.schedules import extract
from minidiff.utils import randn

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:Using a target size:UserWarning")  # a mutant's broadcasting, on purpose
MUTANTS = []  # (id, check, learner objects, text the hint must contain, is it a wrong formula?)
REFERENCES = []  # (check, learner objects) that must pass every test


# ---------------------------------------------------------------- lesson 01
TABLES = ("betas", "alphas", "alphas_cumprod", "snr", "log_snr")


def schedule_tables(betas):
    s = schedules.NoiseSchedule(betas)
    return {k: getattr(s, k) for k in TABLES}


def tables_cumsum(betas):  # ᾱ_t as a cumulative sum
    out = schedule_tables(betas)
    ab = torch.cat([torch.ones(1, dtype=betas.dtype), 1 - torch.cumsum(betas, 0)])
    return {**out, "alphas_cumprod": ab, "snr": ab / (1 - ab), "log_snr": torch.log(ab) - torch.log1p(-ab)}


def tables_flipped_log_snr(betas):
    out = schedule_tables(betas)
    return {**out, "log_snr": torch.log1p(-out["alphas_cumprod"]) - torch.log(out["alphas_cumprod"])}


def tables_crash(betas):
    betas = torch.cat([torch.zeros(1, 1), betas])  # a (1, 1) zero: a shape error
    return betas


def _cosine(T, s=0.008, max_beta=0.999, start=0, clip=True, dtype=torch.float64):
    t = torch.arange(start, start + T + 1, dtype=dtype)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = 1 - abar[1:] / abar[:-1]
    return betas.clamp(max=max_beta) if clip else betas


def cosine_shifted(T, s=0.008, max_beta=0.999):  # ᾱ at t = 1..T+1: β_T turns negative, max() still 0.999
    return _cosine(T, s, max_beta, start=1)


def cosine_no_clip(T, s=0.008, max_beta=0.999):
    return _cosine(T, s, max_beta, clip=False)


def cosine_fixed_max_beta(T, s=0.008, max_beta=0.999):
    return _cosine(T, s, 0.999)


def cosine_float32(T, s=0.008, max_beta=0.999):
    return _cosine(T, s, max_beta).float()


def sigmoid_no_tau(T, start=-3.0, end=3.0, tau=1.0, max_beta=0.999):
    return schedules.sigmoid_betas(T, start, end, 1.0, max_beta)


def sigmoid_fixed_max_beta(T, start=-3.0, end=3.0, tau=1.0, max_beta=0.999):
    return schedules.sigmoid_betas(T, start, end, tau)


MUTANTS += [
    # id, check, learner objects, words the hint must contain, a wrong formula (score ≤ 1/3)?
    ("01 cumsum for cumprod", lesson01.schedule_tables, (tables_cumsum,), "cumulative *product*", True),
    ("01 log-SNR sign flipped", lesson01.schedule_tables, (tables_flipped_log_snr,), "sign flipped", True),
    ("01 crash: shape error", lesson01.schedule_tables, (tables_crash,),
     ("betas = torch.cat([torch.zeros(1, 1), betas])", "a shape mismatch"), True),
    ("01 cosine: ᾱ shifted, negative β_T", lesson01.cosine_betas, (cosine_shifted,), "β_T turns negative", True),
    ("01 cosine: no clip", lesson01.cosine_betas, (cosine_no_clip,), "forgot the clip", True),
    ("01 cosine: max_beta hard-coded", lesson01.cosine_betas, (cosine_fixed_max_beta,), "ignore max_beta", True),
    ("01 cosine: float32", lesson01.cosine_betas, (cosine_float32,), "keep the schedule in float64", False),
    ("01 sigmoid: τ left out", lesson01.sigmoid_betas, (sigmoid_no_tau,), "τ", True),
    ("01 sigmoid: max_beta hard-coded", lesson01.sigmoid_betas, (sigmoid_fixed_max_beta,), "ignore max_beta", True),
]
REFERENCES += [
    (lesson01.schedule_tables, (schedule_tables,)),
    (lesson01.cosine_betas, (schedules.cosine_betas,)),
    (lesson01.sigmoid_betas, (schedules.sigmoid_betas,)),
]


# ---------------------------------------------------------------- lesson 02
def add_noise_b1(schedule, x0, noise, t):  # (B, 1) columns: fine for points, a crash on images
    if noise.shape != x0.shape:
        raise ValueError("noise must be shaped like x0")
    abar = schedule.alphas_cumprod[t].reshape(-1, 1).to(x0.dtype)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def add_noise_no_sqrt(schedule, x0, noise, t):
    if noise.shape != x0.shape:
        raise ValueError("noise must be shaped like x0")
    abar = extract(schedule.alphas_cumprod, t, x0)
    return abar * x0 + (1 - abar).sqrt() * noise


def add_noise_index_past_end(schedule, x0, noise, t):
    if noise.shape != x0.shape:
        raise ValueError("noise must be shaped like x0")
    abar = schedule.alphas_cumprod[t + 1].reshape(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def q_step_float32(schedule, x_prev, t, noise=None):  # the coefficients cast to float32: float64 points lose their dtype
    if (torch.as_tensor(t) < 1).any():
        raise ValueError("t ≥ 1")
    noise = torch.randn_like(x_prev) if noise is None else noise
    a = extract(schedule.alphas, t, x_prev).float()
    b = extract(schedule.betas, t, x_prev).float()
    return a.sqrt() * x_prev.float() + b.sqrt() * noise.float()


def q_step_ignores_noise(schedule, x_prev, t, noise=None):
    return forward.q_step(schedule, x_prev, t, None)


def posterior_swapped(schedule, x0, x_t, t):
    abar, abar_prev = extract(schedule.alphas_cumprod, t, x_t), extract(schedule.alphas_cumprod, t - 1, x_t)
    alpha, beta = extract(schedule.alphas, t, x_t), extract(schedule.betas, t, x_t)
    mean = abar_prev.sqrt() * beta / (1 - abar) * x_t + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x0
    return mean, (1 - abar_prev) / (1 - abar) * beta


def posterior_float32(schedule, x0, x_t, t):
    mean, var = forward.q_posterior_mean_var(schedule, x0, x_t, t)
    return mean.float(), var.float()


MUTANTS += [
    ("02 add_noise: (B, 1) reshape", lesson02.add_noise, (add_noise_b1,), "a (B, 1) reshape", False),
    ("02 add_noise: missing sqrt", lesson02.add_noise, (add_noise_no_sqrt,), "missing sqrt", True),
    ("02 add_noise: crash, index t + 1", lesson02.add_noise, (add_noise_index_past_end,),
     ("abar = schedule.alphas_cumprod[t + 1]", "index them with t itself (not t + 1)"), True),
    ("02 q_step: float32 on the float64 path", lesson02.q_step, (q_step_float32,), "float64 inputs came back float32", False),
    ("02 q_step: noise argument ignored", lesson02.q_step, (q_step_ignores_noise,), "use the noise you are given", True),
    ("02 posterior: coefficients swapped", lesson02.q_posterior_mean_var, (posterior_swapped,), "swapped", True),
    ("02 posterior: float32 on the float64 path", lesson02.q_posterior_mean_var, (posterior_float32,),
     "float64 inputs came back float32", False),
]
REFERENCES += [
    (lesson02.q_step, (forward.q_step,)),
    (lesson02.add_noise, (forward.add_noise,)),
    (lesson02.q_posterior_mean_var, (forward.q_posterior_mean_var,)),
]


# ---------------------------------------------------------------- lesson 03
def kl_detached(mean1, var1, mean2, var2):
    return elbo.gaussian_kl(mean1, var1, mean2, var2).detach()


def kl_float64(mean1, var1, mean2, var2):  # everything cast to float64: float32 inputs come back float64
    return elbo.gaussian_kl(*(torch.as_tensor(v, dtype=torch.float64) for v in (mean1, var1, mean2, var2)))


def kl_no_half(mean1, var1, mean2, var2):
    return 2 * elbo.gaussian_kl(mean1, var1, mean2, var2)


def kl_math_log(mean1, var1, mean2, var2):
    mean1, var1, mean2, var2 = (torch.as_tensor(v) for v in (mean1, var1, mean2, var2))
    if (var1 <= 0).any() or (var2 <= 0).any():
        raise ValueError("variances must be positive")
    log_ratio = math.log(var2 / var1)  # a Python float: fine for one number, a crash for a batch
    return 0.5 * (log_ratio + (var1 + (mean1 - mean2) ** 2) / var2 - 1)


def mean_from_eps_b1(schedule, x_t, t, eps):
    if (torch.as_tensor(t) < 1).any():
        raise ValueError("t ≥ 1")
    col = lambda v: v[t].reshape(-1, 1).to(x_t.dtype)  # noqa: E731
    return (x_t - col(schedule.betas / (1 - schedule.alphas_cumprod).sqrt()) * eps) / col(schedule.alphas.sqrt())


def mean_from_eps_no_sqrt(schedule, x_t, t, eps):
    return forward.predict_mean_from_eps(schedule, x_t, t, eps) * extract(schedule.alphas.sqrt(), t, x_t) / extract(
        schedule.alphas, t, x_t)


def weight_default_tilde(schedule, t, sigma2="beta_tilde"):
    return elbo.eps_mse_weight(schedule, t, sigma2)


def weight_tilde_unpatched(schedule, t, sigma2="beta"):
    if isinstance(sigma2, str) and sigma2 == "beta_tilde":
        b, a, ab = schedule.betas, schedule.alphas, schedule.alphas_cumprod
        var = torch.zeros_like(b)
        var[1:] = (1 - ab[:-1]) / (1 - ab[1:]) * b[1:]  # β̃_1 = 0 left as it is
        return b[t] ** 2 / (2 * var[t] * a[t] * (1 - ab[t]))
    return elbo.eps_mse_weight(schedule, t, sigma2)


MUTANTS += [
    ("03 gaussian_kl: detached", lesson03.gaussian_kl, (kl_detached,), "detached", True),
    ("03 gaussian_kl: float64 on the float32 path", lesson03.gaussian_kl, (kl_float64,), "float32 inputs came back float64",
     False),
    ("03 gaussian_kl: missing ½", lesson03.gaussian_kl, (kl_no_half,), "missing ½", True),
    ("03 gaussian_kl: crash, math.log on a batch", lesson03.gaussian_kl, (kl_math_log,),
     ("log_ratio = math.log(var2 / var1)", "use the torch version (torch.log"), True),
    ("03 predict_mean_from_eps: (B, 1) reshape", lesson03.predict_mean_from_eps, (mean_from_eps_b1,), "(B, 1) reshape", False),
    ("03 predict_mean_from_eps: divide by α_t", lesson03.predict_mean_from_eps, (mean_from_eps_no_sqrt,),
     "divide by √α_t (a square root), not by α_t", True),
    ("03 eps_mse_weight: wrong default sigma2", lesson03.eps_mse_weight, (weight_default_tilde,), 'sigma2="beta"', False),
    ("03 eps_mse_weight: β̃_1 = 0 kept", lesson03.eps_mse_weight, (weight_tilde_unpatched,), "σ_1² = β_1", True),
]
REFERENCES += [
    (lesson03.gaussian_kl, (elbo.gaussian_kl,)),
    (lesson03.predict_mean_from_eps, (forward.predict_mean_from_eps,)),
    (lesson03.eps_mse_weight, (elbo.eps_mse_weight,)),
]


# ---------------------------------------------------------------- lesson 04
def _draws(schedule, x0, generator):
    t = torch.randint(1, schedule.T + 1, (x0.shape[0],), generator=generator)
    return t, torch.randn(x0.shape, generator=generator).to(x0)


def loss_detached(schedule, model, x0, generator=None):
    t, noise = _draws(schedule, x0, generator)
    with torch.no_grad():
        pred = model(forward.add_noise(schedule, x0, noise, t), t)
    return F.mse_loss(pred, noise)


def loss_folded_d(schedule, model, x0, generator=None):  # ½ Σ over the coordinates: right for D = 2 only
    t, noise = _draws(schedule, x0, generator)
    return (model(forward.add_noise(schedule, x0, noise, t), t) - noise).pow(2).sum(1).mean() / 2


def loss_b1(schedule, model, x0, generator=None):  # its own x_t with (B, 1) columns
    t, noise = _draws(schedule, x0, generator)
    abar = schedule.alphas_cumprod[t].float()[:, None]
    return F.mse_loss(model(abar.sqrt() * x0 + (1 - abar).sqrt() * noise, t), noise)


def loss_t_from_0(schedule, model, x0, generator=None):
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    return F.mse_loss(model(forward.add_noise(schedule, x0, noise, t), t), noise)


def embedding_fixed_period(t, dim, max_period=10_000.0):
    return embedding.timestep_embedding(t, dim)


def embedding_float64(t, dim, max_period=10_000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    angles = t.double()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def step_no_cast(schedule, eps, x_t, t, noise):  # float64 tables meet float32 points: a float64 result
    col = lambda v: v[t].reshape(-1, *([1] * (x_t.dim() - 1)))  # noqa: E731
    beta, alpha, abar = col(schedule.betas), col(schedule.alphas), col(schedule.alphas_cumprod)
    mean = (x_t - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    return mean + torch.where((t == 1).reshape(-1, *([1] * (x_t.dim() - 1))), 0, beta.sqrt()) * noise


def step_no_sqrt(schedule, eps, x_t, t, noise):
    beta, alpha, abar = (extract(v, t, x_t) for v in (schedule.betas, schedule.alphas, schedule.alphas_cumprod))
    mean = (x_t - beta / (1 - abar) * eps) / alpha.sqrt()
    return mean + torch.where((t == 1).reshape(-1, *([1] * (x_t.dim() - 1))), 0, beta.sqrt()) * noise


def step_where_crash(schedule, eps, x_t, t, noise):
    beta, alpha, abar = (extract(v, t, x_t) for v in (schedule.betas, schedule.alphas, schedule.alphas_cumprod))
    mean = (x_t - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    sigma = torch.where(t == 1, torch.zeros_like(beta), beta.sqrt())  # (B,) against (B, 1): (B, B)
    return mean + sigma * noise


def step_float_index(schedule, eps, x_t, t, noise):
    t = t.float()  # as for an embedding; but tables need integer indices
    beta = schedule.betas[t].reshape(-1, 1).to(x_t.dtype)
    return x_t + beta * eps + noise


def sample_no_noise(schedule, model, shape, device="cpu", generator=None, return_trajectory=False):
    x = torch.randn(shape, generator=generator)
    traj = [x]
    for step in range(schedule.T, 0, -1):
        tt = torch.full((shape[0],), step, dtype=torch.long)
        with torch.no_grad():
            x = sampling.ddpm_step(schedule, model(x, tt), x, tt, noise=torch.zeros_like(x))
        traj.append(x)
    return (x, torch.stack(traj)) if return_trajectory else x


MUTANTS += [
    ("04 ddpm_loss: detached (torch.no_grad)", lesson04.ddpm_loss, (loss_detached,), "the loss is detached from the model", True),
    ("04 ddpm_loss: D = 2 folded in", lesson04.ddpm_loss, (loss_folded_d,), "folded the data's dimension", True),
    ("04 ddpm_loss: (B, 1) reshape", lesson04.ddpm_loss, (loss_b1,), "(B, 1) reshape", False),
    ("04 ddpm_loss: t from 0..T−1", lesson04.ddpm_loss, (loss_t_from_0,), "randint(1, T + 1, ...)", True),
    ("04 embedding: max_period ignored", lesson04.timestep_embedding, (embedding_fixed_period,), "ignore max_period", True),
    ("04 embedding: float64", lesson04.timestep_embedding, (embedding_float64,), "the embedding is float32", False),
    ("04 ddpm_step: float64 tables not cast", lesson04.ddpm_step, (step_no_cast,), "float32 inputs came back float64", False),
    ("04 ddpm_step: missing sqrt", lesson04.ddpm_step, (step_no_sqrt,), "the square root is on (1 − ᾱ_t)", True),
    ("04 ddpm_step: crash, torch.where on (B,)", lesson04.ddpm_step, (step_where_crash,),
     ("line 5 of step_where_crash:  return mean + sigma * noise", "(B, 1, 1, …)"), True),
    ("04 ddpm_step: crash, float t as an index", lesson04.ddpm_step, (step_float_index,),
     ("line 3 of step_float_index:  beta = schedule.betas[t]", "index tables with an integer tensor"), True),
    ("04 ddpm_sample: no noise", lesson04.ddpm_sample, (sample_no_noise,), "no noise", True),
]
REFERENCES += [
    (lesson04.timestep_embedding, (embedding.timestep_embedding,)),
    (lesson04.ddpm_loss, (losses.ddpm_loss,)),
    (lesson04.ddpm_step, (sampling.ddpm_step,)),
    (lesson04.ddpm_sample, (sampling.ddpm_sample,)),
]


# ---------------------------------------------------------------- lesson 05
def resblock_emb_3d(block, x, emb):
    h = block.conv1(F.silu(block.norm1(x)))
    h = h + block.emb(F.silu(emb))[:, :, None]  # (B, C, 1): one None short
    return block.conv2(block.dropout(F.silu(block.norm2(h)))) + block.skip(x)


def resblock_no_skip(block, x, emb):
    h = block.conv1(F.silu(block.norm1(x)))
    h = h + block.emb(F.silu(emb))[:, :, None, None]
    return block.conv2(block.dropout(F.silu(block.norm2(h))))


def _unet(model, x, t, y=None, cat_order=False, skip_after_down=False):
    emb = model.embed(t, y, x.shape[0])
    h = model.conv_in(x)
    skips = []
    for level in model.down:
        for block in level.blocks:
            h = block(h, emb)
        if not skip_after_down:
            skips.append(h)
        h = level.downsample(h)
        if skip_after_down:
            skips.append(h)
    h = model.mid2(model.mid_attn(model.mid1(h, emb)), emb)
    for level in model.up:
        h = level.upsample(h)
        h = torch.cat([skips.pop(), h] if cat_order else [h, skips.pop()], dim=1)
        for block in level.blocks:
            h = block(h, emb)
        h = level.attn(h)
    return model.conv_out(F.silu(model.norm_out(h)))


def unet_cat_order(model, x, t, y=None):
    return _unet(model, x, t, y, cat_order=True)


def unet_skip_after_down(model, x, t, y=None):
    return _unet(model, x, t, y, skip_after_down=True)


def _ddim(schedule, eps, x_t, t, t_prev, eta=0.0, noise=None, clip_denoised=None, col=None, clip=None):
    col = col or (lambda v, tt: extract(v, tt, x_t))
    abar, abar_prev = col(schedule.alphas_cumprod, t), col(schedule.alphas_cumprod, t_prev)
    x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    if clip_denoised is not None:
        c = clip or clip_denoised
        x0 = x0.clamp(-c, c)
        eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps
    return x_prev + sigma * noise if eta > 0 else x_prev


def ddim_step_b1(schedule, eps, x_t, t, t_prev, eta=0.0, noise=None, clip_denoised=None):
    col = lambda v, tt: v[tt].to(x_t.dtype).reshape(-1, 1)  # noqa: E731
    return _ddim(schedule, eps, x_t, t, t_prev, eta, noise, clip_denoised, col=col)


def ddim_step_float32(schedule, eps, x_t, t, t_prev, eta=0.0, noise=None, clip_denoised=None):
    col = lambda v, tt: extract(v, tt, x_t).float()  # noqa: E731
    return _ddim(schedule, eps, x_t, t, t_prev, eta, noise, clip_denoised, col=col)


def ddim_step_clip_one(schedule, eps, x_t, t, t_prev, eta=0.0, noise=None, clip_denoised=None):
    return _ddim(schedule, eps, x_t, t, t_prev, eta, noise, clip_denoised, clip=1.0)


def ddim_step_no_sqrt(schedule, eps, x_t, t, t_prev, eta=0.0, noise=None, clip_denoised=None):
    abar, abar_prev = extract(schedule.alphas_cumprod, t, x_t), extract(schedule.alphas_cumprod, t_prev, x_t)
    x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    return abar_prev * x0 + (1 - abar_prev) * eps


@torch.no_grad()
def ddim_sample_images_only(schedule, eps_model, shape, steps=50, eta=0.0, device=None, generator=None,
                            return_trajectory=False, clip_denoised=None):
    B, C, H, W = shape  # images only
    return ddim.ddim_sample(schedule, eps_model, (B, C, H, W), steps, eta, device, generator, return_trajectory,
                            clip_denoised)


@torch.no_grad()
def ddim_sample_ignores_clip(schedule, eps_model, shape, steps=50, eta=0.0, device=None, generator=None,
                             return_trajectory=False, clip_denoised=None):
    return ddim.ddim_sample(schedule, eps_model, shape, steps, eta, device, generator, return_trajectory)


MUTANTS += [
    ("05 resblock: crash, emb reshaped to (B, C, 1)", lesson05.resblock_forward, (resblock_emb_3d,),
     ("line 3 of resblock_emb_3d:  h = h + block.emb(F.silu(emb))[:, :, None]", "(B, 1, 1, …)"), True),
    ("05 resblock: no skip", lesson05.resblock_forward, (resblock_no_skip,), "the skip path is missing", True),
    ("05 unet: cat order swapped", lesson05.unet_forward, (unet_cat_order,), "torch.cat([h, skip], dim=1)", True),
    ("05 unet: crash, skip saved after downsampling", lesson05.unet_forward, (unet_skip_after_down,),
     ("h = torch.cat(", "a shape mismatch in the wiring: append the skip after a level's blocks and *before* downsampling"),
     True),
    ("05 ddim_step: (B, 1) reshape", lesson05.ddim_step, (ddim_step_b1,), "(B, 1) reshape", False),
    ("05 ddim_step: float32 coefficients", lesson05.ddim_step, (ddim_step_float32,), "ran in float32", False),
    ("05 ddim_step: clip hard-coded to 1", lesson05.ddim_step, (ddim_step_clip_one,), "whatever clip_denoised is", True),
    ("05 ddim_step: missing square roots", lesson05.ddim_step, (ddim_step_no_sqrt,), "missing square roots", True),
    ("05 ddim_sample: images only", lesson05.ddim_sample, (ddim_sample_images_only,), ("B, C, H, W = shape", "promises any rank"), False),
    ("05 ddim_sample: clip_denoised ignored", lesson05.ddim_sample, (ddim_sample_ignores_clip,), "clip_denoised is ignored",
     True),
]
REFERENCES += [
    (lesson05.resblock_forward, (lambda block, x, emb: block(x, emb),)),
    (lesson05.unet_forward, (lambda model, x, t, y=None: model(x, t, y),)),
    (lesson05.ddim_step, (ddim.ddim_step,)),
    (lesson05.ddim_sample, (ddim.ddim_sample,)),
]


# ---------------------------------------------------------------- lesson 06
def _mixture(x, means, stds, weights, log_var_factor=None):
    D = x.shape[1]
    diff = means[None] - x[:, None]
    var = stds**2
    factor = 0.5 * D if log_var_factor is None else log_var_factor
    r = torch.softmax(torch.log(weights) - factor * torch.log(var) - diff.pow(2).sum(-1) / (2 * var), dim=1)
    return (r[:, :, None] * diff / var[None, :, None]).sum(1)


def mixture_d_folded(x, means, stds, weights):  # −log σ_k²: D/2 = 1 for 2-D points only
    return _mixture(x, means, stds, weights, 1.0)


def mixture_float64(x, means, stds, weights):
    return _mixture(x.double(), means.double(), stds.double(), weights.double())


def mixture_sign(x, means, stds, weights):
    return -_mixture(x, means, stds, weights)


def mixture_no_broadcast(x, means, stds, weights):
    diff = means - x  # (K, D) against (N, D)
    return diff / stds**2


def dsm_detached(sigmas, score_model, x0, generator=None):
    return score.dsm_loss(sigmas, score_model, x0, generator).detach()


def dsm_b1(sigmas, score_model, x0, generator=None):
    idx = torch.randint(len(sigmas), (x0.shape[0],), generator=generator)
    sigma = sigmas[idx].to(x0)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    s = sigma[:, None]  # (B, 1)
    return 0.5 * (s * score_model(x0 + s * noise, sigma) + noise).pow(2).flatten(1).sum(1).mean()


def dsm_no_half(sigmas, score_model, x0, generator=None):
    return 2 * score.dsm_loss(sigmas, score_model, x0, generator)


class NCSNoGrad(score.NoiseConditionalScore):
    def forward(self, x, sigma):
        with torch.no_grad():
            return super().forward(x, sigma)


class NCSNoSqrt(score.NoiseConditionalScore):
    def forward(self, x, sigma):
        sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(x.shape[0])
        s = sigma[:, None]
        return -self.eps_net(x / (1 + s**2), 100 * torch.log(sigma)) / s


def score_fn_b1(schedule, eps_model):
    def score_fn(x_t, t):
        eps = eps_model(x_t, t)
        abar = schedule.alphas_cumprod[t].to(eps.dtype)[:, None]  # (B, 1)
        return -eps / (1 - abar).sqrt()

    return score_fn


def score_fn_float32(schedule, eps_model):
    def score_fn(x_t, t):
        eps = eps_model(x_t, t).float()
        return -eps / (1 - extract(schedule.alphas_cumprod, t, eps)).sqrt()

    return score_fn


def score_fn_variance(schedule, eps_model):
    def score_fn(x_t, t):
        eps = eps_model(x_t, t)
        return -eps / (1 - extract(schedule.alphas_cumprod, t, eps))

    return score_fn


MUTANTS += [
    ("06 mixture_score: D = 2 folded in", lesson06.mixture_score, (mixture_d_folded,), "you folded D = 2", True),
    ("06 mixture_score: float64 on the float32 path", lesson06.mixture_score, (mixture_float64,),
     "float32 inputs came back float64", False),
    ("06 mixture_score: sign flipped", lesson06.mixture_score, (mixture_sign,), "the sign is flipped", True),
    ("06 mixture_score: crash, no broadcasting over K", lesson06.mixture_score, (mixture_no_broadcast,),
     ("diff = means - x", "means[None, :, :] − x[:, None, :]"), True),
    ("06 dsm_loss: detached", lesson06.dsm_loss, (dsm_detached,), "the loss is detached from the model", True),
    ("06 dsm_loss: (B, 1) reshape", lesson06.dsm_loss, (dsm_b1,), "(B, 1) reshape", False),
    ("06 dsm_loss: missing ½", lesson06.dsm_loss, (dsm_no_half,), "the factor ½ is missing", True),
    ("06 NoiseConditionalScore: torch.no_grad", lesson06.NoiseConditionalScore, (NCSNoGrad,), "detached", True),
    ("06 NoiseConditionalScore: c_in without sqrt", lesson06.NoiseConditionalScore, (NCSNoSqrt,), "a square root", True),
    ("06 score_fn_from_eps: (B, 1) reshape", lesson06.score_fn_from_eps, (score_fn_b1,), "(B, 1) reshape", False),
    ("06 score_fn_from_eps: float32 on the float64 path", lesson06.score_fn_from_eps, (score_fn_float32,),
     "float64 inputs came back float32", False),
    ("06 score_fn_from_eps: variance for std", lesson06.score_fn_from_eps, (score_fn_variance,),
     "divide by the standard deviation", True),
]
REFERENCES += [
    (lesson06.mixture_score, (score.mixture_score,)),
    (lesson06.dsm_loss, (score.dsm_loss,)),
    (lesson06.NoiseConditionalScore, (score.NoiseConditionalScore,)),
    (lesson06.score_fn_from_eps, (score.score_fn_from_eps,)),
]


# ---------------------------------------------------------------- lesson 07
def step_delta_z(x, score_, step_size, generator=None):
    return x + 0.5 * step_size * score_ + step_size * randn(x.shape, generator, x.device, x.dtype)


def step_float32_noise(x, score_, step_size, generator=None):
    z = torch.randn(x.shape, generator=generator)  # float32 whatever x is
    return x + 0.5 * step_size * score_ + step_size**0.5 * z


def step_positional_generator(x, score_, step_size, generator=None):
    z = torch.randn(x.shape, generator)
    return x + 0.5 * step_size * score_ + step_size**0.5 * z


def chain_one_short(score_fn, x0, steps, step_size, generator=None, return_trajectory=False):
    return langevin.langevin_sample(score_fn, x0, steps - 1, step_size, generator, return_trajectory)


@torch.no_grad()
def annealed_no_sigma_l(sigmas, score_model, shape, steps_each=100, step_lr=2e-5, generator=None, x_init=None,
                        denoise=True, return_trajectory=False, device=None):
    def score_at(x, i):
        return score_model(x, torch.full((x.shape[0],), float(sigmas[i])))

    def step(x, i, i_next):
        for _ in range(steps_each):
            x = langevin.langevin_step(x, score_at(x, i), step_lr * float(sigmas[i]) ** 2, generator)
        return x

    x = float(sigmas[0]) * randn(shape, generator) if x_init is None else x_init
    out = sampling.simulate(step, x, list(range(len(sigmas) + 1)), return_trajectory=return_trajectory)
    x, traj = out if return_trajectory else (out, None)
    if denoise:
        x = x + float(sigmas[-1]) ** 2 * score_at(x, len(sigmas) - 1)
    return (x, traj) if return_trajectory else x


@torch.no_grad()
def _pc(schedule, eps_model, shape, device=None, corrector_steps=1, snr=0.16, generator=None, norm=None, alpha=True):
    norm = norm or (lambda v: v.flatten(1).norm(dim=1).mean())

    def step(x, t, t_next):
        tt = torch.full((shape[0],), t, dtype=torch.long)
        x = sampling.ddpm_step(schedule, eps_model(x, tt), x, tt, generator=generator)
        if t_next >= 1:
            sigma = (1 - schedule.alphas_cumprod[t_next]).sqrt().item()
            for _ in range(corrector_steps):
                s = -eps_model(x, tt - 1) / sigma
                z = randn(x.shape, generator)
                a = schedule.alphas[t_next].item() if alpha else 1.0
                x = langevin.langevin_step(x, s, 4 * a * (snr * norm(z) / norm(s)) ** 2, noise=z)
        return x

    return sampling.simulate(step, randn(shape, generator), list(range(schedule.T, -1, -1)))


def pc_dim1_norm(schedule, eps_model, shape, device=None, corrector_steps=1, snr=0.16, generator=None):
    return _pc(schedule, eps_model, shape, device, corrector_steps, snr, generator, norm=lambda v: v.norm(dim=1).mean())


def pc_no_alpha(schedule, eps_model, shape, device=None, corrector_steps=1, snr=0.16, generator=None):
    return _pc(schedule, eps_model, shape, device, corrector_steps, snr, generator, alpha=False)


MUTANTS += [
    ("07 langevin_step: δ·z for √δ·z", lesson07.langevin_sample, (step_delta_z, langevin.langevin_sample),
     "you used δ·z instead of √δ·z", True),
    ("07 langevin_step: float32 noise on the float64 path", lesson07.langevin_sample,
     (step_float32_noise, langevin.langevin_sample), "draw z in x's dtype", False),
    ("07 langevin_step: crash, generator passed by position", lesson07.langevin_sample,
     (step_positional_generator, langevin.langevin_sample),
     ("line 2 of step_positional_generator:  z = torch.randn(x.shape, generator)", "go by keyword"), True),
    ("07 langevin_sample: one step short", lesson07.langevin_sample, (langevin.langevin_step, chain_one_short),
     "one step too few", True),
    ("07 annealed: δ_i not divided by σ_L²", lesson07.annealed_langevin_sample, (annealed_no_sigma_l,),
     "misses the division by σ_L²", True),
    ("07 pc_sample: norm over dim 1 only", lesson07.pc_sample, (pc_dim1_norm,), "v.flatten(1).norm(dim=1)", True),
    ("07 pc_sample: α_{t−1} missing", lesson07.pc_sample, (pc_no_alpha,), "multiply δ by α_{t−1}", True),
]
REFERENCES += [
    (lesson07.langevin_sample, (langevin.langevin_step, langevin.langevin_sample)),
    (lesson07.annealed_langevin_sample, (langevin.annealed_langevin_sample,)),
    (lesson07.pc_sample, (langevin.pc_sample,)),
]


# ---------------------------------------------------------------- lesson 08
def _cfg(schedule, model, batch, generator=None, p_uncond=0.2, detach=False, col=None, folded=False):
    x0, y = batch
    drop = torch.rand(y.shape, generator=generator) < p_uncond
    y = torch.where(drop, torch.full_like(y, model.num_classes), y)
    t = losses.sample_timesteps(schedule, x0.shape[0], x0.device, generator)
    noise = randn(x0.shape, generator)
    if col is None:
        x_t = forward.add_noise(schedule, x0, noise, t)
    else:
        abar = col(schedule.alphas_cumprod[t].float())
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    pred = model(x_t, t, y)
    if folded:  # Σ over the coordinates / 4: right for 1×2×2 images only
        return (pred - noise).pow(2).flatten(1).sum(1).mean() / 4
    return F.mse_loss(pred.detach() if detach else pred, noise)


def cfg_detached(schedule, model, batch, generator=None, p_uncond=0.2):
    return _cfg(schedule, model, batch, generator, p_uncond, detach=True)


def cfg_images_only(schedule, model, batch, generator=None, p_uncond=0.2):
    return _cfg(schedule, model, batch, generator, p_uncond, col=lambda v: v[:, None, None, None])


def cfg_folded_d(schedule, model, batch, generator=None, p_uncond=0.2):
    return _cfg(schedule, model, batch, generator, p_uncond, folded=True)


def cfg_null_zero(schedule, model, batch, generator=None, p_uncond=0.2):
    x0, y = batch
    drop = torch.rand(y.shape, generator=generator) < p_uncond
    return losses.ddpm_loss(schedule, lambda x_t, t: model(x_t, t, torch.where(drop, 0, y)), x0, generator)


def guided_eps_images_only(model, x_t, t, y, w):
    null = torch.full_like(y, model.num_classes)
    eps_cond, eps_uncond = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
    if isinstance(w, torch.Tensor):
        w = w[:, None, None, None]
    return eps_uncond + w * (eps_cond - eps_uncond)


def guided_eps_other_convention(model, x_t, t, y, w):
    null = torch.full_like(y, model.num_classes)
    eps_cond, eps_uncond = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
    if isinstance(w, torch.Tensor):
        w = w.reshape(-1, *([1] * (x_t.dim() - 1)))
    return (1 + w) * eps_cond - w * eps_uncond


@torch.no_grad()
def _guided(schedule, model, y, w, shape, steps=20, generator=None, clip_denoised=1.0, device=None, clip=None,
            guard=True, sqrt=True):
    def step(x, t, t_prev):
        eps = guidance.guided_eps(model, x, torch.full_like(y, t), y, w)
        ab, ab_prev = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[t_prev].item()
        if not sqrt:
            return ab_prev * (x - (1 - ab) * eps) / ab + (1 - ab_prev) * eps
        x0 = (x - (1 - ab) ** 0.5 * eps) / ab**0.5
        if clip_denoised is not None or not guard:
            c = clip or clip_denoised
            x0 = x0.clamp(-c, c) if c is not None else x0.clamp(c, c)
            eps = (x - ab**0.5 * x0) / (1 - ab) ** 0.5
        return ab_prev**0.5 * x0 + (1 - ab_prev) ** 0.5 * eps

    return sampling.simulate(step, randn((len(y), *shape), generator), ddim.ddim_timesteps(schedule.T, steps) + [0])


def guided_sample_clip_one(schedule, model, y, w, shape, steps=20, generator=None, clip_denoised=1.0, device=None):
    return _guided(schedule, model, y, w, shape, steps, generator, clip_denoised, clip=1.0)


def guided_sample_no_sqrt(schedule, model, y, w, shape, steps=20, generator=None, clip_denoised=1.0, device=None):
    return _guided(schedule, model, y, w, shape, steps, generator, clip_denoised, sqrt=False)


def guided_sample_no_guard(schedule, model, y, w, shape, steps=20, generator=None, clip_denoised=1.0, device=None):
    return _guided(schedule, model, y, w, shape, steps, generator, clip_denoised, guard=False)


MUTANTS += [
    ("08 cfg_loss: detached", lesson08.cfg_loss, (cfg_detached,), "the loss is detached from the model", True),
    ("08 cfg_loss: images-only reshape", lesson08.cfg_loss, (cfg_images_only,), "got x_t of shape (256, 1, 256, 3)", False),
    ("08 cfg_loss: D = 4 folded in", lesson08.cfg_loss, (cfg_folded_d,), "folded the data's dimension", True),
    ("08 cfg_loss: ∅ = 0", lesson08.cfg_loss, (cfg_null_zero,), "not 0 or −1", True),
    ("08 guided_eps: w[:, None, None, None]", lesson08.guided_eps, (guided_eps_images_only,), "(B, 1, 1, …) with x.dim() − 1 ones",
     False),
    ("08 guided_eps: (1 + w) convention", lesson08.guided_eps, (guided_eps_other_convention,), "the other convention", True),
    ("08 guided_sample: clip hard-coded to 1", lesson08.guided_sample, (guided_sample_clip_one,), "whatever clip_denoised is",
     True),
    ("08 guided_sample: no square roots", lesson08.guided_sample, (guided_sample_no_sqrt,), "square roots of ᾱ", True),
    ("08 guided_sample: crash, clamp without the None guard", lesson08.guided_sample, (guided_sample_no_guard,),
     ("x0 = x0.clamp(-c, c) if c is not None else x0.clamp(c, c)", "clip only when it is not None"), True),
]
REFERENCES += [
    (lesson08.cfg_loss, (guidance.cfg_loss,)),
    (lesson08.guided_eps, (guidance.guided_eps,)),
    (lesson08.guided_sample, (guidance.guided_sample,)),
]


# ---------------------------------------------------------------- the machinery itself


@core.exercise("97", "rule", points=3)
def _rule(t, decisive, incidental):
    for ok in decisive:
        t.check(ok, "a value", decisive=True)
    for ok in incidental:
        t.check(ok, "a shape")


def test_grading_rule_weighs_values_and_caps_a_wrong_one_at_a_third():
    assert _rule([True] * 3, [True] * 2, quiet=True).score == 3
    slip = _rule([True] * 3, [True, False], quiet=True)  # weights 3·3 + 2, one incidental failed
    assert slip.score == pytest.approx(3 * 10 / 11) and slip.score > 2
    wrong = _rule([True, True, False], [True, True], quiet=True)  # a value failed: (6 + 2)/11 of the points, times ⅓
    assert wrong.score == pytest.approx(3 * 8 / 11 / 3) and wrong.score <= 1
    assert _rule([False] * 3, [True] * 2, quiet=True).score == pytest.approx(3 * 2 / 11 / 3)


def test_crash_hint_names_the_cause_for_each_kind():
    messages = {
        "device": "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
        "shape": "The size of tensor a (4) must match the size of tensor b (28) at non-singleton dimension 2",
        "dtype": "expected scalar type Float but found Double",
        "index": "index 1001 is out of bounds for dimension 0 with size 1001",
        "grad": "element 0 of tensors does not require grad and does not have a grad_fn",
    }
    for kind, message in messages.items():
        assert core._crash_cause(RuntimeError(message))[0] == kind, message
    assert core._crash_cause(TypeError("add_noise() missing 1 required positional argument: 't'"))[0] == "signature"
    assert core._crash_cause(NameError("name 'extract' is not defined"))[0] == "name"
    assert core._crash_cause(KeyError("x")) == ("", "")


def test_value_patterns_are_named():
    e = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    assert "sign is flipped" in core._pattern(-e, e, 1e-5, 1e-7)
    assert "twice the right answer" in core._pattern(2 * e, e, 1e-5, 1e-7)
    assert "off by the same +0.5" in core._pattern(e + 0.5, e, 1e-5, 1e-7)
    assert "only some rows are wrong (t = 5)" in core._pattern(e + torch.tensor([[0.0, 0.0], [1.0, 2.0]]), e, 1e-5, 1e-7,
                                                                 rows=["t = 1", "t = 5"])
    assert "three digits" in core._pattern(e * (1 + 1e-4 * torch.tensor([[1.0, -1.0], [0.5, 2.0]])), e, 1e-9, 1e-12)
    assert core._pattern(torch.rand(2, 2) + 5, e, 1e-5, 1e-7) == ""


# ---------------------------------------------------------------- the tests


def _run(check, objs):
    return check(*objs, quiet=True)


@pytest.mark.parametrize("check, objs", REFERENCES, ids=[c.__name__ for c, _ in REFERENCES])
def test_reference_passes_every_test(check, objs):
    r = _run(check, objs)
    assert r.status == "ok" and r.passed == r.total > 0 and r.score == r.points, "\n".join(r.messages)


@pytest.mark.parametrize("name, check, objs, named, formula", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught_named_and_scored(name, check, objs, named, formula):
    r = _run(check, objs)
    text = "\n".join(r.messages)
    assert r.passed < r.total, f"{name}: every test passed"
    for words in (named,) if isinstance(named, str) else named:  # a crash: its line, and its likely cause
        assert words in text, f"{name}: the messages do not name the mistake ({words!r}):\n{text}"
    if formula:
        assert r.score <= r.points / 3 + 1e-9, f"{name}: a wrong formula scored {r.score:.3g} of {r.points:g}\n{text}"
