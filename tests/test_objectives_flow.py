"""benchmarks/objectives_flow.py: the --quick path runs end to end and its markdown has the section's tables
(lesson 12; tiny budgets, about 10-20 s on one thread)."""

from pathlib import Path

import pytest
from helpers import load_benchmark

from minidiff.data.mnist import MNISTError, mnist_images

ROOT = Path(__file__).resolve().parents[1]


def test_quick_section():
    try:
        mnist_images("test")
    except MNISTError:
        pytest.skip("the MNIST files are needed for the MNIST half (set MINIDIFF_MNIST_DIR)")
    md, r = load_benchmark("objectives_flow").section(quick=True)
    assert md.startswith("## Flow matching")
    assert "| after one reflow |" in md and "| Euler, 2 steps |" in md
    assert set(r["toy2d"]["distance_over_floor"]) == {"flow matching", "after one reflow", "exact v*"}
    assert r["mnist"]["rows"][0]["fid"] > 0
