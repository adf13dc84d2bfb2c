"""Classifier-free guidance (lesson 08; Ho & Salimans 2022).

One network learns both the conditional and the unconditional noise prediction:
it takes a label y in 0..K−1, or the extra "null" label ∅ = K (index `num_classes`),
and training replaces each label by ∅ with probability p_uncond (label dropout):

    y' = ∅ with probability p_uncond, else y                                   (Ho & Salimans 2022, Algorithm 1)

At sampling time the two predictions are mixed with a guidance scale w:

    ε̃_θ(x_t, t, y) = ε_θ(x_t, t, ∅) + w · (ε_θ(x_t, t, y) − ε_θ(x_t, t, ∅))     (Ho & Salimans 2022)

w = 0 is the unconditional model, w = 1 the conditional one, w > 1 pushes further in
the direction "more like y". Conventions: diffusers' `guidance_scale` is this w. Ho &
Salimans write ε̃ = (1 + w')·ε(y) − w'·ε(∅); it is the mix above with w = 1 + w' (their w' = 0
is our w = 1, their w' = 2 is our w = 3).

Why it works (Bayes' rule). With ε_θ(x_t, t, ·) = −√(1−ᾱ_t) ∇ log p_t(x_t | ·),

    ∇ log p_t(y | x_t) = ∇ log p_t(x_t | y) − ∇ log p_t(x_t)
                       = −(ε(x_t, t, y) − ε(x_t, t, ∅)) / √(1−ᾱ_t)              (Bayes' rule)

so ε(y) − ε(∅) is (up to −√(1−ᾱ_t)) the gradient of an *implicit classifier*, and the mix
is the noise prediction of the tilted density p_t(x_t) · p_t(y | x_t)^w:

    ε̃ = −√(1−ᾱ_t) [∇ log p_t(x_t) + w ∇ log p_t(y | x_t)]

Everything here works with any sampler that takes `eps_model(x_t, t)`: wrap a conditional
model with `guided_model(model, y, w)` and hand it to `sampling.ddpm_sample` or `ddim`.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Callable

import torch

from .ddim import ddim_sample, ddim_step
from .losses import ddpm_loss
from .sampling import ddpm_step
from .schedules import extract
from .utils import batch_shape, check_timesteps

# -- training: label dropout ---------------------------------------------------------


def _labels(name: str, y, num_classes: int | None = None, allow_null: bool = True) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.LongTensor of shape (B,), got {type(y).__name__}")
    if y.dtype != torch.long:
        raise TypeError(f"{name} must hold integer class labels (torch.long), got dtype {y.dtype}: use {name}.long()")
    if y.dim() != 1:
        raise ValueError(f"{name} must have shape (B,), one label per image, got {tuple(y.shape)}")
    if num_classes is not None and y.numel():
        top = num_classes if allow_null else num_classes - 1
        if (y < 0).any() or (y > top).any():
            raise ValueError(
                f"{name} must hold labels in 0..{top}" + (f" ({num_classes} is the null class ∅)" if allow_null else "")
                + f"; got min {int(y.min())}, max {int(y.max())}"
            )
    return y


def _num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (10 for MNIST), got {num_classes!r}")
    return num_classes


def null_labels(n: int, num_classes: int, device=None) -> torch.Tensor:
    """n copies of the null class ∅, whose index is `num_classes` (one past the last digit)."""
    return torch.full((n,), _num_classes(num_classes), dtype=torch.long, device=device)


def label_dropout(y: torch.Tensor, p_uncond: float, num_classes: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Label dropout (Ho & Salimans 2022, Algorithm 1): each label becomes ∅ (= num_classes) with probability p_uncond, independently.

    Returns a new tensor (y is not modified). With p_uncond = 0.1–0.2 the network spends
    most of its capacity on ε(x_t, t, y) and still learns ε(x_t, t, ∅) well enough.
    """
    num_classes = _num_classes(num_classes)
    _labels("y", y, num_classes)
    if isinstance(p_uncond, bool) or not isinstance(p_uncond, Real) or not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be a probability in [0, 1] (typically 0.1–0.2), got {p_uncond!r}")
    device = generator.device if generator is not None else y.device
    drop = (torch.rand(y.shape, generator=generator, device=device) < p_uncond).to(y.device)
    return torch.where(drop, torch.full_like(y, num_classes), y)


def cfg_loss(schedule, model, batch, generator: torch.Generator | None = None, p_uncond: float = 0.2,
             loss: Callable = ddpm_loss) -> torch.Tensor:
    """L_simple (DDPM eq. 14) of a conditional model on a batch (x0, y) whose labels are dropped
    to ∅ with probability p_uncond (Ho & Salimans 2022, Algorithm 1).
    `functools.partial(cfg_loss, schedule, p_uncond=0.2)` is a loss for `training.train`;
    `loss=minidiff.vpred.v_loss` trains a v-prediction model instead."""
    x0, y = batch
    y = label_dropout(y, p_uncond, model_num_classes(model), generator)
    return loss(schedule, lambda x_t, t: model(x_t, t, y), x0, generator)


