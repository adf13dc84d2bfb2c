"""benchmarks/applications.py end to end on a few images with shortened settings (about 15 s): every section runs,
and the markdown and JSON it writes hold every table. The real numbers come from `python benchmarks/applications.py`."""

import json
from pathlib import Path

import pytest
import torch
from helpers import load_benchmark

from minidiff import anomaly

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def test_ceiling_from_above_closed_case():
    bench = load_benchmark("applications")
    known = torch.tensor([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0], [-1.0, 0.5]])  # three blank images, one with ink
    labels = torch.tensor([3, 5, 3, 7])
    fraction, share, bound = bench.ceiling_from_above(known, labels)
    # 3/4 of the images are blank, 2/3 of those are 3s: at most 1/4 + 3/4 · 2/3 = 3/4 can be right
    assert (fraction, share) == (0.75, 2 / 3) and abs(bound - 0.75) < 1e-12
    assert bench.ceiling_from_above(known[3:], labels[3:])[2] == 1.0  # nothing blank: no bound


def test_quick_path_writes_every_table(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    bench = load_benchmark("applications")
    monkeypatch.setattr(bench, "MASKS", [("half", "half", 0.5), ("random 90 %", "random", 0.9)])
    monkeypatch.setattr(bench, "METHODS", [("replacement, 3 steps", 3, 1), ("RePaint r = 2, 3 steps", 3, 2)])
    monkeypatch.setattr(bench, "STRENGTHS", [0.2, 1.0])
    monkeypatch.setattr(bench, "SIGMAS", [0.5])
    monkeypatch.setattr(bench, "TV_WEIGHTS", [0.1, 0.3])
    monkeypatch.setattr(bench, "NLM_H", [0.3])
    monkeypatch.setattr(bench, "MULTI_TS", (600, 800))
    monkeypatch.setattr(anomaly, "CORRUPTIONS", ("invert",))
    monkeypatch.setattr(anomaly, "NON_DIGITS", ("shapes",))
    out = tmp_path / "applications.md"
    bench.main(["--quick", "--out", str(out)])
    md, res = out.read_text(), json.loads(out.with_suffix(".json").read_text())
    for heading in ("## 1. Inpainting", "## 2. SDEdit", "## 3. Denoising", "## 4. Anomaly detection"):
        assert heading in md
    assert "python benchmarks/applications.py --quick" in md
    assert len(res["inpaint"]) == 4 and len(res["sdedit"]) == 4 and len(res["denoise"]) == 1
    assert {r["test_set"] for r in res["anomaly"]} >= {"corruption: invert", "non-digit: shapes"}
    assert all(0 <= r["auroc_elbo"] <= 1 for r in res["anomaly"])
    assert all(0 <= r[k] <= 1 for r in res["anomaly"] for k in ("auroc_multi", "auroc_max") if r[k] is not None)
    assert "multi-t reconstruction (t = 600, 800)" in md
    # one visible-pixel reader per fixed mask (the random mask has none), better than chance even when briefly trained
    assert [r["mask"] for r in res["visible_reader"]] == ["half"] and res["visible_reader"][0]["accuracy"] > 0.3
    assert res["anomaly"][0]["auroc_elbo"] == 1.0  # an inverted digit is never mistaken for a digit
