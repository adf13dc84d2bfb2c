"""Train lesson 14's text-to-digit U-Net (`minidiff.crossattn.TextUNet`) on captions made from MNIST
and ship its EMA weights with a card.

    python -m minidiff.scripts.train_text --steps 4000 --threads 1 --out data/checkpoints/text_unet

Captions are drawn afresh for every batch (`minidiff.text.caption_batch`): a random template, and
each measured attribute word (thick/thin, slanted/upright, large/small: the class's terciles of
`text.measure_attributes`) said with probability 0.7. `--holdout 3:thick` never says "thick"
for a 3, so that the lesson can ask for the unseen composition. The U-Net starts from lesson 05's
shipped unconditional `unet_mnist` (--init; the cross-attention blocks start as the identity), so
the run teaches the conditioning, not how to draw digits. The loss is
`crossattn.text_loss` (v-prediction, caption dropout p_uncond) in the library's one training
loop (`training.train`). The card stores the tokenizer's vocabulary and its hash: a checkpoint
is refused by a tokenizer with another vocabulary.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from ..checkpoints import load_checkpoint, save_checkpoint
from ..crossattn import TextUNet, text_loss
from ..data.mnist import mnist_images
from ..paths import find_dir
from ..schedules import NoiseSchedule
from ..text import ATTRIBUTES, Tokenizer, attribute_levels, caption_batch, measure_attributes
from ..training import train
from ..unet import UNet
from ..utils import count_parameters, pick_device
from . import hardware
from .train_unet import card_command


def parse_holdout(items) -> tuple:
    """["3:thick"] → ((3, "thick"),)."""
    out = []
    for item in items or ():
        d, word = item.split(":")
        out.append((int(d), word))
    return tuple(out)


def dataset_levels(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, 3) attribute levels −1/0/+1 of every image, columns in the order of text.ATTRIBUTES."""
    values = measure_attributes(images)
    return torch.stack([attribute_levels(values[name], labels) for name in ATTRIBUTES], 1)


def caption_loss(schedule, tokenizer, holdout, p_word, p_uncond, model, batch, generator):
    """text_loss on (x0, captions drawn for the batch's labels and attribute levels)."""
    x0, labels, levels = batch
    ids = caption_batch(tokenizer, labels, levels, p_word, generator, holdout).to(x0.device)
    return text_loss(schedule, model, (x0, ids), generator, p_uncond=p_uncond)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_text",
                                description="Train lesson 14's text-conditioned U-Net on captioned MNIST.")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--text-dim", type=int, default=64)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--context-length", type=int, default=12)
    p.add_argument("--p-uncond", type=float, default=0.2)
    p.add_argument("--p-word", type=float, default=0.7, help="probability of saying each true attribute word")
    p.add_argument("--holdout", nargs="*", default=["3:thick"], help="digit:word pairs never said in training")
    p.add_argument("--init", default="unet_mnist",
                   help="start the U-Net from this shipped unconditional checkpoint ('none': from scratch)")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="data/checkpoints/text_unet")
    p.add_argument("--state", default=None)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--stop-after", type=int, default=None)
    p.add_argument("--fp16", action="store_true")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device) if args.device else pick_device()
    tokenizer = Tokenizer(context_length=args.context_length)
    model = TextUNet(1, tuple(args.channels), None, len(tokenizer), args.context_length, args.text_dim, args.text_layers)
    if args.init != "none":  # the new blocks start as the identity: step 0 draws the old model's digits
        model.unet.load_state_dict(load_checkpoint(args.init, UNet).state_dict())
    schedule = NoiseSchedule.make("cosine", args.T)
    images, labels = mnist_images("train", device=device)
    levels = dataset_levels(images, labels)
    holdout = parse_holdout(args.holdout)
    out = Path(args.out)
    state = Path(args.state) if args.state else find_dir("cache") / f"{out.name}_state.pt"
    print(f"TextUNet {model.config}: {count_parameters(model):,} parameters; {args.steps} steps of batch "
          f"{args.batch_size}; held out {holdout}", flush=True)
    loss = partial(caption_loss, schedule, tokenizer, holdout, args.p_word, args.p_uncond)
    res = train(model, loss, (images, labels, levels), args.steps, batch_size=args.batch_size, lr=args.lr,
                warmup=args.warmup, ema_decay=args.ema_decay, ema_warmup=True, seed=args.seed, device=device,
                state_path=state, save_every=args.save_every, resume=args.resume, stop_after=args.stop_after,
                max_seconds=None if args.max_minutes is None else 60 * args.max_minutes, desc="training TextUNet")
    last = res.losses[-100:]
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s this run; {res.images_per_second:.1f} img/s; "
          f"mean loss of the last 100 steps {sum(last) / max(1, len(last)):.4f}", flush=True)
    command = card_command(list(argv if argv is not None else sys.argv[1:]), res.step, args.steps)
    card = {
        "name": out.name,
        "description": "EMA weights of lesson 14's text-conditioned U-Net (v-prediction, caption dropout) "
                       "trained on captions made from the MNIST train set",
        "command": command.replace("minidiff.scripts.train_unet", "minidiff.scripts.train_text"),
        "schedule": {"name": "cosine", "T": args.T},
        "prediction": "v",
        "tokenizer": {"vocab": list(tokenizer.vocab), "context_length": tokenizer.context_length,
                      "vocab_sha256": tokenizer.vocab_hash},
        "training": {"steps": args.steps, "stopped_at_step": res.step, "batch_size": args.batch_size, "lr": args.lr,
                     "warmup": args.warmup, "ema_decay": args.ema_decay, "seed": args.seed, "p_uncond": args.p_uncond,
                     "p_word": args.p_word, "init": args.init, "holdout": [f"{d}:{w}" for d, w in holdout],
                     "images_seen": res.step * args.batch_size,
                     "final_loss_mean_last_100": round(sum(last) / max(1, len(last)), 5)},
        "budget": {"seconds_last_run": round(res.seconds), "images_per_second_last_run": round(res.images_per_second, 1),
                   "note": "wall time of the last (possibly resumed) run only"},
        "hardware": hardware(device),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": {},
    }
    save_checkpoint(res.ema.model, out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"saved {out}.pt and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