# -- sampling: the guided prediction --------------------------------------------------


def combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w) -> torch.Tensor:
    """The guidance mix on two predictions: ε(∅) + w · (ε(y) − ε(∅)). w: a float or a (B,) tensor."""
    if eps_cond.shape != eps_uncond.shape:
        raise ValueError(f"eps_cond has shape {tuple(eps_cond.shape)} but eps_uncond has {tuple(eps_uncond.shape)}")
    w = _scale(w, eps_cond)
    return eps_uncond + w * (eps_cond - eps_uncond)


def _scale(w, x: torch.Tensor):
    """w as a float, or a (B,) tensor reshaped to (B, 1, 1, ...) to broadcast over x."""
    if isinstance(w, torch.Tensor):
        if w.dim() == 0:
            return w.to(device=x.device, dtype=x.dtype)
        if w.shape != (x.shape[0],):
            raise ValueError(f"w must be a float or a tensor of shape (B,) = ({x.shape[0]},), got {tuple(w.shape)}")
        return w.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    if isinstance(w, bool) or not isinstance(w, Real) or not math.isfinite(w):
        raise TypeError(f"w must be a finite float or a (B,) tensor, got {w!r}")
    return float(w)


def model_num_classes(model) -> int:
    """The number of real classes K of a conditional model; its null class ∅ is index K."""
    k = getattr(model, "num_classes", None)
    if k is None:
        raise ValueError(
            "this model is not conditional (its num_classes is None): classifier-free guidance needs "
            "a model trained with labels and label dropout, e.g. UNet(..., num_classes=10)"
        )
    return int(k)


def guided_eps(model, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, w) -> torch.Tensor:
    """the guided ε̃_θ(x_t, t, y) from a conditional model called as model(x, t, y).

    One forward pass on the doubled batch [x_t; x_t] with labels [y; ∅] gives ε(y) and ε(∅)
    together (cheaper than two calls: one launch, better use of the hardware). w = 0 and
    w = 1 need only one of the two, so they cost a single pass on B images.
    """
    if not isinstance(x_t, torch.Tensor) or not x_t.is_floating_point():
        raise TypeError("x_t must be a floating-point torch.Tensor of shape (B, ...)")
    K = model_num_classes(model)
    B = x_t.shape[0]
    y = _labels("y", y, K).to(x_t.device)
    if y.shape[0] != B:
        raise ValueError(f"y has {y.shape[0]} labels but x_t holds {B} images: give one label per image")
    t = torch.as_tensor(t, device=x_t.device)
    t = t.expand(B) if t.dim() == 0 else t
    null = null_labels(B, K, device=x_t.device)
    if not isinstance(w, torch.Tensor) and w == 0:
        return model(x_t, t, null)
    if not isinstance(w, torch.Tensor) and w == 1:
        return model(x_t, t, y)
    eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null]))
    eps_cond, eps_uncond = eps.chunk(2)
    return combine(eps_cond, eps_uncond, w)


class GuidedModel(torch.nn.Module):
    """An eps_model(x_t, t) for any sampler: the guided prediction for fixed labels y and scale w."""

    def __init__(self, model, y: torch.Tensor, w):
        super().__init__()
        self.model, self.y, self.w = model, y, w

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return guided_eps(self.model, x_t, t, self.y, self.w)


def guided_model(model, y: torch.Tensor, w) -> GuidedModel:
    """Wrap a conditional model so that `ddpm_sample(guided_model(net, y, 3.0), schedule, ...)`
    draws guided samples of the digits y (one label per image; w a float or a (B,) tensor)."""
    model_num_classes(model)
    return GuidedModel(model, _labels("y", y), w)


def guided_ddpm_step(schedule, model, x_t: torch.Tensor, t, y: torch.Tensor, w,
                     noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     **step_kwargs) -> torch.Tensor:
    """One guided reverse step x_t → x_{t−1}: Algorithm 2's update (DDPM line 4) with the guided ε̃
    in place of ε_θ. Guidance changes only the noise prediction, never the sampler:

        x_{t−1} = 1/√α_t · (x_t − β_t/√(1 − ᾱ_t) · ε̃_θ(x_t, t, y)) + σ_t z
    """
    t = check_timesteps(t, x_t)
    eps = guided_eps(model, x_t, t, y, w)
    return ddpm_step(schedule, eps, x_t, t, noise=noise, generator=generator, **step_kwargs)


