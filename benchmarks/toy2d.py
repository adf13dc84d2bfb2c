"""Toy 2D benchmark: DDPM (lesson 04) at the notebook's CPU budget and at larger ones.

    python benchmarks/toy2d.py                  # every budget, all datasets; writes benchmarks/toy2d.md
                                                # (CPU time: cpu ~5 min, large ~10 min, large-T1000 ~3 min,
                                                #  cpu-fourier and large-fourier: checkerboard only, ~1 and ~3 min)
    python benchmarks/toy2d.py --budget cpu     # one budget (results merge into the same table)
    python benchmarks/toy2d.py --datasets gmm8 --budget large
    python benchmarks/toy2d.py --table-only     # rewrite the table from toy2d_results.json

Per dataset and budget: train an `EpsMLP` with `training.train` on `losses.ddpm_loss` (L_simple, AdamW,
cosine LR, EMA 0.995),
then for each sampler draw samples and report
  * distance / floor: energy distance to fresh data over the same distance between two data
    samples (`metrics.quality`, chunks of n = 500); ≈ 1 means "as good as this test can tell";
  * a density check where the density is known: gmm8, −E log p_data(samples) − H (nats; 0 for
    perfect samples, > 0 for blurred ones); checkerboard, the share of samples on black squares;
  * ELBO − H (nats): the model's bound (lesson 03's `vlb_terms`, Gaussian decoder, σ_t² = β_t)
    on 2 000 fresh points minus the data's exact entropy (Monte Carlo for gmm8, log 8 for the
    checkerboard). A property of the model, not of the sampler. For gmm8 the same bound for the
    exact ε* (known in closed form) is listed too: the best this T and σ_t² allow.
  * training and sampling times (seconds, wall clock, one thread).
Samplers: DDPM ancestral (Algorithm 2, σ_t² = β_t), annealed Langevin and predictor–corrector from
`minidiff.langevin` (lesson 07) when that module exists, otherwise marked "not yet", and DDPM ancestral
with the other reverse variance, σ_t² = β̃_t (listed last, so that the others draw the same numbers as before).

The `cpu` budget is the training recipe of solutions/04_ddpm_2d.ipynb for gmm8 (steps, batch, learning rate;
the notebook trains it with the learner's own loop, which keeps no EMA). The `-fourier` budgets add random
Fourier features of x to the `EpsMLP` (`fourier_features`, Tancik et al. 2020): `cpu-fourier` is the notebook's
quick checkerboard model, `large-fourier` the recipe of the shipped checkpoint data/checkpoints/toy_checkerboard
(`python -m minidiff.scripts.train_toy` draws the same random numbers in the same order, so with the same seed
it trains the same weights). Results of each budget are cached in benchmarks/toy2d_results.json, so one budget
can be re-run on its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import platform
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from minidiff import elbo  # noqa: E402
from minidiff.data import toy  # noqa: E402
from minidiff.eval import metrics  # noqa: E402
from minidiff.losses import ddpm_loss  # noqa: E402
from minidiff.mlp import EpsMLP  # noqa: E402
from minidiff.sampling import ddpm_sample  # noqa: E402
from minidiff.schedules import NoiseSchedule  # noqa: E402
from minidiff.training import train  # noqa: E402

BUDGETS = {
    # The notebook's cpu tier (solutions/04_ddpm_2d.ipynb), with EMA.
    "cpu": dict(T=200, hidden=128, depth=3, steps=3_000, batch_size=256, lr=2e-3, ema_decay=0.995),
    # ~4× the training; fits in about 10 minutes for all four datasets on one unloaded core.
    "large": dict(T=200, hidden=128, depth=3, steps=12_000, batch_size=256, lr=2e-3, ema_decay=0.995),
    # The same training at DDPM's T = 1000 (β_1 = 1e-4, β_T = 0.02): at T = 200 even the exact ε* is
    # ~0.1 nats above H (the discretisation's share of the bound), so the 0.1-nat target needs more steps.
    # gmm8 only by default (5× the sampling cost); fewer samples (8 chunks of 500).
    "large-T1000": dict(T=1000, hidden=128, depth=3, steps=12_000, batch_size=256, lr=2e-3, ema_decay=0.995,
                        n_samples=4_000, n_elbo=2_000),
    # With random Fourier features of x (EpsMLP(fourier_features=FF, fourier_scale=1)): the notebook's quick
    # checkerboard model, and the shipped one (data/checkpoints/toy_checkerboard, trained by
    # `python -m minidiff.scripts.train_toy` with this recipe and seed: the same weights).
    "cpu-fourier": dict(T=200, hidden=128, depth=3, fourier_features=256, fourier_scale=1.0, steps=3_000,
                        batch_size=256, lr=2e-3, ema_decay=0.995),
    "large-fourier": dict(T=200, hidden=128, depth=3, fourier_features=256, fourier_scale=1.0, steps=24_000,
                          batch_size=256, lr=2e-3, ema_decay=0.995),
}
BUDGET_NOTES = {
    "cpu": "the notebook's gmm8 model",
    "cpu-fourier": "the notebook's quick checkerboard model",
    "large-fourier": "the shipped checkpoint data/checkpoints/toy_checkerboard "
                     "(`python -m minidiff.scripts.train_toy`, the same recipe and seed)",
}
DEFAULT_DATASETS = {"large-T1000": ["gmm8"], "cpu-fourier": ["checkerboard"], "large-fourier": ["checkerboard"]}
N_TRAIN = 20_000
N_SAMPLES = 8_000  # 16 chunks of 500 for distance / floor
N_ELBO = 4_000
CHUNK = 500
# Annealed Langevin on the VP levels (every (T/100)-th t, 100 levels). Its last step size is step_lr
# (eq. 7.4 with σ_L² = 1 − ᾱ_1 = β_1), so step_lr scales with β_1: 2 β_1, tuned on the exact ε* of gmm8.
ALD_STEPS, ALD_LR_OVER_BETA1 = 5, 2.0
PC = dict(corrector_steps=1, snr=0.1, sigma2="beta")

RESULTS = Path(__file__).with_name("toy2d_results.json")
TABLE = Path(__file__).with_name("toy2d.md")


def linear_schedule(T: int) -> NoiseSchedule:
    """DDPM's linear schedule rescaled to T steps (β_1 = 0.1/T, β_T = 20/T), as in lesson 04."""
    return NoiseSchedule.make("linear", T=T, beta_1=0.1 / T, beta_T=min(20.0 / T, 0.999))


