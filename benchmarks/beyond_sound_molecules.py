"""Lesson 16: the shipped sound U-Net and molecule EGNN, measured against the lesson's targets, on one CPU thread.

    python benchmarks/beyond_sound_molecules.py --threads 1          # everything; writes .md and .json
    python benchmarks/beyond_sound_molecules.py --part sound --threads 1   # one part, merged into the .json
    python benchmarks/beyond_sound_molecules.py --report-only        # re-render the .md from the .json
    python benchmarks/beyond_sound_molecules.py --quick              # a smoke run: tiny n (writes nothing)

Sound (`sound_unet1d`):
1. a `ClipClassifier` trained on real clips of a seed the diffusion model never saw (seed 10); its accuracy on
   other real clips (seed 11), and on n generated clips per class (guided DDIM, 50 steps; w = 1 and 2 with η = 0, w = 2 with η = 1):
   the share it puts in the class that was asked for (target ≥ 90 %);
2. the spectral Fréchet distance (`minidiff.eval.sound.spectral_distance`) of those generated clips to n real
   clips per class (seed 11), against the floor: two disjoint real sets of the same size (seeds 12 and 11)
   (target: generated within 2× of the floor).
Molecules (`egnn_conformers`):
3. equivariance error: max |ε(Qx + b)[π] − Q ε(x)[π]| of the trained model in float32 over random orthogonal Q
   (with reflections), shifts b and permutations π, on noised conformers of every molecule (target ≤ 1e-5);
4. conformers sampled for every molecule (all T DDPM steps, and 100 DDIM jumps): validity by the distance rule of
   `minidiff.eval.molecules.valid` (target ≥ 80 %), the Wasserstein-1 distance of each bond angle type's angles
   (`bond_angles`) to those of the RDKit conformers, and the Wasserstein-1 distance of each bond type's lengths to
   those of all RDKit conformers.
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

from minidiff.checkpoints import load_checkpoint, load_eps_model, read_card  # noqa: E402
from minidiff.data.molecules import SMILES, conformer_dataset  # noqa: E402
from minidiff.data.sound import CLASSES, LENGTH, make_clips  # noqa: E402
from minidiff.egnn import EGNN, remove_mean, sample_conformers  # noqa: E402
from minidiff.eval.molecules import bond_angles, bond_lengths, valid, wasserstein1  # noqa: E402
from minidiff.eval.sound import class_accuracy, spectral_distance, spectral_features, train_clip_classifier  # noqa: E402
from minidiff.guidance import guided_sample  # noqa: E402
from minidiff.schedules import NoiseSchedule  # noqa: E402
from minidiff.unet1d import UNet1d  # noqa: E402

DEST = ROOT / "benchmarks" / "beyond_sound_molecules.md"


def sound_part(n: int, steps: int, settings, clf_steps: int) -> dict:
    model, schedule = load_eps_model("sound_unet1d", UNet1d)
    train_x, train_y = make_clips(n, seed=10)
    t0 = time.perf_counter()
    clf = train_clip_classifier(train_x, train_y, steps=clf_steps, seed=0)
    real_x, real_y = make_clips(n, seed=11)
    floor_x, _ = make_clips(n, seed=12)
    out = {"n_per_class": n, "ddim_steps": steps, "classifier_steps": clf_steps,
           "classifier_seconds": round(time.perf_counter() - t0, 1),
           "real_accuracy": class_accuracy(clf, real_x, real_y),
           "floor": spectral_distance(floor_x, real_x), "rows": []}
    for w, eta in settings:
        t0 = time.perf_counter()
        ask = torch.arange(len(CLASSES)).repeat_interleave(n)
        fake = guided_sample(schedule, model, ask, w, (1, LENGTH), steps=steps, eta=eta,
                             generator=torch.Generator().manual_seed(0), batch_size=100)
        seconds = time.perf_counter() - t0
        per_class = [class_accuracy(clf, fake[ask == k], ask[ask == k]) for k in range(len(CLASSES))]
        out["rows"].append({"w": w, "eta": eta, "accuracy": class_accuracy(clf, fake, ask), "accuracy_per_class": per_class,
                            "distance": spectral_distance(fake, real_x), "sampling_seconds": round(seconds, 1),
                            "band_gap": float((spectral_features(fake)[:, :32] - spectral_features(real_x)[:, :32].mean(0))
                                              .mean()),
                            "peak": float(fake.abs().max())})
        print(f"sound w={w} eta={eta}: {out['rows'][-1]}", flush=True)
    return out


def equivariance(model, data, seeds: int) -> float:
    worst = 0.0
    for s in range(seeds):
        g = torch.Generator().manual_seed(s)
        rows = torch.randint(0, len(data["x"]), (64,), generator=g)
        x, h, bonds, mask = (data[k][rows] for k in ("x", "h", "bonds", "mask"))
        x_t = remove_mean(x + torch.randn(x.shape, generator=g), mask)
        t = torch.randint(1, 1001, (64,), generator=g)
        Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g))
        if s % 2:
            Q[:, 0] = -Q[:, 0]
        b = 5 * torch.randn(1, 1, 3, generator=g)
        perm = torch.randperm(x.shape[1], generator=g)
        with torch.no_grad():
            out = model(x_t, t, h, bonds, mask)
            moved = model(((x_t @ Q.T + b) * mask[..., None])[:, perm], t, h[:, perm], bonds[:, perm][:, :, perm],
                          mask[:, perm])
        worst = max(worst, float((moved - (out @ Q.T)[:, perm]).abs().max()))
    return worst


def molecule_part(per_mol_ddpm: int, per_mol_ddim: int, seeds: int) -> dict:
    model = load_checkpoint("egnn_conformers", EGNN)
    card = read_card("egnn_conformers")
    schedule = NoiseSchedule.make(card["schedule"]["name"], card["schedule"]["T"])
    data = conformer_dataset(card["data"]["conformers_per_molecule"], seed=card["data"]["seed"])
    real = bond_lengths(data["x"], data["h"], data["bonds"], data["mask"])
    real_angles = bond_angles(data["x"], data["h"], data["bonds"], data["mask"])
    out = {"equivariance_error": equivariance(model, data, seeds), "equivariance_trials": seeds * 64,
           "rdkit_valid": float(valid(data["x"], data["h"], data["bonds"], data["mask"]).double().mean()), "rows": []}
    print(f"equivariance error {out['equivariance_error']:.2e}", flush=True)
    for name, per_mol, steps in (("DDPM", per_mol_ddpm, None), ("DDIM", per_mol_ddim, 100)):
        idx = torch.cat([torch.nonzero(data["mol"] == k)[:per_mol, 0] for k in range(len(SMILES))])
        h, bonds, mask = data["h"][idx], data["bonds"][idx], data["mask"][idx]
        t0 = time.perf_counter()
        x = sample_conformers(schedule, model, h, bonds, mask, steps=steps, generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - t0
        ok = valid(x, h, bonds, mask)
        per_molecule = {s: float(ok[data["mol"][idx] == k].double().mean()) for k, s in enumerate(SMILES)}
        fake = bond_lengths(x, h, bonds, mask)
        w1 = {k: {"w1": wasserstein1(fake[k], real[k]), "n": len(fake[k]), "mean_generated": float(fake[k].mean()),
                  "mean_rdkit": float(real[k].mean())} for k in fake}
        fake_angles = bond_angles(x, h, bonds, mask)
        w1_angles = {k: {"w1": wasserstein1(fake_angles[k], real_angles[k]), "n": len(fake_angles[k]),
                         "mean_generated": float(fake_angles[k].mean()), "mean_rdkit": float(real_angles[k].mean())}
                     for k in fake_angles}
        out["rows"].append({"sampler": name, "steps": steps or schedule.T, "n": len(idx),
                            "valid": float(ok.double().mean()), "valid_per_molecule": per_molecule,
                            "w1": w1, "w1_angles": w1_angles, "sampling_seconds": round(seconds, 1)})
        print(f"molecules {name}: valid {out['rows'][-1]['valid']:.3f} in {seconds:.0f} s", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny n, nothing written")
    p.add_argument("--report-only", action="store_true", help="re-render the markdown from the json")
    p.add_argument("--part", choices=["all", "sound", "molecules"], default="all")
    args = p.parse_args(argv)
    if args.report_only:
        out = json.loads(DEST.with_suffix(".json").read_text())
        DEST.write_text(render(out))
        return 0
    torch.set_num_threads(args.threads)
    if args.quick:
        out = {"sound": sound_part(4, 5, ((2.0, 0.0),), 20), "molecules": molecule_part(1, 1, 1),
               "meta": {"command": "--quick", "threads": args.threads, "torch": torch.__version__, "seconds": 0,
                        "sound_card": "-", "molecule_card": "-"}}
        print(render(out))
        return 0
    js = DEST.with_suffix(".json")
    out = json.loads(js.read_text()) if args.part != "all" and js.exists() else {}
    seconds = dict(out.get("meta", {}).get("part_seconds", {}))
    for part in ("sound", "molecules"):
        if args.part in ("all", part):
            t1 = time.perf_counter()
            out[part] = (sound_part(40, 50, ((1.0, 0.0), (2.0, 0.0), (2.0, 1.0)), 300) if part == "sound"
                         else molecule_part(4, 20, 8))
            seconds[part] = round(time.perf_counter() - t1)
    if not all(k in out for k in ("sound", "molecules")):
        js.write_text(json.dumps(out, indent=2) + "\n")
        print("run the other part to render the markdown")
        return 0
    out["meta"] = {"command": "python benchmarks/beyond_sound_molecules.py --threads 1", "threads": args.threads,
                   "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                   "part_seconds": seconds, "seconds": sum(seconds.values()),
                   "sound_card": read_card("sound_unet1d")["sha256"][:12],
                   "molecule_card": read_card("egnn_conformers")["sha256"][:12]}
    js.write_text(json.dumps(out, indent=2) + "\n")
    DEST.write_text(render(out))
    print(DEST.read_text())
    return 0


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render(out: dict) -> str:
    s, m, meta = out["sound"], out["molecules"], out["meta"]
    n = s["n_per_class"]
    best = max(s["rows"], key=lambda r: r["accuracy"])
    lines = [
        "## Lesson 16: sound and molecules",
        "",
        f"`{meta['command']}` ({meta['seconds'] / 60:.0f} min on {meta['threads']} thread(s) of a 2-core machine shared "
        f"with other jobs; torch {meta['torch']}). Checkpoints `sound_unet1d` (sha256 {meta['sound_card']}…) and "
        f"`egnn_conformers` (sha256 {meta['molecule_card']}…).",
        "",
        "### Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| sound: class accuracy of generated clips ≥ 90 % | {best['accuracy']:.1%} (w = {best['w']:g}, n = {3 * n}) "
        f"| {_met(best['accuracy'] >= 0.9)} |",
    ]
    for r in s["rows"]:
        ratio = r["distance"] / s["floor"]
        lines.append(f"| sound: spectral distance ≤ 2 × floor (w = {r['w']:g}, η = {r['eta']:g}) | {r['distance']:.2f} vs floor "
                     f"{s['floor']:.2f} = {ratio:.1f} × (n = {3 * n} per set) | {_met(ratio <= 2)} |")
    lines.append(f"| molecules: equivariance error ≤ 1e-5 (float32) | {m['equivariance_error']:.1e} "
                 f"({m['equivariance_trials']} conformers, {m['equivariance_trials'] // 64} random transforms) "
                 f"| {_met(m['equivariance_error'] <= 1e-5)} |")
    for r in m["rows"]:
        lines.append(f"| molecules: validity ≥ 80 % ({r['sampler']}, {r['steps']} steps) | {r['valid']:.1%} "
                     f"(n = {r['n']}) | {_met(r['valid'] >= 0.8)} |")
    lines.append("| molecules: bond-length and bond-angle W1 reported | see below | reported |")
    lines += [
        "",
        "### Sound",
        "",
        f"Classifier (`ClipClassifier`, {s['classifier_steps']} steps on {3 * n} real clips of seed 10): accuracy "
        f"{s['real_accuracy']:.1%} on {3 * n} real clips of seed 11. Generated: {n} clips per class, guided DDIM with "
        f"{s['ddim_steps']} steps. Spectral distance: Fréchet distance of the 48 spectral features "
        "(`minidiff.eval.sound.spectral_features`) to the real clips of seed 11; floor: real clips of seed 12 against "
        "the same set. Band gap: the mean, over the 32 bands, of the generated clips' log power minus the real "
        "clips' (natural log; +2.3 is 10 times the power): a positive gap in every band is a broadband noise floor "
        "(hiss) that the briefly trained model leaves, and it is what keeps the distance far above the floor while the "
        "classifier still recognises every class. Peak: the largest |sample| (x̂_0 is clipped to [−1, 1]).",
        "",
        "| w | η | accuracy | per class (" + ", ".join(CLASSES) + ") | spectral distance | / floor | band gap | peak "
        "| sampling s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in s["rows"]:
        lines.append(f"| {r['w']:g} | {r['eta']:g} | {r['accuracy']:.1%} | " + ", ".join(f"{a:.0%}" for a in r["accuracy_per_class"])
                     + f" | {r['distance']:.2f} | {r['distance'] / s['floor']:.1f} | {r.get('band_gap', float('nan')):+.2f} "
                       f"| {r['peak']:.2f} "
                       f"| {r['sampling_seconds']:.0f} |")
    lines += [
        "",
        "### Molecules",
        "",
        f"Validity: the bonds perceived by the distance rule (‖x_i − x_j‖ ≤ r_i + r_j + 0.4 Å) equal the molecule's "
        f"graph; RDKit's own conformers: {m['rdkit_valid']:.1%}. W1 in Å against the bond lengths of all RDKit "
        "conformers of the data set.",
        "",
        "| sampler | steps | n | valid | sampling s |",
        "|---|---|---|---|---|",
    ]
    for r in m["rows"]:
        lines.append(f"| {r['sampler']} | {r['steps']} | {r['n']} | {r['valid']:.1%} | {r['sampling_seconds']:.0f} |")
    lines += ["", "| bond type | " + " | ".join(f"W1 {r['sampler']} (Å)" for r in m["rows"])
              + " | mean generated (DDPM) | mean RDKit | n (DDPM) |",
              "|---|" + "---|" * (len(m["rows"]) + 3)]
    first = m["rows"][0]["w1"]
    for kind in first:
        lines.append(f"| {kind} | " + " | ".join(f"{r['w1'][kind]['w1']:.3f}" if kind in r["w1"] else "–"
                                                 for r in m["rows"])
                     + f" | {first[kind]['mean_generated']:.3f} | {first[kind]['mean_rdkit']:.3f} | {first[kind]['n']} |")
    if "w1_angles" in m["rows"][0]:
        first = m["rows"][0]["w1_angles"]
        lines += ["", "Bond angles: the angle between every two bonds that share an atom (`minidiff.eval.molecules.bond_angles`), "
                  "grouped by the three atom types, the centre in the middle; W1 in degrees against all RDKit conformers.", "",
                  "| angle | " + " | ".join(f"W1 {r['sampler']} (°)" for r in m["rows"])
                  + " | mean generated (DDPM) | mean RDKit | n (DDPM) |",
                  "|---|" + "---|" * (len(m["rows"]) + 3)]
        for kind in first:
            lines.append(f"| {kind} | " + " | ".join(f"{r['w1_angles'][kind]['w1']:.1f}" if kind in r["w1_angles"] else "–"
                                                     for r in m["rows"])
                         + f" | {first[kind]['mean_generated']:.1f} | {first[kind]['mean_rdkit']:.1f} | {first[kind]['n']} |")
    worst = sorted(m["rows"][0]["valid_per_molecule"].items(), key=lambda kv: kv[1])[:5]
    lines += ["", "Least valid molecules (DDPM): " + ", ".join(f"`{k}` {v:.0%}" for k, v in worst) + ".", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
