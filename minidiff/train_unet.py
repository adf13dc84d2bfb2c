"""Training the U-Net on images: one function for every tier (lesson 05; lesson 08 adds labels).

    L_simple(θ) = E_{t, x_0, ε} ‖ ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t, y) ‖²     (DDPM eq. 14)

`train_unet` is `minidiff.training.ddpm_loss` in a loop, with what images need:

* the whole data set lives on the device (MNIST is 188 MB as float32): batches are
  random rows drawn with a seeded generator, so there is no DataLoader and a run is
  a pure function of (seed, steps, hyper-parameters);
* an EMA of the weights (`minidiff.ema.EMA`), which is what we sample from;
* the learning rate is a function of the step only (linear warm-up, then cosine to 0),
  so a resumed run picks up exactly where it stopped;
* a resumable training state (model, optimiser, EMA, generator, step, losses) saved
  every `save_every` steps and at the end: N steps straight and N/2 + resume + N/2
  give identical weights (tests/test_checkpoints.py checks this);
* on a GPU: bf16 autocast and torch.compile (both off on the CPU, where they do not pay);
  channels-last memory layout on both (measured in benchmarks/mnist.md);
* class conditioning for classifier-free guidance (lesson 08): pass `labels` and
  `num_classes`; each label is replaced by the null class ∅ = num_classes with
  probability `p_uncond` (Ho & Salimans 2022).

The CLI reproduces the shipped checkpoint (see its card in data/checkpoints/):

    python -m minidiff.train_unet --steps 3000 --out data/checkpoints/unet_mnist
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .ema import EMA
from .notebook import pick_device, progress
from .schedules import NoiseSchedule
from .training import ddpm_loss
from .unet import UNet, count_parameters


@dataclass
class UNetTrainResult:
    """What `train_unet` returns. Sample from `ema.model` (the averaged weights)."""

    model: torch.nn.Module
    ema: EMA
    losses: list[float] = field(default_factory=list)
    step: int = 0  # steps done so far (all runs of a resumed training together)
    seconds: float = 0.0  # wall time of this call
    images_per_second: float = 0.0  # throughput of this call

    @property
    def sampling_model(self) -> torch.nn.Module:
        return self.ema.model


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Learning rate at `step` (0-based): linear warm-up over `warmup` steps, then cosine to 0.

        lr_s = lr · min(1, (s + 1)/warmup) · ½(1 + cos(π · s/steps))
    """
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    return lr * warm * 0.5 * (1.0 + math.cos(math.pi * step / steps))


def drop_labels(y: torch.Tensor, p_uncond: float, num_classes: int, generator: torch.Generator | None) -> torch.Tensor:
    """Replace each label by the null class ∅ = num_classes with probability p_uncond."""
    if p_uncond <= 0:
        return y
    gdev = generator.device if generator is not None else y.device
    drop = (torch.rand(y.shape, generator=generator, device=gdev) < p_uncond).to(y.device)
    return torch.where(drop, torch.full_like(y, num_classes), y)


