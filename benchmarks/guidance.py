"""Classifier-free guidance: the fidelity / diversity trade-off, measured (lesson 08).

    python benchmarks/guidance.py                       # the committed table (see guidance.md)
    python benchmarks/guidance.py --per-class 10 --steps 5 --out g.json --md g.md   # a quick look, written beside you

For each guidance scale w it draws `per_class` guided DDIM samples of every digit 0–9 from the
shipped conditional checkpoint (`minidiff.guidance.guided_sample`, fixed seed) and measures, with
lesson 05's evaluation classifier (`minidiff.eval.guidance.guidance_metrics`):

    accuracy   fraction of samples the classifier reads as the requested digit
    fid        classifier FID (`minidiff.eval.fid`: the Fréchet distance of classifier features) against
               the whole MNIST test set
    diversity  mean pairwise distance between classifier features of samples of the same class,
               averaged over classes (`eval.guidance.within_class_diversity`; a sample's class is the
               digit the classifier reads, so that w = 0 is measured the same way)

plus the same FID for lesson 05's unconditional checkpoint (same sampler, same sample count),
the FID floor at that count (real train images against the test set), and the diversity of real
test images. Results go to a JSON file (read by solutions/08_guidance.ipynb) and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff import guidance  # noqa: E402
from minidiff.checkpoints import CheckpointError, load_eps_model, read_card  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.eval.classifier import extract_features, load_classifier, predict  # noqa: E402
from minidiff.eval.fid import fid_floor, frechet_distance, gaussian_stats  # noqa: E402
from minidiff.eval.guidance import guidance_metrics, within_class_diversity  # noqa: E402
from minidiff.unet import UNet  # noqa: E402


def balanced_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of `per_class` random examples of every class (for the real-data diversity)."""
    g = torch.Generator().manual_seed(seed)
    idx = [torch.nonzero(labels == c).flatten() for c in range(10)]
    return torch.cat([i[torch.randperm(len(i), generator=g)[:per_class]] for i in idx])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="unet_cond")
    p.add_argument("--uncond", default="unet_mnist", help="lesson 05's unconditional checkpoint ('' to skip)")
    p.add_argument("--scales", type=float, nargs="*", default=[0, 1, 1.25, 1.5, 2, 3, 5, 8])
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (η = 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "guidance.json"))
    p.add_argument("--md", default=str(ROOT / "benchmarks" / "guidance.md"))
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="combine the sweeps of several runs (e.g. scales split over two processes) into --out/--md")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out, args.md)
    torch.set_num_threads(args.threads)

    net, schedule = load_eps_model(args.checkpoint, UNet)  # a v-model comes wrapped as an ε-model
    classifier = load_classifier()
    x_test, y_test = mnist_images("test")
    x_train, _ = mnist_images("train")
    ref = gaussian_stats(extract_features(classifier, x_test))
    n = 10 * args.per_class
    real = balanced_subset(y_test, args.per_class, args.seed)
    reference = {
        "fid_floor": fid_floor(classifier, x_train, ref, n=n, seed=args.seed),
        "test_diversity": within_class_diversity(extract_features(classifier, x_test[real]), y_test[real]),
        "test_accuracy": float((predict(classifier, x_test) == y_test).float().mean()),
    }
    print(f"n = {n} samples per scale; FID floor {reference['fid_floor']:.2f}; "
          f"real within-class diversity {reference['test_diversity']:.2f}", flush=True)

    digits = torch.arange(10).repeat_interleave(args.per_class)
    sweep = []
    for w in args.scales:
        t0 = time.perf_counter()
        x = guidance.guided_sample(schedule, net, digits, w, (1, 28, 28), steps=args.steps,
                                   generator=torch.Generator().manual_seed(args.seed))
        seconds = time.perf_counter() - t0
        m = guidance_metrics(classifier, x, digits, ref)
        sweep.append({"w": w, **{k: round(v, 4) for k, v in m.items()}, "sampling_seconds": round(seconds, 1)})
        print(f"w = {w:g}: accuracy {m['accuracy']:.3f}, FID {m['fid']:.2f}, diversity {m['diversity']:.2f} "
              f"({seconds:.0f} s)", flush=True)

    uncond = None
    if args.uncond:
        try:
            model, uncond_schedule = load_eps_model(args.uncond, UNet)
            g = torch.Generator().manual_seed(args.seed)
            t0 = time.perf_counter()
            x = torch.cat([ddim_sample(uncond_schedule, model, (min(500, n - i), 1, 28, 28), steps=args.steps,
                                       generator=g, clip_denoised=1.0) for i in range(0, n, 500)])
            seconds = time.perf_counter() - t0
            feats = extract_features(classifier, x)
            pred = predict(classifier, x)
            uncond = {"checkpoint": args.uncond, "fid": round(frechet_distance(*gaussian_stats(feats), *ref), 4),
                      "diversity": round(within_class_diversity(feats, pred), 4),
                      "sampling_seconds": round(seconds, 1)}
            print(f"unconditional {args.uncond}: FID {uncond['fid']:.2f} ({seconds:.0f} s)", flush=True)
        except CheckpointError as e:
            print(f"skipping the unconditional comparison: {e}", flush=True)

    result = {
        "config": {"checkpoint": args.checkpoint, "per_class": args.per_class, "samples_per_scale": n,
                   "ddim_steps": args.steps, "eta": 0.0, "clip_denoised": 1.0, "seed": args.seed,
                   "threads": args.threads, "hardware": platform.processor() or platform.machine(),
                   "torch": torch.__version__,
                   "command": "python benchmarks/guidance.py " + " ".join(argv if argv is not None else sys.argv[1:])},
        "reference": {k: round(v, 4) for k, v in reference.items()},
        "sweep": sweep,
        "unconditional": uncond,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.md).write_text(markdown(result))
    print(f"wrote {args.out} and {args.md}")
    return 0


