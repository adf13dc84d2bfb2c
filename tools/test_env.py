"""The environment under which solution outputs are stored and tested.

Both `tools/execute.py` (which stores outputs) and `conftest.py` (which runs nbval)
apply it, so the two always agree: progress bars off, the `cpu` tier, one thread,
and MNIST read from ../shared/data/mnist when that folder exists.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_env() -> dict:
    env = {
        "MINIDIFF_NO_PROGRESS": "1",
        "MINIDIFF_TIER": os.environ.get("MINIDIFF_TIER", "cpu"),
        "MINIDIFF_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    shared = ROOT.parent / "shared" / "data" / "mnist"
    if "MINIDIFF_MNIST_DIR" not in os.environ and shared.is_dir():
        env["MINIDIFF_MNIST_DIR"] = str(shared)
    return env


def apply() -> None:
    os.environ.update(test_env())
