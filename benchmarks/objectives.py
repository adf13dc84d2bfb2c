"""One page for the training objectives of lessons 11 and 12: VDM's continuous-time ELBO and flow
matching. Writes benchmarks/objectives.md from its two parts:

    python benchmarks/objectives.py              # measure both parts (about 15 minutes on one CPU thread)
    python benchmarks/objectives.py --only vdm   # measure one part; the other is rendered from its JSON
    python benchmarks/objectives.py --from-json  # measure nothing: render both parts from their JSONs
    python benchmarks/objectives.py --quick      # tiny sizes, printed only: checks that it runs

The parts are benchmarks/objectives_vdm.py (lesson 11) and benchmarks/objectives_flow.py (lesson 12).
Each keeps its results in its own JSON (objectives_vdm.json, objectives_flow.json), written whenever
it is measured at full size, here or by running the part alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("vdm", "flow")


def part(name: str):
    path = ROOT / "benchmarks" / f"objectives_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_objectives_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="VDM and flow matching, measured (lessons 11 and 12).")
    p.add_argument("--quick", action="store_true", help="tiny sizes, printed only (numbers mean nothing)")
    p.add_argument("--only", choices=PARTS, default=None, help="measure this part; render the other from its JSON")
    p.add_argument("--from-json", action="store_true", help="measure nothing; render both parts from their JSONs")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "objectives.md"))
    args = p.parse_args(argv)

    sections = []
    for name in PARTS:
        module, saved = part(name), ROOT / "benchmarks" / f"objectives_{name}.json"
        if args.from_json or (args.only is not None and name != args.only):
            sections.append(module.markdown(json.loads(saved.read_text())))
            continue
        text, results = module.section(quick=args.quick)
        if not args.quick:
            saved.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        sections.append(text)
    page = "\n".join(["# Training objectives: VDM and flow matching (lessons 11 and 12)", "",
                      "Made by `python benchmarks/objectives.py` from its two parts; each section names the script "
                      "that measures it alone.", ""] + [s.rstrip() + "\n" for s in sections])
    if args.quick:
        print(page)
    else:
        Path(args.out).write_text(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
