"""Lesson 04's sharper toy model: EpsMLP's optional random Fourier features, its `config` for checkpoints,
the training script `minidiff.scripts.train_toy`, and the shipped checkerboard checkpoint."""

import json
import math

import pytest
import torch
from helpers import load_benchmark

from minidiff.checkpoints import checkpoint_paths, load_checkpoint, read_card, save_checkpoint
from minidiff.data import toy
from minidiff.ema import EMA
from minidiff.mlp import EpsMLP
from minidiff.paths import sha256_file
from minidiff.sampling import ddpm_sample
from minidiff.schedules import NoiseSchedule
from minidiff.scripts import train_toy


def test_default_mlp_has_no_fourier_features():
    m = EpsMLP(hidden=16)
    assert "fourier_B" not in m.state_dict()
    x = torch.randn(7, 2)
    assert torch.equal(m.features(x), x)
    assert m.inp.in_features == 2
    assert m.config == dict(dim=2, hidden=16, depth=3, emb_dim=32, t_scale=1.0,
                            fourier_features=0, fourier_scale=1.0, fourier_seed=0)


def test_fourier_features_are_the_formula():
    m = EpsMLP(hidden=16, fourier_features=5, fourier_scale=2.0, fourier_seed=3)
    B = m.fourier_B
    assert B.shape == (2, 5) and m.inp.in_features == 2 + 2 * 5
    x = torch.randn(9, 2, dtype=torch.float64)
    f = m.features(x)
    angles = 2 * math.pi * x @ B.double()
    assert f.dtype == torch.float64 and f.shape == (9, 12)
    assert torch.equal(f[:, :2], x)
    assert torch.allclose(f[:, 2:7], torch.sin(angles)) and torch.allclose(f[:, 7:], torch.cos(angles))
    assert torch.allclose(f[:, 2:7] ** 2 + f[:, 7:] ** 2, torch.ones(9, 5, dtype=torch.float64))
    # the frequencies are N(0, s²): with many of them their spread is close to s
    wide = EpsMLP(hidden=8, fourier_features=4000, fourier_scale=2.0)
    assert abs(wide.fourier_B.std().item() - 2.0) < 0.05


def test_frequencies_depend_on_fourier_seed_only():
    torch.manual_seed(0)
    a = EpsMLP(hidden=8, fourier_features=6, fourier_seed=1)
    torch.manual_seed(99)
    b = EpsMLP(hidden=8, fourier_features=6, fourier_seed=1)
    c = EpsMLP(hidden=8, fourier_features=6, fourier_seed=2)
    assert torch.equal(a.fourier_B, b.fourier_B)
    assert not torch.equal(a.fourier_B, c.fourier_B)


def test_bad_fourier_arguments():
    with pytest.raises(ValueError, match="fourier_features"):
        EpsMLP(fourier_features=-1)
    with pytest.raises(ValueError, match="fourier_features"):
        EpsMLP(fourier_features=2.5)
    with pytest.raises(ValueError, match="fourier_scale"):
        EpsMLP(fourier_features=4, fourier_scale=0.0)


def test_fourier_model_trains_and_the_ema_keeps_its_frequencies():
    torch.manual_seed(0)
    m = EpsMLP(hidden=16, fourier_features=4)
    torch.nn.init.normal_(m.out.weight)  # the output layer starts at zero on purpose, which stops the gradient
    ema = EMA(m, 0.9)
    x0 = torch.randn(32, 2)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    loss = (m(x0, torch.full((32,), 5)) - x0).pow(2).mean()
    loss.backward()
    assert m.inp.weight.grad.abs().sum() > 0  # gradients reach the layer that reads the features
    assert m.fourier_B.grad is None and not m.fourier_B.requires_grad  # B is fixed, not learned
    opt.step()
    ema.update(m)
    assert torch.equal(ema.model.fourier_B, m.fourier_B)


def test_checkpoint_round_trip_with_fourier_features(tmp_path):
    torch.manual_seed(0)
    m = EpsMLP(hidden=16, depth=2, t_scale=5.0, fourier_features=4, fourier_scale=0.5, fourier_seed=7)
    torch.nn.init.normal_(m.out.weight)  # a non-zero output
    save_checkpoint(m, tmp_path / "toy", card={"command": "x"})
    loaded = load_checkpoint(tmp_path / "toy", EpsMLP)
    assert loaded.config == m.config
    x, t = torch.randn(6, 2), torch.randint(1, 200, (6,))
    assert torch.equal(loaded(x, t), m(x, t))


def test_train_toy_script_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "toy_cb"
    argv = ["--dataset", "checkerboard", "--steps", "30", "--hidden", "16", "--fourier-features", "4", "--T", "20",
            "--n-train", "500", "--n-eval", "500", "--out", str(out)]
    assert train_toy.main(argv) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_file(out.with_suffix(".pt"))
    assert card["command"] == "python -m minidiff.scripts.train_toy " + " ".join(argv)
    assert card["schedule"] == {"name": "linear", "T": 20, "beta_1": 0.1 / 20, "beta_T": 0.999}
    assert card["training"]["steps"] == 30 and card["config"]["fourier_features"] == 4
    for row in card["metrics"].values():
        assert row["n"] == 500 and 0.0 <= row["on_black"] <= 1.0 and row["distance_over_floor"] > 0
    model = load_checkpoint(out, EpsMLP)
    assert model.config == card["config"]


def test_benchmark_budget_trains_the_shipped_recipe(tmp_path):
    """benchmarks/toy2d.py's `large-fourier` budget and the training script draw the same random numbers in the
    same order, so the benchmark measures the shipped checkpoint's weights (checked here on a short run)."""
    toy2d = load_benchmark("toy2d")
    cfg = dict(toy2d.BUDGETS["large-fourier"], steps=20)
    run, *_ = toy2d.train_model("checkerboard", cfg, seed=0)
    out = tmp_path / "toy"
    train_toy.main(["--dataset", "checkerboard", "--steps", "20", "--fourier-features", str(cfg["fourier_features"]),
                    "--fourier-scale", str(cfg["fourier_scale"]), "--hidden", str(cfg["hidden"]), "--depth", str(cfg["depth"]),
                    "--T", str(cfg["T"]), "--batch-size", str(cfg["batch_size"]), "--lr", str(cfg["lr"]),
                    "--ema-decay", str(cfg["ema_decay"]), "--n-train", str(toy2d.N_TRAIN), "--n-eval", "0", "--out", str(out)])
    shipped_recipe = load_checkpoint(out, EpsMLP).state_dict()
    for key, value in run.sampling_model.state_dict().items():
        assert torch.equal(shipped_recipe[key], value), key


def test_shipped_checkerboard_model():
    name = "toy_checkerboard"
    pt, _ = checkpoint_paths(name)
    if not pt.exists():
        pytest.skip(f"{pt} not shipped")
    card = read_card(name)
    for key in ("sha256", "command", "hardware", "budget", "metrics", "schedule"):
        assert key in card, key
    assert card["command"].startswith("python -m minidiff.scripts.train_toy "), card["command"]
    model = load_checkpoint(name, EpsMLP)
    spec = card["schedule"]
    schedule = NoiseSchedule.make(spec["name"], spec["T"], beta_1=spec["beta_1"], beta_T=spec["beta_T"])
    x = ddpm_sample(schedule, model, (2000, 2), generator=torch.Generator().manual_seed(0), sigma2="beta_tilde")
    on_black = (toy.density("checkerboard").log_prob(x) > -math.inf).float().mean().item()
    assert on_black > 0.9, on_black  # the card records ≥ 95 % at n = 8000; 2000 samples scatter by ±0.5 %
