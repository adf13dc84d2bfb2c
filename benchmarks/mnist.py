"""Lesson-05 benchmarks: classifier FID (with sample count and floor), class histogram,
DDIM vs DDPM, and FID / floor against the number of training images seen.
Writes benchmarks/mnist.md and the metrics of the card of data/checkpoints/unet_mnist.

    python benchmarks/mnist.py                                  # the full targets (GPU: minutes)
    python benchmarks/mnist.py --n 10000 --ddim-steps 20 50 --ddpm-n 500 --threads 2   # what a CPU allows in ~25 min

Targets (not timed tests): FID within 2× of the floor at 10 000 samples; class histogram
close to uniform; DDIM at 50 steps within 1.3× of the 1000-step FID. Training speed is
measured by benchmarks/throughput.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff.checkpoints import load_checkpoint, load_eps_model, read_card, update_card  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.eval import fid  # noqa: E402
from minidiff.eval.classifier import MNISTClassifier, accuracy, class_histogram, extract_features, predict  # noqa: E402
from minidiff.sampling import ddpm_sample  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.utils import pick_device  # noqa: E402


def sample_in_batches(fn, n, batch, seed):
    out = []
    for i in range(0, n, batch):
        g = torch.Generator().manual_seed(seed + i)
        out.append(fn(min(batch, n - i), g).cpu())
    return torch.cat(out)


def hist_stats(h: torch.Tensor) -> str:
    tv = 0.5 * (h - 0.1).abs().sum().item()  # total variation distance to uniform
    return f"min {h.min():.3f}, max {h.max():.3f}, TV to uniform {tv:.3f}"


def noise_tv(n: int) -> float:
    """Expected TV distance to uniform of the histogram of n uniform labels over 10 classes:
    each share has std √(0.1·0.9/n) and E|N(0, σ²)| = σ√(2/π), so ½·10·σ·√(2/π)."""
    return 5 * math.sqrt(2 / math.pi) * math.sqrt(0.1 * 0.9 / n)


def verdicts(rows, args, device) -> list[str]:
    """The course's targets for lesson 05, each with what this run measured (no verdict where nothing was measured)."""
    ddim = [r for r in rows if r[0].startswith("DDIM") and r[1] == args.n]
    best = min(ddim, key=lambda r: r[2]) if ddim else None
    out = []
    if best:
        name, n, d, fl, h, _ = best
        met = "met" if d <= 2 * fl else "not met"
        out.append(f"* FID within 2× of the floor at 10 000 samples: **{met} at n = {n:,}** "
                   f"(best row {name}: {d:.2f} = {d / fl:.1f}× the floor {fl:.2f})"
                   + ("" if n == 10_000 else "; 10 000 samples were not run here") + ".")
        tv = 0.5 * (h - 0.1).abs().sum().item()
        out.append(f"* Class histogram close to uniform: total-variation distance to uniform {tv:.3f} "
                   f"(smallest class {h.min():.3f}, largest {h.max():.3f}; a perfect sampler of {n:,} digits "
                   f"would show about {noise_tv(n):.3f} from sampling noise alone).")
    ddpm = next((r for r in rows if r[0].startswith("DDPM")), None)
    pair = next((r for r in rows if r[0].startswith("DDIM η=0, 50 steps") and ddpm and r[1] == ddpm[1]), None)
    if ddpm and pair:
        ratio = pair[2] / ddpm[2]
        out.append(f"* DDIM at 50 steps within 1.3× of the 1000-step FID: **{'met' if ratio <= 1.3 else 'not met'}** "
                   f"at n = {ddpm[1]:,} ({pair[2]:.2f} vs {ddpm[2]:.2f}: {ratio:.2f}×).")
    else:
        out.append("* DDIM at 50 steps vs the 1000-step FID: not measured in this run (--ddpm-n 0 or no 50-step row).")
    if device.type != "cuda":
        out.append("* The GPU tier (bf16 autocast, torch.compile, training from scratch in minutes) was not run: "
                   "no GPU was available when these numbers were made.")
    return out


CURVE_N = 500  # benchmarks/recipes.py's measure: n = 500 DDIM-50 samples in batches of 250 seeded 0 and 250


