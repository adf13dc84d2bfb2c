"""Train the lesson-04 toy model (an `EpsMLP` on a 2D dataset) to the end and ship its EMA weights with a card.

    python -m minidiff.scripts.train_toy --dataset checkerboard --steps 24000 --fourier-features 256 \\
        --threads 1 --out data/checkpoints/toy_checkerboard

DDPM's L_simple (`minidiff.losses.ddpm_loss`) with the lesson's schedule (DDPM's linear schedule
rescaled to T steps: β_1 = 0.1/T, β_T = 20/T), run by the library's one training loop
(`minidiff.training.train`: AdamW, cosine learning rate, EMA). The random numbers are drawn in the
order of benchmarks/toy2d.py (`torch.manual_seed(seed)` for the initial weights, then one generator
seeded with `seed` for the training points, the batches and the losses), so the benchmark's budget
of the same recipe trains the same weights (on the CPU, where both run: this small MLP gains nothing
from a GPU, and float sums differ between devices). After training the card gets the model's measured
metrics: DDPM ancestral samples (σ_t² = β_t and β̃_t) against fresh data (`metrics.quality`), and for
the checkerboard the share of samples on black squares.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from functools import partial
from pathlib import Path

import torch

from ..checkpoints import save_checkpoint
from ..data import toy
from ..eval import metrics
from ..losses import ddpm_loss
from ..mlp import EpsMLP
from ..sampling import ddpm_sample
from ..schedules import NoiseSchedule
from ..training import train
from ..utils import count_parameters
from . import hardware


def lesson_schedule(T: int) -> NoiseSchedule:
    """DDPM's linear schedule rescaled to T steps (β_1 = 0.1/T, β_T = 20/T, capped at 0.999), as in lesson 04."""
    return NoiseSchedule.make("linear", T=T, beta_1=0.1 / T, beta_T=min(20.0 / T, 0.999))


def measure(eps_model, schedule, dataset: str, n: int, seed: int) -> dict:
    """Samples of both reverse variances against fresh data: distance / floor (n = 500 chunks), and
    for the checkerboard the share of samples on black squares."""
    out = {}
    for sigma2 in ("beta", "beta_tilde"):
        x = ddpm_sample(schedule, eps_model, (n, 2), generator=torch.Generator().manual_seed(seed), sigma2=sigma2)
        q = metrics.quality(x, lambda m, g: toy.sample(dataset, m, g), chunk=500,
                            generator=torch.Generator().manual_seed(seed + 1))
        row = {"n": n, "distance_over_floor": round(q.ratio, 3)}
        if dataset == "checkerboard":
            row["on_black"] = round((toy.density(dataset).log_prob(x) > -math.inf).float().mean().item(), 4)
        out[f"DDPM ancestral, sigma2={sigma2}"] = row
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_toy",
                                description="Train the lesson-04 EpsMLP on a 2D toy dataset and save its EMA weights with a card.")
    p.add_argument("--dataset", choices=list(toy.DATASETS), default="checkerboard")
    p.add_argument("--steps", type=int, default=24_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--fourier-features", type=int, default=256, help="random Fourier features of x (0: none)")
    p.add_argument("--fourier-scale", type=float, default=1.0, help="their standard deviation (cycles per unit)")
    p.add_argument("--T", type=int, default=200)
    p.add_argument("--n-train", type=int, default=20_000, help="training points drawn once from the dataset")
    p.add_argument("--n-eval", type=int, default=8_000, help="samples for the card's metrics (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default="data/checkpoints/toy_checkerboard", help="shipped checkpoint: OUT.pt + OUT.json")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the model's initial weights
    schedule = lesson_schedule(args.T)
    model = EpsMLP(dim=2, hidden=args.hidden, depth=args.depth, t_scale=1000 / args.T,
                   fourier_features=args.fourier_features, fourier_scale=args.fourier_scale, fourier_seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data = toy.sample(args.dataset, args.n_train, gen)
    print(f"EpsMLP {model.config}: {count_parameters(model):,} parameters; {args.dataset}, "
          f"{args.steps} steps of batch {args.batch_size}", flush=True)
    cpu0 = time.process_time()
    res = train(model, partial(ddpm_loss, schedule), data, args.steps, batch_size=args.batch_size, lr=args.lr,
                ema_decay=args.ema_decay, generator=gen, desc=f"training EpsMLP on {args.dataset}")
    train_cpu = time.process_time() - cpu0
    final = sum(res.losses[-200:]) / len(res.losses[-200:])
    print(f"{res.seconds:.0f} s wall, {train_cpu:.0f} s CPU; mean loss of the last 200 steps {final:.4f}", flush=True)
    eps_model = res.ema.model
    found = measure(eps_model, schedule, args.dataset, args.n_eval, args.seed + 100) if args.n_eval else {}
    for name, row in found.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    out = Path(args.out)
    card = {
        "name": out.name,
        "description": f"EMA weights of the lesson-04 EpsMLP (ε-prediction) trained on {args.dataset}",
        "command": "python -m minidiff.scripts.train_toy " + " ".join(argv if argv is not None else sys.argv[1:]),
        "dataset": args.dataset,
        "schedule": {"name": "linear", "T": args.T, "beta_1": 0.1 / args.T, "beta_T": min(20.0 / args.T, 0.999)},
        "prediction": "eps",
        "training": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "ema_decay": args.ema_decay,
                     "seed": args.seed, "n_train": args.n_train, "final_loss_mean_last_200": round(final, 5)},
        "budget": {"seconds": round(res.seconds), "cpu_seconds": round(train_cpu),
                   "note": "one run from scratch; CPU seconds of the process (wall time on a shared machine is longer)"},
        "hardware": hardware(torch.device("cpu")),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": found,
    }
    save_checkpoint(eps_model, out, card=card)
    print(f"saved {out}.pt and {out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
