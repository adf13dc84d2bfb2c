"""benchmarks/objectives_flow.py: the --quick path runs end to end and its markdown has the section's tables
(lesson 12; tiny budgets, about 10-20 s on one thread)."""

import importlib.util
from pathlib import Path

import pytest

from minidiff.data.mnist import MNISTError, mnist_images

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("objectives_flow", ROOT / "benchmarks" / "objectives_flow.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_quick_section():
    try:
        mnist_images("test")
    except MNISTError:
        pytest.skip("the MNIST files are needed for the MNIST half (set MINIDIFF_MNIST_DIR)")
    md, r = _module().section(quick=True)
    assert md.startswith("## Flow matching")
    assert "| after one reflow |" in md and "| Euler, 2 steps |" in md
    assert set(r["toy2d"]["distance_over_floor"]) == {"flow matching", "after one reflow", "exact v*"}
    assert r["mnist"]["rows"][0]["fid"] > 0
