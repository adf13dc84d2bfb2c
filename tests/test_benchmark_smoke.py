"""The benchmarks of lessons 14-19 run end to end in their --quick mode (a few images, few steps) and write nothing
into benchmarks/: the path a teacher takes before a real measurement works with the current library and checkpoints.

test_benchmarks.py only imports every script; these run them. Slow (about two minutes together on a busy 2-core
machine), so they run only with MINIDIFF_SLOW=1:

    MINIDIFF_SLOW=1 python -m pytest tests/test_benchmark_smoke.py
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 600  # per script; each took under a minute

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MINIDIFF_SLOW") != "1", reason="slow: set MINIDIFF_SLOW=1 to run"),
]

QUICK = {  # script: arguments (text.py writes its quick tables to --out; the others write nothing in --quick)
    "text.py": ["--quick", "--out", "{tmp}"],
    "latent.py": ["--quick"],
    "data_sr.py": ["--quick"],
    "beyond_video.py": ["--quick"],
    "beyond_sound_molecules.py": ["--quick"],
}


def committed_results() -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (ROOT / "benchmarks").iterdir() if p.suffix in (".md", ".json")}


@pytest.mark.parametrize("script", sorted(QUICK))
def test_quick_run(script, tmp_path):
    before = committed_results()
    args = [a.format(tmp=tmp_path) for a in QUICK[script]]
    env = dict(os.environ, MINIDIFF_NO_PROGRESS="1")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=LIMIT_S)
    assert run.returncode == 0, f"{script} {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "|" in run.stdout or any(tmp_path.iterdir()), f"{script} printed no table and wrote nothing to {tmp_path}"
    assert committed_results() == before, f"{script} --quick changed a committed result in benchmarks/"
