"""Train lesson 17's video models: the space-time U-Net on bouncing digits, and the frame classifier.

    python -m minidiff.scripts.train_video unet --steps 900 --batch-size 32 --threads 1 --fp16 \\
        --max-minutes 30 --out data/checkpoints/video_unet
    python -m minidiff.scripts.train_video classifier --steps 1500 --batch-size 32 --threads 1 --max-minutes 6 \\
        --out data/checkpoints/video_frame_classifier

(the shipped checkpoints; both stopped at their --max-minutes, the cards record the step: add
`--stop-after STEP` to the card's command to reproduce one without a clock).

`unet` trains `minidiff.video.VideoUNet` (class-conditional, label dropout 0.2 for classifier-free
guidance) with the lesson-05 recipe: cosine schedule, v-prediction (`vpred.v_loss` inside
`guidance.cfg_loss`), EMA with warm-up, `training.train`. The videos (`data.moving.MovingDigits`,
MNIST train digits) are drawn fresh for every batch from the run's seeded generator.
`--no-temporal` trains the same network without its temporal layers (a per-frame model).

`classifier` trains the course's `MNISTClassifier` on `video.frame_crops` of real moving-digit
frames (train digits): the measuring instrument of per-frame accuracy. Its accuracy on frames of
test-digit videos goes into its card.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoints import save_checkpoint
from ..data.moving import MovingDigits
from ..eval.classifier import MNISTClassifier, accuracy
from ..guidance import cfg_loss
from ..paths import find_dir
from ..schedules import NoiseSchedule
from ..training import train
from ..utils import count_parameters
from ..video import VideoUNet, frame_crops
from ..vpred import v_loss
from . import hardware


def cross_entropy(model, batch, generator=None) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_video",
                                description="Train lesson 17's video U-Net or its frame classifier.")
    p.add_argument("what", choices=["unet", "classifier"])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=32, help="videos per step (unet) or videos per step (classifier)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--p-uncond", type=float, default=0.2)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    p.add_argument("--patch", type=int, default=2)
    p.add_argument("--no-temporal", action="store_true", help="no temporal layers: a per-frame model")
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--fp16", action="store_true", help="store the weights in float16")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long (the card records the step)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps (the lr schedule still spans --steps): reproduces a run that "
                        "--max-minutes stopped, from the step in its card")
    p.add_argument("--resume", action="store_true", help="continue from the saved training state")
    p.add_argument("--out", required=True, help="OUT.pt + OUT.json")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    cpu0 = time.process_time()
    device = torch.device("cpu")
    torch.manual_seed(args.seed)
    out = Path(args.out)
    command = "python -m minidiff.scripts.train_video " + " ".join(argv if argv is not None else sys.argv[1:])
    data = MovingDigits.from_mnist("train")
    g = torch.Generator().manual_seed(args.seed)
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    if args.what == "unet":
        model = VideoUNet(1, tuple(args.channels), data.frames, num_classes=10, temporal=not args.no_temporal,
                          patch=args.patch)
        schedule = NoiseSchedule.make(args.schedule, args.T)
        print(f"VideoUNet {model.config}: {count_parameters(model):,} parameters", flush=True)
        res = train(model, partial(cfg_loss, schedule, p_uncond=args.p_uncond, loss=v_loss), None, args.steps,
                    batches=data.batches(args.batch_size, g), lr=args.lr, warmup=args.warmup,
                    ema_decay=args.ema_decay, ema_warmup=True, generator=g, device=device,
                    state_path=find_dir("cache") / f"{out.name}_state.pt", save_every=100, resume=args.resume,
                    stop_after=args.stop_after, max_seconds=max_seconds, desc="training video U-Net")
        card = {"name": out.name, "command": command,
                "description": "EMA weights of lesson 17's space-time U-Net (v-prediction, class-conditional, "
                               "label dropout for guidance) on bouncing MNIST train digits",
                "schedule": {"name": args.schedule, "T": args.T}, "prediction": "v",
                "data": {"frames": data.frames, "size": model.size, "videos_seen": res.step * args.batch_size,
                         "frames_seen": res.step * args.batch_size * data.frames}}
    else:
        model = MNISTClassifier()

        def batches():
            videos, labels, _ = data.sample(args.batch_size, g)
            return frame_crops(videos), labels.repeat_interleave(data.frames)

        res = train(model, cross_entropy, None, args.steps, batches=batches, lr=args.lr, warmup=args.warmup,
                    weight_decay=1e-4, generator=g, device=device, stop_after=args.stop_after, max_seconds=max_seconds,
                    desc="training classifier")
        test = MovingDigits.from_mnist("test")
        videos, labels, _ = test.sample(2000, torch.Generator().manual_seed(1))
        acc = accuracy(model, frame_crops(videos), labels.repeat_interleave(test.frames))
        card = {"name": out.name, "command": command,
                "description": "lesson 05's MNISTClassifier trained on the centre-of-mass crops (video.frame_crops) "
                               "of bouncing MNIST train digits: lesson 17's per-frame instrument",
                "metrics": {"frame_accuracy_test_digits": round(acc, 4), "n_frames": int(labels.numel() * test.frames)}}
        print(f"frame accuracy on test-digit videos: {acc:.4f}", flush=True)
    card.update({
        "training": {"steps": args.steps, "stopped_at_step": res.step, "batch_size": args.batch_size, "lr": args.lr,
                     "warmup": args.warmup, "seed": args.seed,
                     "final_loss_mean_last_100": round(sum(res.losses[-100:]) / len(res.losses[-100:]), 5)},
        "budget": {"seconds_last_run": round(res.seconds), "cpu_seconds_last_run": round(time.process_time() - cpu0),
                   "note": "wall and CPU time of the last (possibly resumed) run, on a 2-core machine shared with other "
                           "jobs: the CPU time is what one free thread would take"},
        "hardware": hardware(device), "torch": torch.__version__, "parameters": count_parameters(model),
    })
    if args.what == "unet":
        card["training"].update(ema_decay=args.ema_decay, p_uncond=args.p_uncond)
    weights = res.ema.model if res.ema is not None else res.model
    save_checkpoint(weights, out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s; mean loss of the last 100 steps "
          f"{card['training']['final_loss_mean_last_100']}; saved {out}.pt/.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
