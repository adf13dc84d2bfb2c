"""Sampler comparison for the shipped lesson-05 U-Net: DDIM's η and step count against DDPM's 1000 steps.

    python benchmarks/samplers.py                   # n = 1000 per sampler; ~35 min on one CPU thread
    python benchmarks/samplers.py --n 500 --skip-ddpm

Every sampler draws the same n samples from the same seeds (batches of 250, the batch at offset i seeded i),
clips x̂_0 to [−1, 1], and is scored by classifier FID against the 10 000 MNIST test digits, next to the floor
at the same n (n random training digits against the same reference). DDPM's ancestral sampler with
σ_t² = β̃_t is DDIM with η = 1 and all T steps (DDIM eq. 16; tests/test_unet.py checks the identity step by step).
Writes benchmarks/samplers.md and samplers.json.
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

from minidiff.checkpoints import load_checkpoint, load_eps_model  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.eval import fid  # noqa: E402
from minidiff.eval.classifier import MNISTClassifier, extract_features  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.utils import pick_device  # noqa: E402

# (label, DDIM steps, η); the last row is DDPM's ancestral sampler written as DDIM
SAMPLERS = [("DDIM, 50 steps, η = 0", 50, 0.0), ("DDIM, 100 steps, η = 0", 100, 0.0), ("DDIM, 200 steps, η = 0", 200, 0.0),
            ("DDIM, 20 steps, η = 1", 20, 1.0), ("DDIM, 50 steps, η = 0.5", 50, 0.5), ("DDIM, 50 steps, η = 1", 50, 1.0),
            ("DDPM, 1000 steps (σ² = β̃)", 1000, 1.0)]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--skip-ddpm", action="store_true", help="leave out the 1000-step row (most of the time)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "samplers.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device()
    clf = load_checkpoint("mnist_classifier", MNISTClassifier, device=device)
    model, s = load_eps_model("unet_mnist", UNet, device=device)
    x_train, _ = mnist_images("train")
    x_test, _ = mnist_images("test")
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    floor = fid.fid_floor(clf, x_train, ref, args.n)
    rows = []
    for label, steps, eta in SAMPLERS:
        if args.skip_ddpm and steps == s.T:
            continue
        t0 = time.perf_counter()
        xs = [ddim_sample(s, model, (min(250, args.n - i), 1, 28, 28), steps=steps, eta=eta, device=device,
                          generator=torch.Generator().manual_seed(i), clip_denoised=1.0).cpu()
              for i in range(0, args.n, 250)]
        d = fid.classifier_fid(clf, torch.cat(xs), ref)
        rows.append(dict(sampler=label, steps=steps, eta=eta, fid=d, ratio=d / floor, seconds=time.perf_counter() - t0))
        print(rows[-1], flush=True)
    hw = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU {platform.machine()}, {args.threads} thread(s)"
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(dict(n=args.n, floor=floor, rows=rows, hardware=hw), indent=1))
    md = ["# Samplers for the lesson-05 U-Net: DDIM's η and steps against DDPM", "",
          f"Made by `python benchmarks/samplers.py{' --n ' + str(args.n) if args.n != 1000 else ''}"
          f"{' --skip-ddpm' if args.skip_ddpm else ''}` on {hw}, torch {torch.__version__}. Model: the shipped "
          "`unet_mnist` (see its card). The same n = " f"{args.n:,} seeds for every row, x̂_0 clipped to [−1, 1]; classifier FID against "
          f"the 10 000 test digits; floor at this n (training digits against the same reference): {floor:.2f}.", "",
          "| sampler | network calls | FID | FID / floor | time (s) |", "| --- | ---: | ---: | ---: | ---: |"]
    md += [f"| {r['sampler']} | {r['steps']} | {r['fid']:.2f} | {r['ratio']:.2f} | {r['seconds']:.0f} |" for r in rows]
    md += ["", "Times: wall clock on a shared machine, indicative only. One seed set: differences under about 1 FID may be noise.", ""]
    out.write_text("\n".join(md))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
