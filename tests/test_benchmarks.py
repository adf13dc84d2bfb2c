"""Every benchmark script still imports against the current library (they are run by hand, not by
the suite, so a renamed function would otherwise go unnoticed until the next measurement)."""

from pathlib import Path

import pytest
from helpers import load_benchmark

from minidiff.checkpoints import save_checkpoint
from minidiff.unet import UNet

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


@pytest.mark.parametrize("init", [None, {"name": "base", "sha256": "0" * 64, "images_seen": 1000}])
def test_guidance_targets_are_judged_and_describe_how_the_checkpoint_was_trained(tmp_path, init):
    """benchmarks/guidance.py's target lines: met / not met from the sweep, and the ∅ budget of a model trained
    from scratch or fine-tuned from an unconditional one (train_unet --init)."""
    guidance = load_benchmark("guidance")
    tr = {"steps": 10, "batch_size": 4, "images_seen": 40, "p_uncond": 0.5, "init": init}
    save_checkpoint(UNet(channels=(8, 16), num_classes=10, heads=2), tmp_path / "cond", card={"training": tr})
    save_checkpoint(UNet(channels=(8, 16), heads=2), tmp_path / "base", card={"training": {"images_seen": 1000}})
    r = {"config": {"checkpoint": str(tmp_path / "cond")},
         "unconditional": {"checkpoint": str(tmp_path / "base"), "fid": 30.0},
         "sweep": [{"w": 0.0, "accuracy": 0.1, "fid": 31.0}, {"w": 3.0, "accuracy": 0.996, "fid": 35.0}]}
    text = "\n".join(guidance.targets(r))
    assert "w = 3 ≥ 99.5 %: **met** (99.6%" in text
    assert "unconditional model: **not met** (31.0 vs 30.0)" in text
    if init:
        assert "started from `base` (1,000 images" in text and "about 20 more" in text
    else:
        assert "about 20, against 1,000 for the unconditional model" in text