def guided_ddim_step(schedule, model, x_t: torch.Tensor, t, t_prev, y: torch.Tensor, w,
                     clip_denoised: float | None = None) -> torch.Tensor:
    """One deterministic DDIM jump (η = 0; Song et al. 2020, eqs. 9 and 12) from t to an earlier
    t_prev, with the guided ε̃ in place of ε_θ:

        x̂_0 = (x_t − √(1 − ᾱ_t) ε̃) / √ᾱ_t,     x_{t_prev} = √ᾱ_{t_prev} x̂_0 + √(1 − ᾱ_{t_prev}) ε̃

    t_prev = 0 returns x̂_0 itself (ᾱ_0 = 1). clip_denoised = c clamps x̂_0 to [−c, c] (and
    recomputes ε̃ from it): large w pushes x̂_0 outside the image range [−1, 1].
    """
    t, t_prev = check_timesteps(t, x_t), check_timesteps(t_prev, x_t)
    if (t_prev >= t).any() or (t_prev < 0).any():
        raise ValueError("t_prev must satisfy 0 ≤ t_prev < t: DDIM steps go back in time")
    eps = guided_eps(model, x_t, t, y, w)
    return ddim_step(schedule, eps, x_t, t, t_prev, eta=0.0, clip_denoised=clip_denoised)


# -- Bayes' rule: the implicit classifier ----------------------------------------------


def implicit_classifier_grad(schedule, eps_cond: torch.Tensor, eps_uncond: torch.Tensor, t) -> torch.Tensor:
    """Bayes' rule: ∇_x log p_t(y | x_t) = −(ε(x_t, t, y) − ε(x_t, t, ∅)) / √(1 − ᾱ_t)."""
    sigma = extract(schedule.alphas_cumprod, torch.as_tensor(t), eps_cond).neg().add(1).sqrt()
    return -(eps_cond - eps_uncond) / sigma


class MixtureEps(torch.nn.Module):
    """The *exact* conditional noise prediction of a Gaussian mixture, class k = component k.

    For data x_0 ~ Σ_k π_k N(μ_k, σ_k² I), the noised class-k density is one Gaussian
    N(√ᾱ_t μ_k, (ᾱ_t σ_k² + 1 − ᾱ_t) I), and the unconditional one is the noised mixture, so

        ε(x_t, t, k) = −√(1−ᾱ_t) (√ᾱ_t μ_k − x_t) / (ᾱ_t σ_k² + 1 − ᾱ_t),
        ε(x_t, t, ∅) = −√(1−ᾱ_t) ∇ log q_t(x_t)      (the mixture's noised score).

    It behaves like a perfectly trained conditional network (model(x_t, t, y), `num_classes`),
    so guidance can be studied with no training at all.
    """

    def __init__(self, schedule, mixture):
        super().__init__()
        self.mixture, self.schedule = mixture, schedule
        self.num_classes = mixture.means.shape[0]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        K = self.num_classes
        ab = self.schedule.alphas_cumprod.to(x_t.device)[torch.as_tensor(t, device=x_t.device)]
        ab = ab.expand(x_t.shape[0]) if ab.dim() == 0 else ab
        y = null_labels(x_t.shape[0], K, x_t.device) if y is None else _labels("y", y, K).to(x_t.device)
        score = self.mixture.noised_score(x_t, ab)  # ∇ log q_t(x_t): the rows with y = ∅
        cond = y < K
        if cond.any():
            k, abk, xk = y[cond], ab[cond], x_t[cond].double()
            mu = abk.sqrt()[:, None] * self.mixture.means.to(x_t.device)[k]
            var = abk * self.mixture.std.to(x_t.device)[k] ** 2 + 1 - abk
            score = score.clone()
            score[cond] = ((mu - xk) / var[:, None]).to(x_t.dtype)
        return -(1 - ab).sqrt()[:, None].to(x_t.dtype) * score




@torch.no_grad()
def guided_sample(schedule, model, y: torch.Tensor, w, shape, steps: int = 20, eta: float = 0.0,
                  generator: torch.Generator | None = None, clip_denoised: float | None = 1.0,
                  device=None, batch_size: int = 500) -> torch.Tensor:
    """Guided samples of the classes `y` (N,) at scale w, with DDIM (`ddim.ddim_sample`, `steps`
    jumps, η = eta) on the eps_model `guided_model(model, y, w)`. `shape` is one sample's shape,
    e.g. (1, 28, 28) for MNIST; the result is (N, *shape) on the CPU.

    Batches of `batch_size` are drawn one after the other from the same generator, so a fixed
    seed gives the same images on every run. x̂_0 is clipped to [−1, 1] by default (as
    diffusers' clip_sample): large w overshoots the data range without it.
    """
    y = _labels("y", y, model_num_classes(model))
    shape = batch_shape((1, *shape))[1:]
    if device is None:  # the model's device (a model without parameters, e.g. MixtureEps, samples on the CPU)
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    out = []
    for i in range(0, y.shape[0], batch_size):
        yb = y[i:i + batch_size].to(device)
        out.append(ddim_sample(schedule, guided_model(model, yb, w), (yb.shape[0], *shape), steps=steps,
                               eta=eta, device=device, generator=generator, clip_denoised=clip_denoised).cpu())
    return torch.cat(out)
