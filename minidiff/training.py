"""The one training loop (lesson 04; the U-Net of lesson 05 and the classifier use it too).

    for step in range(steps):
        batch = next batch                                  (random rows, drawn with a seeded generator)
        loss  = loss_fn(model, batch, generator)            (e.g. partial(losses.ddpm_loss, schedule))
        one AdamW step at the learning rate of this step    (linear warm-up, then cosine to 0)
        update the EMA of the weights                       (when ema_decay is set)
        call the hooks                                      (logging, plots, early stops)

Everything a run needs to continue is saved by `state_path` (model, optimiser, EMA,
generator, step, losses), and the learning rate is a function of the step alone, so a
resumed run picks up exactly where it stopped: N steps straight and N/2 + resume + N/2 give
identical weights (tests/test_training.py checks this).

On a GPU: bf16 autocast (off by default on the CPU, where it does not pay). torch.compile is
off unless asked for (`compile=True`): on an H200 its first steps cost 53 s for lesson 05's U-Net at
the gpu tier's size (benchmarks/gpu.md), more than a lesson's whole training run, and it pays only in long runs.
Channels-last memory layout for images.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .ema import EMA
from .utils import check_float, check_positive_int, progress, randint


def lr_at(step: int, steps: int, lr: float, warmup: int = 0, decay: bool = True) -> float:
    """Learning rate at `step` (0-based): linear warm-up over `warmup` steps, then cosine to 0:

        lr_s = lr · min(1, (s + 1)/warmup) · ½(1 + cos(π · s/steps))
    """
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if not decay:
        return lr * warm
    return lr * warm * 0.5 * (1.0 + math.cos(math.pi * step / steps))


@dataclass
class TrainResult:
    """What `train` returns. `sampling_model` is the EMA copy when there is one."""

    model: torch.nn.Module
    ema: EMA | None
    losses: list[float] = field(default_factory=list)
    step: int = 0  # steps done so far (all runs of a resumed training together)
    seconds: float = 0.0  # wall time of this call
    images_per_second: float = 0.0  # examples per second of this call

    @property
    def sampling_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema is not None else self.model


def random_batches(data, batch_size: int, generator: torch.Generator | None, device, fmt=None) -> Callable:
    """A function returning one training batch: random rows (with replacement) of a tensor or of
    a tuple of tensors with the same first dimension (images and labels), or fresh samples
    from a function `data(n, generator) -> tensor`."""
    if isinstance(data, torch.Tensor):
        data = (data,)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        data = tuple(t.to(device) for t in data)
        check_float("data", data[0])
        n = data[0].shape[0]
        if any(t.shape[0] != n for t in data):
            raise ValueError(f"the tensors in data must have the same length, got {[t.shape[0] for t in data]}")

        def draw():
            idx = randint(n, (batch_size,), generator, device)
            rows = tuple(t[idx] for t in data)
            if fmt is not None and rows[0].dim() == 4:
                rows = (rows[0].contiguous(memory_format=fmt), *rows[1:])
            return rows if len(rows) > 1 else rows[0]

        return draw
    if callable(data):
        return lambda: data(batch_size, generator).to(device)
    raise TypeError(f"data must be a tensor (N, ...), a tuple of tensors, or a function (n, generator) -> tensor, "
                    f"got {type(data).__name__}")


def _save_state(path: Path, state: dict) -> None:
    # write-then-rename: an interruption during the save never leaves half a file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    model: torch.nn.Module,
    loss_fn: Callable,
    data,
    steps: int,
    *,
    batch_size: int = 128,
    lr: float = 1e-3,
    warmup: int = 0,
    lr_decay: bool = True,
    weight_decay: float = 0.0,
    ema_decay: float | None = None,
    ema_warmup: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batches: Callable | None = None,
    make_scheduler: Callable | None = None,
    hooks: Sequence[Callable] = (),
    device=None,
    params=None,
    state_path=None,
    save_every: int | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    max_seconds: float | None = None,
    amp: bool | None = None,
    compile: bool = False,
    channels_last: bool = False,
    show_progress: bool = True,
    desc: str = "training",
) -> TrainResult:
    """Train `model` with AdamW on `loss_fn(model, batch, generator)`; returns a TrainResult.

    data:         a tensor (N, ...), a tuple of tensors (e.g. images and labels), or a function
                  `data(n, generator)` giving fresh samples; batches are `batch_size` random rows.
    batches:      instead of `data`, your own function `batches() -> batch` (e.g. shuffled epochs).
    lr, warmup, lr_decay: the learning rate of step s is `lr_at(s, steps, lr, warmup, lr_decay)`.
    make_scheduler: instead, a function (optimizer, steps) -> torch LR scheduler, stepped each step.
    ema_decay:    keep an EMA of the weights (θ_ema ← d θ_ema + (1 − d) θ) when set, e.g. 0.999;
                  ema_warmup: ramp d up as min(ema_decay, (1 + n)/(10 + n)) (see minidiff.ema).
    generator:    the random numbers of batches and losses; default: a new one seeded with `seed`
                  (0 when None) on the device. Reuse the same seed to get the same run.
    hooks:        functions hook(step, loss, model) called after every step; one returning True
                  stops training.
    params:       parameter groups for AdamW instead of model.parameters(): dicts with "params" and
                  an optional "lr_scale" (that group learns at lr_scale times the step's lr).
    state_path:   where to save the resumable state (every `save_every` steps and at the end);
                  `resume=True` continues from it if it exists.
    stop_after:   stop (and save) after this many steps in total; max_seconds: after this long.
    amp:          bf16 autocast; default on for CUDA, off otherwise.
    compile:      torch.compile the model (for long runs: compiling costs about a minute).
    channels_last: NHWC memory layout for 4-D image batches.
    """
    check_positive_int("steps", steps)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    fmt = torch.channels_last if channels_last else None
    model = model.to(device, memory_format=fmt) if fmt is not None else model.to(device)
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0 if seed is None else seed)
    draw = batches if batches is not None else random_batches(data, batch_size, generator, device, fmt)
    opt = torch.optim.AdamW(model.parameters() if params is None else params, lr=lr, weight_decay=weight_decay)
    if make_scheduler is not None and any("lr_scale" in g for g in opt.param_groups):
        raise ValueError("lr_scale in params is applied by lr_at: leave make_scheduler out, or set each group's lr "
                         "in your scheduler")
    scheduler = make_scheduler(opt, steps) if make_scheduler is not None else None
    ema = EMA(model, ema_decay, ema_warmup) if ema_decay is not None else None
    losses: list[float] = []
    start = 0
    state_path = Path(state_path) if state_path is not None else None
    if resume and state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["steps"] != steps:
            raise ValueError(f"{state_path} was saved by a run of steps={state['steps']}, not {steps}: "
                             "resume with the same total steps (the lr schedule depends on it)")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu())
        start, losses = state["step"], list(state["losses"])

    def save(step):
        _save_state(state_path, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "steps": steps,
                                 "ema": ema.state_dict() if ema is not None else None,
                                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                                 "generator": generator.get_state(), "losses": list(losses)})

    fwd = torch.compile(model) if compile else model
    end = steps if stop_after is None else min(steps, stop_after)
    model.train()
    t0 = time.perf_counter()
    bar = progress(range(start, end), desc=desc, disable=not show_progress, mininterval=1.0, initial=start, total=steps)
    step = start
    for s in bar:
        batch = draw()
        if scheduler is None:
            for group in opt.param_groups:
                group["lr"] = lr_at(s, steps, lr, warmup, lr_decay) * group.get("lr_scale", 1.0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(fwd, batch, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update(model)
        losses.append(loss.item())
        step = s + 1
        if hasattr(bar, "set_postfix") and s % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if state_path is not None and save_every and step % save_every == 0 and step < end:
            save(step)
        stop = any([hook(step, losses[-1], model) for hook in hooks])
        if stop or (max_seconds is not None and time.perf_counter() - t0 > max_seconds):
            break
    seconds = time.perf_counter() - t0
    if state_path is not None and step > start:
        save(step)
    per_step = batch_size if batches is None else 0
    return TrainResult(model=model, ema=ema, losses=losses, step=step, seconds=seconds,
                       images_per_second=(step - start) * per_step / seconds if seconds > 0 else 0.0)


def smooth(losses, window: int = 100) -> torch.Tensor:
    """Running mean of a loss history (for plots): L_simple is noisy because t is random."""
    x = torch.as_tensor(losses, dtype=torch.float64)
    if x.numel() < window:
        return x
    c = torch.cat([torch.zeros(1, dtype=x.dtype), x.cumsum(0)])
    return (c[window:] - c[:-window]) / window

