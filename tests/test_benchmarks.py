"""Every benchmark script still imports against the current library (they are run by hand, not by
the suite, so a renamed function would otherwise go unnoticed until the next measurement)."""

from pathlib import Path

import pytest
from helpers import load_benchmark

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_imports(path):
    module = load_benchmark(path.stem)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"


def test_there_are_benchmarks():
    assert {p.stem for p in BENCHMARKS} >= {"mnist", "guidance", "toy2d", "recipes"}


def test_objectives_page_renders_both_parts_from_their_json(tmp_path):
    """benchmarks/objectives.py --from-json rebuilds the page of lessons 11-12 from the committed results."""
    module = load_benchmark("objectives")
    out = tmp_path / "objectives.md"
    assert module.main(["--from-json", "--out", str(out)]) == 0
    page = out.read_text()
    assert "## VDM" in page and "## Flow matching" in page
    assert "| flow matching |" in page and "L_T − L_∞, γ linear" in page