def images_seen_curve(card, model, s, clf, ref, floors, args, device) -> list[str]:
    """FID / floor at n = 500 (recipes.py's measure) against the training images seen: the recipe's earlier,
    shorter runs from benchmarks/recipes*.json, and the shipped model with the same sampler and seeds.
    Each point is a complete run of its length (the lr decays to 0 at its end), so the curve says what a longer
    run buys; a power law through the last two points projects the images needed for 2× the floor at this n."""
    points = []
    for path, arm, weights in [("recipes.json", "cosine_v", "raw"), ("recipes_round2.json", "r2_cosine_v", "ema")]:
        f = Path(args.recipes) / path
        r = json.loads(f.read_text())["arms"].get(arm) if f.exists() else None
        if r:
            ratio = r["raw"]["fid_over_floor"] if weights == "raw" else r["fid_over_floor"]
            points.append((r["images_seen"], ratio, f"{path.removesuffix('.json')} `{arm}` "
                           f"({'last iterate' if weights == 'raw' else 'EMA'}, batch {r['budget']['batch_size']})"))
    xs = sample_in_batches(lambda b, g: ddim_sample(s, model, (b, 1, 28, 28), steps=50, device=device, generator=g,
                                                    clip_denoised=1.0), CURVE_N, 250, seed=0)
    t = card["training"]
    points.append((t["images_seen"], fid.classifier_fid(clf, xs, ref) / floors[CURVE_N],
                   f"shipped `unet_mnist` (EMA, batch {t['batch_size']})"))
    out = ["## FID / floor against training images seen (one recipe: cosine schedule, v-prediction)", "",
           f"n = {CURVE_N} DDIM-50 samples with the seeds of benchmarks/recipes.py; floor at n = {CURVE_N}: "
           f"{floors[CURVE_N]:.2f}. Round 1's point is the last iterate: its EMA (constant decay, no warm-up)",
           "still held a large share of the initial weights.", "",
           "| images seen | FID / floor | run |", "| ---: | ---: | --- |"]
    out += [f"| {n:,} | {r:.2f} | {what} |" for n, r, what in points]
    (n1, r1, _), (n2, r2, _) = points[-2] if len(points) > 1 else points[-1], points[-1]
    if r2 > 2 and n2 > n1 and r2 < r1:
        k = math.log(r1 / r2) / math.log(n2 / n1)
        need = n2 * (r2 / 2) ** (1 / k)
        per_s = t["images_seen"] / max(1, card["budget"]["seconds_last_run"])
        out += ["", f"Projection: FID / floor ∝ images^−{k:.2f} through the last two points reaches 2× at n = {CURVE_N} "
                    f"after about {need:,.0f} images: {need / per_s / 3600:.1f} h at the shipped run's {per_s:.0f} img/s "
                    "(a power law through two points: a rough guide only)."]
    return out + [""]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10_000, help="generated samples per FID")
    p.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 20, 50, 100])
    p.add_argument("--ddim-eta", type=float, nargs="+", default=[0.0],
                   help="DDIM's η for every step count (0: deterministic; 1: fresh noise each step, see benchmarks/samplers.md)")
    p.add_argument("--ddpm-n", type=int, default=10_000, help="samples for the 1000-step DDPM FID (0: skip)")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--recipes", default=str(ROOT / "benchmarks"), help="folder of recipes*.json (the curve's earlier points)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "mnist.md"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    t_all = time.perf_counter()
    hw = (torch.cuda.get_device_name() if device.type == "cuda"
          else f"CPU {platform.machine()}, {torch.get_num_threads()} threads (shared machine)")

    clf = load_checkpoint("mnist_classifier", MNISTClassifier, device=device)
    model, s = load_eps_model("unet_mnist", UNet, device=device)  # a v-model comes wrapped as an ε-model
    card = read_card("unet_mnist")
    x_train, _ = mnist_images("train")
    x_test, y_test = mnist_images("test")
    acc = accuracy(clf, x_test, y_test)
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    counts = sorted({args.n, CURVE_N, 1000, 10_000} | ({args.ddpm_n} if args.ddpm_n else set()))
    floors = {n: fid.fid_floor(clf, x_train, ref, n) for n in counts}
    print(f"classifier accuracy {acc:.4f}; floors {floors}", flush=True)

    rows, ddim_sets = [], {}
    for eta in args.ddim_eta:
        for k in args.ddim_steps:
            t0 = time.perf_counter()
            xs = sample_in_batches(lambda b, g: ddim_sample(s, model, (b, 1, 28, 28), steps=k, eta=eta, device=device,
                                                            generator=g, clip_denoised=1.0), args.n, args.batch, seed=0)
            secs = time.perf_counter() - t0
            d = fid.classifier_fid(clf, xs, ref)
            h = class_histogram(predict(clf, xs))
            rows.append((f"DDIM η={eta:g}, {k} steps", args.n, d, floors[args.n], h, secs))
            if eta == 0:
                ddim_sets[k] = xs
            print(rows[-1][:4], hist_stats(h), f"{secs:.0f} s", flush=True)
    if args.ddpm_n:
        t0 = time.perf_counter()
        xs = sample_in_batches(lambda b, g: ddpm_sample(s, model, (b, 1, 28, 28), device=device, generator=g,
                                                        clip_denoised=1.0), args.ddpm_n, args.batch, seed=0)
        secs = time.perf_counter() - t0
        d = fid.classifier_fid(clf, xs, ref)
        h = class_histogram(predict(clf, xs))
        rows.append((f"DDPM ancestral, {s.T} steps", args.ddpm_n, d, floors[args.ddpm_n], h, secs))
        print(rows[-1][:4], f"{secs:.0f} s", flush=True)
        if 50 in ddim_sets and args.ddpm_n < args.n:
            # compare DDIM-50 and DDPM at the same n: FID depends on n, so the first ddpm_n DDIM
            # samples are scored again (same seeds when --batch divides ddpm_n)
            sub = ddim_sets[50][: args.ddpm_n]
            rows.append((f"DDIM η=0, 50 steps (first {args.ddpm_n:,})", args.ddpm_n, fid.classifier_fid(clf, sub, ref),
                         floors[args.ddpm_n], class_histogram(predict(clf, sub)), float("nan")))

    curve = images_seen_curve(card, model, s, clf, ref, floors, args, device)

    lines = [
        "# MNIST benchmarks (lesson 05)",
        "",
        f"Made by `python benchmarks/mnist.py {' '.join(argv if argv is not None else sys.argv[1:])}` on "
        f"{datetime.date.today()}, {hw}, torch {torch.__version__}; {time.perf_counter() - t_all:.0f} s in all.",
        "",
        f"Model: `data/checkpoints/unet_mnist.pt` ({card['parameters']:,} parameters, {card.get('prediction', 'eps')}-prediction, "
        f"{card['schedule']['name']} schedule, {card['training']['stopped_at_step']:,} steps "
        f"of batch {card['training']['batch_size']} = {card['training']['images_seen']:,} images; `{card['command']}`).",
        f"Instrument: `data/checkpoints/mnist_classifier.pt`, test accuracy **{acc:.4f}** on all 10 000 test digits.",
        "",
        "## Classifier FID (reference: the 10 000 MNIST test digits)",
        "",
        "Every FID is reported with its sample count n and the floor at that n: the FID of n random *training*",
        "digits against the same reference. Samples are clipped to x̂_0 ∈ [−1, 1] during sampling.",
        "",
        "| sampler | n | FID | floor at n | FID / floor | class histogram | sampling time |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, n, d, fl, h, secs in rows:
        when = "(same samples as above)" if secs != secs else f"{secs:.0f} s"
        lines.append(f"| {name} | {n:,} | {d:.2f} | {fl:.2f} | {d / fl:.1f} | {hist_stats(h)} | {when} |")
    lines += ["", "Floor by sample count: " + ", ".join(f"n = {n:,}: {f:.2f}" for n, f in floors.items()), ""]
    lines += curve
    lines += ["Training and sampling speed on this machine: benchmarks/throughput.md.", ""]
    lines += ["", "## Targets", ""] + verdicts(rows, args, device) + [""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    metrics = {"classifier_fid": {r[0]: {"n": r[1], "fid": round(r[2], 3), "floor": round(r[3], 3),
                                         "ratio": round(r[2] / r[3], 2)} for r in rows},
               "class_histogram": {r[0]: [round(v, 3) for v in r[4].tolist()] for r in rows},
               "measured_by": "python benchmarks/mnist.py (see benchmarks/mnist.md)"}
    update_card("unet_mnist", metrics=metrics)
    update_card("mnist_classifier", metrics={"test_accuracy": round(acc, 4)})


if __name__ == "__main__":
    main()
