"""Progressively distil the shipped lesson-05 U-Net (Salimans & Ho 2022) into few-step students.

    python -m minidiff.scripts.train_distill --start-steps 32 --max-minutes 12 --threads 1 --out data/checkpoints/distill_mnist

The teacher is `unet_mnist` sampled with DDIM (η = 0, x̂_0 clipped to [−1, 1]) on `--start-steps` steps.
Round r trains a copy of the previous model (`minidiff.distill.distill_round`, i.e. `training.train` on
`distill_loss`) to take one step where it took two: 32 → 16 → 8 → 4 → 2 → 1 students for --start-steps 32.
Every round gets the same wall-time share of `--max-minutes` (constant learning rate, EMA with warm-up).
The students with `--save` steps are written as OUT_N.pt/.json (cards with the round's budget, the images
seen, and classifier FID at n = 1000 against the MNIST test set, with the floor at that n).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from ..checkpoints import load_checkpoint, load_eps_model, read_card, save_checkpoint
from ..data.mnist import mnist_images
from ..ddim import ddim_sample
from ..distill import distill_round
from ..eval import fid
from ..eval.classifier import MNISTClassifier, class_histogram, extract_features, predict
from ..unet import UNet
from ..utils import count_parameters, pick_device
from ..vpred import EpsFromV
from . import hardware


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_distill", description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="unet_mnist")
    p.add_argument("--start-steps", type=int, default=32, help="DDIM steps of the teacher (a power of 2)")
    p.add_argument("--save", type=int, nargs="+", default=[8, 4, 2, 1])
    p.add_argument("--max-minutes", type=float, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--ema-decay", type=float, default=0.99)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="OUT_N.pt + OUT_N.json for each saved student")
    args = p.parse_args(argv)
    if args.start_steps < 2 or args.start_steps & (args.start_steps - 1):
        p.error("--start-steps must be a power of 2, at least 2")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device()
    teacher_eps, s = load_eps_model(args.teacher, UNet, device=device)
    teacher_card = read_card(args.teacher)
    net = teacher_eps.net
    x_train, _ = mnist_images("train", device=device)
    x_test, _ = mnist_images("test")
    clf = load_checkpoint("mnist_classifier", MNISTClassifier, device=device)
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    floor = fid.fid_floor(clf, x_train.cpu(), ref, 1000)
    rounds = int(math.log2(args.start_steps))
    share = 60 * args.max_minutes / rounds
    command = "python -m minidiff.scripts.train_distill " + " ".join(sys.argv[1:] if argv is None else argv)
    history, seen, seconds = [], 0, 0.0
    steps = args.start_steps
    for r in range(rounds):
        steps //= 2
        res = distill_round(s, net, x_train, steps, 100_000, batch_size=args.batch_size, lr=args.lr, lr_decay=False,
                            ema_decay=args.ema_decay, ema_warmup=True, seed=args.seed + r, max_seconds=share,
                            desc=f"distil to {steps} steps")
        net = res.sampling_model.eval()
        seen += res.step * args.batch_size
        seconds += res.seconds
        row = dict(steps=steps, loop_steps=res.step, images=res.step * args.batch_size, seconds=round(res.seconds, 1),
                   loss_last_50=round(sum(res.losses[-50:]) / len(res.losses[-50:]), 5))
        history.append(row)
        print(row, flush=True)
        if steps in args.save:
            g = torch.Generator().manual_seed(0)
            xs = torch.cat([ddim_sample(s, EpsFromV(net, s), (250, 1, 28, 28), steps=steps, device=device, generator=g,
                                        clip_denoised=1.0).cpu() for _ in range(4)])
            d = fid.classifier_fid(clf, xs, ref)
            card = {"description": f"lesson 18: the lesson-05 U-Net progressively distilled to {steps} DDIM step(s)",
                    "command": command, "schedule": teacher_card["schedule"], "prediction": "v",
                    "teacher": {"name": args.teacher, "sha256": teacher_card["sha256"], "steps": args.start_steps},
                    "training": {"rounds": history, "batch_size": args.batch_size, "lr": args.lr,
                                 "ema_decay": args.ema_decay, "seed": args.seed,
                                 "images_seen_by_distillation": seen,
                                 "images_seen_including_teacher": seen + teacher_card["training"]["images_seen"]},
                    "budget": {"seconds_distillation": round(seconds, 1),
                               "seconds_teacher": teacher_card["budget"]["seconds_last_run"]},
                    "hardware": hardware(device), "torch": torch.__version__, "parameters": count_parameters(net),
                    "metrics": {"classifier_fid": {"n": 1000, "steps": steps, "fid": round(d, 3),
                                                   "floor": round(floor, 3), "ratio": round(d / floor, 3)},
                                "class_histogram": [round(v, 4) for v in class_histogram(predict(clf, xs)).tolist()]}}
            save_checkpoint(net, f"{args.out}_{steps}", card, dtype=torch.float16)
            print(f"saved {args.out}_{steps}: FID {d:.2f} (floor {floor:.2f}, ratio {d / floor:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
