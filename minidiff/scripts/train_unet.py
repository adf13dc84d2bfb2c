"""Train the MNIST U-Net of lesson 05 (or, with --num-classes, the conditional one of lesson 08)
and ship its EMA weights with a card.

    python -m minidiff.scripts.train_unet --steps 4000 --channels 16 32 64 --out data/checkpoints/unet_mnist

The loop is the library's one training loop (`minidiff.training.train`). The default recipe is
the winner of benchmarks/recipes.md: a cosine schedule, v-prediction (`minidiff.vpred.v_loss`)
and an EMA with warm-up; `--prediction eps --schedule linear --no-ema-warmup` is DDPM's
L_simple (`minidiff.losses.ddpm_loss`). With --num-classes the loss is `minidiff.guidance.cfg_loss`
(label dropout) around the same base loss. `--objective flow` trains lesson 12's flow-matching
U-Net instead (`minidiff.flow.flow_loss`: the network predicts the velocity ε − x_0 at 1000·t,
through `minidiff.flow.TimeScaled`; the card says "objective": "flow"). The whole
data set lives on the device, batches are random rows drawn with a seeded generator, the
learning rate warms up linearly then decays with a cosine, and the resumable state is saved
every --save-every steps, so `--resume` continues a stopped run exactly. `--init NAME` starts from
a shipped U-Net instead of random weights (`warm_start`), for example a class-conditional model
from lesson 05's unconditional `unet_mnist`, fine-tuned with label dropout; `--class-lr` then lets the
label rows of the class embedding learn faster than the shared weights while ∅'s row stays at zero
(`class_param_groups`). The card of the shipped `unet_cond` says which way it was trained.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from ..checkpoints import load_checkpoint, load_state_into, read_card, save_checkpoint
from ..data.mnist import mnist_images
from ..flow import TimeScaled, flow_loss
from ..guidance import cfg_loss
from ..losses import ddpm_loss
from ..paths import find_dir
from ..schedules import NoiseSchedule
from ..training import train
from ..unet import UNet
from ..utils import count_parameters, pick_device
from ..vpred import v_loss
from . import hardware

# run-control flags, left out of the card's command (they do not change the weights)
RUN_CONTROL = {"--resume": 0, "--max-minutes": 1, "--stop-after": 1, "--state": 1, "--save-every": 1}


def card_command(argv: list[str], stopped_at: int, steps: int) -> str:
    """The command that reproduces exactly these weights: the run-control flags dropped, and the
    step where training stopped named (a time-limited run stops part-way through its lr schedule)."""
    kept, i = [], 0
    while i < len(argv):
        if argv[i] in RUN_CONTROL:
            i += 1 + RUN_CONTROL[argv[i]]
            continue
        kept.append(argv[i])
        i += 1
    if stopped_at < steps:
        kept += ["--stop-after", str(stopped_at)]
    return "python -m minidiff.scripts.train_unet " + " ".join(kept)


def warm_start(model: UNet, name: str) -> None:
    """Copy every weight of the shipped U-Net `name` into `model`. A conditional model's class
    embedding, which the unconditional one lacks, starts at zero: emb + class_emb(y) = emb, so the
    warm-started model begins as the shipped one for every y, ∅ included (lesson 08's guidance
    then starts at w-independent samples and learns the labels from there)."""
    if model.class_emb is not None:
        torch.nn.init.zeros_(model.class_emb.weight)
    load_state_into(model, {**model.state_dict(), **load_checkpoint(name, UNet).state_dict()}, source=name)


def class_param_groups(model: UNet, class_lr: float, lr: float) -> list[dict]:
    """AdamW groups for fine-tuning a warm-started conditional U-Net: the label rows of the class
    embedding learn at class_lr, every other weight at lr, and the row of ∅ stays at zero (its
    gradient is masked), so ε(x, t, ∅) keeps the base model's input and changes only through the
    shared weights."""
    emb, null = model.class_emb.weight, model.num_classes
    emb.register_hook(lambda grad: grad.index_fill(0, torch.tensor([null], device=grad.device), 0.0))
    others = [p for p in model.parameters() if p is not emb]
    return [{"params": others}, {"params": [emb], "lr_scale": class_lr / lr}]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_unet",
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
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--prediction", choices=["eps", "v"], default="v", help="what the network predicts (minidiff.vpred)")
    p.add_argument("--objective", choices=["diffusion", "flow"], default="diffusion",
                   help="flow: lesson 12's flow matching (minidiff.flow.flow_loss; the net predicts the velocity ε − x_0 at 1000·t)")
    p.add_argument("--min-snr-gamma", type=float, default=None, help="min-SNR-γ loss weights (v-prediction only)")
    p.add_argument("--no-ema-warmup", action="store_true", help="constant EMA decay from the first step")
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="data/checkpoints/unet_mnist", help="shipped checkpoint: OUT.pt + OUT.json")
    p.add_argument("--state", default=None, help="resumable training state (default: the cache folder, see minidiff.paths)")
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--resume", action="store_true", help="continue from --state if it exists")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this long")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps (of --steps); the card of a time-limited run records it")
    p.add_argument("--fp16", action="store_true", help="store the shipped weights in float16")
    p.add_argument("--init", default=None,
                   help="warm start from this shipped unconditional U-Net (e.g. unet_mnist); with --num-classes the "
                        "class embedding starts at zero, so step 0 is that model for every label and for ∅")
    p.add_argument("--class-lr", type=float, default=None,
                   help="with --init and --num-classes: the label rows of the class embedding learn at this lr, "
                        "the rest at --lr, and the row of ∅ stays at zero (class_param_groups)")
    p.add_argument("--exclude-digits", type=int, nargs="+", default=None,
                   help="leave these digit classes out of the training set (a held-out class for lesson 13)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the model's initial weights
    device = torch.device(args.device) if args.device else pick_device()
    model = UNet(1, tuple(args.channels), args.num_res_blocks, not args.no_attention, args.num_classes)
    if args.init:
        warm_start(model, args.init)
    if args.class_lr is not None and not (args.init and args.num_classes):
        p.error("--class-lr is for fine-tuning: it needs --init and --num-classes")
    groups = class_param_groups(model, args.class_lr, args.lr) if args.class_lr is not None else None
    schedule = NoiseSchedule.make(args.schedule, args.T)
    images, labels = mnist_images("train", device=device)
    if args.exclude_digits:
        keep = ~torch.isin(labels, torch.tensor(args.exclude_digits, device=labels.device))
        images, labels = images[keep], labels[keep]
    out = Path(args.out)
    state = Path(args.state) if args.state else find_dir("cache") / f"{out.name}_state.pt"
    print(f"UNet {model.config}: {count_parameters(model):,} parameters; device {device}; "
          f"{args.steps} steps of batch {args.batch_size}", flush=True)
    if args.min_snr_gamma is not None and args.prediction != "v":
        p.error("--min-snr-gamma is implemented for --prediction v")
    base = ddpm_loss if args.prediction == "eps" else partial(v_loss, min_snr_gamma=args.min_snr_gamma)
    if args.num_classes:
        loss, data = partial(cfg_loss, schedule, p_uncond=args.p_uncond, loss=base), (images, labels)
    else:
        loss, data = partial(base, schedule), images
    if args.objective == "flow":
        if args.num_classes:
            p.error("--objective flow is implemented for the unconditional U-Net")
        loss, data, args.prediction = flow_loss, images, "velocity"
    net = TimeScaled(model, args.T) if args.objective == "flow" else model
    res = train(net, loss, data, args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                ema_decay=args.ema_decay, ema_warmup=not args.no_ema_warmup, seed=args.seed, device=device, params=groups,
                state_path=state, save_every=args.save_every, resume=args.resume, stop_after=args.stop_after, channels_last=True,
                max_seconds=None if args.max_minutes is None else 60 * args.max_minutes, desc="training U-Net")
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s this run; {res.images_per_second:.1f} img/s; "
          f"mean loss of the last 100 steps {sum(res.losses[-100:]) / max(1, len(res.losses[-100:])):.4f}", flush=True)
    if res.step < (args.stop_after or args.steps):
        print(f"stopped at step {res.step}: continue with the same command plus --resume (state in {state}); "
              f"saving the EMA weights so far with a card that says --stop-after {res.step}")
    card = {
        "name": out.name,
        "description": f"EMA weights of the lesson-05 U-Net ({args.prediction}-prediction"
                       f"{', class-conditional' if args.num_classes else ''}) "
                       f"{f'fine-tuned from {args.init}' if args.init else 'trained'} on the MNIST train set",
        "command": card_command(list(argv if argv is not None else sys.argv[1:]), res.step, args.steps),
        "schedule": {"name": args.schedule, "T": args.T},
        "prediction": args.prediction,
        "objective": args.objective,
        "training": {"steps": args.steps, "stopped_at_step": res.step, "batch_size": args.batch_size, "lr": args.lr,
                     "class_lr": args.class_lr, "warmup": args.warmup, "ema_decay": args.ema_decay,
                     "ema_warmup": not args.no_ema_warmup, "min_snr_gamma": args.min_snr_gamma, "seed": args.seed,
                     "p_uncond": args.p_uncond,
                     "init": args.init and {"name": args.init, "sha256": read_card(args.init)["sha256"],
                                            "images_seen": read_card(args.init)["training"]["images_seen"]},
                     "exclude_digits": args.exclude_digits, "train_images": len(images),
                     "images_seen": res.step * args.batch_size,
                     "final_loss_mean_last_100": round(sum(res.losses[-100:]) / len(res.losses[-100:]), 5)},
        "budget": {"seconds_last_run": round(res.seconds), "images_per_second_last_run": round(res.images_per_second, 1),
                   "note": "wall time of the last (possibly resumed) run only"},
        "hardware": hardware(device),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": {},
    }
    shipped = res.ema.model.net if args.objective == "flow" else res.ema.model
    save_checkpoint(shipped, out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"saved {out}.pt and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
