"""Train lesson 19's super-resolution U-Net (SR3-style, 7×7 and 14×14 → 28×28) and ship its EMA weights.

    python -m minidiff.scripts.train_superres --steps 3000 --batch-size 64 --threads 1 --out data/checkpoints/superres

The model is `minidiff.superres.SRUNet` (lesson 05's U-Net with the bicubic-upsampled low-resolution
digit as a second input channel), the loss `minidiff.superres.sr_loss` (lesson 05's v-loss, each
image given a random low resolution from --low-sizes), and the loop, the learning-rate schedule and
the EMA are those of `minidiff.scripts.train_unet` (`minidiff.training.train`). After training, the
card records PSNR against the 28×28 truth on the first --eval-n MNIST test digits, for the model
(DDIM, --eval-steps jumps) and for bicubic upsampling.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from ..checkpoints import save_checkpoint
from ..data.mnist import mnist_images
from ..editing import psnr
from ..paths import find_dir
from ..schedules import NoiseSchedule
from ..superres import SRUNet, downsample, lowres_condition, sr_loss, sr_sample
from ..training import train
from ..utils import count_parameters, pick_device
from ..vpred import EpsFromV
from . import hardware
from .train_unet import card_command


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_superres",
                                description="Train the SR3-style super-resolution U-Net on MNIST.")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--low-sizes", type=int, nargs="+", default=[7, 14])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (of --steps)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long (the card records the step)")
    p.add_argument("--eval-n", type=int, default=200)
    p.add_argument("--eval-steps", type=int, default=20)
    p.add_argument("--fp16", action="store_true", help="store the shipped weights in float16")
    p.add_argument("--out", default="data/checkpoints/superres")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device) if args.device else pick_device()
    model = SRUNet(tuple(args.channels))
    schedule = NoiseSchedule.make("cosine", 1000)
    images, _ = mnist_images("train", device=device)
    out = Path(args.out)
    print(f"SRUNet {model.config}: {count_parameters(model):,} parameters; {args.steps} steps of batch {args.batch_size}",
          flush=True)
    res = train(model, partial(sr_loss, schedule, low_sizes=tuple(args.low_sizes)), images, args.steps,
                batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, ema_decay=args.ema_decay, ema_warmup=True,
                seed=args.seed, device=device, state_path=find_dir("cache") / f"{out.name}_state.pt", save_every=250,
                stop_after=args.stop_after,
                max_seconds=None if args.max_minutes is None else 60 * args.max_minutes, channels_last=True,
                desc="training SR U-Net")
    loss_last = sum(res.losses[-100:]) / len(res.losses[-100:])
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s; {res.images_per_second:.1f} img/s; "
          f"mean loss of the last 100 steps {loss_last:.4f}", flush=True)

    # PSNR on held-out digits: the model against bicubic upsampling
    net = res.ema.model.cpu().eval()
    eps_model = EpsFromV(net, schedule)
    x_test, _ = mnist_images("test")
    x = x_test[: args.eval_n]
    metrics = {"eval": f"first {args.eval_n} MNIST test digits, DDIM {args.eval_steps} steps, eta 0, seed 0"}
    for h in args.low_sizes:
        lr_img = downsample(x, h)
        sr = sr_sample(schedule, eps_model, lr_img, steps=args.eval_steps, generator=torch.Generator().manual_seed(0))
        metrics[f"psnr_{h}x{h}"] = round(psnr(sr, x).mean().item(), 2)
        metrics[f"psnr_bicubic_{h}x{h}"] = round(psnr(lowres_condition(lr_img), x).mean().item(), 2)
    print(metrics, flush=True)
    card = {
        "name": out.name,
        "description": "EMA weights of the SR3-style super-resolution U-Net (v-prediction; condition: the "
                       "bicubic-upsampled 7×7 or 14×14 digit as a second input channel) trained on the MNIST train set",
        "command": card_command(list(argv if argv is not None else sys.argv[1:]), res.step, args.steps).replace(
            "train_unet", "train_superres", 1),
        "schedule": {"name": "cosine", "T": 1000},
        "prediction": "v",
        "low_sizes": list(args.low_sizes),
        "training": {"steps": args.steps, "stopped_at_step": res.step, "batch_size": args.batch_size, "lr": args.lr,
                     "warmup": args.warmup, "ema_decay": args.ema_decay, "seed": args.seed,
                     "images_seen": res.step * args.batch_size, "final_loss_mean_last_100": round(loss_last, 5)},
        "budget": {"seconds": round(res.seconds), "images_per_second": round(res.images_per_second, 1)},
        "hardware": hardware(device),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": metrics,
    }
    save_checkpoint(net, out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"saved {out}.pt and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
