"""How long each solution notebook takes to run, end to end, on this machine and at its tier.

    python benchmarks/lesson_times.py                          # every lesson; writes lesson_times_<device>.md + .json
    python benchmarks/lesson_times.py solutions/05_unet_mnist.ipynb --tier cpu
    python benchmarks/lesson_times.py --max-seconds 300           # stop starting new notebooks after 300 s
    python benchmarks/lesson_times.py solutions/08_*.ipynb --append   # add rows to the table already written

Each notebook runs in a fresh kernel through the same client as `tools/execute.py` (nothing is
written back), with the progress bars off. The tier is the one a learner gets: `gpu` when
`minidiff.utils.pick_device()` finds CUDA, else `cpu` (--tier overrides it). The kernel may use
every core (MINIDIFF_THREADS is not fixed, unlike the stored outputs, which use one thread).
The wall time includes starting the kernel and importing torch. A notebook that raises or stalls
gets a row that says so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import nbformat  # noqa: E402
import torch  # noqa: E402
from execute import CellStalled, StallSafeClient, _first_line  # noqa: E402

from minidiff.utils import pick_device  # noqa: E402


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"CPU only ({platform.machine()}, {os.cpu_count()} cores)"


def run_notebook(path: Path, cell_timeout: int) -> dict:
    nb = nbformat.read(path, as_version=4)
    client = StallSafeClient(nb, kernel_name="python3", timeout=cell_timeout,
                             resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    try:
        client.execute()
        status = "ok"
    except CellStalled as e:
        status = f"stalled: {e}"
    except Exception as e:  # a cell raised: report it and where, go on with the next notebook
        where = next((f"cell {i} ({_first_line(c)}): " for i, c in enumerate(nb.cells)
                      if any(o.get("output_type") == "error" for o in c.get("outputs", []))), "")
        last = str(e).strip().splitlines()[-1][:120] if str(e).strip() else type(e).__name__
        status = f"error: {where}{last}"
    return {"lesson": path.stem, "seconds": round(time.perf_counter() - t0, 1), "status": status}


def write_report(res: dict, out: Path) -> None:
    lines = [f"# Lesson run times on {res['device']}", "",
             "Made by " + " and ".join(f"`{c}`" for c in res["commands"]) + f" on {res['date']}: {res['machine']}, torch {res['torch']}, "
             f"tier `{res['tier']}`. Wall time of each solution notebook, end to end, in a fresh kernel "
             "(kernel start and imports included).", "",
             "| lesson | seconds | status |", "| --- | ---: | --- |"]
    lines += [f"| {r['lesson']} | {r['seconds']:.1f} | {r['status']} |" for r in res["rows"]]
    if res["skipped"]:
        lines += ["", "Not run (time limit reached): " + ", ".join(res["skipped"]) + "."]
    if res.get("notes"):  # what a reader of the table should know, written into the JSON by hand
        lines += ["", "Notes:", ""] + [f"* {n}" for n in res["notes"]]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Wall time of each solution notebook on this machine.")
    p.add_argument("notebooks", nargs="*", help="default: every solutions/NN_*.ipynb")
    p.add_argument("--tier", choices=("tiny", "cpu", "gpu"), default=None, help="default: gpu with CUDA, else cpu")
    p.add_argument("--cell-timeout", type=int, default=300)
    p.add_argument("--max-seconds", type=float, default=None, help="seconds after which no new notebook is started")
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in the JSON beside --out (same device and tier), replacing re-run lessons")
    p.add_argument("--out", default=None, help="default: benchmarks/lesson_times_<device>.md")
    args = p.parse_args(argv)

    device = pick_device().type
    tier = args.tier or ("gpu" if device == "cuda" else "cpu")
    os.environ.update({"MINIDIFF_NO_PROGRESS": "1", "MINIDIFF_TIER": tier, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    paths = [Path(n).resolve() for n in args.notebooks] or sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    out = Path(args.out) if args.out else ROOT / "benchmarks" / f"lesson_times_{device}.md"
    res = {"command": "python benchmarks/lesson_times.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": str(datetime.date.today()), "device": device, "machine": machine(), "torch": torch.__version__,
           "tier": tier, "rows": [], "skipped": []}
    res["command"] = res["command"].strip()
    res["commands"] = [res["command"]]
    old = out.with_suffix(".json")
    if args.append and old.exists():
        prev = json.loads(old.read_text())
        if (prev["device"], prev["tier"]) != (device, tier):
            raise SystemExit(f"{old} holds {prev['device']}/{prev['tier']} times, not {device}/{tier}: use another --out")
        rerun = {p.stem for p in paths}
        res["rows"] = [r for r in prev["rows"] if r["lesson"] not in rerun]
        res["commands"] = prev.get("commands", [prev["command"]]) + res["commands"]
        res["skipped"] = [s for s in prev["skipped"] if s not in rerun]
    t_all = time.perf_counter()
    for path in paths:
        if args.max_seconds is not None and time.perf_counter() - t_all > args.max_seconds:
            res["skipped"].append(path.stem)
            continue
        row = run_notebook(path, args.cell_timeout)
        print(f"{row['lesson']}: {row['seconds']:.1f} s, {row['status']}", flush=True)
        res["rows"].append(row)
        res["rows"].sort(key=lambda r: r["lesson"])
        res["skipped"] = [s for s in res["skipped"] if s not in {r["lesson"] for r in res["rows"]}]
        write_report(res, out)  # after every notebook, so a run cut short keeps what it measured
    write_report(res, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
