"""The GPU tier (benchmarks/gpu_tier.py) and the CPU speed benchmark (benchmarks/throughput.py) run
by hand on machines the suite never sees; these tests run the same code at a tiny size on the CPU so
that neither can rot. They check what the scripts compute, not how fast.

torch.compile with inductor needs a C++ build of every kernel: minutes on 2 CPU cores for the U-Net.
So the gpu-tier test traces the U-Net through torch.compile with the `aot_eager` backend (Dynamo and
AOTAutograd, the parts that break on a model change, without the C++ build), and inductor itself is
tested on a tiny network.
"""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers import load_benchmark

from minidiff.training import train

ROOT = Path(__file__).resolve().parents[1]


def table_rows(md: str, header_start: str) -> list[list[str]]:
    """The cells of each row of the markdown table whose header line starts with `header_start`."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_gpu_tier_tiny_on_cpu(tmp_path, monkeypatch):
    gpu_tier = load_benchmark("gpu_tier")
    compiled = []
    real_compile = torch.compile

    def aot_eager_compile(model, **kw):  # the library's train(compile=True) calls torch.compile(model)
        compiled.append(model)
        return real_compile(model, backend="aot_eager", **kw)

    monkeypatch.setattr(torch, "compile", aot_eager_compile)
    out = tmp_path / "gpu.md"
    steps, every, n_eval, n_final = 24, 8, 40, 60
    gpu_tier.main(["--device", "cpu", "--steps", str(steps), "--batch-size", "16", "--channels", "8", "16", "32",
                   "--lr", "3e-3", "--warmup", "2", "--ema-decay", "0.9",
                   "--eval-every", str(every), "--eval-n", str(n_eval), "--final-n", str(n_final), "--sample-steps", "2",
                   "--sample-batch", "32", "--ref-n", "300", "--out", str(out)])
    assert len(compiled) == 1, "bf16 + compile is the gpu tier: train(compile=True) must call torch.compile once"
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["args"]["amp"] and record["args"]["compile"]
    losses = record["losses"]
    assert len(losses) == steps and all(math.isfinite(v) for v in losses)
    # v-prediction with a zero-initialised output layer starts at E‖v‖² = 1 and must fall from there
    assert sum(losses[-8:]) / 8 < 0.9 * sum(losses[:4]) / 4, losses
    assert [e["step"] for e in record["evals"]] == [8, 16, 24]
    assert all(e["n"] == n_eval for e in record["evals"]) and record["final"]["n"] == n_final
    train_minutes = [e["train_s"] for e in record["evals"]]
    assert train_minutes == sorted(train_minutes) and train_minutes[-1] <= record["training_seconds"] + 1e-9
    assert sum(record["final"]["histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert all(f > 0 for f in record["floors"].values())

    md = out.read_text()
    during = table_rows(md, "| step | images seen |")
    assert [r[0] for r in during] == ["8", "16", "24"] and during[-1][1] == f"{steps * 16:,}"
    for r in during:  # FID / floor column = FID / the floor at n_eval
        assert float(r[4]) == pytest.approx(float(r[3]) / record["floors"][str(n_eval)], rel=0.01, abs=0.01)
    levels = table_rows(md, "| FID / floor ≤ |")
    assert [r[0] for r in levels] == ["8", "4", "3", "2", "1.5"]
    final = table_rows(md, "| n | FID | floor at n |")
    assert len(final) == 1 and final[0][0] == f"{n_final}"
    assert "Not judged: this run was on `cpu`" in md


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's inductor backend needs a C++ compiler on the CPU")
def test_inductor_compiles_a_bf16_training_step_on_cpu():
    """train(compile=True, amp=True), the gpu tier's switches, on a tiny network with the default backend:
    the same losses as eager bf16 (same seed, same batches) up to bf16 rounding."""

    def run(compile):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(4, 1, 3, padding=1))
        x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        res = train(net, lambda m, b, g: (m(b) - b).pow(2).mean(), x, 4, batch_size=8, lr=1e-2, seed=0,
                    amp=True, compile=compile, show_progress=False)
        return res.losses

    eager, compiled = run(False), run(True)
    assert all(math.isfinite(v) for v in compiled)
    assert compiled == pytest.approx(eager, rel=2e-2)


def test_throughput_quick(tmp_path):
    throughput = load_benchmark("throughput")
    out = tmp_path / "throughput.md"
    # --compile-timeout 1: the compile row's child process cannot finish, so the row must say so
    throughput.main(["--quick", "--threads", "1", "--compile-timeout", "1", "--out", str(out)])
    md = out.read_text()
    record = json.loads(out.with_suffix(".json").read_text())

    mm = table_rows(md, "| dtype | threads |")
    assert [(r[0], r[1]) for r in mm] == [("float32", "1"), ("bfloat16", "1")]
    assert all(float(r[3]) > 0 for r in mm)

    rows = table_rows(md, "| path | threads | batch | img/s |")
    names = [r[0] for r in rows]
    assert "eager, fp32, NCHW" in names and "**eager, fp32, channels-last (library default)**" in names
    assert {"eager, bf16 autocast, NCHW", "eager, bf16 autocast, channels-last"} <= set(names)
    assert {r[2] for r in rows} == {"4", "8", "16"}
    comp = next(r for r in rows if r[0].startswith("torch.compile"))
    assert comp[3].startswith("failed: no result within 1 s")
    peak = record["matmul"][0]["gflops"]
    for r, rec in zip(rows, record["training"]):
        if "not_measured" in rec:
            continue
        assert float(r[3]) == pytest.approx(rec["img_per_s"], abs=0.06)
        gflops = record["flops_per_image"]["train"] * rec["img_per_s"] / 1e9
        assert float(r[6]) == pytest.approx(gflops, abs=0.06) and r[7] == f"{gflops / peak:.0%}"
        assert rec["loss_finite"]
        if r[0] == "eager, fp32, NCHW":
            assert r[8] == "1.00×"
    # FLOPs of one image: forward + backward of the training step is 2-4 forward passes
    ratio = record["flops_per_image"]["train"] / record["flops_per_image"]["forward"]
    assert 2.0 < ratio < 4.0

    sampling = table_rows(md, "| path | threads | batch | evaluations × images / s |")
    assert [r[0] for r in sampling] == ["eager, fp32, NCHW", "eager, fp32, channels-last", "eager, bf16 autocast, channels-last"]
    assert sampling[0][7] == "1.00×" and all(r["finite"] for r in record["sampling"])
    assert "The measurement supports the default" in md or "The measurement does not support the default" in md
