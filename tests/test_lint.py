"""The package, tests, benchmarks and tools pass ruff (pyflakes, pycodestyle, import order).

The rules and the files are in pyproject.toml ([tool.ruff]); `ruff check --fix` repairs most findings.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    # ruff is pinned in requirements.txt; without it this fails with "No module named ruff"
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
