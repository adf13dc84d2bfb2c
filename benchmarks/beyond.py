"""One page for lessons 16 and 17 (diffusion beyond images): writes benchmarks/beyond.md from its two parts.

    python benchmarks/beyond.py                 # render the page from the parts' markdown (measures nothing)
    python benchmarks/beyond.py --measure       # run both parts first (about 20 minutes on one CPU thread)

The parts measure and write their own markdown and JSON:
benchmarks/beyond_sound_molecules.py (lesson 16) and benchmarks/beyond_video.py (lesson 17).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("beyond_sound_molecules", "beyond_video")


def page(parts: list[str]) -> str:
    head = ["# Diffusion beyond images: sound, molecules and video (lessons 16 and 17)", "",
            "Made by `python benchmarks/beyond.py` from its two parts; each section names the script that measures it.", ""]
    return "\n".join(head + [p.rstrip() + "\n" for p in parts])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Sound, molecules and video, measured (lessons 16 and 17).")
    p.add_argument("--measure", action="store_true", help="run both parts (with --threads 1) before rendering")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "beyond.md"))
    args = p.parse_args(argv)
    for name in PARTS:
        if args.measure:
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--threads", "1"], check=True)
    texts = [(ROOT / "benchmarks" / f"{name}.md").read_text() for name in PARTS]
    # each part's page opens with its own title; keep its sections (from the first "## " line on)
    sections = [t[t.index("\n## ") + 1:] if not t.startswith("## ") else t for t in texts]
    Path(args.out).write_text(page(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
