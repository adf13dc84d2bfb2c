"""Train lesson 19's tiny-subset U-Net: lesson 05's model and recipe on only --n-train MNIST digits.

    python -m minidiff.scripts.train_memorisation --n-train 100 --steps 3000 --batch-size 64 --threads 1 \\
        --out data/checkpoints/unet_tiny100

The digits are the first --n-train // 10 of each class of the MNIST train set
(`minidiff.eval.cas.per_class_subset`), so
the subset is the same on every machine. The loss is lesson 05's v-loss (`minidiff.vpred.v_loss`),
the loop `minidiff.training.train` with the EMA of `minidiff.scripts.train_unet`. With a hundred
digits and thousands of passes over them, the model can learn the digits themselves instead of
the distribution they come from: lesson 19 measures how much it does.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from ..checkpoints import save_checkpoint
from ..data.mnist import mnist_images
from ..eval.cas import per_class_subset
from ..paths import find_dir
from ..schedules import NoiseSchedule
from ..training import train
from ..unet import UNet
from ..utils import count_parameters, pick_device
from ..vpred import v_loss
from . import hardware
from .train_unet import card_command


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_memorisation",
                                description="Train the lesson-05 U-Net on a tiny subset of MNIST.")
    p.add_argument("--n-train", type=int, default=100)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (of --steps)")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--fp16", action="store_true")
    p.add_argument("--out", default="data/checkpoints/unet_tiny100")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device) if args.device else pick_device()
    model = UNet(1, tuple(args.channels))
    schedule = NoiseSchedule.make("cosine", 1000)
    images, labels = mnist_images("train")
    if args.n_train < 10 or args.n_train % 10:
        p.error(f"--n-train must be a positive multiple of 10 (the same count per class), got {args.n_train}")
    subset, _ = per_class_subset(images, labels, args.n_train // 10)
    out = Path(args.out)
    print(f"UNet {model.config}: {count_parameters(model):,} parameters; {len(subset)} training digits; "
          f"{args.steps} steps of batch {args.batch_size}", flush=True)
    res = train(model, partial(v_loss, schedule), subset.to(device), args.steps, batch_size=args.batch_size, lr=args.lr,
                warmup=args.warmup, ema_decay=args.ema_decay, ema_warmup=True, seed=args.seed, device=device,
                state_path=find_dir("cache") / f"{out.name}_state.pt", save_every=250,
                stop_after=args.stop_after,
                max_seconds=None if args.max_minutes is None else 60 * args.max_minutes, channels_last=True,
                desc="training U-Net")
    loss_last = sum(res.losses[-100:]) / len(res.losses[-100:])
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s; mean loss of the last 100 steps {loss_last:.4f}", flush=True)
    card = {
        "name": out.name,
        "description": f"EMA weights of the lesson-05 U-Net (v-prediction) trained on {len(subset)} MNIST digits "
                       f"(the first {args.n_train // 10} of each class of the train set)",
        "command": card_command(list(argv if argv is not None else sys.argv[1:]), res.step, args.steps).replace(
            "train_unet", "train_memorisation", 1),
        "schedule": {"name": "cosine", "T": 1000},
        "prediction": "v",
        "training": {"n_train": len(subset), "steps": args.steps, "stopped_at_step": res.step,
                     "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup, "ema_decay": args.ema_decay,
                     "seed": args.seed, "images_seen": res.step * args.batch_size,
                     "epochs": round(res.step * args.batch_size / len(subset)),
                     "final_loss_mean_last_100": round(loss_last, 5)},
        "budget": {"seconds": round(res.seconds), "images_per_second": round(res.images_per_second, 1)},
        "hardware": hardware(device),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": {},
    }
    save_checkpoint(res.ema.model.cpu(), out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"saved {out}.pt and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