def _check_data(images, labels, num_classes):
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() != 4:
        raise TypeError(f"images must be a float tensor (N, C, H, W) in [-1, 1], got "
                        f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}: "
                        "use minidiff.data.mnist.mnist_images('train')")
    if num_classes is None and labels is not None:
        raise ValueError("labels were given but num_classes is None: pass num_classes (e.g. 10) to train a conditional model")
    if num_classes is not None:
        if labels is None:
            raise ValueError(f"num_classes={num_classes} needs labels: pass labels=(N,) int64")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long or labels.shape != (images.shape[0],):
            raise TypeError(f"labels must be an int64 tensor of shape ({images.shape[0]},), got "
                            f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")


def _state(model, ema, opt, generator, step, steps, losses, hparams) -> dict:
    return {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
            "generator": generator.get_state(), "step": step, "steps": steps,
            "losses": list(losses), "hparams": hparams}


def _save_state(path: Path, state: dict) -> None:
    # write-then-rename: an interruption during the save never leaves half a checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_unet(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    steps: int,
    *,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
    p_uncond: float = 0.0,
    batch_size: int = 128,
    lr: float = 2e-3,
    warmup: int = 100,
    weight_decay: float = 0.0,
    ema_decay: float = 0.999,
    seed: int = 0,
    device=None,
    state_path=None,
    save_every: int | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    max_seconds: float | None = None,
    amp: bool | None = None,
    compile: bool | None = None,
    channels_last: bool | None = None,
    show_progress: bool = True,
    desc: str = "training U-Net",
) -> UNetTrainResult:
    """Train `model` (an ε-model called model(x_t, t) or model(x_t, t, y)) with L_simple.

    images:      float (N, C, H, W) in [-1, 1]; moved to `device` once (device: automatic).
    labels, num_classes, p_uncond: class-conditional training with label dropout (lesson 08).
    steps:       total optimiser steps of the whole run; the lr schedule (lr_at) is over these.
    state_path:  where to save the resumable training state (every `save_every` steps and at
                 the end); `resume=True` continues from it if it exists.
    stop_after:  stop (and save) after this many steps in total (simulates an interruption);
    max_seconds: stop (and save) when this call has run this long; resume later.
    amp, compile: bf16 autocast / torch.compile; default on for CUDA, off otherwise.
    channels_last: NHWC memory layout (default on: faster convolutions on CPU and GPU).
    Returns UNetTrainResult(model, ema, losses, step, seconds, images_per_second).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
    model_classes = getattr(model, "num_classes", None)
    if model_classes != num_classes:
        raise ValueError(f"num_classes={num_classes} but the model was built with num_classes={model_classes}: "
                         "pass the same value to both")
    _check_data(images, labels, num_classes)
    device = torch.device(device) if device is not None else pick_device()
    cuda = device.type == "cuda"
    amp = cuda if amp is None else amp
    compile = cuda if compile is None else compile
    channels_last = True if channels_last is None else channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    model = model.to(device, memory_format=fmt)
    images = images.to(device)
    labels = labels.to(device) if labels is not None else None
    generator = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ema = EMA(model, ema_decay)
    losses: list[float] = []
    start = 0
    hparams = dict(steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, weight_decay=weight_decay,
                   ema_decay=ema_decay, seed=seed, p_uncond=p_uncond, num_classes=num_classes)
    state_path = Path(state_path) if state_path is not None else None
    if resume and state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["steps"] != steps:
            raise ValueError(f"{state_path} was saved by a run of steps={state['steps']}, not {steps}: "
                             "resume with the same total steps (the lr schedule depends on it)")
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        generator.set_state(state["generator"].cpu())
        start, losses = state["step"], list(state["losses"])

    fwd = torch.compile(model) if compile else model
    if num_classes is None:
        eps_model = fwd
    else:
        def eps_model(x_t, t):  # the labels of the current batch, some dropped to ∅
            return fwd(x_t, t, y_batch)

    n = images.shape[0]
    end = steps if stop_after is None else min(steps, stop_after)
    model.train()
    t0 = time.perf_counter()
    bar = progress(range(start, end), desc=desc, disable=not show_progress, mininterval=1.0,
                   initial=start, total=steps)
    step = start
    for s in bar:
        idx = torch.randint(n, (batch_size,), generator=generator, device=device)
        x0 = images[idx].contiguous(memory_format=fmt)
        if num_classes is not None:
            y_batch = drop_labels(labels[idx], p_uncond, num_classes, generator)
        for group in opt.param_groups:
            group["lr"] = lr_at(s, steps, lr, warmup)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = ddpm_loss(eps_model, schedule, x0, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        losses.append(loss.item())
        step = s + 1
        if hasattr(bar, "set_postfix") and s % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if state_path is not None and save_every and step % save_every == 0 and step < end:
            _save_state(state_path, _state(model, ema, opt, generator, step, steps, losses, hparams))
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    seconds = time.perf_counter() - t0
    if state_path is not None and step > start:
        _save_state(state_path, _state(model, ema, opt, generator, step, steps, losses, hparams))
    done = step - start
    return UNetTrainResult(model=model, ema=ema, losses=losses, step=step, seconds=seconds,
                           images_per_second=done * batch_size / seconds if seconds > 0 else 0.0)


# ------------------------------------------------------------------------------ CLI


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {torch.get_num_threads()} threads)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.train_unet",
                                description="Train the lesson-05 U-Net on MNIST and save its EMA weights with a card.")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--num-res-blocks", type=int, default=1)
    p.add_argument("--no-attention", action="store_true")
    p.add_argument("--num-classes", type=int, default=None, help="train a class-conditional model (e.g. 10)")
    p.add_argument("--p-uncond", type=float, default=0.0, help="label dropout probability (with --num-classes)")
    p.add_argument("--schedule", default="linear")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="data/checkpoints/unet_mnist", help="shipped checkpoint: OUT.pt + OUT.json")
    p.add_argument("--state", default=None, help="resumable training state (default: data/cache/<name>_state.pt, git-ignored)")
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--resume", action="store_true", help="continue from --state if it exists")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this long")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps (of --steps); the card of a time-limited run records it")
    p.add_argument("--fp16", action="store_true", help="store the shipped weights in float16")
    args = p.parse_args(argv)

    from .checkpoints import save_checkpoint  # noqa: PLC0415 - keeps `import minidiff.train_unet` light
    from .data.mnist import mnist_images  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the model's initial weights
    device = torch.device(args.device) if args.device else pick_device()
    model = UNet(1, tuple(args.channels), args.num_res_blocks, not args.no_attention, args.num_classes)
    schedule = NoiseSchedule.make(args.schedule, args.T)
    images, labels = mnist_images("train", device=device)
    out = Path(args.out)
    state = Path(args.state) if args.state else Path("data/cache") / f"{out.name}_state.pt"
    print(f"UNet {model.config}: {count_parameters(model):,} parameters; device {device}; "
          f"{args.steps} steps of batch {args.batch_size}", flush=True)
    res = train_unet(model, schedule, images, args.steps,
                     labels=labels if args.num_classes else None, num_classes=args.num_classes,
                     p_uncond=args.p_uncond, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                     ema_decay=args.ema_decay, seed=args.seed, device=device, state_path=state,
                     save_every=args.save_every, resume=args.resume, stop_after=args.stop_after,
                     max_seconds=None if args.max_minutes is None else 60 * args.max_minutes)
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s this run; {res.images_per_second:.1f} img/s; "
          f"mean loss of the last 100 steps {sum(res.losses[-100:]) / max(1, len(res.losses[-100:])):.4f}", flush=True)
    if res.step < (args.stop_after or args.steps):
        print(f"stopped at step {res.step}: continue with the same command plus --resume (state in {state}); "
              f"saving the EMA weights so far with a card that says --stop-after {res.step}")
    # The card's command reproduces exactly these weights: drop the run-control flags and
    # name the step where training stopped (a time-limited run stops part-way through its lr schedule).
    drop = {"--resume": 0, "--max-minutes": 1, "--stop-after": 1, "--state": 1, "--save-every": 1}
    argv = list(argv if argv is not None else sys.argv[1:])
    kept, i = [], 0
    while i < len(argv):
        if argv[i] in drop:
            i += 1 + drop[argv[i]]
            continue
        kept.append(argv[i])
        i += 1
    if res.step < args.steps:
        kept += ["--stop-after", str(res.step)]
    cmd = "python -m minidiff.train_unet " + " ".join(kept)
    card = {
        "name": out.name,
        "description": "EMA weights of the lesson-05 U-Net (ε-prediction) trained on the MNIST train set",
        "command": cmd,
        "schedule": {"name": args.schedule, "T": args.T},
        "training": {"steps": args.steps, "stopped_at_step": res.step, "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup,
                     "ema_decay": args.ema_decay, "seed": args.seed, "p_uncond": args.p_uncond,
                     "images_seen": res.step * args.batch_size,
                     "final_loss_mean_last_100": round(sum(res.losses[-100:]) / len(res.losses[-100:]), 5)},
        "budget": {"seconds_last_run": round(res.seconds), "images_per_second_last_run": round(res.images_per_second, 1),
                   "note": "wall time of the last (possibly resumed) run only"},
        "hardware": _hardware(device),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": {},
    }
    save_checkpoint(res.ema.model, out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"saved {out}.pt and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
