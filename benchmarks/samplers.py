"""Sampler comparison for the shipped lesson-05 U-Net, and lesson 10's fast samplers measured on ground truth.

    python benchmarks/samplers.py                   # n = 1000 per sampler; cached rows are reused
    python benchmarks/samplers.py --recompute       # every row again (DDPM-1000 alone is ~30 min on one CPU thread)
    python benchmarks/samplers.py --n 500 --skip-ddpm

MNIST. Every sampler draws the same n samples from the same seeds (batches of 250, the batch at offset i seeded i),
clips x̂_0 to [−1, 1] (DDIM's clip_denoised; for the σ-samplers of lesson 10 the denoiser D(x; σ), which *is* x̂_0,
is clamped: `minidiff.samplers.clipped`), and is scored by classifier FID against the 10 000 MNIST test digits,
next to the floor at the same n (n random training digits against the same reference). DDPM's ancestral sampler
with σ_t² = β̃_t is DDIM with η = 1 and all T steps (DDIM eq. 16; tests/test_unet.py checks the identity).
Lesson 10's samplers (minidiff.samplers: Euler, Heun, EDM churn, DPM-Solver++(2M) on Karras σ levels with
σ_min = σ_1 of the model's schedule, σ_max = 80, ρ = 7) run at NFE ∈ {5, 10, 20, 50, 100} network calls, with
DDIM (η = 0) at the same NFE; a fine ODE solve (Heun, 199 calls) is the deterministic reference. The stochastic
DPM-Solver++(2M) (dpmpp_2m_sde) gets its η, ρ and σ_max per budget (10 and 20 NFE) from a grid run on other seeds
(offset 100 000); only the chosen setting runs on the table's seeds.

Cache: a row is reused from samplers.json when its (sampler label, n, checkpoint sha256) match; --recompute
forces every row. The rows made before the cache existed carry no sha256; they were made after the checkpoint's
last change (git history), so they are read as made with the current card's sha256.

2D. gmm8 with its exact denoiser (no network, no time table): the error of each sampler at σ_min against an
adaptive Dormand–Prince solve (rtol = atol = 1e-11, float64) of the same ODE, against NFE, and the fitted order
(slope of log error on log NFE). Writes benchmarks/samplers.md and samplers.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff import samplers  # noqa: E402
from minidiff.checkpoints import load_checkpoint, load_eps_model, read_card  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.data.toy import gmm8  # noqa: E402
from minidiff.ddim import ddim_sample  # noqa: E402
from minidiff.eval import fid  # noqa: E402
from minidiff.eval.classifier import MNISTClassifier, extract_features  # noqa: E402
from minidiff.sde import solve_ode  # noqa: E402
from minidiff.unet import UNet  # noqa: E402
from minidiff.utils import pick_device  # noqa: E402

# (label, DDIM steps, η); the last row is DDPM's ancestral sampler written as DDIM
SAMPLERS = [("DDIM, 50 steps, η = 0", 50, 0.0), ("DDIM, 100 steps, η = 0", 100, 0.0), ("DDIM, 200 steps, η = 0", 200, 0.0),
            ("DDIM, 20 steps, η = 1", 20, 1.0), ("DDIM, 50 steps, η = 0.5", 50, 0.5), ("DDIM, 50 steps, η = 1", 50, 1.0),
            ("DDPM, 1000 steps (σ² = β̃)", 1000, 1.0)]
NFES = [5, 10, 20, 50, 100]
KARRAS = {"euler": "Euler (σ)", "heun": "Heun (σ)", "dpmpp_2m": "DPM-Solver++(2M)", "churn": "EDM churn (Heun)",
          "dpmpp_2m_sde": "DPM-Solver++(2M) SDE"}
CHURN_NFES = [10, 20, 50]
S_CHURN = 40.0  # γ = min(S_churn / N, √2 − 1): the largest churn EDM allows at every step for N ≤ 96
REFERENCE = ("heun", 199)
SIGMA_MAX, RHO = 80.0, 7.0
THEORY = {"euler": 1, "ddim": 1, "heun": 2, "dpmpp_2m": 2}
# The stochastic DPM-Solver++(2M): its noise η and the levels' ρ and σ_max are chosen per budget on a *different*
# seed set (SELECT_OFFSET), then measured once on the table's seeds. η = 0 (the ODE solver) is in the grid, so the
# noise has to earn its place against the ODE solver on the same levels.
SDE_BUDGETS = (10, 20)
SDE_GRID = [dict(eta=eta, rho=rho, sigma_max=smax) for eta in (0.0, 0.25, 0.5, 0.75, 1.0) for rho in (4.0, 5.0, 7.0)
            for smax in (20.0, 80.0)]
SELECT_OFFSET = 100_000


def ddim_label(steps, eta):
    return next((lab for lab, s, e in SAMPLERS if s == steps and e == eta), f"DDIM, {steps} steps, η = {eta:g}")


def karras_label(method, nfe):
    return f"{KARRAS[method]}, {nfe} NFE"


def sde_label(nfe, eta, rho, sigma_max, select=False):
    return (f"{KARRAS['dpmpp_2m_sde']}, {nfe} NFE, η = {eta:g}, ρ = {rho:g}, σ_max = {sigma_max:g}"
            + (f" [selection seeds +{SELECT_OFFSET}]" if select else ""))


def nearest_budget(nfe, budgets=SDE_BUDGETS):
    """The budget whose choice an NFE uses: the nearest one in log NFE."""
    return min(budgets, key=lambda b: abs(math.log(b / nfe)))


def sde_choices(rows):
    """{budget: (η, ρ, σ_max)} with the lowest FID among the rows run on the selection seeds (never the table's)."""
    chosen = {}
    for nfe in SDE_BUDGETS:
        grid = [r for r in rows if r.get("seed_offset") == SELECT_OFFSET and r["nfe"] == nfe]
        if grid:
            best = min(grid, key=lambda r: r["fid"])
            chosen[nfe] = dict(eta=best["eta"], rho=best["rho"], sigma_max=best["sigma_max"])
    return chosen


def mnist_rows(args, device, sha):
    """The MNIST table: rows from the cache where (label, n, sha256) match, the others computed."""
    out = Path(args.out).with_suffix(".json")
    old = json.loads(out.read_text()) if out.exists() else {}
    cache = {}
    for r in old.get("rows", []):
        r = dict(r)
        r.setdefault("sha256", sha)  # rows made before the cache: after the checkpoint's last change (see docstring)
        r.setdefault("n", old.get("n"))
        cache[(r["sampler"], r["n"], r["sha256"])] = r
    clf = load_checkpoint("mnist_classifier", MNISTClassifier, device=device)
    model, s = load_eps_model("unet_mnist", UNet, device=device)
    net = model.net  # the v-network: the σ-samplers call it at real t (samplers.v_denoiser)
    D = samplers.clipped(samplers.v_denoiser(s, net), 1.0)
    sigma_min = float(samplers.sigmas_from_schedule(s)[1])
    x_train, _ = mnist_images("train")
    x_test, _ = mnist_images("test")
    ref = fid.gaussian_stats(extract_features(clf, x_test))
    floor = fid.fid_floor(clf, x_train, ref, args.n)

    def batches(draw, offset=0):
        return torch.cat([draw(min(250, args.n - i), torch.Generator().manual_seed(offset + i)).cpu()
                          for i in range(0, args.n, 250)])

    jobs = [(lab, steps, dict(kind="ddim", steps=steps, eta=eta)) for lab, steps, eta in SAMPLERS
            if not (args.skip_ddpm and steps == s.T)]
    jobs += [(ddim_label(n, 0.0), n, dict(kind="ddim", steps=n, eta=0.0)) for n in NFES if n not in (50, 100)]
    for method in ("euler", "heun", "dpmpp_2m", "churn"):
        for n in CHURN_NFES if method == "churn" else NFES:
            jobs.append((karras_label(method, n), n, dict(kind="karras", method=method, nfe=n)))
    jobs.append((karras_label(*REFERENCE) + " (fine ODE reference)", REFERENCE[1],
                 dict(kind="karras", method=REFERENCE[0], nfe=REFERENCE[1])))
    rows = []

    def run(label, spec):
        key = (label, args.n, sha)
        if key in cache and not args.recompute:
            print("cached:", label, flush=True)
            return cache[key]
        t0 = time.perf_counter()
        calls = [0]
        if spec["kind"] == "ddim":
            xs = batches(lambda b, g: ddim_sample(s, model, (b, 1, 28, 28), steps=spec["steps"], eta=spec["eta"], device=device,
                                                  generator=g, clip_denoised=1.0))
            row = dict(sampler=label, steps=spec["steps"], eta=spec["eta"], nfe=spec["steps"])
        else:
            smax, rho = spec.get("sigma_max", SIGMA_MAX), spec.get("rho", RHO)

            def draw(b, g):
                counted = samplers.CountCalls(D)
                steps = samplers.steps_for_nfe(spec["method"], spec["nfe"])
                sig = samplers.karras_sigmas(steps, sigma_min, smax, rho)
                x = smax * torch.randn((b, 1, 28, 28), generator=g).to(device)
                out = samplers.karras_sample(counted, x, sig, spec["method"], s_churn=S_CHURN, generator=g,
                                             eta=spec.get("eta", 1.0))
                calls[0] = counted.calls
                return out
            xs = batches(draw, spec.get("offset", 0))
            row = dict(sampler=label, method=spec["method"], nfe=calls[0])
            if spec["method"] == "dpmpp_2m_sde":
                row.update(eta=spec["eta"], rho=rho, sigma_max=smax, seed_offset=spec.get("offset", 0))
        d = fid.classifier_fid(clf, xs, ref)
        row.update(fid=d, ratio=d / floor, seconds=time.perf_counter() - t0, n=args.n, sha256=sha)
        print(row, flush=True)
        return row

    for label, nfe, spec in jobs:
        rows.append(run(label, spec))
    # the stochastic DPM-Solver++(2M): (η, ρ, σ_max) chosen per budget on the selection seeds, then measured
    for nfe in SDE_BUDGETS:
        rows += [run(sde_label(nfe, **g, select=True), dict(kind="karras", method="dpmpp_2m_sde", nfe=nfe,
                                                            offset=SELECT_OFFSET, **g)) for g in SDE_GRID]
    chosen = sde_choices(rows)
    for nfe in NFES:
        g = chosen[nearest_budget(nfe)]
        row = dict(run(sde_label(nfe, **g), dict(kind="karras", method="dpmpp_2m_sde", nfe=nfe, **g)))
        row["series"] = "dpmpp_2m_sde"
        rows.append(row)
    return rows, floor


def toy_section():
    """Error at σ_min against NFE for gmm8's exact denoiser, and the fitted orders."""
    torch.manual_seed(0)
    m = gmm8()
    D = samplers.mixture_denoiser(m)
    sigma_min, sigma_max = 0.002, 80.0
    z = torch.randn(512, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    ref = solve_ode(lambda x, u: x - D(x, math.exp(u)), sigma_max * z, math.log(sigma_max), math.log(sigma_min),
                    rtol=1e-11, atol=1e-11, max_steps=100_000)
    ref_s = time.perf_counter() - t0
    res = {}
    for method in ("euler", "heun", "dpmpp_2m"):
        pts = []
        for steps in (5, 10, 20, 40, 80, 160):
            counted = samplers.CountCalls(D)
            sig = samplers.karras_sigmas(steps, sigma_min, sigma_max, RHO)[:-1]  # stop at σ_min: no final jump to 0
            x = samplers.karras_sample(counted, sigma_max * z, sig, method)
            pts.append(dict(nfe=counted.calls, error=(x - ref.x).norm(dim=1).mean().item()))
        res[method] = pts
    fits = {}
    for method, pts in res.items():
        use = [p for p in pts if p["nfe"] >= 19]  # the asymptotic range (the first points are pre-asymptotic)
        lx = torch.tensor([math.log(p["nfe"]) for p in use], dtype=torch.float64)
        ly = torch.tensor([math.log(p["error"]) for p in use], dtype=torch.float64)
        slope = (((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum()).item()
        fits[method] = dict(order=-slope, theory=THEORY[method], met=abs(-slope - THEORY[method]) <= 0.3)
    return dict(points=res, fits=fits, reference_nfe=ref.nfe, reference_seconds=ref_s, n=z.shape[0],
                sigma_min=sigma_min, sigma_max=sigma_max, rho=RHO)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--skip-ddpm", action="store_true", help="leave out the 1000-step row (most of the time)")
    p.add_argument("--recompute", action="store_true", help="ignore the cached rows in samplers.json")
    p.add_argument("--skip-mnist", action="store_true", help="only the 2D section (the MNIST rows are kept as they are)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "samplers.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device()
    sha = read_card("unet_mnist")["sha256"]
    out = Path(args.out)
    t_start = time.perf_counter()
    toy = toy_section()
    print({k: round(v["order"], 3) for k, v in toy["fits"].items()}, flush=True)
    if args.skip_mnist:
        old = json.loads(out.with_suffix(".json").read_text())
        rows, floor = old["rows"], old["floor"]
    else:
        rows, floor = mnist_rows(args, device, sha)
    hw = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU {platform.machine()}, {args.threads} thread(s)"
    total = time.perf_counter() - t_start
    out.with_suffix(".json").write_text(json.dumps(dict(n=args.n, floor=floor, sha256=sha, rows=rows, toy2d=toy,
                                                        sde_choice=sde_choices(rows),
                                                        hardware=hw, seconds_this_run=total), indent=1))
    out.write_text(render(rows, floor, toy, args, hw, sha, total))
    print(f"wrote {out}")


def sde_section(rows):
    """The selection grid of the stochastic DPM-Solver++(2M), and the choice it made per budget."""
    grid = [r for r in rows if r.get("seed_offset") == SELECT_OFFSET]
    if not grid:
        return []
    cols = sorted({(r["rho"], r["sigma_max"]) for r in grid})
    md = ["", "### Choosing η, ρ and σ_max for the stochastic DPM-Solver++(2M)", "",
          "Its update (the SDE variant of DPM-Solver++ by Lu et al.: `sde-dpmsolver++` in diffusers, `dpmpp_2m_sde` "
          "in k-diffusion; here `minidiff.samplers.dpmpp_2m_sde_update`) adds fresh noise "
          f"of scale η at every step (η = 0 is the ODE solver above, η = 1 keeps DDPM's amount). η, and with it the "
          f"spacing ρ and the starting level σ_max, are chosen per budget by the lowest FID on n = {grid[0]['n']:,} "
          f"samples from *other* seeds (offset {SELECT_OFFSET:,}); only the chosen setting is then run on the table's "
          "seeds, so the table's number is not the best of many draws on the same seeds. Budgets other than "
          f"{', '.join(map(str, SDE_BUDGETS))} NFE use the choice of the nearest one (in log NFE).", ""]
    for nfe in sorted({r["nfe"] for r in grid}):
        at = {(r["eta"], r["rho"], r["sigma_max"]): r["fid"] for r in grid if r["nfe"] == nfe}
        best = min(at, key=at.get)
        md += [f"{nfe} NFE, FID on the selection seeds (best in bold):", "",
               "| η | " + " | ".join(f"ρ = {rho:g}, σ_max = {sm:g}" for rho, sm in cols) + " |",
               "| --- |" + " ---: |" * len(cols)]
        for eta in sorted({k[0] for k in at}):
            cells = []
            for rho, sm in cols:
                v = at.get((eta, rho, sm))
                cells.append("–" if v is None else (f"**{v:.2f}**" if (eta, rho, sm) == best else f"{v:.2f}"))
            md.append(f"| {eta:g} | " + " | ".join(cells) + " |")
        md.append("")
    return md


def render(rows, floor, toy, args, hw, sha, total):
    by = {r["sampler"]: r for r in rows}
    md = ["# Samplers for the lesson-05 U-Net, and lesson 10's fast samplers", "",
          f"Made by `python benchmarks/samplers.py{' --n ' + str(args.n) if args.n != 1000 else ''}"
          f"{' --skip-ddpm' if args.skip_ddpm else ''}` on {hw}, torch {torch.__version__} "
          f"({total / 60:.0f} min this run; rows whose (sampler, n, checkpoint sha256) were already in samplers.json "
          f"are reused, `--recompute` redoes them all). Model: the shipped `unet_mnist` (sha256 {sha[:12]}…, see its card).",
          "", "## MNIST: every sampler", "",
          f"The same n = {args.n:,} seeds for every row, x̂_0 clipped to [−1, 1] in every row (for the σ-samplers: "
          "D(x; σ) clamped); classifier FID against the 10 000 test digits; floor at this n (training digits against "
          f"the same reference): {floor:.2f}. σ-samplers: Karras levels σ_max = {SIGMA_MAX:g}, σ_min = σ_1 of the cosine "
          f"schedule, ρ = {RHO:g}; EDM churn with S_churn = {S_CHURN:g} (γ = √2 − 1 at every step), S_noise = 1. "
          "Network calls are counted, not assumed. "
          "The stochastic DPM-Solver++(2M) rows use their own (η, ρ, σ_max), chosen as described below.", "",
          "| sampler | network calls | FID | FID / floor | time (s) |", "| --- | ---: | ---: | ---: | ---: |"]
    md += [f"| {r['sampler']} | {r.get('nfe', r.get('steps'))} | {r['fid']:.2f} | {r['ratio']:.2f} | {r['seconds']:.0f} |"
           for r in rows if r.get("seed_offset") != SELECT_OFFSET]
    # FID against NFE
    ddpm = by.get("DDPM, 1000 steps (σ² = β̃)")
    fine = next((r for r in rows if "fine ODE reference" in r["sampler"]), None)
    md += ["", "## MNIST: FID against network calls", "",
           "| sampler | " + " | ".join(f"{n} NFE" for n in NFES) + " |", "| --- |" + " ---: |" * len(NFES)]
    series = {"DDIM, η = 0": [by.get(ddim_label(n, 0.0)) for n in NFES]}
    for method in ("euler", "heun", "dpmpp_2m", "churn"):
        series[KARRAS[method]] = [by.get(karras_label(method, n)) for n in NFES]
    sde = {r["nfe"]: r for r in rows if r.get("series") == "dpmpp_2m_sde"}
    series[KARRAS["dpmpp_2m_sde"] + " (η, ρ, σ_max chosen below)"] = [sde.get(n) for n in NFES]
    for name, rs in series.items():
        cells = [f"{r['fid']:.2f}" + (f" ({r['nfe']})" if r.get("nfe") not in (None, n) else "") if r else "–"
                 for r, n in zip(rs, NFES)]
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    md += ["", "Heun and churn use 2N − 1 calls for N steps: the number in brackets is the count used (≤ the budget)."]
    md += sde_section(rows)
    if ddpm:
        md += ["", f"References: DDPM, 1000 steps: FID {ddpm['fid']:.2f}"
               + (f"; the deterministic ODE solved finely ({fine['sampler']}): FID {fine['fid']:.2f}." if fine else ".")]
        for budget, factor in ((20, 1.2), (10, 1.5)):
            cands = [rs[NFES.index(budget)] for rs in series.values() if rs[NFES.index(budget)]]
            if cands:
                best = min(cands, key=lambda r: r["fid"])
                ok = best["fid"] <= factor * ddpm["fid"]
                md.append(f"- Target: the best sampler at {budget} NFE within {factor}× of DDPM-1000 "
                          f"(≤ {factor * ddpm['fid']:.2f}): {best['sampler']} at {best['fid']:.2f} "
                          f"({best['fid'] / ddpm['fid']:.2f}×): **{'met' if ok else 'not met'}**.")
    # 2D
    md += ["", "## 2D, exact denoiser (gmm8): error against network calls", "",
           f"{toy['n']} starting points x = σ_max z (σ_max = {toy['sigma_max']:g}, σ_min = {toy['sigma_min']:g}, "
           f"ρ = {toy['rho']:g}, float64); error = mean |x(σ_min) − x_ref(σ_min)| against an adaptive Dormand–Prince "
           f"solve of dx/dσ = (x − D(x; σ))/σ in log σ ({toy['reference_nfe']} calls). Order = −slope of log error on "
           "log NFE, fitted on NFE ≥ 19.", "",
           "| sampler | " + " | ".join(f"{n} steps" for n in (5, 10, 20, 40, 80, 160)) + " | order | theory | within ±0.3 |",
           "| --- |" + " ---: |" * 9]
    for method, pts in toy["points"].items():
        f = toy["fits"][method]
        name = KARRAS[method] + (" = DDIM's update (η = 0) on these levels" if method == "euler" else "")
        md.append(f"| {name} | " + " | ".join(f"{p['error']:.2e} ({p['nfe']})" for p in pts)
                  + f" | {f['order']:.2f} | {f['theory']} | {'met' if f['met'] else 'not met'} |")
    md += ["", "Each cell: error (network calls, counted). Heun takes two calls a step here: the levels stop at σ_min, "
           "so there is no final Euler jump to 0.",
           "", "Times: wall clock on a shared machine, indicative only. One seed set: differences under about 1 FID may be noise.", ""]
    return "\n".join(md)


if __name__ == "__main__":
    main()
