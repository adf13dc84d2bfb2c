"""What a trained diffusion model is for (lesson 13): inpainting, SDEdit, denoising and anomaly detection, measured.

    python benchmarks/applications.py            # the full tables (about 15 min on one CPU thread)
    python benchmarks/applications.py --quick    # the same code on a handful of images (about a minute)

Models: the shipped unconditional U-Net `unet_mnist` (v-prediction, cosine, T = 1000), the class-conditional
`unet_cond` (classifier-free guidance), the U-Net `unet_mnist_no6` trained without the digit 6, and the shipped
MNIST classifier for accuracies and classifier FID. Every image comes from the MNIST *test* set or is drawn in
code; every random draw is seeded. Writes benchmarks/applications.md and applications.json.

1. Inpainting (minidiff.inpaint): masks centre (a square hole of 50 % and of 25 % of the pixels), half (bottom
   half unknown), random (50 % and 90 % of the pixels unknown) and stripe (the middle 30 % of the rows). Methods:
   replacement over 25 respaced ancestral steps (DDIM η = 1), the same with 100 steps (about as many network
   calls as RePaint), and RePaint with r = 4 resamples per step (j = 1) on the 25 steps. Metrics: classifier accuracy of the completed
   digit against the true label, MSE on the unknown pixels, and diversity: the mean RMS difference on the
   unknown pixels between two completions of the same digit from different seeds.
2. SDEdit (minidiff.editing.sdedit, DDIM η = 0, 50 levels for the whole chain): test 3s edited towards 8 with
   `unet_cond` at guidance w = 2, and random thick strokes (3 to 5 points) edited by `unet_mnist`, at 8
   strengths. Realism: classifier FID of the outputs against the test digits of the target (the test 8s for
   3 → 8, all 10 000 for strokes) divided by the floor at the same n (n training digits of the same kind);
   faithfulness: RMS distance to the guide.
3. Denoising (minidiff.editing): test digits + Gaussian noise of std σ on the [−1, 1] scale. Tweedie's
   posterior mean (one call), the reverse chain from the matching t (ancestral, η = 1), scikit-image's TV
   (denoise_tv_chambolle) and non-local means (denoise_nl_means), each with its weight / h tuned for best PSNR
   on 100 other test digits at each σ. PSNR (range 2) and classifier accuracy.
4. Anomaly detection (minidiff.anomaly): scores elbo_bpd (n_t = 16 evenly spaced t, an estimate) and
   reconstruction_error (t = 300, 2 draws). In-distribution: test digits; anomalies: six corruptions, three
   non-digit sets, and, for `unet_mnist_no6`, the held-out digit 6 against the other test digits. AUROC each.
   A third score reads several t: multi_t_errors at t = 600, 700, 800, 900 (4 draws each), z-scored against
   the same errors of normal training digits and summed (multi_t_score, Graham et al. 2023). A fourth combines
   the ELBO and multi-t: each z-scored against those training digits' scores, the larger of the two (max_z).
Section 1 also trains one MLP per fixed mask on the known pixels alone (visible_pixel_accuracy): how much of the
label the known pixels carry, an estimate of the ceiling on any completion's accuracy.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff import anomaly, editing, inpaint  # noqa: E402
from minidiff.checkpoints import load_eps_model, read_card  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.eval.classifier import extract_features, load_classifier, predict  # noqa: E402
from minidiff.eval.fid import frechet_distance, gaussian_stats  # noqa: E402
from minidiff.guidance import guided_model  # noqa: E402
from minidiff.unet import UNet  # noqa: E402

MASKS = [("centre 50 %", "centre", 0.5), ("centre 25 %", "centre", 0.25), ("half", "half", 0.5),
         ("random 50 %", "random", 0.5), ("random 90 %", "random", 0.9), ("stripe 30 %", "stripe", 0.3)]
METHODS = [("replacement, 25 steps", 25, 1), ("replacement, 100 steps", 100, 1), ("RePaint r = 4, 25 steps", 25, 4)]
STRENGTHS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
SIGMAS = [0.1, 0.25, 0.5, 0.75, 1.0, 1.5]
TV_WEIGHTS = [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0]
NLM_H = [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0]
HELD_OUT = 6
MULTI_TS = (600, 700, 800, 900)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def batched(fn, x, bs=128):
    return torch.cat([fn(x[i:i + bs], i) for i in range(0, x.shape[0], bs)])


# ---------------------------------------------------------------- 1. inpainting
def bench_inpaint(model, s, clf, x, y, n_div):
    rows = []
    for label, kind, frac in MASKS:
        mask = inpaint.make_mask(kind, fraction=frac, generator=gen(1), n=x.shape[0] if kind == "random" else 1)
        hole = 1 - mask
        for mlabel, steps, r in METHODS:
            t0 = time.time()
            out = batched(lambda xb, i: inpaint.inpaint(s, model, xb, mask[i:i + xb.shape[0]] if mask.shape[0] > 1 else mask,
                                                        steps=steps, resamples=r, generator=gen(100 + i)), x)
            acc = (predict(clf, out) == y).float().mean().item()
            mse = (((out - x) ** 2 * hole).flatten(1).sum(1) / hole.flatten(1).sum(1)).mean().item()
            # diversity: the first n_div digits again with other seeds
            k = min(n_div, x.shape[0])
            m_k = mask[:k] if mask.shape[0] > 1 else mask
            again = inpaint.inpaint(s, model, x[:k], m_k, steps=steps, resamples=r, generator=gen(999))
            h_k = hole[:k] if hole.shape[0] > 1 else hole
            div = (((out[:k] - again) ** 2 * h_k).flatten(1).sum(1) / h_k.flatten(1).sum(1)).sqrt().mean().item()
            nfe = len([1 for a, b in zip(inpaint.repaint_timesteps(s.T, steps, r), inpaint.repaint_timesteps(s.T, steps, r)[1:]) if b < a])
            rows.append(dict(mask=label, method=mlabel, nfe=nfe, accuracy=round(acc, 4), masked_mse=round(mse, 4),
                             diversity=round(div, 4), unknown_fraction=round(hole.mean().item(), 3), seconds=round(time.time() - t0, 1)))
            print("inpaint", rows[-1], flush=True)
    return rows


def ceiling_from_above(known: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """An exact upper bound on any completion's accuracy, from the known pixels `known` (N, P) of N images.
    Images whose known pixels are all background (−1) look the same to any method, so its completions of them are
    drawn from one distribution, and on that group it is right at most as often as the group's most common label;
    elsewhere at most always. Returns (that group's share of the images, its top label share, the bound)."""
    blank = (known <= -1).all(1)
    fraction = blank.float().mean().item()
    share = torch.bincount(labels[blank], minlength=10).max().item() / max(1, int(blank.sum()))
    return fraction, share, (1 - fraction) + fraction * share


def visible_pixel_accuracy(x_train, y_train, x_test, y_test, epochs=6):
    """How much of the label the known pixels carry: an MLP (384 → 512 → 256 → 10) trained on the known pixels of
    the 60 000 training digits alone, its accuracy on the known pixels of the 10 000 test digits, for each mask
    that is the same for every image. Any completion is a function of the known pixels (and of noise), so it
    cannot tell the label better than the best such reader; this MLP is one reader, so its accuracy estimates
    that ceiling from below."""
    rows = []
    for label, kind, frac in MASKS:
        if kind == "random":
            continue
        known = inpaint.make_mask(kind, fraction=frac).flatten().bool()
        a, b = x_train.flatten(1)[:, known], x_test.flatten(1)[:, known]
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(a.shape[1], 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                  torch.nn.ReLU(), torch.nn.Linear(256, 10))
        opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-4)
        g = gen(5)
        for _ in range(epochs):
            perm = torch.randperm(a.shape[0], generator=g)
            for i in range(0, a.shape[0], 256):
                idx = perm[i:i + 256]
                loss = torch.nn.functional.cross_entropy(net(a[idx]), y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            acc = (net(b).argmax(1) == y_test).float().mean().item()
        blank, share, bound = ceiling_from_above(b, y_test)
        rows.append(dict(mask=label, known_pixels=int(known.sum()), accuracy=round(acc, 4), n_test=int(b.shape[0]),
                         blank_fraction=round(blank, 4), blank_top_share=round(share, 4), upper_bound=round(bound, 4)))
        print("visible-pixel reader", rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------- 2. SDEdit
def random_strokes(n, g):
    ims = []
    for _ in range(n):
        k = int(torch.randint(3, 6, (1,), generator=g))
        pts = 6 + 16 * torch.rand(k, 2, generator=g)
        ims.append(editing.draw_polyline(pts.tolist(), width=1.6))
    return torch.cat(ims)


def bench_sdedit(model, cond, s, clf, x_test, y_test, x_train, y_train, n):
    """Realism: FID against the test digits of the target (the 8s for 3 → 8; all digits for strokes), over the floor
    of n training digits of the same kind against that reference."""
    def ref_and_floor(test, train):
        ref = gaussian_stats(extract_features(clf, test))
        idx = torch.randperm(train.shape[0], generator=gen(5))[:n]
        return ref, frechet_distance(*gaussian_stats(extract_features(clf, train[idx])), *ref)

    threes = x_test[y_test == 3][:n]
    strokes = random_strokes(n, gen(6))
    eights = guided_model(cond, torch.full((threes.shape[0],), 8), 2.0)
    rows, floors = [], {}
    for task, guide, eps_model, (ref_stats, floor) in (
            ("3 → 8 (unet_cond, w = 2)", threes, eights, ref_and_floor(x_test[y_test == 8], x_train[y_train == 8])),
            ("stroke → digit (unet_mnist)", strokes, model, ref_and_floor(x_test, x_train))):
        floors[task] = round(floor, 3)
        for st in STRENGTHS:
            out = editing.sdedit(s, eps_model, guide, st, steps=50, generator=gen(int(st * 1000)))
            f = extract_features(clf, out)
            fid = frechet_distance(*gaussian_stats(f), *ref_stats)
            rms = (out.clamp(-1, 1) - guide).pow(2).flatten(1).mean(1).sqrt().mean().item()
            pred = predict(clf, out)
            rows.append(dict(task=task, strength=st, n=guide.shape[0], fid=round(fid, 2), fid_over_floor=round(fid / floor, 2),
                             rms_to_guide=round(rms, 4), frac_8=round((pred == 8).float().mean().item(), 3)))
            print("sdedit", rows[-1], flush=True)
    return rows, floors


# ---------------------------------------------------------------- 3. denoising
def skimage_denoise(kind, y, param):
    from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

    arr = y[:, 0].double().numpy()
    if kind == "tv":
        out = denoise_tv_chambolle(arr, weight=param, channel_axis=0)
    else:
        out = np.stack([denoise_nl_means(a, h=param, patch_size=3, patch_distance=5, fast_mode=True) for a in arr])
    return torch.as_tensor(out, dtype=torch.float32).reshape(y.shape)


def bench_denoise(model, s, clf, x, y, x_val):
    rows = []
    for sigma in SIGMAS:
        g = gen(int(sigma * 100))
        noisy = x + sigma * torch.randn(x.shape, generator=g)
        noisy_val = x_val + sigma * torch.randn(x_val.shape, generator=g)
        row = dict(sigma=sigma, t=editing.matching_t(s, sigma), noisy_psnr=round(editing.psnr(noisy, x).mean().item(), 2))
        outs = {"tweedie": batched(lambda b, i: editing.tweedie_denoise(s, model, b, sigma), noisy),
                "chain": batched(lambda b, i: editing.chain_denoise(s, model, b, sigma, steps=50, generator=gen(7 + i)), noisy)}
        for kind, params in (("tv", TV_WEIGHTS), ("nl_means", NLM_H)):
            best = max(params, key=lambda p: editing.psnr(skimage_denoise(kind, noisy_val, p), x_val).mean().item())
            outs[kind] = skimage_denoise(kind, noisy, best)
            row[f"{kind}_param"] = best
        for k, out in outs.items():
            row[f"{k}_psnr"] = round(editing.psnr(out, x).mean().item(), 2)
            row[f"{k}_acc"] = round((predict(clf, out) == y).float().mean().item(), 4)
        row["noisy_acc"] = round((predict(clf, noisy.clamp(-1, 1)) == y).float().mean().item(), 4)
        rows.append(row)
        print("denoise", row, flush=True)
    return rows


# ---------------------------------------------------------------- 4. anomaly detection
def scores(model, s, x, seed):
    e = batched(lambda b, i: anomaly.elbo_bpd(s, model, b, n_t=16, generator=gen(seed + i)), x)
    r = batched(lambda b, i: anomaly.reconstruction_error(s, model, b, 300, n=2, generator=gen(seed + 7 + i)), x)
    return e, r


def multi_errors(model, s, x, seed):
    return batched(lambda b, i: anomaly.multi_t_errors(s, model, b, MULTI_TS, n=4, generator=gen(seed + 13 + i)), x)


def bench_anomaly(model, model_no6, s, s6, x, y, n, x_ref, y_ref):
    x_in = x[:n]
    e_in, r_in = scores(model, s, x_in, 10)
    ref = multi_errors(model, s, x_ref[:n], 5)  # normal *training* digits fix each t's mean and spread
    m_in = anomaly.multi_t_score(multi_errors(model, s, x_in, 10), ref)
    e_ref, _ = scores(model, s, x_ref[:n], 5)
    both_ref = torch.stack([e_ref, anomaly.multi_t_score(ref, ref)], 1)  # the ELBO and multi-t of the same normal digits
    c_in = anomaly.max_z(torch.stack([e_in, m_in], 1), both_ref)
    rows = []
    sets = [(f"corruption: {k}", anomaly.corrupt(x[n:2 * n], k, gen(20 + j))) for j, k in enumerate(anomaly.CORRUPTIONS)]
    sets += [(f"non-digit: {k}", anomaly.non_digits(n, k, generator=gen(40 + j))) for j, k in enumerate(anomaly.NON_DIGITS)]
    for label, x_out in sets:
        e_out, r_out = scores(model, s, x_out, 60)
        m_out = anomaly.multi_t_score(multi_errors(model, s, x_out, 60), ref)
        c_out = anomaly.max_z(torch.stack([e_out, m_out], 1), both_ref)
        rows.append(dict(model="unet_mnist", test_set=label, n_in=n, n_out=x_out.shape[0],
                         auroc_elbo=round(anomaly.auroc(e_in, e_out), 4), auroc_recon=round(anomaly.auroc(r_in, r_out), 4),
                         auroc_multi=round(anomaly.auroc(m_in, m_out), 4), auroc_max=round(anomaly.auroc(c_in, c_out), 4),
                         bpd_in=round(e_in.mean().item(), 3), bpd_out=round(e_out.mean().item(), 3)))
        print("anomaly", rows[-1], flush=True)
    if model_no6 is not None:
        normal, held = x[y != HELD_OUT][:n], x[y == HELD_OUT][:n]
        e_in6, r_in6 = scores(model_no6, s6, normal, 80)
        e_out6, r_out6 = scores(model_no6, s6, held, 90)
        ref6 = multi_errors(model_no6, s6, x_ref[y_ref != HELD_OUT][:n], 5)
        m_in6 = anomaly.multi_t_score(multi_errors(model_no6, s6, normal, 80), ref6)
        m_out6 = anomaly.multi_t_score(multi_errors(model_no6, s6, held, 90), ref6)
        rows.append(dict(model="unet_mnist_no6", test_set=f"held-out digit {HELD_OUT}", n_in=normal.shape[0], n_out=held.shape[0],
                         auroc_elbo=round(anomaly.auroc(e_in6, e_out6), 4), auroc_recon=round(anomaly.auroc(r_in6, r_out6), 4),
                         auroc_multi=round(anomaly.auroc(m_in6, m_out6), 4), auroc_max=None,
                         bpd_in=round(e_in6.mean().item(), 3), bpd_out=round(e_out6.mean().item(), 3)))
        print("anomaly", rows[-1], flush=True)
        # the same digits scored by the model that did see 6s: how much of the gap is the held-out class?
        e_a, _ = scores(model, s, normal, 80)
        e_b, _ = scores(model, s, held, 90)
        rows.append(dict(model="unet_mnist (saw 6s)", test_set=f"digit {HELD_OUT} vs the others", n_in=normal.shape[0],
                         n_out=held.shape[0], auroc_elbo=round(anomaly.auroc(e_a, e_b), 4), auroc_recon=None, auroc_multi=None,
                         auroc_max=None,
                         bpd_in=round(e_a.mean().item(), 3), bpd_out=round(e_b.mean().item(), 3)))
        print("anomaly", rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------- the report
def render(res, args, hw, minutes):
    L = ["# Lesson 13: inpainting, SDEdit, denoising and anomaly detection, measured", "",
         f"`python benchmarks/applications.py{' --quick' if args.quick else ''}` ({hw}; {minutes:.0f} min). "
         "Models: `unet_mnist`, `unet_cond`, `unet_mnist_no6` (trained without the digit 6) and the shipped MNIST "
         "classifier; images from the MNIST test set or drawn in code. See the script's docstring for every setting.", "",
         f"## 1. Inpainting ({res['n_inpaint']} test digits per mask; diversity over the first {res['n_div']})", "",
         "| mask | unknown pixels | method | network calls | accuracy | MSE on the hole | diversity (RMS between seeds) |",
         "| --- | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in res["inpaint"]:
        L.append(f"| {r['mask']} | {r['unknown_fraction']:.0%} | {r['method']} | {r['nfe']} | {r['accuracy']:.1%} | "
                 f"{r['masked_mse']:.3f} | {r['diversity']:.3f} |")
    if res.get("visible_reader"):
        L += ["", "How much of the label the known pixels carry: an MLP trained on the known pixels alone of the 60 000 training "
              "digits, tested on the 10 000 test digits (`visible_pixel_accuracy`). A completion is made from the known pixels "
              "(and noise), so the classifier cannot read the true label from it more often than the best such reader can; "
              "this MLP is one reader, so its accuracy estimates that ceiling from below. From above, exactly: the test "
              "digits whose known pixels are all background look alike to every method, so on them no completion is right "
              "more often than their most common digit; the bound is (1 − blank) + blank × that share.", "",
              "| mask | known pixels | reader's test accuracy (ceiling from below) | known pixels all background | "
              "their most common digit | ceiling from above |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in res["visible_reader"]:
            L.append(f"| {r['mask']} | {r['known_pixels']} | {r['accuracy']:.1%} | {r['blank_fraction']:.1%} | "
                     f"{r['blank_top_share']:.1%} | {r['upper_bound']:.1%} |")
    floors = "; ".join(f"{k}: {v}" for k, v in res["fid_floor"].items())
    L += ["", f"## 2. SDEdit: realism against faithfulness (n = {res['n_sdedit']} per strength; FID floor {floors})", "",
          "Realism: classifier FID against the test digits of the target (the test 8s for 3 → 8, all test digits for strokes) "
          "over the floor (n training digits of the same kind against that reference); faithfulness: RMS distance to the guide.", "",
          "| task | strength s | FID | FID / floor | RMS to the guide | classified as 8 |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["sdedit"]:
        L.append(f"| {r['task']} | {r['strength']} | {r['fid']} | {r['fid_over_floor']} | {r['rms_to_guide']:.3f} | "
                 f"{format(r['frac_8'], '.1%') if r['task'].startswith('3') else '—'} |")
    L += ["", f"## 3. Denoising ({res['n_denoise']} test digits; PSNR in dB on the [−1, 1] scale; accuracy of the classifier)", "",
          "| σ | t | noisy | Tweedie (1 call) | reverse chain | TV (weight) | NL-means (h) "
          "| acc. noisy | acc. Tweedie | acc. chain | acc. TV | acc. NL-means |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["denoise"]:
        L.append(f"| {r['sigma']} | {r['t']} | {r['noisy_psnr']} | {r['tweedie_psnr']} | {r['chain_psnr']} | "
                 f"{r['tv_psnr']} ({r['tv_param']}) | "
                 f"{r['nl_means_psnr']} ({r['nl_means_param']}) | {r['noisy_acc']:.1%} | {r['tweedie_acc']:.1%} | {r['chain_acc']:.1%} | "
                 f"{r['tv_acc']:.1%} | {r['nl_means_acc']:.1%} |")
    L += ["", "## 4. Anomaly detection (AUROC; higher score = more anomalous; 0.5 is chance, below 0.5 the score ranks backwards)", "",
          "| model | anomalies | n normal / n anomalous | AUROC, ELBO (bits/dim) | AUROC, reconstruction (t = 300) "
          f"| AUROC, multi-t reconstruction (t = {', '.join(map(str, MULTI_TS))}) | AUROC, max z of ELBO and multi-t "
          "| bits/dim normal → anomalous |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in res["anomaly"]:
        rec, multi, both = ("—" if r.get(k) is None else f"{r[k]:.3f}" for k in ("auroc_recon", "auroc_multi", "auroc_max"))
        L.append(f"| {r['model']} | {r['test_set']} | {r['n_in']} / {r['n_out']} | {r['auroc_elbo']:.3f} | {rec} | {multi} "
                 f"| {both} | {r['bpd_in']} → {r['bpd_out']} |")
    L += ["", "Multi-t reconstruction (`anomaly.multi_t_errors`, `multi_t_score`; Graham et al. 2023): the one-call "
          "reconstruction error at each of those t (4 noise draws), z-scored with the mean and std of the same errors on "
          f"{res['n_anomaly']} normal *training* digits (digits other than {HELD_OUT} for `unet_mnist_no6`), summed over t. "
          "Max z (`anomaly.max_z`): the ELBO and the multi-t score, each z-scored against the same training digits' scores, "
          "and the larger of the two: an image is as anomalous as its most unusual score."]
    return "\n".join(L) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="a handful of images per row (a smoke test of the whole path)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "applications.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    q = args.quick
    n_inp, n_div, n_sd, n_den, n_an = (8, 4, 8, 8, 8) if q else (64, 16, 150, 300, 250)
    t_start = time.time()
    model, s = load_eps_model("unet_mnist", UNet)
    cond, _ = load_eps_model("unet_cond", UNet)
    clf = load_classifier()
    x_test, y_test = mnist_images("test")
    x_train, y_train = mnist_images("train")
    perm = torch.randperm(x_test.shape[0], generator=gen(0))
    x, y = x_test[perm], y_test[perm]
    res = dict(n_inpaint=n_inp, n_div=n_div, n_sdedit=n_sd, n_denoise=n_den, n_anomaly=n_an, quick=q)
    res["inpaint"] = bench_inpaint(model, s, clf, x[:n_inp], y[:n_inp], n_div)
    res["visible_reader"] = visible_pixel_accuracy(x_train[:2000] if q else x_train, y_train[:2000] if q else y_train,
                                                   x_test, y_test, epochs=1 if q else 6)
    res["sdedit"], res["fid_floor"] = bench_sdedit(model, cond, s, clf, x_test, y_test, x_train, y_train, n_sd)
    res["denoise"] = bench_denoise(model, s, clf, x[:n_den], y[:n_den], x[-100:] if not q else x[-8:])
    try:  # loaded last: the held-out rows are skipped without that checkpoint
        model_no6, s6 = load_eps_model("unet_mnist_no6", UNet)
    except Exception as err:
        print(f"no unet_mnist_no6 ({err}); skipping the held-out class", flush=True)
        model_no6, s6 = None, None
    res["anomaly"] = bench_anomaly(model, model_no6, s, s6, x, y, n_an, x_train, y_train)
    res["checkpoints"] = {k: read_card(k)["sha256"] for k in ("unet_mnist", "unet_cond", "mnist_classifier")}
    if model_no6 is not None:
        res["checkpoints"]["unet_mnist_no6"] = read_card("unet_mnist_no6")["sha256"]
    minutes = (time.time() - t_start) / 60
    hw = f"{platform.machine()} CPU, 1 torch thread, torch {torch.__version__}"
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
    out.write_text(render(res, args, hw, minutes))
    print(f"wrote {out} and {out.with_suffix('.json')} ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