def merge(paths, out, md) -> int:
    """One result from runs that differ only in --scales (and where --uncond ran)."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    keys = ("checkpoint", "per_class", "ddim_steps", "seed")
    if any(tuple(r["config"][k] for k in keys) != tuple(runs[0]["config"][k] for k in keys) for r in runs):
        raise SystemExit(f"runs differ in {keys}: they cannot be merged")
    result = dict(runs[0])
    result["sweep"] = sorted((s for r in runs for s in r["sweep"]), key=lambda s: s["w"])
    result["unconditional"] = next((r["unconditional"] for r in runs if r["unconditional"]), None)
    c = runs[0]["config"]
    # every scale reseeds its generator, so split runs give exactly what one run over all scales gives
    result["config"] = dict(c, command=f"python benchmarks/guidance.py --per-class {c['per_class']} "
                                       f"--steps {c['ddim_steps']} --seed {c['seed']}",
                            note=f"run here as {len(runs)} processes over parts of --scales, joined with --merge")
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    Path(md).write_text(markdown(result))
    print(f"wrote {out} and {md}")
    return 0


def targets(r: dict) -> list[str]:
    """The course's targets for the shipped checkpoint, checked against this run."""
    sweep = {s["w"]: s for s in r["sweep"]}
    out = []
    card = read_card(r["config"]["checkpoint"])
    tr, budget = card.get("training", {}), card.get("budget", {})
    out.append(f"The checkpoint: {card.get('parameters', 0):,} parameters, {card.get('prediction', 'eps')}-prediction, "
               f"{tr.get('steps')} steps of batch {tr.get('batch_size')} ({tr.get('images_seen', 0):,} images), "
               f"p_uncond = {tr.get('p_uncond')}, "
               f"trained in {budget.get('seconds_last_run', 0) / 60:.0f} min on {card.get('hardware')} by "
               f"`{card.get('command')}`.")
    out.append("")
    if 3.0 in sweep:
        a = sweep[3.0]["accuracy"]
        out.append(f"- accuracy on the requested digit at w = 3 ≥ 99.5 %: **{'met' if a >= 0.995 else 'not met'}** "
                   f"({a:.1%}; {sweep[max(sweep)]['accuracy']:.1%} at w = {max(sweep):g}).")
    u = r.get("unconditional")
    if 0.0 in sweep and u:
        f0 = sweep[0.0]["fid"]
        out.append(f"- classifier FID at w = 0 no worse than lesson 05's unconditional model: "
                   f"**{'met' if f0 <= u['fid'] else 'not met'}** ({f0:.1f} vs {u['fid']:.1f}).")
        try:
            ucard = read_card(u["checkpoint"])["training"]
            seen_null = tr.get("p_uncond", 0) * tr.get("images_seen", 0)
            init = tr.get("init")
            if init:
                out.append(f"  The conditional model started from `{init['name']}` ({init['images_seen']:,} images, the "
                           f"unconditional task only); fine-tuning with label dropout p_uncond = {tr.get('p_uncond')} "
                           f"then showed it ∅ on about {seen_null:,.0f} more, and the labels on the rest.")
            else:
                out.append(f"  With label dropout only p_uncond = {tr.get('p_uncond')} of the conditional model's training "
                           f"images taught it ε(x_t, t, ∅): about {seen_null:,.0f}, against "
                           f"{ucard.get('images_seen', 0):,} for the unconditional model, which spent its whole budget on "
                           "that one task.")
        except (CheckpointError, KeyError, TypeError):
            pass
    elif 0.0 in sweep:
        out.append("- classifier FID at w = 0 vs lesson 05's unconditional model: not measured (no checkpoint).")
    return out


