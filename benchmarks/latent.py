"""Lesson 15: latent diffusion against the pixel-space U-Net of lesson 05, on one CPU thread.

    python benchmarks/latent.py --threads 1                 # everything (the scale-factor runs are most of it)
    python benchmarks/latent.py --part scale --threads 1    # only the scale-factor runs (cached in latent_scale.json)
    python benchmarks/latent.py --part main --threads 1     # the rest, reusing that cache
    python benchmarks/latent.py --quick                     # a smoke run: tiny n, few steps (writes nothing)

Measures, all on this machine with the same thread count:
1. quality: classifier FID of n DDIM samples (50 steps, η = 0 and η = 1) of the shipped latent model
   (`latent_unet` on `autoencoder_mnist`), against the 10 000 MNIST test digits, next to the floor at
   the same n (`minidiff.eval.fid.fid_floor`, n random training digits) and the pixel model's numbers
   at the same n from benchmarks/samplers.json (same reference, same floor); the autoencoder's floor:
   the FID of the reconstructions D(μ(x)) of those same n training digits;
2. training speed: img/s of the pixel recipe (lesson-05 U-Net on 28×28 images, v-loss) and of the latent
   recipe (on pre-encoded latents, and encoding each batch with `minidiff.latent.latent_loss`), same batch;
3. sampling speed: img/s of DDIM at the same step count, pixel vs latent (decoding included);
4. the scale factor: short latent trainings on latents scaled to std σ_z ∈ {raw, 1, 5, 0.2} (equal budget),
   each scored by FID / floor, and the signal-to-noise ratio that each std gives the forward process.
Writes benchmarks/latent.md and benchmarks/latent.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff.autoencoder import Autoencoder  # noqa: E402
from minidiff.checkpoints import load_checkpoint, load_eps_model, load_latent_model, read_card  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.eval import fid  # noqa: E402
from minidiff.eval.classifier import MNISTClassifier, extract_features  # noqa: E402
from minidiff.latent import decode_latents, encode_latents, latent_loss, latent_sample  # noqa: E402
from minidiff.schedules import NoiseSchedule  # noqa: E402
from minidiff.training import train  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.vpred import EpsFromV, v_loss  # noqa: E402

AE, LATENT, PIXEL = "autoencoder_mnist", "latent_unet", "unet_mnist"


def seeded(draw, n, batch=250):
    """n samples in batches of `batch`, the batch at offset i drawn with a generator seeded i (as benchmarks/samplers.py)."""
    return torch.cat([draw(min(batch, n - i), torch.Generator().manual_seed(i)) for i in range(0, n, batch)])


def train_speed(model, loss, data, steps, batch):
    res = train(model, loss, data, steps + 2, batch_size=batch, lr=1e-4, seed=0, show_progress=False, stop_after=2)
    res = train(res.model, loss, data, steps, batch_size=batch, lr=1e-4, seed=1, show_progress=False)  # warm
    return res.images_per_second


def scale_runs(args, ae, schedule, x_train, clf, ref, channels, batch=128):
    """Equal short budgets on the same latents multiplied to std σ_z ∈ {raw, 1, 5, 0.2}; FID / floor of each."""
    raw = encode_latents(ae, x_train)
    raw_std = float(raw.std())
    shape = tuple(raw.shape[1:])
    floor_s = fid.fid_floor(clf, x_train, ref, args.scale_n)
    t_mid = int((schedule.snr[1:] - 1).abs().argmin()) + 1  # where the schedule's own SNR ᾱ_t/(1 − ᾱ_t) is 1
    runs = []
    for label, std in [("raw latents (s = 1)", raw_std), ("unit std (s = 1/std)", 1.0), ("std 5", 5.0), ("std 0.2", 0.2)]:
        s_run = std / raw_std
        torch.manual_seed(0)
        res = train(UNet(shape[0], channels), partial(v_loss, schedule), raw * s_run, args.scale_steps, batch_size=batch,
                    lr=2e-3, warmup=100, ema_decay=0.999, ema_warmup=True, seed=0, channels_last=True, show_progress=False)
        model = EpsFromV(res.ema.model.eval(), schedule)
        x = seeded(lambda b, g, s_run=s_run, model=model: latent_sample(schedule, model, ae, s_run, (b, *shape), 50, 0.0, g),
                   args.scale_n)
        d = fid.classifier_fid(clf, x, ref)
        runs.append(dict(label=label, std=std, scale=s_run, fid=d, ratio=d / floor_s,
                         snr_at_schedule_snr_1=float(schedule.snr[t_mid]) * std**2,
                         final_loss=sum(res.losses[-50:]) / len(res.losses[-50:])))
        print(f"{label}: FID {d:.2f}, ratio {d / floor_s:.2f}", flush=True)
    return dict(scale_runs=runs, scale_floor=floor_s, scale_n=args.scale_n, scale_steps=args.scale_steps,
                raw_std=raw_std, autoencoder_sha256=read_card(AE)["sha256"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--speed-steps", type=int, default=30)
    p.add_argument("--scale-steps", type=int, default=400, help="training steps of each scale-factor run")
    p.add_argument("--scale-n", type=int, default=500)
    p.add_argument("--scale-channels", type=int, nargs="+", default=[32, 64])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--part", choices=["all", "scale", "main"], default="all",
                   help="scale: only the scale-factor runs (cached in latent_scale.json); main: the rest, reusing that cache")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "latent.md"))
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.speed_steps, args.scale_steps, args.scale_n = 40, 2, 3, 20
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    hw = f"CPU {platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}"
    dest = Path(args.out)
    cache = dest.with_name(dest.stem + "_scale.json")
    ae = load_checkpoint(AE, Autoencoder)
    clf = load_checkpoint("mnist_classifier", MNISTClassifier)
    x_train, _ = mnist_images("train")
    x_test, _ = mnist_images("test")
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    schedule = NoiseSchedule.make("cosine", 1000)
    if args.part in ("all", "scale"):
        t0 = time.perf_counter()
        scale = scale_runs(args, ae, schedule, x_train, clf, ref, tuple(args.scale_channels))
        scale["seconds"] = time.perf_counter() - t0
        if not args.quick:
            cache.write_text(json.dumps(scale, indent=2) + "\n")
        if args.part == "scale":
            return 0
    else:
        scale = json.loads(cache.read_text())
        if scale["autoencoder_sha256"] != read_card(AE)["sha256"]:
            raise SystemExit(f"{cache} was made with another autoencoder: run --part scale again")

    eps_latent, schedule, ae, s = load_latent_model(LATENT, AE)
    eps_pixel, pixel_schedule = load_eps_model(PIXEL, UNet)
    lat_card, ae_card, pix_card = read_card(LATENT), read_card(AE), read_card(PIXEL)
    shape = tuple(lat_card["latent"]["shape"])
    out = {"hardware": hw, "n": args.n, "scale": s, "latent_shape": list(shape),
           "latent_sha256": lat_card["sha256"], "autoencoder_sha256": ae_card["sha256"]}

    # 1. quality at n, and the autoencoder's floor (reconstructions of the floor's own training digits)
    floor = fid.fid_floor(clf, x_train, ref, args.n)
    idx = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(0))[:args.n]
    recon = decode_latents(ae, encode_latents(ae, x_train[idx]))
    out["floor"], out["recon_fid"] = floor, fid.classifier_fid(clf, recon, ref)
    out["recon_mse"] = float((recon - x_train[idx]).pow(2).mean())
    samplers_json = json.loads((ROOT / "benchmarks" / "samplers.json").read_text())
    pix_rows = {r["sampler"]: r for r in samplers_json["rows"]}
    out["quality"] = []
    for eta in (0.0, 1.0):
        t0 = time.perf_counter()
        x = seeded(lambda b, g, eta=eta: latent_sample(schedule, eps_latent, ae, s, (b, *shape), 50, eta, g), args.n)
        sec = time.perf_counter() - t0
        d = fid.classifier_fid(clf, x, ref)
        pix = pix_rows.get(f"DDIM, 50 steps, η = {eta:g}") if samplers_json["n"] == args.n else None
        out["quality"].append(dict(sampler=f"DDIM, 50 steps, η = {eta:g}", fid=d, ratio=d / floor, seconds=sec,
                                   pixel_fid=pix["fid"] if pix else None, pixel_ratio=pix["ratio"] if pix else None))
        print(f"latent DDIM-50 η={eta:g}: FID {d:.2f} (floor {floor:.2f}) in {sec:.0f} s", flush=True)

    # 2. training speed, same batch and threads
    batch = 128
    lat_data = encode_latents(ae, x_train[:5000], s)
    lat_channels = tuple(lat_card["config"]["channels"])
    speed = {}
    torch.manual_seed(0)
    speed["pixel"] = train_speed(UNet(1, tuple(pix_card["config"]["channels"])), partial(v_loss, pixel_schedule),
                                 x_train[:5000], args.speed_steps, batch)
    torch.manual_seed(0)
    speed["latent (pre-encoded)"] = train_speed(UNet(shape[0], lat_channels), partial(v_loss, schedule), lat_data,
                                                args.speed_steps, batch)
    torch.manual_seed(0)
    speed["latent (encoding each batch)"] = train_speed(
        UNet(shape[0], lat_channels), partial(latent_loss, schedule, autoencoder=ae, scale=s), x_train[:5000],
        args.speed_steps, batch)
    out["train_img_per_s"] = speed
    print("training img/s:", {k: round(v, 1) for k, v in speed.items()}, flush=True)

    # 3. sampling speed at equal DDIM steps (50)
    b = min(250, args.n)
    t0 = time.perf_counter()
    ddim_sample(pixel_schedule, eps_pixel, (b, 1, 28, 28), 50, generator=torch.Generator().manual_seed(0), clip_denoised=1.0)
    pix_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    latent_sample(schedule, eps_latent, ae, s, (b, *shape), 50, generator=torch.Generator().manual_seed(0))
    lat_s = time.perf_counter() - t0
    out["sample_img_per_s"] = {"pixel": b / pix_s, "latent (decode included)": b / lat_s}
    print("sampling img/s:", {k: round(v, 1) for k, v in out["sample_img_per_s"].items()}, flush=True)

    out.update({k: v for k, v in scale.items() if k != "seconds"})
    out["seconds"] = time.perf_counter() - t_all + scale.get("seconds", 0.0)
    if args.quick:
        print(render(out, args, lat_card, pix_card))
        return 0
    dest.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    dest.write_text(render(out, args, lat_card, pix_card))
    print(f"wrote {dest} and {dest.with_suffix('.json')}")
    return 0


def render(out, args, lat_card, pix_card) -> str:
    sp, ss = out["train_img_per_s"], out["sample_img_per_s"]
    q0 = out["quality"][0]
    lines = [
        "# Latent diffusion against pixel diffusion (lesson 15)", "",
        f"Made by `python benchmarks/latent.py --threads {args.threads}` (or `--part scale`, then `--part main`) "
        f"on {out['hardware']} (shared machine); "
        f"{out['seconds'] / 60:.0f} min.", "",
        f"Latent model: `data/checkpoints/latent_unet.pt` ({lat_card['parameters']:,} parameters, UNet channels "
        f"{lat_card['config']['channels']} on latents {tuple(out['latent_shape'])}, scale s = {out['scale']:.4f}; "
        f"{lat_card['training']['stopped_at_step']:,} steps of batch {lat_card['training']['batch_size']} = "
        f"{lat_card['training']['images_seen']:,} images in {lat_card['budget']['seconds'] / 60:.0f} min; "
        f"`{lat_card['command']}`), on `data/checkpoints/autoencoder_mnist.pt` (`{read_card(AE)['command']}`).",
        f"Pixel model: `data/checkpoints/unet_mnist.pt` ({pix_card['parameters']:,} parameters, "
        f"{pix_card['training']['images_seen']:,} images in {pix_card['budget']['seconds_last_run'] / 60:.0f} min).", "",
        f"## Quality (classifier FID against the 10 000 MNIST test digits, n = {out['n']:,}, floor at n {out['floor']:.2f})", "",
        "Pixel numbers: benchmarks/samplers.md (same n, same reference, same floor; x̂_0 clipped to [−1, 1]). The latent "
        "sampler does not clip its latents; the decoded images are clipped to [−1, 1].", "",
        "| sampler | latent FID | latent FID / floor | pixel FID | pixel FID / floor |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in out["quality"]:
        pf = f"{r['pixel_fid']:.2f}" if r["pixel_fid"] is not None else "–"
        pr = f"{r['pixel_ratio']:.2f}" if r["pixel_ratio"] is not None else "–"
        lines.append(f"| {r['sampler']} | {r['fid']:.2f} | {r['ratio']:.2f} | {pf} | {pr} |")
    lines += ["", f"Autoencoder floor: reconstructions D(μ(x)) of the floor's {out['n']:,} training digits score FID "
              f"{out['recon_fid']:.2f} ({out['recon_fid'] / out['floor']:.2f}× the floor; per-pixel MSE {out['recon_mse']:.4f}). "
              "No latent model can beat its decoder.", "",
              f"## Speed (one thread, batch 128 for training, batch {min(250, out['n'])} and 50 DDIM steps for sampling)", "",
              "| | img/s | vs pixel |", "| --- | ---: | ---: |"]
    for k, v in sp.items():
        lines.append(f"| training, {k} | {v:.0f} | {v / sp['pixel']:.2f}× |")
    for k, v in ss.items():
        lines.append(f"| sampling, {k} | {v:.1f} | {v / ss['pixel']:.2f}× |")
    lines += ["", f"## The scale factor (equal budgets: {out['scale_steps']} steps of batch 128 each; n = {out['scale_n']} "
              f"DDIM-50 samples, floor at n {out['scale_floor']:.2f})", "",
              "Each run trains the same U-Net on the same latents multiplied by a constant so that their std is σ_z; "
              "samples are decoded after dividing by that constant. The last column is the SNR ᾱ_t σ_z² / (1 − ᾱ_t) "
              "that the data actually have at the step where the schedule's SNR ᾱ_t / (1 − ᾱ_t) is 1. The final losses are "
              "not comparable across rows: v = √ᾱ_t ε − √(1 − ᾱ_t) z_0 grows with σ_z.", "",
              "| latents | std σ_z | FID | FID / floor | SNR where the schedule says 1 | final loss |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in out["scale_runs"]:
        lines.append(f"| {r['label']} | {r['std']:.3g} | {r['fid']:.2f} | {r['ratio']:.2f} | "
                     f"{r['snr_at_schedule_snr_1']:.3g} | {r['final_loss']:.4f} |")
    tr = sp["latent (pre-encoded)"] / sp["pixel"]
    images = lat_card["training"]["images_seen"] / pix_card["training"]["images_seen"]
    minutes = lat_card["budget"]["seconds"] / pix_card["budget"]["seconds_last_run"]
    budget = (f"with {images:.2f}× the pixel model's training images and {minutes:.2f}× its training minutes "
              "(one thread each; see above)")
    lines += ["", "## Targets", "",
              f"* Latent training ≥ 3× faster in img/s than pixel training: **{'met' if tr >= 3 else 'not met'}** "
              f"({tr:.2f}× on pre-encoded latents; {sp['latent (encoding each batch)'] / sp['pixel']:.2f}× when each batch is encoded).",
              f"* FID / floor within 1.5× of the pixel model's (DDIM-50, η = 0, n = {out['n']:,}): "
              + (f"**{'met' if q0['ratio'] <= 1.5 * q0['pixel_ratio'] else 'not met'}** ({q0['ratio']:.2f} vs {q0['pixel_ratio']:.2f}: "
                 f"{q0['ratio'] / q0['pixel_ratio']:.2f}×), {budget}."
                 if q0["pixel_ratio"] else "no pixel number at this n."), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