def samplers():
    """name -> function(eps_model, schedule, n, generator) -> samples; None where not available yet."""
    out = {"DDPM ancestral": lambda m, s, n, g: ddpm_sample(s, m, (n, 2), generator=g)}
    try:
        lv = importlib.import_module("minidiff.langevin")
    except ImportError:
        lv = None
    ald = getattr(lv, "annealed_langevin_sample", None)
    pc = getattr(lv, "pc_sample", None)
    out["annealed Langevin"] = (lambda m, s, n, g: ald(s, m, (n, 2), generator=g, steps_each=ALD_STEPS,
                                                       step_lr=ALD_LR_OVER_BETA1 * s.betas[1].item())) if ald else None
    out["predictor–corrector"] = (lambda m, s, n, g: pc(s, m, (n, 2), generator=g, **PC)) if pc else None
    out["DDPM ancestral, σ_t² = β̃_t"] = lambda m, s, n, g: ddpm_sample(s, m, (n, 2), generator=g, sigma2="beta_tilde")
    return out


def exact_eps(schedule, mixture):
    def eps(x_t, t):
        abar = schedule.alphas_cumprod[t]
        return -(1 - abar).sqrt().to(x_t)[:, None] * mixture.noised_score(x_t, abar)

    return eps


def log_phi_diff(hi: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """log(Φ(hi) − Φ(lo)) for hi > lo, computed on the side of 0 where both tails stay representable."""
    flip = (hi + lo) > 0  # Φ(hi) − Φ(lo) = Φ(−lo) − Φ(−hi)
    a, b = torch.where(flip, -lo, hi), torch.where(flip, -hi, lo)
    la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return la + torch.log1p(-torch.exp(lb - la))


def checkerboard_exact_eps(schedule, board=None):
    """ε* = −√(1 − ᾱ_t) ∇ log q_t(x_t) for the checkerboard, in closed form (float64, gradient by autograd).

    x_0 uniform on a square [a, a + s]² gives each coordinate of x_t = √ᾱ x_0 + √(1 − ᾱ) ε the density
    (Φ((x − √ᾱ a)/σ) − Φ((x − √ᾱ (a + s))/σ)) / (√ᾱ s), σ = √(1 − ᾱ); q_t is the mean of the product of the two
    over the black squares. Sampling with it shows the sampler's own share of the white-square samples.
    """
    board = board or toy.density("checkerboard")
    lower = (board.black_cells.double() * board.side - board.half_width)[None]  # (1, M, 2) lower-left corners

    def eps(x_t, t):
        abar = schedule.alphas_cumprod[t].double()[:, None, None]
        c, sigma = abar.sqrt(), (1 - abar).sqrt()
        with torch.enable_grad():
            x = x_t.detach().double().requires_grad_(True)
            xx = x[:, None, :]
            log_1d = log_phi_diff((xx - c * lower) / sigma, (xx - c * (lower + board.side)) / sigma) - torch.log(c * board.side)
            log_q = torch.logsumexp(log_1d.sum(-1), dim=1) - math.log(lower.shape[1])
            (score,) = torch.autograd.grad(log_q.sum(), x)
        return (-sigma[:, :, 0] * score).to(x_t.dtype)

    return eps


def density_check(name: str, x: torch.Tensor, H: float | None):
    if name == "gmm8":
        return -toy.density(name).log_prob(x.double()).mean().item() - H
    if name == "checkerboard":
        return (toy.density(name).log_prob(x) > -math.inf).float().mean().item()
    return None


def train_model(name: str, cfg: dict, seed: int = 0):
    """Train one dataset's model with the budget `cfg`: returns (TrainResult, schedule, generator, CPU seconds).
    The random numbers come in the order of `python -m minidiff.scripts.train_toy` (same recipe, same weights)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    schedule = linear_schedule(cfg["T"])
    model = EpsMLP(dim=2, hidden=cfg["hidden"], depth=cfg["depth"], t_scale=1000 / cfg["T"],
                   fourier_features=cfg.get("fourier_features", 0), fourier_scale=cfg.get("fourier_scale", 1.0),
                   fourier_seed=seed)
    data = toy.sample(name, N_TRAIN, gen)
    cpu0 = time.process_time()
    run = train(model, partial(ddpm_loss, schedule), data, cfg["steps"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                ema_decay=cfg["ema_decay"], generator=gen, show_progress=False)
    return run, schedule, gen, time.process_time() - cpu0


def run_one(name: str, budget: str, seed: int = 0) -> dict:
    cfg = BUDGETS[budget]
    run, schedule, gen, train_cpu = train_model(name, cfg, seed)
    eps_model = run.sampling_model
    data_fn = lambda n, g: toy.sample(name, n, g)  # noqa: E731
    row = {"dataset": name, "budget": budget, "config": cfg, "train_s": run.seconds, "train_cpu_s": train_cpu,
           "final_loss": sum(run.losses[-200:]) / 200, "samplers": {}}

    H = None
    if name in ("gmm8", "checkerboard"):
        p = toy.density(name)
        H = p.entropy(400_000, gen)[0] if name == "gmm8" else p.entropy()
        n_elbo = cfg.get("n_elbo", N_ELBO)
        x_eval = toy.sample(name, n_elbo, gen)
        # ELBO − H = E[L(x) + log p(x)] removes the point-to-point spread of log p; the rest of the
        # standard error is vlb_terms' Monte Carlo noise. The same noise seed for the model and for the
        # exact ε* (common random numbers) makes their difference precise.
        log_p = p.log_prob(x_eval.double())
        vlb = elbo.vlb_terms(schedule, eps_model, x_eval, sigma2="beta", generator=torch.Generator().manual_seed(seed + 1))
        per = vlb.total + log_p
        row["entropy"] = H
        row["elbo"] = vlb.total.mean().item()
        row["elbo_gap"] = per.mean().item()
        row["elbo_gap_se"] = per.std().item() / math.sqrt(n_elbo)
        if name == "gmm8":
            best = elbo.vlb_terms(schedule, exact_eps(schedule, p), x_eval, sigma2="beta",
                                  generator=torch.Generator().manual_seed(seed + 1))
            per_best = best.total + log_p
            row["elbo_gap_exact_eps"] = per_best.mean().item()
            row["elbo_gap_exact_eps_se"] = per_best.std().item() / math.sqrt(n_elbo)
            diff = vlb.total - best.total  # same points, same noise: the network's own share, precisely
            row["elbo_model_minus_exact"] = diff.mean().item()
            row["elbo_model_minus_exact_se"] = diff.std().item() / math.sqrt(n_elbo)

    for sname, fn in samplers().items():
        if fn is None:
            row["samplers"][sname] = None
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        x = fn(eps_model, schedule, cfg.get("n_samples", N_SAMPLES), gen)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        ok = bool(torch.isfinite(x).all())
        q = metrics.quality(x, data_fn, chunk=CHUNK, generator=gen) if ok else None
        row["samplers"][sname] = {
            "ratio": q.ratio if ok else float("nan"),
            "distance": q.distance if ok else float("nan"),
            "floor": q.floor if ok else float("nan"),
            "density_check": density_check(name, x, H) if ok else None,
            "sample_s": secs,
            "sample_cpu_s": cpu,
        }
    if name == "checkerboard":
        # the same samplers with the exact ε*: what is left at this T is the network's doing
        ex = checkerboard_exact_eps(schedule)
        n = cfg.get("n_samples", N_SAMPLES)
        row["exact_eps_on_black"] = {
            sname: density_check(name, ddpm_sample(schedule, ex, (n, 2), generator=torch.Generator().manual_seed(seed + 2),
                                                   sigma2=sigma2), None)
            for sname, sigma2 in (("DDPM ancestral", "beta"), ("DDPM ancestral, σ_t² = β̃_t", "beta_tilde"))}
    print(f"{name:>12} [{budget}] trained in {train_cpu:.0f} s CPU ({run.seconds:.0f} s wall); "
          + "; ".join(f"{k}: {v['ratio']:.2f}×floor" for k, v in row["samplers"].items() if v), flush=True)
    return row


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def write_table(results: dict) -> None:
    lines = [
        "# Toy 2D benchmark (lesson 04)",
        "",
        "Written by `python benchmarks/toy2d.py` (do not edit by hand). Model: `EpsMLP` (hidden 128, depth 3, ~104k",
        "parameters; the `-fourier` budgets add random Fourier features of x, `EpsMLP(fourier_features=m, fourier_scale=1)`:",
        "[x, sin 2πxB, cos 2πxB] with B ∈ R^{2×m} drawn once from N(0, 1)), T = 200, DDPM's linear schedule rescaled",
        "(β_1 = 5e-4, β_T = 0.1; budget `large-T1000`: T = 1000, β_1 = 1e-4, β_T = 0.02, gmm8 only), `train` on `ddpm_loss`",
        f"with AdamW (lr 2e-3, cosine decay), batch 256, EMA 0.995, {N_TRAIN:,} training points. Budgets:",
        "",
        *(f"* `{b}`: {c['steps']:,} steps" + (f", {c['fourier_features']} Fourier features" if c.get("fourier_features") else "")
          + (f", T = {c['T']}" if c["T"] != 200 else "") + (f"; {BUDGET_NOTES[b]}" if b in BUDGET_NOTES else "")
          for b, c in BUDGETS.items()),
        "",
        f"* **distance / floor**: energy distance between {N_SAMPLES:,} samples (4,000 for large-T1000) and fresh data, "
        f"in chunks of n = {CHUNK},",
        "  divided by the distance between two independent data samples of that size (`metrics.quality`). ≈ 1: as good",
        "  as this test can tell at n = 500; the ratio of a perfect sampler scatters by about ±0.15.",
        "* **density check**: gmm8, −E log p_data(samples) − H in nats (0 = perfect, > 0 = blurred, < 0 = too concentrated);",
        "  checkerboard, the share of samples on black squares (1 = perfect).",
        "* **ELBO − H**: the model's bound in nats (`elbo.vlb_terms`, Gaussian decoder, σ_t² = β_t) minus the exact entropy,",
        f"  estimated as the mean of L(x) + log p_data(x) over {N_ELBO:,} fresh points (2,000 for large-T1000), ± its standard",
        "  error (mostly the Monte Carlo noise of `vlb_terms`, one x_t per point and t). A property of the trained model,",
        "  the same for every sampler. For gmm8, in brackets: the same gap for the exact ε*, and model − ε* computed with",
        "  the same points and noise (common random numbers), which is much more precise than either gap.",
        "* times: CPU seconds of the process on one thread (`torch.set_num_threads(1)`), which is what the run takes on",
        "  an idle core; the machine was shared with other jobs, so wall-clock times (in toy2d_results.json) were longer.",
        f"  Network calls per sample: DDPM T, predictor–corrector 2T, annealed Langevin 100 levels × {ALD_STEPS} steps.",
        "",
        "| dataset | budget | sampler | distance / floor | density check | ELBO − H (nats) | train (CPU s) | sample (CPU s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = [(d, b) for d in toy.DATASETS for b in BUDGETS]
    for d, b in order:
        row = results.get(f"{d}/{b}")
        if row is None:
            continue
        elbo_txt = "—"
        if "elbo_gap" in row:
            elbo_txt = f"{row['elbo_gap']:.3f} ± {row['elbo_gap_se']:.3f}"
            if "elbo_gap_exact_eps" in row:
                elbo_txt += f" (exact ε*: {row['elbo_gap_exact_eps']:.3f} ± {row['elbo_gap_exact_eps_se']:.3f}"
                if "elbo_model_minus_exact" in row:
                    elbo_txt += f"; model − ε*: {row['elbo_model_minus_exact']:.3f} ± {row['elbo_model_minus_exact_se']:.3f}"
                elbo_txt += ")"
        for sname, s in row["samplers"].items():
            if s is None:
                lines.append(f"| {d} | {b} | {sname} | not yet | not yet | {elbo_txt} | {row['train_cpu_s']:.0f} | not yet |")
                continue
            dc = s["density_check"]
            dc_txt = "—" if dc is None else (f"{dc:.1%} on black" if d == "checkerboard" else f"{dc:+.3f}")
            lines.append(f"| {d} | {b} | {sname} | {s['ratio']:.2f} | {dc_txt} | {elbo_txt} "
                         f"| {row['train_cpu_s']:.0f} | {s['sample_cpu_s']:.1f} |")
    meta = results.get("_meta", {})
    totals = []
    for b in BUDGETS:
        rows = [r for k, r in results.items() if k.endswith(f"/{b}") and isinstance(r, dict)]
        if rows:
            cpu = sum(r["train_cpu_s"] + sum(v["sample_cpu_s"] for v in r["samplers"].values() if v) for r in rows)
            totals.append(f"`{b}` {cpu / 60:.1f} min ({len(rows)} datasets)")
    lines += ["", "CPU time of training plus all three samplers: " + ", ".join(totals) + ".",
              f"Environment: {meta.get('env', '?')}.", ""]
    lines += [
        "## Targets (lesson 04)",
        "",
        "Sample distance within 1.5× of the floor, and ELBO within 0.1 nats of the entropy, on gmm8 at the larger budget",
        "(DDPM ancestral sampler). \"exact ε*\" is the gap of the perfect noise predictor (closed form for a Gaussian mixture)",
        "on the same points and noise: the share of ELBO − H that belongs to the discretisation (T, Gaussian reverse steps",
        "with σ_t² = β_t), not to the network. No network can go below it at that T.",
        "",
    ]
    checker = [(b, results[f"checkerboard/{b}"]) for b in BUDGETS if f"checkerboard/{b}" in results]
    for b in BUDGETS:
        r = results.get(f"gmm8/{b}")
        if b.startswith("cpu") or r is None or "elbo_gap" not in r:
            continue
        ratio = r["samplers"]["DDPM ancestral"]["ratio"]
        gap, se = r["elbo_gap"], r["elbo_gap_se"]
        if gap + 2 * se <= 0.1:
            verdict = "met"
        elif gap - 2 * se > 0.1:
            verdict = "not met"
        else:
            verdict = "not resolved (0.1 lies within 2 standard errors)"
        line = (f"* `{b}` (T = {r['config']['T']}): distance / floor {ratio:.2f}, target ≤ 1.5 "
                f"{'met' if ratio <= 1.5 else 'not met'}; ELBO − H = {gap:.3f} ± {se:.3f} nats, target ≤ 0.1 {verdict}; "
                f"exact ε* {r['elbo_gap_exact_eps']:.3f}")
        if "elbo_model_minus_exact" in r:
            line += f", so the network's own share is {r['elbo_model_minus_exact']:.3f} ± {r['elbo_model_minus_exact_se']:.3f} nats"
        lines.append(line + ".")
    lines += [
        "",
        "At T = 200 the discretisation alone costs about 0.1 nats, so the ELBO target needs a larger T; at T = 1000 the",
        "remaining gap is split between the network and the discretisation. Annealed Langevin was tuned (step size",
        "2 β_1, 5 steps per level) on the exact ε* at T = 200 and transfers poorly to T = 1000.",
        "",
    ]
    if checker:
        lines += ["Checkerboard: at least 95 % of the samples on black squares with the shipped recipe (`large-fourier`).",
                  "\"exact ε*\": the same sampler with the closed-form ε* of the noised checkerboard (`checkerboard_exact_eps`),",
                  "the sampler's own share of the white-square samples at this T.", ""]
        for b, r in checker:
            parts = []
            for sname in ("DDPM ancestral", "DDPM ancestral, σ_t² = β̃_t"):
                s_row = r["samplers"].get(sname)
                if not s_row:
                    continue
                dc = s_row["density_check"]
                part = f"{sname}: {dc:.1%} on black ({'met' if dc >= 0.95 else 'not met'})"
                if sname in r.get("exact_eps_on_black", {}):
                    part += f", exact ε* {r['exact_eps_on_black'][sname]:.1%}"
                parts.append(part)
            lines.append(f"* `{b}`: " + "; ".join(parts) + ".")
        lines.append("")
    TABLE.write_text("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", choices=[*BUDGETS, "all"], default="all")
    ap.add_argument("--datasets", nargs="+", default=None, choices=list(toy.DATASETS),
                    help="default: all four (gmm8 only for large-T1000, checkerboard only for the -fourier budgets)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table-only", action="store_true", help="rewrite toy2d.md from toy2d_results.json")
    args = ap.parse_args(argv)
    if args.table_only:
        write_table(json.loads(RESULTS.read_text()))
        return
    torch.set_num_threads(1)
    budgets = list(BUDGETS) if args.budget == "all" else [args.budget]
    t0 = time.time()
    for b in budgets:
        for d in args.datasets or DEFAULT_DATASETS.get(b, list(toy.DATASETS)):
            row = run_one(d, b, args.seed)
            # re-read before writing, so that runs of different budgets can share the file
            results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            results[f"{d}/{b}"] = row
            results["_meta"] = {"env": f"torch {torch.__version__}, Python {platform.python_version()}, "
                                       f"{platform.machine()}, 1 thread, seed {args.seed}"}
            RESULTS.write_text(json.dumps(results, indent=1))
            write_table(results)
    print(f"done in {time.time() - t0:.0f} s wall, {time.process_time():.0f} s CPU; wrote {TABLE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
