"""Diffusion against GANs, and few-step generation: one table for lesson 18.

    python benchmarks/fewstep.py --threads 1            # every row measured (≈ 10–15 min on one busy CPU thread)
    python benchmarks/fewstep.py --report-only          # re-render fewstep.md from fewstep.json
    python benchmarks/fewstep.py --threads 1 --only "DCGAN, seed 0,"   # re-measure some rows, keep the rest
    python benchmarks/fewstep.py --report-only --lesson-seconds 150 --lesson-note "..."   # record the lesson's runtime

Rows: the lesson-05 teacher (`unet_mnist`) with DDPM-1000 (reused from benchmarks/samplers.json: same n = 1000, same
seeds, same clipping), DDIM-20 (η = 0), DPM-Solver++(2M) at 10 NFE, and DDIM at 1, 2, 4, 8 steps; the DCGAN (`gan_mnist_seed0`,
with seeds 1 and 2 for the spread); the denoising diffusion GANs with 2 and 4 steps (`ddgan2_mnist`, `ddgan4_mnist`;
rows without numbers when no checkpoint exists because every training run was stopped by the divergence monitor);
the progressively distilled students at 1, 2 and 4 steps (`distill_mnist_N`). Every row draws n = 1000 samples in
batches of 250, the batch at offset i seeded i (as benchmarks/samplers.py), x̂_0 clipped to [−1, 1] for the diffusion
samplers. Columns: classifier FID against the 10 000 MNIST test digits divided by the floor at n (n training digits
against the same reference); precision and recall (Kynkäänniemi et al. 2019, k = 3, classifier features, against
1000 random test digits); the total-variation distance of the class histogram to uniform; images per second
(one batch of 250 on one thread, timed under the machine's load at the time); training CPU-hours from the cards
(for students: the teacher's hours plus the distillation's). Writes benchmarks/fewstep.md and fewstep.json.
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

from minidiff import gan, samplers  # noqa: E402
from minidiff.checkpoints import checkpoint_paths, load_checkpoint, load_eps_model, read_card  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.eval import coverage, fid  # noqa: E402
from minidiff.eval.classifier import MNISTClassifier, class_histogram, extract_features, predict  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.vpred import EpsFromV  # noqa: E402

OUT = ROOT / "benchmarks" / "fewstep.md"
N = 1000
TARGET_RATIO = 1.5  # the distilled model at 4 steps within 1.5× of the teacher's best FID/floor
LONG_GAN = "gan_mnist_long"  # the DCGAN trained for the teacher's wall time (a row when it is shipped)


def batches(draw, n=N):
    return torch.cat([draw(min(250, n - i), torch.Generator().manual_seed(i)).cpu() for i in range(0, n, 250)])


def img_per_s(draw):
    t0 = time.perf_counter()
    draw(250, torch.Generator().manual_seed(10_000))
    return 250 / (time.perf_counter() - t0)


def measure(args):
    torch.set_num_threads(args.threads)
    clf = load_checkpoint("mnist_classifier", MNISTClassifier)
    x_train, _ = mnist_images("train")
    x_test, _ = mnist_images("test")
    f_test = extract_features(clf, x_test)
    ref = fid.gaussian_stats(f_test)
    floor = fid.fid_floor(clf, x_train, ref, N)
    real = f_test[torch.randperm(len(f_test), generator=torch.Generator().manual_seed(0))[:N]]
    teacher, s = load_eps_model("unet_mnist", UNet)
    tcard = read_card("unet_mnist")
    teacher_h = tcard["budget"]["seconds_last_run"] / 3600
    rows = []

    kept = {r["model"]: r for r in (args.kept_rows or [])}

    def score(label, draw, hours, images_seen, note=""):
        if args.only and not label.startswith(tuple(args.only)):
            if label in kept:
                rows.append(kept[label])
            return None
        t0 = time.perf_counter()
        xs = batches(draw)
        f = extract_features(clf, xs)
        p, r = coverage.precision_recall(real, f, k=3)
        hist = class_histogram(predict(clf, xs))
        row = dict(model=label, fid=fid.fid_from_features(f, f_test), precision=p, recall=r,
                   class_tv=coverage.class_tv(hist), img_per_s=img_per_s(draw), cpu_hours=hours,
                   images_seen=images_seen, seconds=time.perf_counter() - t0, note=note)
        row["ratio"] = row["fid"] / floor
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        return row

    def ddim(steps):
        return lambda b, g: ddim_sample(s, teacher, (b, 1, 28, 28), steps=steps, generator=g, clip_denoised=1.0)

    seen = tcard["training"]["images_seen"]
    # the real digits: what a perfect generator would score (the floor row)
    idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:N]
    f_tr = extract_features(clf, x_train[idx])
    p, r = coverage.precision_recall(real, f_tr, k=3)
    rows.append(dict(model="real training digits (the floor)", fid=floor, ratio=1.0, precision=p, recall=r,
                     class_tv=coverage.class_tv(class_histogram(predict(clf, x_train[idx]))), img_per_s=None,
                     cpu_hours=None, images_seen=None, seconds=0.0, note=""))
    # DDPM-1000 from samplers.json
    sj = json.loads((ROOT / "benchmarks" / "samplers.json").read_text())
    ddpm = next(r for r in sj["rows"] if r["sampler"].startswith("DDPM, 1000"))
    rows.append(dict(model="teacher, DDPM 1000 steps (σ² = β̃)", fid=ddpm["fid"], ratio=ddpm["fid"] / sj["floor"],
                     precision=None, recall=None, class_tv=None, img_per_s=N / ddpm["seconds"], cpu_hours=teacher_h,
                     images_seen=seen, seconds=0.0,
                     note=f"reused from samplers.json (n = {ddpm['n']}, same seeds; its floor {sj['floor']:.2f}); "
                          "img/s from its wall time there, measured without the other load"))
    score("teacher, DDIM 20 steps", ddim(20), teacher_h, seen)
    D = samplers.clipped(samplers.v_denoiser(s, teacher.net), 1.0)
    sigma_min = float(samplers.sigmas_from_schedule(s)[1])

    def dpm(b, g):
        sig = samplers.karras_sigmas(samplers.steps_for_nfe("dpmpp_2m", 10), sigma_min, 80.0, 7.0)
        x = 80.0 * torch.randn((b, 1, 28, 28), generator=g)
        return samplers.karras_sample(D, x, sig, "dpmpp_2m")
    score("teacher, DPM-Solver++(2M) 10 NFE", dpm, teacher_h, seen)
    for seed in (0, 1, 2):
        name = f"gan_mnist_seed{seed}"
        G = load_checkpoint(name, gan.Generator)
        c = read_card(name)
        score(f"DCGAN, seed {seed}", lambda b, g, G=G: gan.gan_sample(G, b, g), c["budget"]["seconds"] / 3600,
              c["training"]["images_seen"])
    if checkpoint_paths(LONG_GAN)[0].exists():  # the DCGAN given the U-Net's wall-clock budget
        G = load_checkpoint(LONG_GAN, gan.Generator)
        c = read_card(LONG_GAN)
        score(f"DCGAN, seed 0, {c['training']['max_minutes']:.0f} min", lambda b, g, G=G: gan.gan_sample(G, b, g),
              c["budget"]["seconds"] / 3600, c["training"]["images_seen"],
              note=f"`{LONG_GAN}`: the seed-0 recipe run for the U-Net's wall time instead of 3 minutes")
    for T in (2, 4):
        name = f"ddgan{T}_mnist"
        if not checkpoint_paths(name)[0].exists():  # its training diverged: the monitor saved nothing
            rows.append(dict(model=f"diffusion GAN, {T} steps", fid=None, ratio=None, precision=None, recall=None,
                             class_tv=None, img_per_s=None, cpu_hours=None, images_seen=None, seconds=0.0,
                             note="no checkpoint: every training run was stopped by the divergence monitor"))
            continue
        G = load_checkpoint(name, gan.DDGANGenerator)
        c = read_card(name)
        sch = gan.ddgan_schedule(T)
        score(f"diffusion GAN, {T} steps", lambda b, g, G=G, sch=sch: gan.ddgan_sample(sch, G, b, g),
              c["budget"]["seconds"] / 3600, c["training"]["images_seen"])
    for steps in (1, 2, 4):
        name = f"distill_mnist_{steps}"
        net = load_checkpoint(name, UNet)
        c = read_card(name)
        student = EpsFromV(net, s)
        score(f"distilled, {steps} step{'s' if steps > 1 else ''}",
              lambda b, g, st=student, n=steps: ddim_sample(s, st, (b, 1, 28, 28), steps=n, generator=g, clip_denoised=1.0),
              teacher_h + c["budget"]["seconds_distillation"] / 3600, c["training"]["images_seen_including_teacher"])
    for steps in (1, 2, 4, 8):
        score(f"teacher, DDIM {steps} step{'s' if steps > 1 else ''}", ddim(steps), teacher_h, seen)
    # bad input: a GAN with a learning rate of 10 must be stopped by the monitor, with its step, before any save
    torch.manual_seed(0)
    broken = gan.TwoPlayer(gan.Generator(), gan.Discriminator())
    z = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    monitor = gan.DivergenceMonitor(lambda m: m.generator(z), probe_every=10)
    try:
        gan.train_gan(broken, gan.dcgan_d_loss, gan.dcgan_g_loss, x_train, 200, monitor=monitor, batch_size=32, lr=10.0,
                      make_scheduler=gan.adam_betas(0.5), seed=0, show_progress=False)
        divergence = dict(detected=False)
    except gan.GANDiverged as err:
        divergence = dict(detected=True, step=err.step, reason=err.reason)
    print(divergence, flush=True)
    return dict(n=N, floor=floor, rows=rows, threads=args.threads, divergence=divergence,
                hardware=f"CPU {platform.machine()}, {args.threads} thread(s), shared with other jobs",
                torch=torch.__version__, command="python benchmarks/fewstep.py --threads 1")


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def render(res) -> str:
    rows = res["rows"]
    by = {r["model"]: r for r in rows}
    md = ["# Diffusion against GANs, and generation in a few steps (lesson 18)", "",
          f"Made by `{res['command']}` on {res['hardware']}, torch {res['torch']}. n = {res['n']} samples per row "
          f"(batches of 250, batch i seeded i); classifier FID against the 10 000 test digits; floor at n = "
          f"{res['floor']:.2f} (n training digits against the same reference). Precision and recall: Kynkäänniemi et al. "
          "(2019), k = 3, in the classifier's feature space, against 1000 random test digits. Class TV: ½ Σ|p_c − 0.1| "
          "of the classifier's labels. img/s: one batch of 250 on one CPU thread, timed while other jobs shared the "
          "machine (compare rows with each other, not with other pages). CPU-hours: training wall time × threads "
          "from each checkpoint's card; a distilled student counts its teacher's 70 min too.", "",
          "| model | FID / floor | precision | recall | class TV | img/s | training CPU-hours | images seen |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        md.append(f"| {r['model']} | {fmt(r['ratio'], '.2f')} | {fmt(r['precision'], '.3f')} | {fmt(r['recall'], '.3f')} | "
                  f"{fmt(r['class_tv'], '.3f')} | {fmt(r['img_per_s'], '.1f')} | {fmt(r['cpu_hours'], '.3f')} | "
                  f"{fmt(r['images_seen'], ',')} |")
    notes = [f"- {r['model']}: {r['note']}" for r in rows if r.get("note")]
    md += ["", *notes]
    gans = [by[f"DCGAN, seed {i}"]["ratio"] for i in range(3) if f"DCGAN, seed {i}" in by]
    if gans:
        mean = sum(gans) / len(gans)
        sd = (sum((g - mean) ** 2 for g in gans) / max(len(gans) - 1, 1)) ** 0.5
        md += ["", f"DCGAN stability over 3 seeds of equal budget: FID/floor {', '.join(f'{g:.2f}' for g in gans)} "
                   f"(mean {mean:.2f}, sd {sd:.2f}); the loss curves are in the cards (`gan_mnist_seedN.json`). Equal wall time "
                   "(3 min each) is not equal work on a shared machine: images seen "
                   + ", ".join(f"{by[f'DCGAN, seed {i}']['images_seen']:,}" for i in range(3)) + "."]
    teacher_rows = [r for r in rows if r["model"].startswith("teacher")]
    best = min(teacher_rows, key=lambda r: r["ratio"])  # the teacher's rows are always measured
    st = by.get("distilled, 4 steps")
    md += ["", "## Targets", ""]
    if st is not None:
        met = st["ratio"] <= TARGET_RATIO * best["ratio"]
        md.append(f"- The distilled model at 4 steps within {TARGET_RATIO}× of its teacher's best FID/floor "
                  f"({best['model']}: {best['ratio']:.2f}, so ≤ {TARGET_RATIO * best['ratio']:.2f}): "
                  f"{st['ratio']:.2f} ({st['ratio'] / best['ratio']:.2f}×): **{'met' if met else 'not met'}**.")
    dv = res.get("divergence")
    if dv is not None:
        md.append("- A diverging GAN (learning rate 10) is stopped by `gan.DivergenceMonitor` with its step, nothing saved: "
                  + (f"caught at loop step {dv['step']} ({dv['reason']}): **met**." if dv["detected"] else "**not met**."))
    if res.get("lesson_seconds") is not None:
        met = res["lesson_seconds"] <= 180
        md.append(f"- Lesson 18 at the cpu tier within 3 minutes: {res['lesson_seconds']:.0f} s ({res['lesson_note']}): "
                  f"**{'met' if met else 'not met'}**.")
    md += ["", "## Distilled against DDIM at the same number of network calls", "",
           "| network calls | DDIM (teacher) FID / floor | distilled FID / floor |", "| ---: | ---: | ---: |"]
    for n in (1, 2, 4, 8):
        d = by.get(f"teacher, DDIM {n} step{'s' if n > 1 else ''}")
        s_ = by.get(f"distilled, {n} step{'s' if n > 1 else ''}")
        md.append(f"| {n} | {fmt(d and d['ratio'], '.2f')} | {fmt(s_ and s_['ratio'], '.2f') if n < 8 else '– (the teacher of round 1)'} |")
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true", help="re-render fewstep.md from fewstep.json")
    p.add_argument("--lesson-seconds", type=float, default=None, help="record the notebook's measured cpu-tier runtime")
    p.add_argument("--lesson-note", default="", help="how --lesson-seconds was measured")
    p.add_argument("--only", nargs="+", default=None, metavar="PREFIX",
                   help="measure only the rows whose name starts with PREFIX; keep the others from the stored json")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    out = Path(args.out)
    args.kept_rows = json.loads(out.with_suffix(".json").read_text())["rows"] if args.only else None
    if args.report_only:
        res = json.loads(out.with_suffix(".json").read_text())
    else:
        t0 = time.perf_counter()
        res = measure(args)
        res["seconds"] = time.perf_counter() - t0
        if args.only:  # the rest of the stored result stands
            old = json.loads(out.with_suffix(".json").read_text())
            res.update({k: old[k] for k in ("lesson_seconds", "lesson_note") if k in old})
            res["seconds"] = old.get("seconds")
    if args.lesson_seconds is not None:
        res.update(lesson_seconds=args.lesson_seconds, lesson_note=args.lesson_note)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.write_text(render(res))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
