"""minidiff.checkpoints: round trip, sha256 verification, clear errors; the shipped checkpoints load."""

import json
from pathlib import Path

import pytest
import torch

from minidiff.checkpoints import CheckpointError, checkpoint_paths, load_checkpoint, read_card, save_checkpoint, update_card
from minidiff.eval.classifier import MNISTClassifier, load_classifier
from minidiff.paths import sha256_file
from minidiff.unet import UNet

torch.set_num_threads(1)


def small(**kw):
    torch.manual_seed(0)
    m = UNet(channels=(8, 16), **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def test_round_trip_rebuilds_from_config(tmp_path):
    m = small(num_classes=10)
    card = save_checkpoint(m, tmp_path / "m", card={"command": "x"})
    assert card["sha256"] == sha256_file(tmp_path / "m.pt") and card["class"] == "UNet"
    loaded = load_checkpoint(tmp_path / "m", UNet)
    assert loaded.num_classes == 10 and not loaded.training
    for (k, a), b in zip(m.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert json.loads((tmp_path / "m.json").read_text())["command"] == "x"


def test_fp16_storage_loads_as_float32(tmp_path):
    m = small()
    save_checkpoint(m, tmp_path / "h", dtype=torch.float16)
    loaded = load_checkpoint(tmp_path / "h.pt", UNet)
    w = loaded.conv_in.weight
    assert w.dtype == torch.float32
    assert torch.allclose(w, m.conv_in.weight, atol=1e-3) and not torch.equal(w, m.conv_in.weight)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing", UNet)
    m = small()
    save_checkpoint(m, tmp_path / "m")
    (tmp_path / "m.json").unlink()
    with pytest.raises(CheckpointError, match="missing card"):
        load_checkpoint(tmp_path / "m", UNet)


def test_hash_mismatch(tmp_path):
    save_checkpoint(small(), tmp_path / "m")
    data = bytearray((tmp_path / "m.pt").read_bytes())
    data[-50] ^= 0xFF
    (tmp_path / "m.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(tmp_path / "m", UNet)


def test_architecture_mismatch_lists_keys(tmp_path):
    save_checkpoint(small(), tmp_path / "m")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "m", UNet(channels=(8, 16), num_classes=10))
    assert "missing keys: class_emb.weight" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "m", UNet(channels=(8, 16, 16)))
    msg = str(e.value)
    assert "architecture mismatch" in msg and "missing keys: down.1.downsample" in msg and "26 in all" in msg
    with pytest.raises(CheckpointError, match=r"shape mismatches: conv_in.bias: checkpoint \(8,\) vs model \(4,\)"):
        load_checkpoint(tmp_path / "m", UNet(channels=(4, 16)))


def test_wrong_class_is_refused(tmp_path):
    save_checkpoint(small(), tmp_path / "m")
    with pytest.raises(CheckpointError, match="holds a UNet, not a MNISTClassifier"):
        load_checkpoint(tmp_path / "m", MNISTClassifier)


def test_weights_only_refuses_code(tmp_path):
    """A pickle that would run code is rejected by weights_only=True, even with a matching hash."""
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "minidiff-checkpoint-1", "x": Evil()}, path)
    (tmp_path / "evil.json").write_text(json.dumps({"sha256": sha256_file(path)}))
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_checkpoint(tmp_path / "evil", UNet)


def test_update_card_keeps_hash(tmp_path):
    save_checkpoint(small(), tmp_path / "m", card={"metrics": {"a": 1}})
    update_card(tmp_path / "m", metrics={"b": 2})
    card = read_card(tmp_path / "m")
    assert card["metrics"] == {"a": 1, "b": 2}
    load_checkpoint(tmp_path / "m", UNet)  # still verifies


@pytest.mark.parametrize("name,cls", [("unet_mnist", UNet), ("unet_cond", UNet), ("mnist_classifier", MNISTClassifier)])
def test_shipped_checkpoints(name, cls):
    pt, js = checkpoint_paths(name)
    if not pt.exists():
        pytest.skip(f"{pt} not shipped")
    card = read_card(name)
    for key in ("sha256", "command", "hardware", "budget", "metrics"):
        assert key in card, key
    assert pt.stat().st_size < 8 * 2**20  # "a few MB"
    m = load_checkpoint(name, cls)
    assert isinstance(m, cls)
    script = "train_classifier" if cls is MNISTClassifier else "train_unet"
    assert card["command"].startswith(f"python -m minidiff.scripts.{script} "), card["command"]
    if cls is MNISTClassifier:
        assert card["metrics"]["test_accuracy"] >= 0.99
        assert isinstance(load_classifier(), MNISTClassifier)


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "data" / "checkpoints").glob("*.json"))


@pytest.mark.parametrize("card_path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_card_matches_its_file_and_its_command(card_path):
    """Every shipped checkpoint: the file hashes to the card's sha256, loads with weights_only=True, and the card's
    command is one of the repository's training scripts, writing this checkpoint into data/checkpoints."""
    card = json.loads(card_path.read_text())
    pt = card_path.with_suffix(".pt")
    assert card["file"] == pt.name
    assert sha256_file(pt) == card["sha256"]
    payload = torch.load(pt, map_location="cpu", weights_only=True)
    assert payload["format"] == "minidiff-checkpoint-1" and payload["class"] == card["class"]
    assert card["command"].startswith("python -m minidiff.scripts."), card["command"]
    out = card["command"].split("--out ")[1].split()[0]  # train_distill's --out is a prefix: NAME_1, NAME_2, ...
    assert out.startswith("data/checkpoints/"), card["command"]
    assert card_path.stem in (Path(out).name, *(f"{Path(out).name}_{n}" for n in (1, 2, 4, 8))), card["command"]