def markdown(r: dict) -> str:
    c = r["config"]
    lines = [
        "# Classifier-free guidance: the trade-off",
        "",
        f"Checkpoint `{c['checkpoint']}` (conditional U-Net, see `data/checkpoints/{c['checkpoint']}.json`), "
        f"{c['per_class']} samples per digit per scale ({c['samples_per_scale']} in all), DDIM {c['ddim_steps']} "
        f"steps, η = 0, x̂_0 clipped to [−1, 1], seed {c['seed']}; {c['threads']} CPU thread, torch {c['torch']}. "
        f"Reproduce: `{c['command'].strip()}`" + (f" ({c['note']})." if c.get("note") else "."),
        "",
        "Guidance convention: ε̃ = ε(∅) + w·(ε(y) − ε(∅)) (w = 0 unconditional, w = 1 conditional; "
        "Ho & Salimans' w′ = w − 1).",
        "Accuracy: the evaluation classifier (`minidiff.eval.classifier`) reads the requested digit. "
        "FID: classifier FID (`minidiff.eval.fid`) against the 10,000 MNIST test images. "
        "Diversity: mean pairwise distance of classifier features between samples that the classifier reads as the "
        "same digit, averaged over digits (real test images: grouped by their labels).",
        "",
        "| w | accuracy on requested digit | classifier FID | within-class diversity | sampling time (s)¹ |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in r["sweep"]:
        lines.append(f"| {s['w']:g} | {s['accuracy']:.1%} | {s['fid']:.2f} | {s['diversity']:.2f} | {s['sampling_seconds']:.0f} |")
    ref = r["reference"]
    lines += [
        "",
        f"References at the same sample count: FID floor (real train images vs test) {ref['fid_floor']:.2f}; "
        f"within-class diversity of real test images {ref['test_diversity']:.2f}; "
        f"the classifier's accuracy on the test set {ref['test_accuracy']:.2%}.",
    ]
    u = r.get("unconditional")
    if u:
        lines += ["", f"Unconditional model of lesson 05 (`{u['checkpoint']}`), same sampler and sample count: "
                      f"classifier FID {u['fid']:.2f}, within-class diversity {u['diversity']:.2f}."]
    else:
        lines += ["", "Unconditional model of lesson 05: not measured (checkpoint not found when this ran)."]
    lines += ["", "## Targets", ""] + targets(r)
    lines += [
        "",
        "¹ Wall time on one thread of a shared 2-core machine that other jobs kept busy: indicative only "
        "(w = 0 and w = 1 need one network pass per step, other w two).",
        "",
        "Small sample counts make FID biased upwards (compare rows with each other and with the floor, not with "
        "published FIDs). GPU: not measured — no GPU was available when this table was made. The notebook's `gpu` "
        "tier trains a larger conditional U-Net (channels 32, 64, 128; 8,000 steps of batch 128) from scratch; "
        "that path is untested here, and so is whether it meets the targets.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
