"""CPU speed of the lesson-05 U-Net: training and sampling throughput, and how close they come
to what the machine's dense matmul can do. Writes benchmarks/throughput.md and throughput.json.

    python benchmarks/throughput.py                 # the measurement (≈ 5 minutes on 2 idle cores)
    python benchmarks/throughput.py --quick         # tiny sizes: checks that the script runs

One run measures, on this machine:

1. the ceiling: GFLOP/s of a large dense `torch.mm` (fp32 and bf16) at 1 thread and at all threads;
2. the training step of `python -m minidiff.scripts.train_unet` at lesson-05 size (UNet(1, (16, 32, 64),
   1, attention), v-prediction loss on a cosine schedule, AdamW, `minidiff.training.train`):
   images/s and achieved GFLOP/s, for the naive path (eager, fp32, NCHW) and its variants: threads,
   channels-last, bf16 autocast, torch.compile (inductor), batch size;
3. sampling: DDIM network evaluations (no grad) per second, eager NCHW vs channels-last (and bf16).

FLOPs are counted once per image with `torch.utils.flop_counter.FlopCounterMode` (convolutions,
matmuls and attention; normalisations, activations and the optimiser are not counted), so
"achieved GFLOP/s" is a lower bound on the work done. Each timing is the median over several steps
after warm-up steps that are not counted; torch.compile's compile time (its warm-up steps minus
the same number of steady steps) is reported separately. torch.compile runs in a child process with
a time limit (--compile-timeout), so a slow or failing compile gives a row that says so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.schedules import NoiseSchedule  # noqa: E402
from minidiff.training import train  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.utils import count_parameters  # noqa: E402
from minidiff.vpred import EpsFromV, v_loss  # noqa: E402

CONFIG = dict(in_channels=1, channels=(16, 32, 64), num_res_blocks=1, attention=True)  # lesson 05, the shipped size
# the library's CPU path: python -m minidiff.scripts.train_unet trains with channels_last=True, and
# minidiff.training.train leaves bf16 autocast and torch.compile off on the CPU
DEFAULT = dict(channels_last=True, amp=False, compile=False)
NAIVE = dict(channels_last=False, amp=False, compile=False)


def path_name(channels_last: bool, amp: bool, compile: bool) -> str:
    parts = ["torch.compile" if compile else "eager", "bf16 autocast" if amp else "fp32",
             "channels-last" if channels_last else "NCHW"]
    return ", ".join(parts)


# ------------------------------------------------------------------------------ the machine


def cpu_model() -> str:
    """lscpu's model name where there is one, else what platform knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def matmul_gflops(n: int, dtype: torch.dtype, threads: int, repeats: int) -> float:
    """GFLOP/s of an n×n by n×n torch.mm (2n³ FLOPs), best of `repeats` after one warm-up."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# ------------------------------------------------------------------------------ FLOPs per image


def count_flops(batch: int = 16) -> tuple[float, float]:
    """(training step, forward) FLOPs per image: one v-loss forward + backward, and one forward pass."""
    torch.manual_seed(0)
    model = UNet(**CONFIG)
    s = NoiseSchedule.make("cosine", 1000)
    x0 = torch.rand(batch, 1, 28, 28) * 2 - 1
    with FlopCounterMode(display=False) as fc:
        v_loss(s, model, x0, torch.Generator().manual_seed(0)).backward()
    train_flops = fc.get_total_flops() / batch
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x0, torch.full((batch,), 500))
    return train_flops, fc.get_total_flops() / batch


# ------------------------------------------------------------------------------ training


def time_training(threads: int, batch: int, channels_last: bool, amp: bool, compile: bool,
                  warmup: int, steps: int) -> dict:
    """One training run of warmup + steps steps with minidiff.training.train; the time of each step
    comes from a hook (called after the step's optimiser update and EMA)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = UNet(**CONFIG)
    s = NoiseSchedule.make("cosine", 1000)
    images = torch.rand(1024, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    stamps = []
    t0 = time.perf_counter()
    res = train(model, partial(v_loss, s), images, warmup + steps, batch_size=batch, lr=2e-3, warmup=100,
                ema_decay=0.999, ema_warmup=True, seed=0, device="cpu", channels_last=channels_last, amp=amp,
                compile=compile, show_progress=False, hooks=[lambda step, loss, m: stamps.append(time.perf_counter())])
    times = [b - a for a, b in zip([t0] + stamps[:-1], stamps)]
    timed = times[warmup:]
    median = statistics.median(timed)
    out = {"threads": threads, "batch": batch, "channels_last": channels_last, "amp": amp, "compile": compile,
           "step_seconds": times, "median_step_s": median, "img_per_s": batch / median,
           "spread": (min(timed) / median - 1, max(timed) / median - 1),
           "loss_finite": all(math.isfinite(v) for v in res.losses)}
    if compile:
        out["compile_s"] = sum(times[:warmup]) - warmup * median
    return out


def time_in_child(cfg: dict, timeout: float) -> dict:
    """time_training(**cfg) in a fresh process (cold inductor cache) that is killed after `timeout` s."""
    if timeout <= 0:
        return {**cfg, "not_measured": "skipped (--compile-timeout 0)"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cfg)]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)  # its own process group: the compiler's workers die with it
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {**cfg, "not_measured": f"failed: no result within {timeout:g} s (--compile-timeout)"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        last = (err.strip().splitlines() or ["no output"])[-1]
        return {**cfg, "not_measured": f"failed: exit {proc.returncode}: {last[:200]}"}
    return json.loads(lines[-1])


# ------------------------------------------------------------------------------ sampling


def time_sampling(threads: int, batch: int, channels_last: bool, amp: bool, ddim_steps: int) -> dict:
    """DDIM sampling (η = 0) of `batch` images with `ddim_steps` network evaluations, after a 1-step warm-up."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    s = NoiseSchedule.make("cosine", 1000)
    net = UNet(**CONFIG).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = EpsFromV(net, s)

    def run(k):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            return ddim_sample(s, model, (batch, 1, 28, 28), steps=k, generator=torch.Generator().manual_seed(0))

    run(1)  # warm-up
    t0 = time.perf_counter()
    x = run(ddim_steps)
    secs = time.perf_counter() - t0
    return {"threads": threads, "batch": batch, "channels_last": channels_last, "amp": amp, "ddim_steps": ddim_steps,
            "seconds": secs, "evals_per_s": batch * ddim_steps / secs, "finite": bool(torch.isfinite(x).all())}


# ------------------------------------------------------------------------------ the report


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def switches(r: dict) -> dict:
    """The three switches (channels_last, amp, compile) of a row."""
    return {k: r[k] for k in DEFAULT}


def is_default(r: dict) -> bool:
    return all(r[k] == v for k, v in DEFAULT.items())


def is_naive(r: dict) -> bool:
    return all(r[k] == v for k, v in NAIVE.items())


def verdict(train_rows: list[dict], threads: int, batch: int) -> list[str]:
    """Whether the library's CPU default is the fastest path measured (within 5 %).

    One row is noisy (a step's time varies by ±10-30 % here), so the verdict weighs every
    (threads, batch) pair where both the default and the naive path were measured."""
    ok = [r for r in train_rows if "not_measured" not in r]
    pairs = []
    for d in (r for r in ok if is_default(r)):
        n = next((r for r in ok if is_naive(r) and r["threads"] == d["threads"] and r["batch"] == d["batch"]), None)
        if n is not None:
            pairs.append((d, n))
    same = [r for r in ok if r["threads"] == threads and r["batch"] == batch]
    default = next((r for r in same if is_default(r)), None)
    if default is None or not pairs:
        return ["* Not enough rows to judge the default."]
    ratios = [d["img_per_s"] / n["img_per_s"] for d, n in pairs]
    gmean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    listed = ", ".join(f"{x:.2f}× ({plural(d['threads'], 'thread')}, batch {d['batch']})" for x, (d, _) in zip(ratios, pairs))
    best = max(same, key=lambda r: r["img_per_s"])
    lines = [f"* The library's CPU default ({path_name(**switches(default))}) against the naive path, at every "
             f"thread count and batch measured: {listed}; geometric mean **{gmean:.2f}×**."]
    if best is not default and best["img_per_s"] > 1.05 * default["img_per_s"]:
        lines.append(f"* At {plural(threads, 'thread')} and batch {batch}, {path_name(**switches(best))} is "
                     f"{best['img_per_s'] / default['img_per_s'] - 1:.0%} faster ({best['img_per_s']:.0f} against "
                     f"{default['img_per_s']:.0f} img/s).")
    if gmean >= 1.0:
        lines.append(f"* **The measurement supports the default** on the whole: averaged over the pairs it is "
                     f"{gmean - 1:.0%} faster than the naive path.")
    elif gmean >= 0.95:
        lines.append(f"* **The measurement supports the default** within noise: averaged over the pairs it is "
                     f"{1 - gmean:.0%} slower than the naive path, under the 5 % margin.")
    else:
        lines.append("* **The measurement does not support the default**: averaged over the pairs it is "
                     f"{1 - gmean:.0%} slower than the naive path.")
    return lines


def write_report(res: dict, path: Path) -> None:
    mm, flops_train, flops_fwd = res["matmul"], res["flops_per_image"]["train"], res["flops_per_image"]["forward"]
    peak = {r["threads"]: r["gflops"] for r in mm if r["dtype"] == "float32"}
    all_threads, batch = res["all_threads"], res["batch"]
    lines = [
        "# CPU throughput of the lesson-05 U-Net",
        "",
        f"Made by `{res['command']}` on {res['date']}: {res['machine']} (torch's default: {res['torch_threads']} threads), "
        f"torch {res['torch']}; load average {res['load_average']} at the start (a busy machine gives lower "
        f"numbers); {res['seconds']:.0f} s in all.",
        "",
        f"Model: `UNet(1, (16, 32, 64), 1, attention=True)`, {res['parameters']:,} parameters, 28×28 inputs "
        "(random pixels: speed does not depend on them). Training: `minidiff.vpred.v_loss` on a cosine schedule "
        "(T = 1000), AdamW, EMA, through `minidiff.training.train`, as `python -m minidiff.scripts.train_unet` "
        "trains. FLOPs per image, counted by `torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls, "
        f"attention; not normalisations, activations or the optimiser): **{flops_train / 1e6:.0f} MFLOP** per "
        f"training step (forward + backward), **{flops_fwd / 1e6:.0f} MFLOP** per forward pass.",
        "",
        "## The ceiling: dense matmul",
        "",
        "| dtype | threads | size | GFLOP/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {r['dtype']} | {r['threads']} | {r['n']}×{r['n']} | {r['gflops']:.1f} |" for r in mm]
    lines += [
        "",
        f"## Training step ({plural(res['train_warmup'], 'warm-up step')}, then the median of "
        f"{plural(res['train_steps'], 'step')})",
        "",
        "\"vs naive\" divides by the eager fp32 NCHW path at the same threads and batch; \"% of mm\" divides the",
        "achieved GFLOP/s by the fp32 matmul GFLOP/s at the same thread count. **bold**: the library's CPU default.",
        "",
        "| path | threads | batch | img/s | step (ms) | fastest / slowest step | GFLOP/s | % of mm | vs naive | compile time |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in res["training"]:
        name = path_name(**switches(r))
        name = f"**{name} (library default)**" if is_default(r) else name
        if "not_measured" in r:
            lines.append(f"| {name} | {r['threads']} | {r['batch']} | {r['not_measured']} | | | | | | |")
            continue
        naive = next((q for q in res["training"] if is_naive(q) and q["threads"] == r["threads"]
                      and q["batch"] == r["batch"] and "not_measured" not in q), None)
        gf = flops_train * r["img_per_s"] / 1e9
        lo, hi = r["spread"]
        vs = f"{r['img_per_s'] / naive['img_per_s']:.2f}×" if naive else "—"
        comp = f"{r['compile_s']:.0f} s" if r["compile"] else "—"
        lines.append(f"| {name} | {r['threads']} | {r['batch']} | {r['img_per_s']:.1f} | {1e3 * r['median_step_s']:.0f} | "
                     f"{lo:+.0%} / {hi:+.0%} | {gf:.1f} | {gf / peak[r['threads']]:.0%} | {vs} | {comp} |")
    lines += [
        "",
        f"## Sampling (DDIM, η = 0, no grad; {res['sampling'][0]['ddim_steps'] if res['sampling'] else 0} "
        "network evaluations after a 1-step warm-up)",
        "",
        "| path | threads | batch | evaluations × images / s | 50-step images / s | GFLOP/s | % of mm | vs eager fp32 NCHW |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base = next((r for r in res["sampling"] if not r["channels_last"] and not r["amp"]), None)
    for r in res["sampling"]:
        gf = flops_fwd * r["evals_per_s"] / 1e9
        name = path_name(r["channels_last"], r["amp"], False)
        lines.append(f"| {name} | {r['threads']} | {r['batch']} | {r['evals_per_s']:.0f} | {r['evals_per_s'] / 50:.1f} | "
                     f"{gf:.1f} | {gf / peak[r['threads']]:.0%} | {r['evals_per_s'] / base['evals_per_s']:.2f}× |")
    lines += ["", "## The library's default", ""] + verdict(res["training"], all_threads, batch) + [""]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="CPU throughput of the lesson-05 U-Net (training and sampling).")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs (numbers mean nothing)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts to compare (default: 1 and all of torch's threads); the last is used for the variants")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 64 128 256 (--quick: 4 8 16)")
    p.add_argument("--batch", type=int, default=None, help="the batch of every other row (default 128, --quick: 8)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per row (default 8, --quick: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2, --quick: 1)")
    p.add_argument("--sample-batch", type=int, default=None, help="default 500 (--quick: 16)")
    p.add_argument("--sample-steps", type=int, default=None, help="DDIM steps timed (default 4, --quick: 2)")
    p.add_argument("--compile-timeout", type=float, default=None,
                   help="seconds allowed to the torch.compile row, compile included (default 240, --quick: 0 = skip)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "throughput.md"), help="the markdown; the JSON goes beside it")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the markdown from the JSON beside it, measuring nothing")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one training row, printed as JSON
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(time_training(**json.loads(args.child))), flush=True)
        return 0

    if args.report_only:
        out = Path(args.out)
        write_report(json.loads(out.with_suffix(".json").read_text()), out)
        return 0

    q = args.quick
    pick = lambda given, full, quick: given if given is not None else (quick if q else full)  # noqa: E731
    all_threads = torch.get_num_threads()
    threads = args.threads or sorted({1, all_threads})
    top = threads[-1]
    batch = pick(args.batch, 128, 8)
    batch_sizes = pick(args.batch_sizes, [64, 128, 256], [4, 8, 16])
    steps, warmup = pick(args.steps, 8, 2), pick(args.warmup, 2, 1)
    compile_timeout = pick(args.compile_timeout, 240.0, 0.0)
    t_all = time.perf_counter()
    res = {"command": "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": str(datetime.date.today()), "machine": cpu_model(), "torch": torch.__version__,
           "torch_threads": all_threads, "all_threads": top, "batch": batch, "train_steps": steps, "train_warmup": warmup,
           "load_average": " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown",
           "parameters": count_parameters(UNet(**CONFIG))}
    res["command"] = res["command"].strip()

    n, repeats = pick(None, 2048, 256), pick(None, 3, 2)
    res["matmul"] = [{"dtype": str(dt).removeprefix("torch."), "threads": t, "n": n,
                      "gflops": matmul_gflops(n, dt, t, repeats)}
                     for dt in (torch.float32, torch.bfloat16) for t in threads]
    print(res["matmul"], flush=True)
    flops_train, flops_fwd = count_flops()
    res["flops_per_image"] = {"train": flops_train, "forward": flops_fwd}

    rows = []
    run = partial(time_training, warmup=warmup, steps=steps)
    for t in threads:  # the naive path and the default at every thread count
        for path in (NAIVE, DEFAULT):
            rows.append(run(t, batch, **path))
            print(rows[-1]["threads"], path_name(**path), f"{rows[-1]['img_per_s']:.1f} img/s", flush=True)
    for cl in (False, True):  # bf16 autocast
        rows.append(run(top, batch, channels_last=cl, amp=True, compile=False))
        print(path_name(cl, True, False), f"{rows[-1]['img_per_s']:.1f} img/s", flush=True)
    rows.append(time_in_child(dict(threads=top, batch=batch, channels_last=True, amp=False, compile=True,
                                   warmup=warmup, steps=steps), compile_timeout))
    print("compile:", rows[-1].get("not_measured") or f"{rows[-1]['img_per_s']:.1f} img/s", flush=True)
    for b in batch_sizes:  # batch size, on the naive path and the default
        if b != batch:
            for path in (NAIVE, DEFAULT):
                rows.append(run(top, b, **path))
                print(b, path_name(**path), f"{rows[-1]['img_per_s']:.1f} img/s", flush=True)
    res["training"] = rows

    sb, ss = pick(args.sample_batch, 500, 16), pick(args.sample_steps, 4, 2)
    res["sampling"] = [time_sampling(top, sb, cl, amp, ss) for cl, amp in ((False, False), (True, False), (True, True))]
    res["seconds"] = time.perf_counter() - t_all

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    write_report(res, out)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
