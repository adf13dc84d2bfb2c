"""Train lesson 15's latent diffusion model: first the autoencoder, then the lesson-05 U-Net on its latents.

    python -m minidiff.scripts.train_latent autoencoder --steps 3000 --beta 1e-4 --threads 1 --out data/checkpoints/autoencoder_mnist
    python -m minidiff.scripts.train_latent unet --autoencoder data/checkpoints/autoencoder_mnist --steps 6000 \\
        --channels 32 64 --threads 1 --out data/checkpoints/latent_unet

`autoencoder` trains `minidiff.autoencoder.Autoencoder` with `autoencoder_loss` (reconstruction +
β·KL). `unet` encodes the MNIST train set once with the frozen autoencoder (posterior means μ(x)),
multiplies by the scale factor s = 1/std of those latents (`latent_scale`; `--scale` overrides
it, `--scale 1` trains on the raw latents), and trains `minidiff.unet.UNet` on them with the
recipe of `minidiff.scripts.train_unet` (cosine schedule, v-prediction, EMA with warm-up,
`minidiff.training.train`). Encoding once is `minidiff.latent.latent_loss` with the encoder's
work done ahead: the posterior mean is deterministic, so the batches are the same numbers.
The card records s and the autoencoder's sha256, which `minidiff.checkpoints.load_latent_model`
compares before it loads.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

from ..autoencoder import Autoencoder, autoencoder_loss, latent_scale
from ..checkpoints import load_checkpoint, read_card, save_checkpoint
from ..data.mnist import mnist_images
from ..latent import encode_latents
from ..schedules import NoiseSchedule
from ..training import train
from ..unet import UNet
from ..utils import count_parameters
from ..vpred import v_loss
from . import hardware


def _card_common(args, res, model, device) -> dict:
    return {
        "training": {"steps": args.steps, "stopped_at_step": res.step, "batch_size": args.batch_size, "lr": args.lr,
                     "warmup": args.warmup, "ema_decay": args.ema_decay, "seed": args.seed,
                     "images_seen": res.step * args.batch_size,
                     "final_loss_mean_last_100": round(sum(res.losses[-100:]) / len(res.losses[-100:]), 5)},
        "budget": {"seconds": round(res.seconds), "images_per_second": round(res.images_per_second, 1)},
        "hardware": hardware(device),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": {},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_latent",
                                description="Train lesson 15's autoencoder, or the U-Net on its latents.")
    p.add_argument("what", choices=["autoencoder", "unet"])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="OUT.pt + OUT.json")
    p.add_argument("--fp16", action="store_true", help="store the weights in float16")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long (the card records the step)")
    # autoencoder
    p.add_argument("--beta", type=float, default=1e-4, help="KL weight (autoencoder)")
    p.add_argument("--ae-channels", type=int, nargs=2, default=[16, 32])
    p.add_argument("--latent-channels", type=int, default=4)
    # latent U-Net
    p.add_argument("--autoencoder", default="data/checkpoints/autoencoder_mnist")
    p.add_argument("--scale", type=float, default=None, help="latent scale factor (default: 1/std of the train latents)")
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64])
    p.add_argument("--num-res-blocks", type=int, default=1)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--T", type=int, default=1000)
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    torch.manual_seed(args.seed)
    images, _ = mnist_images("train")
    out = Path(args.out)
    max_seconds = None if args.max_minutes is None else 60 * args.max_minutes
    command = "python -m minidiff.scripts.train_latent " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    if args.what == "autoencoder":
        model = Autoencoder(1, args.latent_channels, tuple(args.ae_channels))
        print(f"Autoencoder {model.config}: {count_parameters(model):,} parameters", flush=True)
        res = train(model, partial(autoencoder_loss, beta=args.beta), images, args.steps, batch_size=args.batch_size,
                    lr=args.lr, warmup=args.warmup, ema_decay=args.ema_decay, ema_warmup=True, seed=args.seed,
                    device=device, max_seconds=max_seconds, desc="training autoencoder")
        card = {"name": out.name, "command": command,
                "description": f"EMA weights of lesson 15's KL-regularised autoencoder (beta={args.beta}) on the MNIST train set",
                "beta": args.beta, **_card_common(args, res, model, device)}
        with torch.no_grad():
            z = encode_latents(res.ema.model.eval(), images[:10000])
        card["latent"] = {"shape": list(z.shape[1:]), "std_of_posterior_means_first_10000": round(float(z.std()), 4)}
        save_checkpoint(res.ema.model, out, card=card, dtype=torch.float16 if args.fp16 else None)
    else:
        ae = load_checkpoint(args.autoencoder, Autoencoder)
        ae_card = read_card(args.autoencoder)
        raw = encode_latents(ae, images)
        scale = latent_scale(raw) if args.scale is None else args.scale
        latents = raw * scale
        model = UNet(ae.latent_channels, tuple(args.channels), args.num_res_blocks, True)
        schedule = NoiseSchedule.make(args.schedule, args.T)
        print(f"latents {tuple(raw.shape)}, raw std {float(raw.std()):.4f}, scale {scale:.4f}; "
              f"UNet {model.config}: {count_parameters(model):,} parameters", flush=True)
        res = train(model, partial(v_loss, schedule), latents, args.steps, batch_size=args.batch_size, lr=args.lr,
                    warmup=args.warmup, ema_decay=args.ema_decay, ema_warmup=True, seed=args.seed, device=device,
                    max_seconds=max_seconds, channels_last=True, desc="training latent U-Net")
        card = {"name": out.name, "command": command,
                "description": "EMA weights of the lesson-05 U-Net (v-prediction) trained on the scaled latents "
                               f"of {ae_card['name']} (MNIST train set)",
                "schedule": {"name": args.schedule, "T": args.T}, "prediction": "v", "objective": "diffusion",
                "autoencoder": {"name": ae_card["name"], "sha256": ae_card["sha256"]},
                "latent": {"shape": list(raw.shape[1:]), "scale": scale, "raw_std": round(float(raw.std()), 5),
                           "scale_from": "1/std of the posterior means of all train images" if args.scale is None else "--scale"},
                **_card_common(args, res, model, device)}
        save_checkpoint(res.ema.model, out, card=card, dtype=torch.float16 if args.fp16 else None)
    print(f"step {res.step}/{args.steps}; {res.seconds:.0f} s; {res.images_per_second:.1f} img/s; "
          f"mean loss of the last 100 steps {card['training']['final_loss_mean_last_100']}; saved {out}.pt/.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
