"""Train lesson 16's two models: the class-conditional 1D U-Net on sounds, and the EGNN on molecules.

    python -m minidiff.scripts.train_beyond sound --steps 9000 --threads 1 --fp16 --out data/checkpoints/sound_unet1d
    python -m minidiff.scripts.train_beyond molecules --steps 6000 --threads 1 --out data/checkpoints/egnn_conformers

`sound` draws the synthetic clips of `minidiff.data.sound` (seed 0) and trains `minidiff.unet1d.UNet1d`
with classifier-free label dropout (`guidance.cfg_loss`, v-prediction on a cosine schedule) in the
one training loop `training.train`. `molecules` builds the RDKit conformers of
`minidiff.data.molecules` and trains `minidiff.egnn.EGNN` with the zero-centre-of-mass loss
`egnn.com_free_loss`. Both store the EMA weights with a card (command, sha256, examples seen,
seconds, hardware, parameters, final loss); the benchmark `benchmarks/beyond_sound_molecules.py`
adds the measured metrics.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from ..checkpoints import save_checkpoint
from ..guidance import cfg_loss
from ..paths import find_dir
from ..schedules import NoiseSchedule
from ..training import train
from ..utils import count_parameters
from ..vpred import v_loss
from . import hardware


def _card(args, res, model, device, command: str, description: str, extra: dict) -> dict:
    return {
        "name": Path(args.out).name, "command": command, "description": description, **extra,
        "schedule": {"name": args.schedule, "T": args.T},
        "training": {"steps": args.steps, "stopped_at_step": res.step, "batch_size": args.batch_size, "lr": args.lr,
                     "warmup": args.warmup, "ema_decay": args.ema_decay, "seed": args.seed,
                     "examples_seen": res.step * args.batch_size,
                     "final_loss_mean_last_100": round(sum(res.losses[-100:]) / len(res.losses[-100:]), 5)},
        "budget": {"seconds": round(res.seconds), "examples_per_second": round(res.images_per_second, 1)},
        "hardware": hardware(device), "torch": torch.__version__, "parameters": count_parameters(model),
        "metrics": {},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_beyond",
                                description="Train lesson 16's sound U-Net or molecule EGNN.")
    p.add_argument("what", choices=["sound", "molecules"])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="OUT.pt + OUT.json")
    p.add_argument("--fp16", action="store_true", help="store the weights in float16")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long (the card records the step)")
    p.add_argument("--resume", action="store_true", help="continue from the training state saved in the cache folder")
    # sound
    p.add_argument("--clips-per-class", type=int, default=2000)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 96])
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--p-uncond", type=float, default=0.2)
    # molecules
    p.add_argument("--conformers", type=int, default=200, help="RDKit conformers per molecule")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(args.seed)
    schedule = NoiseSchedule.make(args.schedule, args.T)
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    command = "python -m minidiff.scripts.train_beyond " + " ".join(argv if argv is not None else sys.argv[1:])
    common = dict(batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, ema_decay=args.ema_decay,
                  ema_warmup=True, seed=args.seed, device=device, max_seconds=max_seconds,
                  state_path=find_dir("cache") / f"{Path(args.out).name}_state.pt", save_every=100, resume=args.resume)
    if args.what == "sound":
        from ..data.sound import CLASSES, LENGTH, SAMPLE_RATE, make_clips
        from ..unet1d import UNet1d

        clips, labels = make_clips(args.clips_per_class, seed=args.seed)
        model = UNet1d(1, tuple(args.channels), num_classes=len(CLASSES), patch=args.patch)
        print(f"clips {tuple(clips.shape)}; UNet1d {model.config}: {count_parameters(model):,} parameters", flush=True)
        res = train(model, partial(cfg_loss, schedule, p_uncond=args.p_uncond, loss=v_loss), (clips, labels),
                    args.steps, desc="training UNet1d", **common)
        card = _card(args, res, model, device, command,
                     "EMA weights of lesson 16's class-conditional 1D U-Net (v-prediction, label dropout "
                     f"{args.p_uncond}) on the synthetic clips of minidiff.data.sound",
                     {"prediction": "v", "data": {"clips_per_class": args.clips_per_class, "seed": args.seed,
                                                  "classes": list(CLASSES), "sample_rate": SAMPLE_RATE,
                                                  "length": LENGTH}})
    else:
        from ..data.molecules import SMILES, conformer_dataset
        from ..egnn import EGNN, com_free_loss

        data = conformer_dataset(args.conformers, seed=args.seed)
        model = EGNN(data["h"].shape[-1], data["bonds"].shape[-1], args.hidden, args.layers)
        print(f"{len(SMILES)} molecules, {data['x'].shape[0]} conformers; EGNN {model.config}: "
              f"{count_parameters(model):,} parameters", flush=True)
        res = train(model, partial(com_free_loss, schedule),
                    (data["x"], data["h"], data["bonds"], data["mask"]), args.steps, desc="training EGNN", **common)
        card = _card(args, res, model, device, command,
                     "EMA weights of lesson 16's EGNN denoiser (ε-prediction on zero-CoM coordinates) on the "
                     "RDKit ETKDG conformers of minidiff.data.molecules",
                     {"prediction": "eps", "data": {"conformers_per_molecule": args.conformers, "seed": args.seed,
                                                    "molecules": len(SMILES)}})
    save_checkpoint(res.ema.model, args.out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s; final loss {card['training']['final_loss_mean_last_100']}; "
          f"saved {args.out}.pt/.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
