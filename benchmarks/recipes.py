"""Training-recipe ablations for the MNIST U-Net at equal compute (lessons 05-06).

    python benchmarks/recipes.py --threads 1                            # all arms (CPU: hours)
    python benchmarks/recipes.py --threads 1 --arms baseline cosine_v   # some of them

Every arm trains the same small U-Net from the same initial weights for the same number of
images (--steps × --batch-size), with the same lr schedule (warm-up, then cosine to 0;
`minidiff.training.lr_at`) and AdamW; only the recipe changes:

    baseline          ε-prediction, linear schedule, uniform t, EMA 0.999 (today's recipe)
    cosine            + cosine schedule (Nichol & Dhariwal 2021)
    cosine_v          + v-prediction (Salimans & Ho 2022)
    cosine_minsnr     ε-prediction with min-SNR-γ loss weights, γ = 5 (Hang et al. 2023)
    cosine_v_minsnr   v-prediction with min-SNR-γ loss weights, γ = 5
    cosine_emawarmup  cosine with an EMA warm-up: decay_n = min(0.999, (1 + n)/(10 + n))
    cosine_wide       cosine with channels (32, 64, 128): more compute per image (wall time recorded)

The measure: classifier FID (minidiff.eval.fid) of --n DDIM samples (50 steps, η = 0, x̂_0 clipped to
[−1, 1], the same seeds for every arm) from the EMA weights, against the MNIST test set, divided
by its floor (the FID of n real train images, `fid.fid_floor`), plus the class histogram's
total-variation distance to uniform. Lower is better for both. The same is measured on the raw
(last-iterate) weights: at 1200 steps an EMA of decay 0.999 still holds 0.999^1200 ≈ 30 % of the
random initial weights, so without the raw column a short run would only measure the EMA.

Resumable: each arm's training state is saved every --save-every steps under --cache, and each
finished arm goes into --out-json at once; running the same command again skips finished arms
and continues a partly trained one. benchmarks/recipes.md is rewritten after every arm.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.ema import EMA  # noqa: E402
from minidiff.eval import fid  # noqa: E402
from minidiff.eval.classifier import class_histogram, extract_features, load_classifier, predict  # noqa: E402
from minidiff.forward import add_noise  # noqa: E402
from minidiff.schedules import NoiseSchedule  # noqa: E402
from minidiff.training import lr_at  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.utils import count_parameters  # noqa: E402
from minidiff.vpred import EpsFromV, min_snr_weight, velocity  # noqa: E402

# ------------------------------------------------------------------------------ the arms

BASE = dict(schedule="linear", prediction="eps", min_snr_gamma=None, ema="constant",
            channels=(16, 32, 64), lr=2e-3, warmup=100, ema_decay=0.999, T=1000)


def arm(name: str, **changes) -> dict:
    return {"name": name, **BASE, **changes}


# In the order that teaches the most first: if the run is cut short, the early arms answer
# the biggest questions (does the schedule matter? the parameterisation? the weighting?).
ARMS = [
    arm("baseline"),
    arm("cosine", schedule="cosine"),
    arm("cosine_v", schedule="cosine", prediction="v"),
    arm("cosine_minsnr", schedule="cosine", min_snr_gamma=5.0),
    arm("cosine_v_minsnr", schedule="cosine", prediction="v", min_snr_gamma=5.0),
    arm("cosine_emawarmup", schedule="cosine", ema="warmup"),
    arm("cosine_wide", schedule="cosine", channels=(32, 64, 128)),
    # round 2 (longer runs, `--steps 4000`): every arm with the EMA warm-up that round 1 showed is needed
    arm("r2_linear_eps", ema="warmup"),
    arm("r2_cosine_eps", schedule="cosine", ema="warmup"),
    arm("r2_cosine_v", schedule="cosine", prediction="v", ema="warmup"),
    arm("r2_cosine_v_minsnr", schedule="cosine", prediction="v", min_snr_gamma=5.0, ema="warmup"),
]
ARM_NAMES = [a["name"] for a in ARMS]

# ------------------------------------------------------------------------------ the losses
#
# x_t = √ᾱ x_0 + √(1 − ᾱ) ε, and SNR_t = ᾱ_t / (1 − ᾱ_t).


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred, target, reduction="none").flatten(1).mean(1)


def eps_loss(model, schedule, x0, noise, t, gamma: float | None) -> torch.Tensor:
    """ε-prediction: mean over the batch of w_t ‖ε − ε_θ(x_t, t)‖² (w_t = 1: DDPM's L_simple)."""
    x_t = add_noise(schedule, x0, noise, t)
    loss = per_sample_mse(model(x_t, t), noise)
    if gamma is not None:
        loss = loss * min_snr_weight(schedule.snr[t.cpu()], gamma, "eps").to(loss)
    return loss.mean()


def v_loss(model, schedule, x0, noise, t, gamma: float | None) -> torch.Tensor:
    """v-prediction (minidiff.vpred): mean over the batch of w_t ‖v − v_θ(x_t, t)‖² (w_t = 1 without min-SNR).
    Unlike minidiff.vpred.v_loss it takes the draws (noise, t), so that every arm sees the same ones."""
    x_t = add_noise(schedule, x0, noise, t)
    loss = per_sample_mse(model(x_t, t), velocity(schedule, x0, noise, t))
    if gamma is not None:
        loss = loss * min_snr_weight(schedule.snr[t.cpu()], gamma, "v").to(loss)
    return loss.mean()


LOSSES = {"eps": eps_loss, "v": v_loss}


def as_eps_model(model, schedule, prediction: str):
    """The trained network as the ε-model that `ddim_sample` expects."""
    return model if prediction == "eps" else EpsFromV(model, schedule)


# ------------------------------------------------------------------------------ training


def budget_of(args) -> dict:
    return {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "n": args.n,
            "sampler": f"DDIM, 50 steps, eta 0, clip x0 to [-1, 1], batches of {args.sample_batch} seeded seed + i"}


def save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    if path.suffix == ".pt":
        torch.save(obj, tmp)
    else:
        tmp.write_text(obj)
    os.replace(tmp, path)


def train_arm(cfg: dict, images: torch.Tensor, args, state_path: Path):
    """Train one arm (resuming from state_path if it holds a partial run). Returns (model, EMA, schedule, losses, seconds)."""
    schedule = NoiseSchedule.make(cfg["schedule"], cfg["T"])
    loss_fn = LOSSES[cfg["prediction"]]
    torch.manual_seed(args.seed)  # the same initial weights for every arm of the same width
    model = UNet(1, cfg["channels"], 1, True).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.0)
    ema = EMA(model, cfg["ema_decay"], warmup=cfg["ema"] == "warmup")  # warm-up: min(decay, (1 + n)/(10 + n))
    generator = torch.Generator().manual_seed(args.seed)
    step, losses, seconds = 0, [], 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        ema.warmup, ema.num_updates = cfg["ema"] == "warmup", state["step"]
        opt.load_state_dict(state["opt"])
        generator.set_state(state["generator"])
        step, losses, seconds = state["step"], list(state["losses"]), state["seconds"]
        print(f"[{cfg['name']}] resumed at step {step}/{args.steps} ({seconds:.0f} s of training so far)", flush=True)
    else:
        print(f"[{cfg['name']}] UNet {cfg['channels']}: {count_parameters(model):,} parameters", flush=True)

    def save():  # `seconds` in the state: training time of the steps it holds (all sessions together)
        save_atomic({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                     "generator": generator.get_state(), "step": step, "losses": losses,
                     "seconds": seconds + time.perf_counter() - t0}, state_path)

    model.train()
    n = images.shape[0]
    t0, start = time.perf_counter(), step
    while step < args.steps:
        idx = torch.randint(n, (args.batch_size,), generator=generator)
        x0 = images[idx].contiguous(memory_format=torch.channels_last)
        t = torch.randint(1, cfg["T"] + 1, (args.batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, cfg["lr"], cfg["warmup"])
        loss = loss_fn(model, schedule, x0, noise, t, cfg["min_snr_gamma"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        losses.append(loss.item())
        step += 1
        elapsed = time.perf_counter() - t0
        if step % 100 == 0 or step == start + 50 or step == args.steps:
            rate = (step - start) * args.batch_size / elapsed
            eta_min = (args.steps - step) * args.batch_size / rate / 60
            print(f"[{cfg['name']}] step {step}/{args.steps}  loss(last 100) {sum(losses[-100:]) / len(losses[-100:]):.4f}  "
                  f"{rate:.0f} img/s  {seconds + elapsed:.0f} s  ~{eta_min:.1f} min of training left", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            save()
    if step > start:
        seconds += time.perf_counter() - t0
    return model, ema, schedule, losses, seconds


# ------------------------------------------------------------------------------ evaluation


def sample(eps_model, schedule, n: int, batch: int, seed: int) -> torch.Tensor:
    """n DDIM samples (50 steps, η = 0, clipped), batch b drawn from torch.Generator(seed + b·batch)."""
    out = []
    for i in range(0, n, batch):
        g = torch.Generator().manual_seed(seed + i)
        out.append(ddim_sample(schedule, eps_model, (min(batch, n - i), 1, 28, 28), steps=50, eta=0.0,
                               generator=g, clip_denoised=1.0))
    return torch.cat(out)


def tv_to_uniform(h: torch.Tensor) -> float:
    return 0.5 * (h - 1.0 / h.numel()).abs().sum().item()


def measure(model, schedule, cfg: dict, clf, ref, args) -> dict:
    """FID (against ref) and class-histogram TV of args.n fixed-seed DDIM samples of `model`."""
    t0 = time.perf_counter()
    xs = sample(as_eps_model(model.eval(), schedule, cfg["prediction"]), schedule, args.n, args.sample_batch, args.seed)
    d = fid.frechet_distance(*fid.gaussian_stats(extract_features(clf, xs)), *ref)
    h = class_histogram(predict(clf, xs))
    return {"fid": d, "tv": tv_to_uniform(h), "hist": h, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------ report


def command_line(args) -> str:
    cmd = ["python benchmarks/recipes.py", f"--threads {args.threads}"]
    defaults = {"steps": 1200, "batch_size": 64, "n": 500, "seed": 0}
    for key, default in defaults.items():
        if getattr(args, key) != default:
            cmd.append(f"--{key.replace('_', '-')} {getattr(args, key)}")
    if args.arms != ARM_NAMES:
        cmd.append("--arms " + " ".join(args.arms))
    return " ".join(cmd)


def write_md(results: dict, path: Path) -> None:
    meta = results["meta"]
    rows = [results["arms"][name] for name in ARM_NAMES if name in results["arms"]]
    steps = rows[0]["budget"]["steps"] if rows else 0
    lines = [
        "# Training-recipe ablations (MNIST U-Net, equal images seen)",
        "",
        f"Made by `{meta['command']}` on {meta['hardware']}, torch {meta['torch']}.",
        "",
        "Each arm trains the same U-Net (channels (16, 32, 64) unless marked) from the same initial weights on the same",
        "number of images with AdamW, lr 2e-3 (warm-up 100 steps, cosine to 0); only the recipe differs. Measured on the",
        "EMA weights: classifier FID of n DDIM samples (50 steps, η = 0, x̂_0 clipped to [−1, 1], the same seeds for every",
        "arm) against the MNIST test set, divided by the floor (FID of n real train images at the same n), and the",
        "total-variation distance of the predicted-class histogram to uniform. Lower is better for both.",
        f"The *raw* columns measure the last iterate instead: after {steps} steps an EMA of constant decay 0.999 still",
        f"holds 0.999^{steps} ≈ {100 * 0.999 ** steps:.1f} % of the random initial weights (the warm-up arms' EMA starts",
        "from the trained weights instead).",
        "The loss is the mean training objective of the last 100 steps: comparable only between arms with the same",
        "parameterisation and weighting (ε vs v, with or without min-SNR).",
        "",
        "| arm | recipe | images seen | training s | loss | FID (EMA) | floor | FID / floor (EMA) | TV (EMA) "
        "| FID / floor (raw) | TV (raw) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        mark = " †" if tuple(r["settings"]["channels"]) != BASE["channels"] else ""
        lines.append(f"| {r['arm']}{mark} | {r['recipe']} | {r['images_seen']:,} | {r['train_seconds']:.0f} | "
                     f"{r['final_loss']:.4f} | {r['fid']:.2f} | {r['floor']:.2f} | {r['fid_over_floor']:.2f} | "
                     f"{r['tv_to_uniform']:.3f} | {r['raw']['fid_over_floor']:.2f} | {r['raw']['tv_to_uniform']:.3f} |")
    lines.append("")
    if rows:
        same_n = [r for r in rows if r["budget"]["n"] == meta["n"]]
        best = min(same_n or rows, key=lambda r: r["fid_over_floor"])
        raw = min(same_n or rows, key=lambda r: r["raw"]["fid_over_floor"])
        lines.append(f"**Winner so far** (lowest FID / floor of the EMA weights, {len(rows)} of the {len(results['arms'])} arms run here): "
                     f"`{best['arm']}`, {best['fid_over_floor']:.2f}× the floor. On the raw weights: "
                     f"`{raw['arm']}`, {raw['raw']['fid_over_floor']:.2f}×.")
    lines += ["",
              "† Unequal wall time: the wide arm sees the same number of images but costs more compute per image;",
              "compare its training seconds before crediting its FID to the recipe.",
              "",
              f"One run, one seed, n = {meta['n']}: differences of a few tenths in FID / floor may be noise.", ""]
    save_atomic("\n".join(lines), path)


def recipe_text(cfg: dict) -> str:
    parts = [f"{cfg['prediction']}-pred", cfg["schedule"]]
    if cfg["min_snr_gamma"] is not None:
        parts.append(f"min-SNR γ={cfg['min_snr_gamma']:g}")
    parts.append("EMA warm-up" if cfg["ema"] == "warmup" else f"EMA {cfg['ema_decay']}")
    if tuple(cfg["channels"]) != BASE["channels"]:
        parts.append(f"channels {tuple(cfg['channels'])}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Equal-compute training-recipe ablations for the MNIST U-Net.")
    p.add_argument("--arms", nargs="+", default=ARM_NAMES, choices=ARM_NAMES, metavar="NAME",
                   help=f"arms to run, in order (default: all): {', '.join(ARM_NAMES)}")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n", type=int, default=500, help="generated samples per FID (and the floor's n)")
    p.add_argument("--sample-batch", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--out-json", default=str(ROOT / "benchmarks" / "recipes.json"))
    p.add_argument("--out-md", default=str(ROOT / "benchmarks" / "recipes.md"))
    p.add_argument("--cache", default=str(ROOT / "data" / "cache" / "recipes"), help="training states (git-ignored)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    out_json, out_md, cache = Path(args.out_json), Path(args.out_md), Path(args.cache)
    results = json.loads(out_json.read_text()) if out_json.exists() else {"arms": {}}
    results["meta"] = {"command": command_line(args), "n": args.n, "torch": torch.__version__,
                       "hardware": f"CPU {platform.processor() or platform.machine()}, "
                                   f"{torch.get_num_threads()} torch thread(s)"}
    budget = budget_of(args)
    print(f"{results['meta']['command']}\n  (minidiff from {Path(sys.modules['minidiff'].__file__).parent})", flush=True)

    todo = [a for a in ARMS if a["name"] in args.arms]
    done = {name for name, r in results["arms"].items() if r.get("budget") == budget and "raw" in r}
    todo = [a for a in todo if a["name"] not in done]
    for name in args.arms:
        if name not in {a["name"] for a in todo}:
            print(f"[{name}] done already ({out_json}): skipped", flush=True)
    if not todo:
        write_md(results, out_md)
        return 0

    images, _ = mnist_images("train")
    x_test, _ = mnist_images("test")
    clf = load_classifier()
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    floor = fid.fid_floor(clf, images, ref, args.n, seed=args.seed)
    print(f"FID floor at n = {args.n}: {floor:.3f}", flush=True)

    for cfg in todo:
        name = cfg["name"]
        state_path = cache / f"{name}_steps{args.steps}_bs{args.batch_size}_seed{args.seed}.pt"
        model, ema, schedule, losses, seconds = train_arm(cfg, images, args, state_path)
        m = measure(ema.model, schedule, cfg, clf, ref, args)
        r = measure(model, schedule, cfg, clf, ref, args)
        d, h, sample_seconds = m["fid"], m["hist"], m["seconds"] + r["seconds"]
        final_loss = sum(losses[-100:]) / len(losses[-100:])
        results["arms"][name] = {
            "arm": name, "recipe": recipe_text(cfg), "settings": {k: v for k, v in cfg.items() if k != "name"},
            "budget": budget, "images_seen": args.steps * args.batch_size, "train_seconds": round(seconds, 1),
            "sample_seconds": round(sample_seconds, 1), "final_loss": round(final_loss, 5),
            "fid": round(d, 4), "floor": round(floor, 4), "fid_over_floor": round(d / floor, 3),
            "tv_to_uniform": round(tv_to_uniform(h), 4), "class_histogram": [round(v, 4) for v in h.tolist()],
            "raw": {"fid": round(r["fid"], 4), "fid_over_floor": round(r["fid"] / floor, 3), "tv_to_uniform": round(r["tv"], 4),
                    "class_histogram": [round(v, 4) for v in r["hist"].tolist()]},
            "hardware": results["meta"]["hardware"],
        }
        print(f"[{name}] EMA: FID {d:.3f} = {d / floor:.2f}× the floor, TV {m['tv']:.3f}; "
              f"raw: FID {r['fid']:.3f} = {r['fid'] / floor:.2f}×, TV {r['tv']:.3f}; "
              f"training {seconds:.0f} s, sampling {sample_seconds:.0f} s", flush=True)
        save_atomic(json.dumps(results, indent=1, ensure_ascii=False) + "\n", out_json)
        write_md(results, out_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
