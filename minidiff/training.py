"""Training an ε-prediction model with DDPM's simple loss (lesson 04).

    L_simple(θ) = E_{t, x_0, ε} ‖ ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t) ‖²      (DDPM eq. 14)

with t ~ Uniform{1..T}, x_0 ~ data, ε ~ N(0, I): Algorithm 1 of Ho et al. (2020).
We average over the coordinates as well as the batch (`F.mse_loss`), which only
divides the paper's sum by the data dimension.

`train_toy` is a deliberately plain loop: sample a batch, take one AdamW step on
L_simple, optionally update an EMA of the weights. Lessons 05–08 reuse `ddpm_loss`
and pass their own `loss_fn` to `train_toy` where they need another objective.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .ema import EMA
from .forward import _float, _schedule, add_noise
from .notebook import progress


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move.
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def sample_timesteps(schedule, batch_size: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """t ~ Uniform{1, ..., T}, a LongTensor of shape (batch_size,) (Algorithm 1, line 3)."""
    gdev = generator.device if generator is not None else device
    t = torch.randint(1, schedule.T + 1, (batch_size,), generator=generator, device=gdev)
    return t.to(device)


def ddpm_loss(eps_model: Callable, schedule, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """L_simple (DDPM eq. 14; Algorithm 1, lines 2–5) on one batch x0 of shape (B, ...).

    t ~ U{1..T}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (eq. 4), loss = mean (ε − ε_θ(x_t, t))².
    Returns a scalar tensor; gradients flow into eps_model.
    """
    _schedule(schedule)
    _float("x0", x0)
    if x0.dim() < 1 or x0.shape[0] < 1:
        raise ValueError(f"x0 must be a batch of shape (B, ...) with B ≥ 1, got {tuple(x0.shape)}")
    t = sample_timesteps(schedule, x0.shape[0], x0.device, generator)
    noise = _randn_like(x0, generator)
    x_t = add_noise(schedule, x0, noise, t)
    eps = eps_model(x_t, t)
    if not isinstance(eps, torch.Tensor) or eps.shape != x0.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps_model(x_t, t) must return a tensor shaped like x_t {tuple(x0.shape)}, got {got}")
    return F.mse_loss(eps, noise)


@dataclass
class TrainResult:
    """What `train_toy` returns. `sampling_model` is the EMA copy when there is one."""

    model: torch.nn.Module
    ema: EMA | None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sampling_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.model


def _batches(data, batch_size: int, generator: torch.Generator | None, device):
    """A function returning one training batch: random rows of a tensor, or fresh samples."""
    if isinstance(data, torch.Tensor):
        _float("data", data)
        n = data.shape[0]

        def draw():
            gdev = generator.device if generator is not None else data.device
            idx = torch.randint(n, (batch_size,), generator=generator, device=gdev).to(data.device)
            return data[idx].to(device)

        return draw
    if callable(data):
        return lambda: data(batch_size, generator).to(device)
    raise TypeError(
        f"data must be a tensor of training points (N, ...) or a function (n, generator) -> tensor, "
        f"got {type(data).__name__}"
    )


def train_toy(
    model: torch.nn.Module,
    schedule,
    data,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    ema_decay: float | None = None,
    lr_decay: bool = True,
    generator: torch.Generator | None = None,
    loss_fn: Callable = ddpm_loss,
    device=None,
    show_progress: bool = True,
    desc: str = "training",
) -> TrainResult:
    """Train `model` with AdamW on `loss_fn(model, schedule, x0, generator)` (default L_simple).

    data:       a tensor of training points (batches are drawn with replacement) or a
                function `data(n, generator) -> (n, ...) tensor` giving fresh samples.
    ema_decay:  keep an EMA of the weights (θ_ema ← d θ_ema + (1 − d) θ) when set, e.g. 0.995.
    lr_decay:   cosine-anneal the learning rate from lr to 0 over `steps` (late steps then
                average out gradient noise, much as an EMA does).
    Progress: a tqdm bar (silent under tests via MINIDIFF_NO_PROGRESS=1).
    Returns a TrainResult(model, ema, losses, seconds); the model is left in train mode.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    device = device if device is not None else next(model.parameters()).device
    draw = _batches(data, batch_size, generator, device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if lr_decay else None
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    losses = []
    model.train()
    t0 = time.perf_counter()
    bar = progress(range(steps), desc=desc, disable=not show_progress, mininterval=0.5)
    for step in bar:
        loss = loss_fn(model, schedule, draw(), generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if ema is not None:
            ema.update(model)
        losses.append(loss.item())
        if step % 100 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{sum(losses[-100:]) / len(losses[-100:]):.3f}")
    return TrainResult(model=model, ema=ema, losses=losses, seconds=time.perf_counter() - t0)


def smooth(losses, window: int = 100) -> torch.Tensor:
    """Running mean of a loss history (for plots): L_simple is noisy because t is random."""
    x = torch.as_tensor(losses, dtype=torch.float64)
    if x.numel() < window:
        return x
    c = torch.cat([torch.zeros(1, dtype=x.dtype), x.cumsum(0)])
    return (c[window:] - c[:-window]) / window
