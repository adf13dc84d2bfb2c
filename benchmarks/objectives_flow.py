"""Flow matching and rectified flow (lesson 12): the 2D targets and MNIST FID against network calls.

    python benchmarks/objectives_flow.py            # writes benchmarks/objectives_flow.json and prints the markdown
    python benchmarks/objectives_flow.py --quick    # a smoke run: tiny budgets, nothing written

`section(quick)` returns (markdown with a "## Flow matching" heading, JSON-able results); benchmarks/objectives.py
puts it into benchmarks/objectives.md.

2D (gmm8). Lesson 12's recipe, on one CPU thread: `EpsMLP` (hidden 128, depth 3, t_scale 1000) trained with
`flow.flow_loss` (2,500 steps of batch 256, AdamW lr 2e-3 with cosine decay, EMA 0.995, 20,000 training points),
then one reflow: 10,000 pairs (ε, x_0 = 100 Euler steps of the first flow), 2,500 steps with `flow.reflow_loss`
(lr 1e-3) starting from the first model. Samples: the same 8,000 noise draws, Euler with 1, 2, 4, 8, 20 steps;
distance / floor as in benchmarks/toy2d.md (energy distance in chunks of n = 500 over the floor of two data samples
of that size, `metrics.quality`), and the exact flow v* of gmm8 (`flow.mixture_velocity`) with the same steps.
Straightness S = E ∫ ‖v(x_t, t) − (x_1 − x_0)‖² dt on 2,000 paths of 100 Euler steps.

MNIST. The shipped `flow_mnist` (see its card), Euler and Heun on uniform times from t = 1 to 0, samples clamped
to [−1, 1]; n = 1,000 samples in batches of 250 seeded by their offset, as benchmarks/samplers.py does; classifier
FID against the 10,000 test digits, and the floor at this n. The shipped DDPM U-Net's FIDs at the same NFE are read
from benchmarks/samplers.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff import flow  # noqa: E402
from minidiff.checkpoints import load_checkpoint, read_card  # noqa: E402
from minidiff.data import toy  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.eval import fid, metrics  # noqa: E402
from minidiff.eval.classifier import MNISTClassifier, extract_features  # noqa: E402
from minidiff.mlp import EpsMLP  # noqa: E402
from minidiff.training import train  # noqa: E402
from minidiff.unet import UNet  # noqa: E402

NFES_2D = (1, 2, 4, 8, 20)
MNIST_JOBS = (("euler", 5), ("euler", 10), ("euler", 20), ("euler", 50), ("heun", 10), ("heun", 20))  # (method, steps)
DDPM_ROWS = {5: ("DDIM, 5 steps, η = 0", "DPM-Solver++(2M), 5 NFE"), 10: ("DDIM, 10 steps, η = 0", "DPM-Solver++(2M), 10 NFE"),
             20: ("DDIM, 20 steps, η = 0", "DPM-Solver++(2M), 20 NFE"), 50: ("DDIM, 50 steps, η = 0", "DPM-Solver++(2M), 50 NFE")}


def toy_2d(quick: bool) -> dict:
    steps, n_pairs, pair_steps = (100, 300, 10) if quick else (2500, 10_000, 100)
    n_eval, chunk, n_straight = (1000, 250, 200) if quick else (8000, 500, 2000)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    data = toy.sample("gmm8", 20_000, gen)
    torch.manual_seed(0)
    res = train(EpsMLP(dim=2, hidden=128, depth=3, t_scale=1000), flow.flow_loss, data, steps, batch_size=256, lr=2e-3,
                ema_decay=0.995, generator=gen, show_progress=False)
    v1 = res.ema.model.eval()
    x0, eps = flow.reflow_pairs(v1, n_pairs, (2,), pair_steps, torch.Generator().manual_seed(1))
    res2 = train(copy.deepcopy(v1).train().requires_grad_(True), flow.reflow_loss, (x0, eps), steps, batch_size=256,
                 lr=1e-3, ema_decay=0.995, generator=torch.Generator().manual_seed(2), show_progress=False)
    v2 = res2.ema.model.eval()
    train_s = time.perf_counter() - t0
    v_star = flow.mixture_velocity(toy.gmm8())
    models = {"flow matching": v1, "after one reflow": v2, "exact v*": lambda x, t: v_star(x.double(), t).float()}
    z = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(3))
    data_fn = lambda n, g: toy.sample("gmm8", n, g)  # noqa: E731
    ratios = {name: {k: round(metrics.quality(flow.euler_sample(m, z, k), data_fn, chunk=chunk,
                                              generator=torch.Generator().manual_seed(4)).ratio, 3) for k in NFES_2D}
              for name, m in models.items()}
    zs = torch.randn(n_straight, 2, generator=torch.Generator().manual_seed(5))
    S = {name: round(flow.straightness(m, zs, 100), 5) for name, m in models.items()}
    return {"n": n_eval, "chunk": chunk, "train_steps": steps, "pairs": n_pairs, "pair_steps": pair_steps,
            "distance_over_floor": ratios, "straightness": S, "seconds": round(time.perf_counter() - t0, 1),
            "train_seconds": round(train_s, 1)}


@torch.no_grad()
def mnist(quick: bool) -> dict:
    n = 40 if quick else 1000
    jobs = (("euler", 2),) if quick else MNIST_JOBS
    card = read_card("flow_mnist")
    v = flow.TimeScaled(load_checkpoint("flow_mnist", UNet), 1000.0).eval()
    clf = load_checkpoint("mnist_classifier", MNISTClassifier)
    x_train, _ = mnist_images("train")
    x_test, _ = mnist_images("test")
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    floor = fid.fid_floor(clf, x_train, ref, n)
    rows = []
    for method, steps in jobs:
        t0 = time.perf_counter()
        xs = torch.cat([flow.euler_sample(v, torch.randn(min(250, n - i), 1, 28, 28, generator=torch.Generator().manual_seed(i)),
                                          steps, method=method).clamp(-1, 1) for i in range(0, n, 250)])
        d = fid.classifier_fid(clf, xs, ref)
        nfe = steps if method == "euler" else 2 * steps
        rows.append({"sampler": f"{method.capitalize()}, {steps} steps", "nfe": nfe, "fid": round(d, 2),
                     "ratio": round(d / floor, 2), "seconds": round(time.perf_counter() - t0, 1)})
    ddpm = {}
    path = ROOT / "benchmarks" / "samplers.json"
    if path.exists():
        old = {r["sampler"]: r["fid"] for r in json.loads(path.read_text())["rows"]}
        ddpm = {k: {lab: round(old[lab], 2) for lab in labs if lab in old} for k, labs in DDPM_ROWS.items()}
        ddpm["DDPM, 1000 steps"] = round(old.get("DDPM, 1000 steps (σ² = β̃)", float("nan")), 2)
    return {"n": n, "floor": round(floor, 2), "rows": rows, "ddpm_unet": ddpm, "checkpoint_sha256": card["sha256"],
            "images_seen": card["training"]["images_seen"], "command": card["command"]}


def markdown(r: dict) -> str:
    t, m = r["toy2d"], r["mnist"]
    q = t["distance_over_floor"]
    lines = ["## Flow matching", "",
             "Made by `python benchmarks/objectives_flow.py` (lesson 12; the recipe is in the script's docstring) on "
             f"{r['hardware']}, torch {r['torch']}.", "",
             f"### 2D: gmm8, distance / floor against Euler steps ({t['n']:,} samples in chunks of n = {t['chunk']})", "",
             "| model | " + " | ".join(f"{k} NFE" for k in NFES_2D) + " | straightness S |",
             "| --- | " + " | ".join("---:" for _ in NFES_2D) + " | ---: |"]
    for name, row in q.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[str(k)] if str(k) in row else row[k]:.2f}" for k in NFES_2D)
                     + f" | {t['straightness'][name]:.4f} |")
    get = lambda name, k: q[name][str(k)] if str(k) in q[name] else q[name][k]  # noqa: E731
    a, b = get("flow matching", 20), get("after one reflow", 2)
    lines += ["", f"- Target: flow matching at 20 Euler steps ≤ 1.2: {a:.2f}: **{'met' if a <= 1.2 else 'not met'}**.",
              f"- Target: after one reflow at 2 steps ≤ 1.5: {b:.2f}: **{'met' if b <= 1.5 else 'not met'}**.",
              f"- Training: {t['train_steps']:,} steps, then {t['pairs']:,} pairs of {t['pair_steps']} Euler steps and "
              f"{t['train_steps']:,} reflow steps; {t['train_seconds']:.0f} s wall on a shared machine.", "",
              f"### MNIST: the tiny flow U-Net `flow_mnist` (n = {m['n']:,}, floor {m['floor']:.2f})", "",
              f"Trained by `{m['command']}` ({m['images_seen']:,} images seen). Classifier FID against the 10 000 test "
              "digits, the same seeds for every row.", "",
              "| sampler | network calls | FID | FID / floor | time (s) |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in m["rows"]:
        lines.append(f"| {row['sampler']} | {row['nfe']} | {row['fid']:.2f} | {row['ratio']:.2f} | {row['seconds']:.0f} |")
    if m["ddpm_unet"]:
        lines += ["", "The shipped DDPM U-Net `unet_mnist` (v-prediction, cosine schedule, 1,536,000 images seen, from "
                  "benchmarks/samplers.md: the same n, test reference and floor; its own noise draws):", "",
                  "| NFE | DDIM (η = 0) | DPM-Solver++(2M) |", "| ---: | ---: | ---: |"]
        for k in (5, 10, 20, 50):
            labs = DDPM_ROWS[k]
            row = m["ddpm_unet"].get(str(k), m["ddpm_unet"].get(k, {}))
            lines.append(f"| {k} | " + " | ".join(f"{row.get(lab, float('nan')):.2f}" for lab in labs) + " |")
        lines.append(f"\nDDPM's 1000 ancestral steps: {m['ddpm_unet']['DDPM, 1000 steps']:.2f}. The flow model saw "
                     f"{m['images_seen'] / 1_536_000:.0%} of the DDPM U-Net's training images, so the two columns "
                     "compare recipes at very different budgets, not objectives.")
    return "\n".join(lines) + "\n"


def section(quick: bool) -> tuple[str, dict]:
    """(markdown with a '## Flow matching' heading, JSON-able results)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    r = {"quick": quick, "hardware": f"CPU {platform.machine()}, {torch.get_num_threads()} thread(s)", "torch": torch.__version__,
         "toy2d": toy_2d(quick), "mnist": mnist(quick)}
    r["seconds"] = round(time.perf_counter() - t0, 1)
    r = json.loads(json.dumps(r))  # the same keys (strings) whether fresh or read back from the JSON
    return markdown(r), r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test); nothing is written")
    args = p.parse_args(argv)
    md, r = section(args.quick)
    if not args.quick:
        (ROOT / "benchmarks" / "objectives_flow.json").write_text(json.dumps(r, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
