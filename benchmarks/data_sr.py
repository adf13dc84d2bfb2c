"""Lesson 19: diffusion as a data source (CAS), as an enhancer (super-resolution), and memorisation.

    python benchmarks/data_sr.py --threads 1          # everything; writes benchmarks/data_sr.md and .json
    python benchmarks/data_sr.py --report-only        # re-render data_sr.md from data_sr.json
    python benchmarks/data_sr.py --quick              # a smoke run with tiny n (writes nothing)

1. CAS (Ravuri & Vinyals 2019): the course's classifier, trained with one short recipe
   (`minidiff.eval.cas.train_classifier_on`, --cas-steps AdamW steps of batch 64) on
   (a) N generated digits per class of the shipped conditional U-Net `unet_cond` (DDIM --gen-steps jumps,
       guidance scales --scales), (b) N real training digits per class, (c) N_real real digits per class plus
   all the generated ones at the best scale; each tested on the 10 000 real MNIST test digits. Generated sets are
   cached (written atomically, their sha256 checked when read back). Also: the shipped classifier's accuracy on
   the generated digits (does each show its label?) and their within-class diversity (classifier features).
2. Super-resolution: the shipped `superres` model (DDIM 20 steps) against bicubic upsampling and against SDEdit
   with the unconditional `unet_mnist` started from the bicubic image; on the first --sr-n test digits,
   7×7 and 14×14 → 28×28: PSNR against the truth, the shipped classifier's accuracy on the upscaled digits,
   and the diversity across seeds (mean per-pixel std over --div-seeds seeds, first --div-n digits).
3. Memorisation (`minidiff.eval.memorisation.memorisation_share`): --mem-n DDIM samples (20 steps) of
   `unet_mnist` (60 000 training digits), `unet_tiny100` (100) and `unet_tiny20` (20), their nearest-neighbour
   distances to their own training set against those of --mem-n held-out test digits, in pixel space and in the
   classifier's feature space.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff.checkpoints import load_eps_model, read_card  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.editing import psnr, sdedit  # noqa: E402
from minidiff.eval.cas import per_class_subset, synthetic_digits, train_classifier_on  # noqa: E402
from minidiff.eval.classifier import accuracy, extract_features, load_classifier  # noqa: E402
from minidiff.eval.guidance import within_class_diversity  # noqa: E402
from minidiff.eval.memorisation import memorisation_share  # noqa: E402
from minidiff.paths import find_dir  # noqa: E402
from minidiff.superres import SRUNet, downsample, lowres_condition, sr_sample  # noqa: E402
from minidiff.unet import UNet  # noqa: E402

OUT_MD, OUT_JSON = ROOT / "benchmarks" / "data_sr.md", ROOT / "benchmarks" / "data_sr.json"
COMMAND = "python benchmarks/data_sr.py --threads 1"
MEM_MODELS = [("unet_mnist", None), ("unet_tiny100", 10), ("unet_tiny20", 2)]  # (checkpoint, its digits per class)


def _digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    return hashlib.sha256(images.numpy().tobytes() + labels.numpy().tobytes()).hexdigest()


def cached_synthetic(schedule, model, n_per_class, w, steps, seed=0):
    """synthetic_digits(...) from the cache folder if a verified copy is there, else generated and saved atomically."""
    sha = read_card("unet_cond")["sha256"][:12]
    path = find_dir("cache") / f"cas_unet_cond-{sha}_w{w:g}_n{n_per_class}_steps{steps}_seed{seed}.pt"
    if path.exists():
        blob = torch.load(path, weights_only=True)
        images, labels = blob["images"], blob["labels"]
        if images.shape != (10 * n_per_class, 1, 28, 28) or _digest(images, labels) != blob["sha256"]:
            raise RuntimeError(f"{path} is corrupt (shape or sha256 differ): delete it and run again")
        return images, labels, 0.0
    t0 = time.perf_counter()
    images, labels = synthetic_digits(schedule, model, n_per_class, w, steps=steps, seed=seed)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"images": images, "labels": labels, "sha256": _digest(images, labels)}, tmp)
    os.replace(tmp, path)
    return images, labels, seconds


def cas_part(args, x_train, y_train, x_test, y_test, clf):
    model, schedule = load_eps_model("unet_cond", UNet)
    out = {"synthetic": {}, "real": {}, "mixed": {}, "generated": {}}
    cas = lambda x, y: accuracy(train_classifier_on(x, y, steps=args.cas_steps), x_test, y_test)  # noqa: E731
    synth = {}
    for w in args.scales:
        x, y, sec = cached_synthetic(schedule, model, args.n_max, w, args.gen_steps)
        synth[w] = (x, y)
        feats = extract_features(clf, x)
        out["generated"][f"{w:g}"] = {"label_accuracy": round(accuracy(clf, x, y), 4),
                                      "diversity": round(within_class_diversity(feats, y), 3),
                                      "seconds": round(sec, 1)}
        for n in args.n_synthetic:
            xs, ys = per_class_subset(x, y, n)
            out["synthetic"].setdefault(f"{w:g}", {})[str(n)] = round(cas(xs, ys), 4)
            print(f"CAS synthetic w={w:g} N={n}: {out['synthetic'][f'{w:g}'][str(n)]}", flush=True)
    diversity_real = within_class_diversity(extract_features(clf, per_class_subset(x_train, y_train, args.n_max)[0]),
                                            per_class_subset(x_train, y_train, args.n_max)[1])
    out["generated"]["real"] = {"label_accuracy": round(accuracy(clf, *per_class_subset(x_train, y_train, args.n_max)), 4),
                                "diversity": round(diversity_real, 3)}
    for n in args.n_real:
        out["real"][str(n)] = round(cas(*per_class_subset(x_train, y_train, n)), 4)
        print(f"CAS real N={n}: {out['real'][str(n)]}", flush=True)
    best = max(args.scales, key=lambda w: out["synthetic"][f"{w:g}"][str(args.n_max)])
    out["best_scale"] = best
    xs, ys = synth[best]
    for n in args.n_mixed:
        xr, yr = per_class_subset(x_train, y_train, n)
        out["mixed"][str(n)] = round(cas(torch.cat([xr, xs]), torch.cat([yr, ys])), 4)
        print(f"CAS mixed N_real={n} + {args.n_max} generated (w={best:g}): {out['mixed'][str(n)]}", flush=True)
    return out


def sr_part(args, x_test, y_test, clf):
    sr_model, schedule = load_eps_model("superres", SRUNet)
    uncond, schedule_u = load_eps_model("unet_mnist", UNet)
    x, y = x_test[: args.sr_n], y_test[: args.sr_n]
    out = {"truth_accuracy": round(accuracy(clf, x, y), 4)}
    for h in (7, 14):
        lr_img = downsample(x, h)
        t0 = time.perf_counter()
        results = {"bicubic": lowres_condition(lr_img),
                   "SR3 (superres)": sr_sample(schedule, sr_model, lr_img, steps=20, generator=torch.Generator().manual_seed(0))}
        sr_seconds = time.perf_counter() - t0
        results[f"SDEdit (unet_mnist, strength {args.sdedit_strength:g})"] = sdedit(
            schedule_u, uncond, results["bicubic"], args.sdedit_strength, steps=20,
            generator=torch.Generator().manual_seed(0))
        row = {}
        for name, img in results.items():
            p = psnr(img, x)
            row[name] = {"psnr": round(p.mean().item(), 2), "psnr_se": round((p.std() / len(p) ** 0.5).item(), 2),
                         "accuracy": round(accuracy(clf, img, y), 4)}
        # diversity across seeds: the mean per-pixel std of K super-resolutions of the same low-res digit
        xd = lr_img[: args.div_n]
        runs = torch.stack([sr_sample(schedule, sr_model, xd, steps=20, generator=torch.Generator().manual_seed(s))
                            for s in range(args.div_seeds)])
        row["SR3 (superres)"]["seed_std"] = round(runs.std(dim=0).mean().item(), 4)
        row["SR3 (superres)"]["seconds_per_image"] = round(sr_seconds / len(x), 4)
        out[f"{h}x{h}"] = row
        print(f"SR {h}x{h}: {row}", flush=True)
    return out


def mem_part(args, x_train, y_train, x_test, clf):
    out = {}
    test = x_test[: args.mem_n]
    for name, per_class in MEM_MODELS:
        train_x = x_train if per_class is None else per_class_subset(x_train, y_train, per_class)[0]
        model, schedule = load_eps_model(name, UNet)
        samples = ddim_sample(schedule, model, (args.mem_n, 1, 28, 28), steps=20,
                              generator=torch.Generator().manual_seed(0), clip_denoised=1.0)
        row = {"n_train": len(train_x), "n_samples": args.mem_n, "n_test": len(test),
               "epochs": read_card(name)["training"].get("epochs")}
        for space, f in (("pixels", lambda z: z), ("features", lambda z: extract_features(clf, z))):
            m = memorisation_share(f(samples), f(train_x), f(test))
            row[space] = {"share": round(m["share"], 4), "null": round(m["null"], 4),
                          "median_d_gen": round(m["d_gen"].median().item(), 3),
                          "median_d_test": round(m["d_test"].median().item(), 3)}
        out[name] = row
        print(f"memorisation {name}: {row}", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/data_sr.py")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 5.0])
    p.add_argument("--gen-steps", type=int, default=10)
    p.add_argument("--n-max", type=int, default=200, help="generated digits per class")
    p.add_argument("--n-synthetic", type=int, nargs="+", default=[10, 50, 200])
    p.add_argument("--n-real", type=int, nargs="+", default=[10, 50, 200, 1000])
    p.add_argument("--n-mixed", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--cas-steps", type=int, default=400)
    p.add_argument("--sr-n", type=int, default=300)
    p.add_argument("--sdedit-strength", type=float, default=0.4)
    p.add_argument("--div-n", type=int, default=50)
    p.add_argument("--div-seeds", type=int, default=6)
    p.add_argument("--mem-n", type=int, default=200)
    p.add_argument("--parts", nargs="+", default=["cas", "sr", "mem"], choices=["cas", "sr", "mem"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    if args.report_only:
        OUT_MD.write_text(render(json.loads(OUT_JSON.read_text())))
        print(f"wrote {OUT_MD}")
        return 0
    if args.quick:
        args.scales, args.n_max, args.n_synthetic, args.n_real, args.n_mixed = [2.0], 10, [10], [10], [10]
        args.cas_steps, args.sr_n, args.div_n, args.div_seeds, args.mem_n, args.gen_steps = 20, 20, 4, 2, 20, 4
    torch.set_num_threads(args.threads)
    x_train, y_train = mnist_images("train")
    x_test, y_test = mnist_images("test")
    clf = load_classifier()
    old = json.loads(OUT_JSON.read_text()) if OUT_JSON.exists() and not args.quick else {}
    res = {"command": COMMAND, "args": vars(args), "torch": torch.__version__,
           "hardware": f"CPU ({platform.machine()}), {args.threads} thread(s), shared with other jobs",
           "seconds": {}}
    res.update({k: old[k] for k in ("cas", "sr", "mem", "lesson_seconds") if k in old and k not in args.parts})
    res["seconds"].update(old.get("seconds", {}))
    for part, fn in (("cas", lambda: cas_part(args, x_train, y_train, x_test, y_test, clf)),
                     ("sr", lambda: sr_part(args, x_test, y_test, clf)),
                     ("mem", lambda: mem_part(args, x_train, y_train, x_test, clf))):
        if part in args.parts:
            t0 = time.perf_counter()
            res[part] = fn()
            res["seconds"][part] = round(time.perf_counter() - t0)
    if args.quick:
        print(render(res))
        return 0
    OUT_JSON.write_text(json.dumps(res, indent=1, ensure_ascii=False))
    OUT_MD.write_text(render(res))
    print(f"wrote {OUT_MD} and {OUT_JSON}")
    return 0


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render(r: dict) -> str:
    a = r["args"]
    lines = ["# Lesson 19: synthetic training data, super-resolution, memorisation", "",
             f"Command: `{r['command']}` (re-render: `python benchmarks/data_sr.py --report-only`). "
             f"{r['hardware']}; torch {r['torch']}. Wall time per part (s): {r['seconds']}.", ""]
    if "cas" in r:
        c = r["cas"]
        best = c["best_scale"]
        cas_best = c["synthetic"][f"{best:g}"][str(a["n_max"])]
        lines += ["## 1. Classification Accuracy Score", "",
                  f"The course's `MNISTClassifier`, {a['cas_steps']} AdamW steps of batch 64 (one recipe for every arm, "
                  "`minidiff.eval.cas.train_classifier_on`), tested on the 10 000 real MNIST test digits. Generated "
                  f"digits: `unet_cond`, DDIM {a['gen_steps']} steps, guidance scale w (w = 1: plain conditional).", "",
                  f"- Target: CAS with synthetic data only ≥ 95 %: {_met(cas_best >= 0.95)} "
                  f"({100 * cas_best:.2f} % at w = {best:g}, {a['n_max']} per class).", "",
                  "| training set | " + " | ".join(f"N = {n}/class" for n in sorted({*a["n_synthetic"], *a["n_real"]})) + " |",
                  "| --- |" + " --- |" * len({*a["n_synthetic"], *a["n_real"]})]
        ns = sorted({*a["n_synthetic"], *a["n_real"]})
        for w, row in c["synthetic"].items():
            lines.append(f"| generated, w = {w} | " + " | ".join(f"{100 * row[str(n)]:.2f} %" if str(n) in row else "–"
                                                               for n in ns) + " |")
        lines.append("| real | " + " | ".join(f"{100 * c['real'][str(n)]:.2f} %" if str(n) in c["real"] else "–"
                                             for n in ns) + " |")
        lines += ["", f"Real + generated: N_real real digits per class plus all {a['n_max']} generated per class at w = {best:g}:", "",
                  "| N_real | real only | real + generated |", "| --- | --- | --- |"]
        for n, v in c["mixed"].items():
            ro = c["real"].get(n)
            lines.append(f"| {n} | {f'{100 * ro:.2f} %' if ro is not None else '–'} | {100 * v:.2f} % |")
        lines += ["", "The generated sets themselves (shipped classifier; diversity = mean within-class distance of "
                  "classifier features, `minidiff.eval.guidance.within_class_diversity`):", "",
                  "| set | label accuracy | diversity | generation s |", "| --- | --- | --- | --- |"]
        for w, g in c["generated"].items():
            name = f"{a['n_max']} real per class" if w == "real" else f"w = {w}"
            lines.append(f"| {name} | {100 * g['label_accuracy']:.2f} % | {g['diversity']:.2f} | {g.get('seconds', '–')} |")
        lines.append("")
    if "sr" in r:
        s = r["sr"]
        lines += ["## 2. Super-resolution", "",
                  f"First {a['sr_n']} MNIST test digits, low resolution = block means (`minidiff.superres.downsample`). "
                  f"PSNR against the 28×28 truth (± standard error); accuracy of the shipped classifier on the upscaled "
                  f"digits (on the truth: {100 * s['truth_accuracy']:.2f} %); seed std: mean per-pixel std of "
                  f"{a['div_seeds']} samples of the same low-res digit ({a['div_n']} digits).", ""]
        b14, s14 = s["14x14"]["bicubic"], s["14x14"]["SR3 (superres)"]
        ok = s14["psnr"] > b14["psnr"] and s14["accuracy"] > b14["accuracy"]
        lines += [f"- Target: SR 14×14 → 28×28 beats bicubic in PSNR and classifier accuracy: {_met(ok)} "
                  f"(PSNR {s14['psnr']:.2f} vs {b14['psnr']:.2f} dB; accuracy {100 * s14['accuracy']:.2f} % vs "
                  f"{100 * b14['accuracy']:.2f} %, i.e. {round(s14['accuracy'] * a['sr_n'])} vs "
                  f"{round(b14['accuracy'] * a['sr_n'])} of {a['sr_n']} digits: the PSNR gap is large, the accuracy gap "
                  f"is within what {a['sr_n']} digits can resolve). 7×7: reported as measured below.", "",
                  "| input | method | PSNR (dB) | accuracy | seed std |", "| --- | --- | --- | --- | --- |"]
        for h in ("7x7", "14x14"):
            for name, v in s[h].items():
                lines.append(f"| {h} | {name} | {v['psnr']:.2f} ± {v['psnr_se']:.2f} | {100 * v['accuracy']:.2f} % | "
                             f"{v.get('seed_std', '–')} |")
        lines.append("")
    if "mem" in r:
        m = r["mem"]
        lines += ["## 3. Memorisation", "",
                  "d(x) = Euclidean distance to the nearest digit of the model's own training set; "
                  "share = fraction of generated samples with d(s) < min over the held-out test digits of d(x) "
                  "(`minidiff.eval.memorisation.memorisation_share`); null = 1/(n_test + 1), its expected value for "
                  f"samples that are fresh draws from the data distribution. {a['mem_n']} samples (DDIM 20 steps) and "
                  f"{a['mem_n']} test digits.", "",
                  f"- Target: memorisation measured for the shipped model and the tiny-subset model: "
                  f"{_met('unet_mnist' in m and any(k.startswith('unet_tiny') for k in m))}.", "",
                  "| model | training digits | space | share | null | median d(sample) | median d(test) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, row in m.items():
            for space in ("pixels", "features"):
                v = row[space]
                lines.append(f"| {name} | {row['n_train']} | {space} | {100 * v['share']:.1f} % | {100 * v['null']:.1f} % | "
                             f"{v['median_d_gen']:.2f} | {v['median_d_test']:.2f} |")
        if "unet_mnist" in m:
            full = m["unet_mnist"]["pixels"]
            lines += ["", f"`unet_mnist` saw each of its 60 000 digits about "
                      f"{round(read_card('unet_mnist')['training']['images_seen'] / 60000)} times: its pixel share is "
                      f"{100 * full['share']:.1f} % (null {100 * full['null']:.1f} %), and its samples' median distance to the "
                      f"training set is {full['median_d_gen'] / full['median_d_test']:.2f}× that of unseen test digits."]
        for name, row in m.items():
            if name == "unet_mnist":
                continue
            v = row["pixels"]
            lines += ["", f"`{name}` saw each of its {row['n_train']} digits about {row['epochs']} times: its pixel share "
                      f"is {100 * v['share']:.1f} % (null {100 * v['null']:.1f} %), its samples' median distance "
                      f"{v['median_d_gen'] / v['median_d_test']:.2f}× that of unseen digits. "
                      + ("Its samples are near-copies of its training digits: with so few digits seen so often, the "
                         "network fits the training set itself (a mixture of a few points) rather than a smooth density."
                         if v["share"] > 5 * v["null"] else "At this training length it does not reproduce its training digits.")]
        lines.append("")
    lines += ["## Lesson runtime", ""]
    if "lesson_seconds" in r:
        t = r["lesson_seconds"]
        lines += [f"- Target: lesson ≤ 3 minutes on 2 CPU cores at the cpu tier: {_met(t['cpu'] <= 180)} ({t['cpu']} s at the "
                  f"cpu tier, {t['note']}; the tiny tier: {t['tiny']}).", ""]
    else:
        lines += ["Target: lesson ≤ 3 minutes on 2 CPU cores at the cpu tier: see the runtime printed at the end of "
                  "`solutions/19_data_and_superres.ipynb`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
