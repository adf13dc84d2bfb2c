"""Train lesson 18's GANs on MNIST: the DCGAN, or the denoising diffusion GAN with T steps.

    python -m minidiff.scripts.train_gan dcgan --seed 0 --max-minutes 3 --threads 1 --fp16 --out data/checkpoints/gan_mnist_seed0
    python -m minidiff.scripts.train_gan ddgan --T 4 --lr 2e-4 --max-minutes 2 --threads 1 --fp16 --out data/checkpoints/ddgan4_mnist

Both play the two-player game of `minidiff.gan` inside `minidiff.training.train` (alternating D and G
steps, AdamW with β = (0.5, 0.999) and a constant learning rate set by `gan.adam_betas`; EMA of the
weights only with --ema-decay). The budget is wall time (`--max-minutes`): the card records the rounds done and the images seen.
A `DivergenceMonitor` watches the run: a non-finite loss, or a collapsed probe (200 samples from fixed
noise whose pixels barely differ or, for the DCGAN, one class above 90 % of the probe from loop step 1200 on by the course's
classifier) stops it with the step, exit status 2, and nothing is saved; `gan.train_gan` probes once more at the
end, so a run that stops between probes is checked too. (Every diffusion-GAN run we made ended this way.)
At the end the script measures classifier FID (n = 1000 against the MNIST test set) and the class
histogram of 1000 samples, and writes them with the loss curves (means over 25 rounds) into the card.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .. import gan
from ..checkpoints import load_checkpoint, save_checkpoint
from ..data.mnist import mnist_images
from ..eval import fid
from ..eval.classifier import MNISTClassifier, class_histogram, extract_features, predict
from ..utils import count_parameters, pick_device
from . import hardware


def curve(values, every: int = 25) -> list[float]:
    return [round(sum(values[i:i + every]) / len(values[i:i + every]), 4) for i in range(0, len(values), every)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_gan", description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["dcgan", "ddgan"])
    p.add_argument("--T", type=int, default=4, help="ddgan: the number of denoising steps")
    p.add_argument("--tanh", action="store_true", help="ddgan: squash x̂_0 with tanh (it collapses to black)")
    p.add_argument("--rounds", type=int, default=100_000, help="at most this many D+G rounds")
    p.add_argument("--max-minutes", type=float, default=3.5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--beta1", type=float, default=0.5, help="AdamW's β1 (set through gan.adam_betas)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="EMA of the weights (off by default: in runs this short it lags behind the game)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fp16", action="store_true", help="store the weights in float16")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device()
    x_train, _ = mnist_images("train", device=device)
    x_test, _ = mnist_images("test")
    clf = load_checkpoint("mnist_classifier", MNISTClassifier, device=device)
    z_probe = torch.randn(200, 64, generator=torch.Generator().manual_seed(1234)).to(device)
    if args.what == "dcgan":
        pair = gan.TwoPlayer(gan.Generator(), gan.Discriminator())
        d_loss, g_loss = gan.dcgan_d_loss, gan.dcgan_g_loss
        monitor = gan.DivergenceMonitor(lambda m: m.generator(z_probe), args.probe_every,
                                        classify=lambda x: predict(clf, x), max_class_fraction=0.9,
                                        class_check_after=1200)
    else:
        schedule = gan.ddgan_schedule(args.T)
        pair = gan.TwoPlayer(gan.DDGANGenerator(tanh=args.tanh), gan.DDGANDiscriminator())
        d_loss, g_loss = gan.ddgan_losses(schedule)
        monitor = gan.DivergenceMonitor(
            lambda m: gan.ddgan_sample(schedule, m.generator, 200, torch.Generator().manual_seed(1234), device),
            args.probe_every)
    try:
        res = gan.train_gan(pair, d_loss, g_loss, x_train, args.rounds, monitor=monitor, batch_size=args.batch_size,
                            lr=args.lr, make_scheduler=gan.adam_betas(args.beta1), ema_decay=args.ema_decay, ema_warmup=True,
                            seed=args.seed,
                            max_seconds=60 * args.max_minutes, desc=args.what)
    except gan.GANDiverged as err:
        print(f"{err} — nothing saved", file=sys.stderr)
        return 2
    G = res.sampling_model.generator.eval()
    g = torch.Generator().manual_seed(0)
    if args.what == "dcgan":
        xs = torch.cat([gan.gan_sample(G, 250, g, device).cpu() for _ in range(4)])
    else:
        xs = torch.cat([gan.ddgan_sample(schedule, G, 250, g, device).cpu() for _ in range(4)])
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    d = fid.classifier_fid(clf, xs, ref)
    floor = fid.fid_floor(clf, x_train.cpu(), ref, len(xs))
    hist = class_histogram(predict(clf, xs))
    rounds = res.step // 2
    card = {
        "description": (f"{'EMA generator' if args.ema_decay else 'Generator'} of lesson 18's "
                        f"{'DCGAN' if args.what == 'dcgan' else f'denoising diffusion GAN (T = {args.T})'}"
                        " on the MNIST train set"),
        "command": "python -m minidiff.scripts.train_gan " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.what,
        "training": {"rounds": rounds, "loop_steps": res.step, "batch_size": args.batch_size, "lr": args.lr,
                     "betas": [args.beta1, 0.999],
                     "ema_decay": args.ema_decay, "seed": args.seed, "images_seen": rounds * args.batch_size,
                     "max_minutes": args.max_minutes,
                     "d_loss_curve": curve(res.losses[0::2]), "g_loss_curve": curve(res.losses[1::2]),
                     "curve_every_rounds": 25, "probes": monitor.history},
        "budget": {"seconds": round(res.seconds, 1), "cpu_minutes": round(res.seconds * args.threads / 60, 2)},
        "hardware": hardware(device), "torch": torch.__version__,
        "parameters": count_parameters(G),
        "parameters_discriminator": count_parameters(res.model.discriminator),
        "metrics": {"classifier_fid": {"n": len(xs), "fid": round(d, 3), "floor": round(floor, 3),
                                       "ratio": round(d / floor, 3)},
                    "class_histogram": [round(v, 4) for v in hist.tolist()]},
    }
    if args.what == "ddgan":
        card["schedule"] = {"name": "ddgan", "T": args.T, "beta_min": 0.1, "beta_max": 20.0}
    save_checkpoint(G, args.out, card, dtype=torch.float16 if args.fp16 else None)
    print(f"saved {args.out}: rounds {rounds}, FID {d:.2f} (floor {floor:.2f}, ratio {d / floor:.2f}), "
          f"{res.seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
