"""The GPU tier of lesson 05: train the MNIST U-Net from scratch on one GPU and measure how fast it
reaches the FID target. Writes benchmarks/gpu.md and gpu.json; `bash benchmarks/gpu.sh` runs it.

    python benchmarks/gpu_tier.py                  # on a GPU: the measurement
    python benchmarks/gpu_tier.py --device cpu --steps 6 --batch-size 8 --channels 8 16 32 \\
        --eval-every 3 --eval-n 32 --final-n 64 --sample-steps 2 --ref-n 256 --no-compile --out gpu_tiny.md

Target (lesson 05's gpu tier): at most 5 minutes of training on one H100 to a classifier FID within
2× of its floor at n = 10 000 samples.

The recipe is the one of `python -m minidiff.scripts.train_unet` (cosine schedule, v-prediction
`minidiff.vpred.v_loss`, AdamW with linear warm-up then cosine decay, EMA with warm-up), at the gpu
tier's size (UNet(1, (32, 64, 128), 1, attention), as lesson 05 trains it on a GPU), with what a GPU
is for: a larger batch, the whole train set on the device, bf16 autocast and torch.compile
(`minidiff.training.train`'s `amp` and `compile`; --no-amp, --no-compile turn them off).

Every --eval-every steps training pauses and the EMA weights sample --eval-n digits (DDIM, η = 0,
--sample-steps steps, x̂_0 clipped to [−1, 1]); their classifier FID against the 10 000 MNIST test
digits is divided by the floor at the same n (`minidiff.eval.fid.fid_floor`: n real train digits
against the same reference). The training clock stops while evaluating, so "training minutes" is the
time a run without evaluations would take, torch.compile's compilation included. At the end the EMA
weights sample --final-n digits for the final FID, the number the target is about.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mnist import hist_stats, noise_tv, sample_in_batches  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.ema import EMA  # noqa: E402
from minidiff.eval import fid  # noqa: E402
from minidiff.eval.classifier import class_histogram, extract_features, load_classifier, predict  # noqa: E402
from minidiff.schedules import NoiseSchedule  # noqa: E402
from minidiff.training import train  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.utils import count_parameters, pick_device  # noqa: E402
from minidiff.vpred import EpsFromV, v_loss  # noqa: E402

LEVELS = (8.0, 4.0, 3.0, 2.0, 1.5)  # FID / floor levels whose first crossing is reported
TARGET_MINUTES, TARGET_RATIO, TARGET_N = 5.0, 2.0, 10_000


class Clock:
    """Seconds of training: a stopwatch that evaluations pause."""

    def __init__(self):
        self.total, self.since = 0.0, time.perf_counter()

    def seconds(self) -> float:
        return self.total + (time.perf_counter() - self.since if self.since is not None else 0.0)

    def pause(self) -> None:
        self.total, self.since = self.seconds(), None

    def resume(self) -> None:
        self.since = time.perf_counter()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model, schedule, clf, ref, n: int, args, device) -> dict:
    """Classifier FID and class histogram of n DDIM samples (the same seeds at every evaluation)."""
    eps_model = EpsFromV(model, schedule)
    t0 = time.perf_counter()
    xs = sample_in_batches(lambda b, g: ddim_sample(schedule, eps_model, (b, 1, 28, 28), steps=args.sample_steps,
                                                    device=device, generator=g, clip_denoised=1.0),
                           n, args.sample_batch, seed=args.seed)
    synchronize(device)
    sample_s = time.perf_counter() - t0
    h = class_histogram(predict(clf, xs))
    return {"n": n, "fid": fid.classifier_fid(clf, xs, ref), "histogram": [round(v, 4) for v in h.tolist()],
            "tv": 0.5 * (h - 0.1).abs().sum().item(), "hist_stats": hist_stats(h), "sampling_s": sample_s}


def first_crossings(evals: list[dict], floor: float) -> dict:
    """{level: the first evaluation whose FID / floor ≤ level, or None}."""
    return {lvl: next((e for e in evals if e["fid"] / floor <= lvl), None) for lvl in LEVELS}


def write_report(res: dict, path: Path) -> None:
    a, floors = res["args"], {int(k): v for k, v in res["floors"].items()}
    fe, ff = floors[a["eval_n"]], floors[a["final_n"]]
    final, train_min = res["final"], res["training_seconds"] / 60
    lines = [
        "# The GPU tier of lesson 05: the MNIST U-Net from scratch",
        "",
        f"Made by `{res['command']}` on {res['date']}: {res['hardware']}, torch {res['torch']}; "
        f"{res['wall_seconds'] / 60:.1f} min in all, evaluations included.",
        "",
        f"Model: `UNet(1, {tuple(a['channels'])}, 1, attention=True)`, {res['parameters']:,} parameters. "
        f"Recipe: cosine schedule (T = 1000), v-prediction, AdamW (lr {a['lr']:g}, {a['warmup']} warm-up steps, "
        f"then cosine to 0), EMA {a['ema_decay']} with warm-up; batch {a['batch_size']}, {res['steps_done']:,} of "
        f"{a['steps']:,} steps = {res['images_seen']:,} images ({res['images_seen'] / 60_000:.1f} epochs); the train "
        f"set on the device; bf16 autocast {'on' if a['amp'] else 'off'}, torch.compile {'on' if a['compile'] else 'off'}, "
        "channels-last.",
        "",
        "## Speed",
        "",
        f"* Training: **{train_min:.2f} min** ({res['training_seconds']:.0f} s, evaluations excluded"
        + (", compilation included" if a["compile"] else "")
        + f"); the first {res['first_steps']} steps took {res['first_steps_s']:.1f} s, {res['compile_s']:.1f} s more "
        "than as many steady steps"
        + (" (mostly torch.compile compiling)." if a["compile"] else "."),
        f"* Throughput: **{res['img_per_s']:,.0f} img/s** over the whole run, {res['steady_img_per_s']:,.0f} img/s "
        f"in steady state (median step {1e3 * res['median_step_s']:.1f} ms).",
        f"* Sampling: {a['final_n']:,} digits with {a['sample_steps']} DDIM steps in {final['sampling_s']:.1f} s "
        f"({a['final_n'] * a['sample_steps'] / final['sampling_s']:,.0f} network evaluations × images / s, fp32).",
        "",
        f"## FID during training (EMA weights, n = {a['eval_n']:,}, floor at that n = {fe:.2f})",
        "",
        "| step | images seen | training minutes | FID | FID / floor | class histogram |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [f"| {e['step']:,} | {e['step'] * a['batch_size']:,} | {e['train_s'] / 60:.2f} | {e['fid']:.2f} | "
              f"{e['fid'] / fe:.2f} | {e['hist_stats']} |" for e in res["evals"]]
    lines += [
        "",
        f"## Minutes of training to each FID / floor level (from the evaluations above, n = {a['eval_n']:,})",
        "",
        "The ratio depends on n (the floor falls as n grows, faster than a model's FID), so these are the",
        f"minutes to each level *at n = {a['eval_n']:,}*; the target is judged on the final row below.",
        "",
        "| FID / floor ≤ | first reached at step | training minutes |",
        "| ---: | ---: | ---: |",
    ]
    for lvl, e in first_crossings(res["evals"], fe).items():
        lines.append(f"| {lvl:g} | {e['step']:,} | {e['train_s'] / 60:.2f} |" if e else f"| {lvl:g} | not reached | — |")
    lines += [
        "",
        f"## Final (EMA weights after {res['steps_done']:,} steps, n = {a['final_n']:,})",
        "",
        "| n | FID | floor at n | FID / floor | class histogram |",
        "| ---: | ---: | ---: | ---: | --- |",
        f"| {a['final_n']:,} | {final['fid']:.2f} | {ff:.2f} | {final['fid'] / ff:.2f} | {final['hist_stats']} |",
        "",
        f"A perfect sampler of {a['final_n']:,} digits shows a total-variation distance to the uniform histogram of "
        f"about {noise_tv(a['final_n']):.3f} from sampling noise alone.",
        "",
        "## Target",
        "",
    ]
    ratio = final["fid"] / ff
    if res["device"] != "cuda":
        lines.append(f"* Not judged: this run was on `{res['device']}`, not a GPU (a test-size run; its numbers "
                     "say nothing about the tier).")
    elif a["final_n"] != TARGET_N or a["ref_n"] != 10_000:
        lines.append(f"* Not judged: the target is about n = {TARGET_N:,} samples against all 10 000 test digits.")
    else:
        met = ratio <= TARGET_RATIO and train_min <= TARGET_MINUTES
        lines.append(f"* ≤ {TARGET_MINUTES:g} minutes of training on one H100 to FID ≤ {TARGET_RATIO:g}× the floor at "
                     f"n = {TARGET_N:,}: **{'met' if met else 'not met'}** on {res['hardware']}: FID {final['fid']:.2f} = "
                     f"{ratio:.2f}× the floor {ff:.2f}, after {train_min:.2f} min of training.")
        if "H100" not in res["hardware"]:
            lines.append(f"* This GPU is not an H100 ({res['hardware']}): the minutes are this GPU's.")
    if res["stopped_early"]:
        lines.append(f"* The run stopped at --max-minutes {a['max_minutes']:g}, at step {res['steps_done']:,} of "
                     f"{a['steps']:,}: its learning rate had not decayed to 0.")
    path.write_text("\n".join(lines) + "\n")


def shown_path(path: Path) -> str:
    """`path` as recorded in the JSON: relative to the repository when inside it, so that no machine path is kept."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Train the lesson-05 U-Net from scratch on one GPU; FID and minutes to it.")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ema-decay", type=float, default=0.9995)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 instead of bf16 autocast")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="eager instead of torch.compile")
    p.add_argument("--eval-every", type=int, default=2000, help="steps between evaluations (and at the last step)")
    p.add_argument("--eval-n", type=int, default=2000, help="samples per evaluation during training")
    p.add_argument("--final-n", type=int, default=10_000, help="samples of the final FID")
    p.add_argument("--ref-n", type=int, default=10_000, help="MNIST test digits in the FID reference (all: 10 000)")
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps (η = 0)")
    p.add_argument("--sample-batch", type=int, default=2000)
    p.add_argument("--max-minutes", type=float, default=None, help="stop training after this many training minutes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: minidiff.utils.pick_device()")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu.md"), help="the markdown; the JSON goes beside it")
    args = p.parse_args(argv)

    t_all = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else pick_device()
    nt = torch.get_num_threads()
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} ({nt} thread{'s' * (nt > 1)})"
    print(f"device {device} ({hardware})", flush=True)

    # the instrument: classifier features of the test set, and the floor at each n
    clf = load_classifier(device=device)
    x_train, _ = mnist_images("train")
    x_test, _ = mnist_images("test")
    ref = fid.gaussian_stats(extract_features(clf, x_test[: args.ref_n]))
    floors = {n: fid.fid_floor(clf, x_train, ref, n) for n in sorted({args.eval_n, args.final_n})}
    print("floors", {n: round(f, 3) for n, f in floors.items()}, flush=True)

    # the model, on the device in the layout train() uses, so that the EMA copy matches it
    torch.manual_seed(args.seed)
    model = UNet(1, tuple(args.channels), 1, True).to(device, memory_format=torch.channels_last)
    schedule = NoiseSchedule.make("cosine", 1000)
    images = x_train.to(device)
    ema = EMA(model, args.ema_decay, warmup=True)
    evals, stamps = [], []
    clock = Clock()

    def hook(step, loss, m):
        ema.update(m)  # what train(ema_decay=...) does, kept here so that evaluations can sample from it
        stamps.append(clock.seconds())
        if step % args.eval_every == 0 or step == args.steps:
            synchronize(device)
            clock.pause()
            evals.append({"step": step, "train_s": clock.seconds(), "loss": loss,
                          **evaluate(ema.model, schedule, clf, ref, args.eval_n, args, device)})
            e = evals[-1]
            print(f"step {step}: {e['train_s'] / 60:.2f} training min, FID {e['fid']:.2f} = "
                  f"{e['fid'] / floors[args.eval_n]:.2f}× the floor (n = {args.eval_n})", flush=True)
            clock.resume()
        return args.max_minutes is not None and clock.seconds() > 60 * args.max_minutes

    clock.resume()
    res = train(model, partial(v_loss, schedule), images, args.steps, batch_size=args.batch_size, lr=args.lr,
                warmup=args.warmup, seed=args.seed, device=device, amp=args.amp, compile=args.compile,
                channels_last=True, hooks=[hook], desc="training U-Net (gpu tier)")
    synchronize(device)
    clock.pause()
    bad = [i + 1 for i, v in enumerate(res.losses) if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"the training loss is not finite from step {bad[0]} on")
    if not evals or evals[-1]["step"] != res.step:  # a run stopped by --max-minutes: evaluate where it stopped
        evals.append({"step": res.step, "train_s": clock.seconds(), "loss": res.losses[-1],
                      **evaluate(ema.model, schedule, clf, ref, args.eval_n, args, device)})
    final = evaluate(ema.model, schedule, clf, ref, args.final_n, args, device)
    print(f"final: FID {final['fid']:.2f} = {final['fid'] / floors[args.final_n]:.2f}× the floor (n = {args.final_n})", flush=True)

    steps_s = [b - a for a, b in zip([0.0] + stamps[:-1], stamps)]  # training-clock time of each step
    first = min(len(steps_s), 3)
    steady = steps_s[first:] or steps_s
    median = statistics.median(steady)
    out = Path(args.out)
    record = {
        "command": "python benchmarks/gpu_tier.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": str(datetime.date.today()), "hardware": hardware, "device": device.type, "torch": torch.__version__,
        "args": {**vars(args), "out": shown_path(out)}, "parameters": count_parameters(model), "floors": floors,
        "steps_done": res.step, "images_seen": res.step * args.batch_size, "stopped_early": res.step < args.steps,
        "training_seconds": clock.seconds(), "img_per_s": res.step * args.batch_size / clock.seconds(),
        "first_steps": first, "first_steps_s": sum(steps_s[:first]), "compile_s": sum(steps_s[:first]) - first * median,
        "median_step_s": median, "steady_img_per_s": args.batch_size / median,
        "losses": res.losses, "evals": evals, "final": final, "wall_seconds": time.perf_counter() - t_all,
    }
    record["command"] = record["command"].strip()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    write_report(record, out)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
