"""minidiff.training.train, the one training loop, and the scripts that use it (tiny sizes, CPU,
random data: no MNIST needed).

* exact resumption: N steps straight == N/2 steps, save, resume, N/2 more (bit for bit);
* the learning rate: lr_at, or a torch scheduler from make_scheduler (also resumed);
* hooks that stop training, tuple and function data, the EMA, argument errors;
* parameter groups with their own lr scale;
* minidiff.scripts.train_unet (card_command, a run stopped and resumed through the command line, the
  warm start --init, --class-lr with ∅'s row frozen)
  and minidiff.scripts.train_classifier (the training path and the card).
"""

import math
from functools import partial

import pytest
import torch

from minidiff.checkpoints import CheckpointError, load_checkpoint, read_card, save_checkpoint
from minidiff.eval.classifier import MNISTClassifier
from minidiff.guidance import cfg_loss
from minidiff.losses import ddpm_loss
from minidiff.schedules import NoiseSchedule
from minidiff.scripts import train_classifier as tc
from minidiff.scripts import train_unet as tu
from minidiff.training import lr_at, random_batches, smooth, train
from minidiff.unet import UNet

torch.set_num_threads(1)


def tiny(num_classes=None, seed=0):
    torch.manual_seed(seed)
    return UNet(channels=(8, 16), num_classes=num_classes, heads=2)


def images_and_labels(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g) * 2 - 1, torch.randint(0, 10, (n,), generator=g)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


S = NoiseSchedule.make("linear", 100)


# ---------------------------------------------------------------- the learning rate


def test_lr_at():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1, rel=1e-3)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(0.5 * (1 + math.cos(0.09 * math.pi)))
    assert lr_at(99, 100, 1.0, 0) < 1e-3
    assert lr_at(50, 100, 2.0, 0, decay=False) == 2.0
    assert lr_at(0, 100, 2.0, 4, decay=False) == 0.5


# ---------------------------------------------------------------- resumption


@pytest.mark.parametrize("num_classes", [None, 10])
def test_resume_gives_identical_weights(tmp_path, num_classes):
    """N steps straight == N/2 steps, save, a restart with other initial weights, resume N/2."""
    x, y = images_and_labels()
    if num_classes:
        loss, data = partial(cfg_loss, S, p_uncond=0.3), (x, y)
    else:
        loss, data = partial(ddpm_loss, S), x
    kw = dict(batch_size=4, lr=2e-3, warmup=2, ema_decay=0.9, seed=0, show_progress=False)
    straight = train(tiny(num_classes), loss, data, 6, **kw)
    path = tmp_path / "state.pt"
    half = train(tiny(num_classes), loss, data, 6, state_path=path, stop_after=3, **kw)
    assert half.step == 3 and len(half.losses) == 3 and path.exists()
    resumed = train(tiny(num_classes, seed=99), loss, data, 6, state_path=path, resume=True, **kw)
    assert resumed.step == 6 and resumed.losses == straight.losses
    assert same_weights(straight.model, resumed.model)
    assert same_weights(straight.ema.model, resumed.ema.model)
    # the interrupted run really differs from the finished one (the test can fail)
    assert not same_weights(half.model, straight.model)
    with pytest.raises(ValueError, match="same total steps"):
        train(tiny(num_classes), loss, data, 8, state_path=path, resume=True, **kw)


def test_resume_without_a_state_starts_afresh_and_save_every(tmp_path):
    x, _ = images_and_labels()
    kw = dict(batch_size=4, seed=0, show_progress=False)
    saves = []

    def spy(step, loss, model):
        saves.append((step, (tmp_path / "s.pt").exists()))

    fresh = train(tiny(), partial(ddpm_loss, S), x, 4, state_path=tmp_path / "s.pt", resume=True, save_every=2,
                  hooks=[spy], **kw)
    assert fresh.step == 4 and saves == [(1, False), (2, True), (3, True), (4, True)]
    assert same_weights(fresh.model, train(tiny(), partial(ddpm_loss, S), x, 4, **kw).model)


def test_make_scheduler_is_stepped_and_resumed(tmp_path):
    x, _ = images_and_labels()
    seen = {}

    def make(opt, steps):
        seen["opt"], seen["steps"] = opt, steps
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)

    kw = dict(batch_size=4, lr=1e-2, warmup=100, seed=0, make_scheduler=make, show_progress=False)
    straight = train(tiny(), partial(ddpm_loss, S), x, 4, **kw)
    assert seen["steps"] == 4
    # the scheduler sets the rate (warm-up and lr_at are not applied): lr · 0.5^4 after 4 steps
    assert seen["opt"].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**4)
    plain = train(tiny(), partial(ddpm_loss, S), x, 4, batch_size=4, lr=1e-2, warmup=100, seed=0, show_progress=False)
    assert not same_weights(straight.model, plain.model)
    path = tmp_path / "state.pt"
    train(tiny(), partial(ddpm_loss, S), x, 4, state_path=path, stop_after=2, **kw)
    resumed = train(tiny(), partial(ddpm_loss, S), x, 4, state_path=path, resume=True, **kw)
    assert resumed.losses == straight.losses and same_weights(resumed.model, straight.model)
    assert seen["opt"].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**4)


# ---------------------------------------------------------------- hooks, data, EMA


def test_a_hook_returning_true_stops_training():
    x, _ = images_and_labels()
    calls = []

    def hook(step, loss, model):
        calls.append((step, loss, model))
        return step == 3

    res = train(tiny(), partial(ddpm_loss, S), x, 10, batch_size=4, hooks=[lambda *a: None, hook], show_progress=False)
    assert res.step == 3 and len(res.losses) == 3
    assert [c[0] for c in calls] == [1, 2, 3]
    assert [c[1] for c in calls] == res.losses and all(c[2] is res.model for c in calls)


def test_tuple_data_draws_matching_rows():
    """Rows of (images, labels) are drawn together: each image here is filled with its own label."""
    y = torch.arange(30) % 10
    x = y.float()[:, None, None, None].expand(30, 1, 4, 4).clone()
    seen = []

    def loss(model, batch, generator):
        xb, yb = batch
        assert xb.shape == (6, 1, 4, 4) and yb.shape == (6,)
        assert torch.equal(xb[:, 0, 0, 0], yb.float())
        seen.append(yb)
        return model(xb.flatten(1)).pow(2).mean()

    res = train(torch.nn.Linear(16, 1), loss, (x, y), 5, batch_size=6, show_progress=False)
    assert res.step == 5 and len(seen) == 5
    assert len(torch.cat(seen).unique()) > 1  # random rows, not the same batch every step
    with pytest.raises(ValueError, match="same length"):
        train(torch.nn.Linear(16, 1), loss, (x, y[:10]), 2, show_progress=False)


def test_function_data_and_custom_batches():
    def data(n, generator):
        return torch.randn(n, 2, generator=generator) + 3.0

    model = torch.nn.Linear(2, 1)

    def loss(m, batch, generator):
        return (m(batch) - 1.0).pow(2).mean()

    res = train(model, loss, data, 200, batch_size=32, lr=3e-2, show_progress=False)
    assert sum(res.losses[-20:]) / 20 < 0.2 * sum(res.losses[:5]) / 5
    fixed = torch.ones(8, 2)
    res = train(torch.nn.Linear(2, 1), loss, None, 3, batches=lambda: fixed, show_progress=False)
    assert res.step == 3 and res.images_per_second == 0.0  # the batch size of custom batches is unknown


def test_ema_and_sampling_model():
    x, _ = images_and_labels()
    start = tiny()
    res = train(tiny(), partial(ddpm_loss, S), x, 5, batch_size=4, lr=1e-2, ema_decay=0.5, show_progress=False)
    assert res.sampling_model is res.ema.model and not res.ema.model.training
    assert not same_weights(res.ema.model, res.model) and not same_weights(res.ema.model, start)
    # closed form of the average after k steps: θ_ema = d^k θ_0 + Σ (1 − d) d^(k−i) θ_i — checked on one weight
    thetas = []
    train(tiny(), partial(ddpm_loss, S), x, 5, batch_size=4, lr=1e-2, show_progress=False,
          hooks=[lambda step, loss, m: thetas.append(m.conv_in.bias.detach().clone())])
    avg = start.conv_in.bias.detach().clone()
    for th in thetas:
        avg = 0.5 * avg + 0.5 * th
    assert torch.allclose(res.ema.model.conv_in.bias, avg, atol=1e-6)
    plain = train(tiny(), partial(ddpm_loss, S), x, 2, batch_size=4, show_progress=False)
    assert plain.ema is None and plain.sampling_model is plain.model


def test_training_reduces_the_loss():
    x = (torch.rand(16, 1, 16, 16) > 0.8).float() * 2 - 1
    res = train(tiny(), partial(ddpm_loss, S), x, 40, batch_size=16, lr=3e-3, warmup=5, show_progress=False)
    assert sum(res.losses[-10:]) / 10 < 0.9 * sum(res.losses[:5]) / 5
    assert res.images_per_second > 0 and res.seconds > 0
    assert smooth(res.losses, 10).shape == (31,)


def test_argument_errors():
    x, _ = images_and_labels()
    with pytest.raises(ValueError, match="steps"):
        train(tiny(), partial(ddpm_loss, S), x, 0, show_progress=False)
    with pytest.raises(TypeError, match="data must be"):
        train(tiny(), partial(ddpm_loss, S), "images", 2, show_progress=False)
    with pytest.raises(TypeError):
        random_batches(x.long(), 4, None, "cpu")


# ---------------------------------------------------------------- the scripts


def test_card_command_drops_run_control_and_names_the_stop():
    argv = ["--steps", "100", "--resume", "--max-minutes", "5", "--state", "s.pt", "--save-every", "10",
            "--channels", "16", "32", "--stop-after", "60", "--out", "o"]
    assert tu.card_command(argv, 100, 100) == "python -m minidiff.scripts.train_unet --steps 100 --channels 16 32 --out o"
    assert tu.card_command(argv, 40, 100) == ("python -m minidiff.scripts.train_unet --steps 100 --channels 16 32 "
                                              "--out o --stop-after 40")


@pytest.fixture
def random_mnist(monkeypatch):
    """The scripts' MNIST replaced by 64 random 'digits' (no download, no files)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, 10, (64,), generator=g)

    def fake(split="train", device=None):
        return x.to(device or "cpu"), y.to(device or "cpu")

    monkeypatch.setattr(tu, "mnist_images", fake)
    monkeypatch.setattr(tc, "mnist_images", fake)
    monkeypatch.setattr(tu, "pick_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(tc, "pick_device", lambda: torch.device("cpu"))
    return x, y


def test_train_unet_script_stops_resumes_and_writes_the_card(tmp_path, random_mnist):
    out, state = tmp_path / "unet", tmp_path / "state.pt"
    common = ["--steps", "4", "--batch-size", "4", "--channels", "8", "16", "--T", "50", "--warmup", "1",
              "--out", str(out), "--state", str(state)]
    assert tu.main(common + ["--stop-after", "2"]) == 0
    card = read_card(out)
    assert card["training"]["stopped_at_step"] == 2 and card["command"].endswith("--stop-after 2")
    assert tu.main(common + ["--resume"]) == 0
    card = read_card(out)
    assert card["training"]["stopped_at_step"] == 4
    assert card["command"] == "python -m minidiff.scripts.train_unet " + " ".join(
        ["--steps", "4", "--batch-size", "4", "--channels", "8", "16", "--T", "50", "--warmup", "1", "--out", str(out)])
    model = load_checkpoint(out, UNet)
    assert model.channels == (8, 16) and card["schedule"] == {"name": "cosine", "T": 50}  # the default recipe
    assert card["prediction"] == "v" and card["training"]["ema_warmup"] is True
    # the same weights as one uninterrupted run
    straight = tmp_path / "straight"
    assert tu.main(["--steps", "4", "--batch-size", "4", "--channels", "8", "16", "--T", "50", "--warmup", "1",
                    "--out", str(straight), "--state", str(tmp_path / "other.pt")]) == 0
    assert same_weights(model, load_checkpoint(straight, UNet))


def test_warm_start_begins_as_the_unconditional_model_for_every_label(tmp_path):
    """train_unet --init: all weights copied, the class embedding zeroed, so ε(x, t, y) = ε_uncond(x, t) for every y."""
    base = tiny(seed=1)
    save_checkpoint(base, tmp_path / "base", card={"training": {"images_seen": 8}})
    cond = tiny(num_classes=10, seed=2)
    tu.warm_start(cond, str(tmp_path / "base"))
    assert torch.count_nonzero(cond.class_emb.weight) == 0
    x, t = torch.randn(11, 1, 16, 16), torch.randint(1, 1000, (11,))
    with torch.no_grad():
        want = base(x, t)
        for y in (torch.arange(11), None):  # the labels 0..9 and ∅, and y = None (all ∅)
            assert torch.allclose(cond(x, t, y), want, atol=1e-6)
    with pytest.raises(CheckpointError, match="architecture mismatch"):
        tu.warm_start(UNet(channels=(8, 32), num_classes=10, heads=2), str(tmp_path / "base"))


def test_train_unet_init_records_the_warm_start_on_the_card(tmp_path, random_mnist):
    save_checkpoint(UNet(channels=(8, 16)), tmp_path / "base", card={"training": {"images_seen": 96}})
    out = tmp_path / "cond"
    assert tu.main(["--steps", "2", "--batch-size", "4", "--channels", "8", "16", "--T", "50", "--warmup", "1",
                    "--num-classes", "10", "--p-uncond", "0.5", "--init", str(tmp_path / "base"),
                    "--out", str(out), "--state", str(tmp_path / "s.pt")]) == 0
    init = read_card(out)["training"]["init"]
    assert init["images_seen"] == 96 and init["sha256"] == read_card(tmp_path / "base")["sha256"]
    assert "--init" in read_card(out)["command"] and "fine-tuned from" in read_card(out)["description"]


def test_param_groups_learn_at_their_lr_scale():
    """train(params=...): a group's learning rate is lr_scale times the step's lr (lr_scale 0 freezes it)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    first = [p.detach().clone() for p in model[0].parameters()]
    second = [p.detach().clone() for p in model[1].parameters()]
    groups = [{"params": list(model[0].parameters()), "lr_scale": 0.0}, {"params": list(model[1].parameters())}]
    train(model, lambda m, b, g: m(b).pow(2).mean(), torch.randn(16, 3), 3, batch_size=4, lr=1e-2,
          params=groups, show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first, model[0].parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(second, model[1].parameters()))
    with pytest.raises(ValueError, match="lr_scale"):  # a torch scheduler would silently ignore the scale
        train(model, lambda m, b, g: m(b).pow(2).mean(), torch.randn(16, 3), 1, params=groups, show_progress=False,
              make_scheduler=lambda opt, steps: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))


def test_class_param_groups_keep_the_null_row_at_zero_and_train_the_labels(tmp_path):
    """train_unet --class-lr: rows 0..9 of the class embedding learn at class_lr, ∅'s row stays zero,
    so ε(x, t, ∅) changes only through the shared weights."""
    save_checkpoint(tiny(seed=1), tmp_path / "base", card={"training": {"images_seen": 8}})
    cond = tiny(num_classes=10, seed=2)
    tu.warm_start(cond, str(tmp_path / "base"))
    groups = tu.class_param_groups(cond, class_lr=1e-2, lr=1e-4)
    assert [g.get("lr_scale", 1.0) for g in groups] == [1.0, pytest.approx(100.0)]
    x, y = images_and_labels(n=64)
    train(cond, partial(cfg_loss, NoiseSchedule.make("cosine", 50), p_uncond=0.5, loss=ddpm_loss), (x, y), 4,
          batch_size=32, lr=1e-4, params=groups, show_progress=False)
    rows = cond.class_emb.weight.detach().abs().sum(dim=1)
    assert rows[10] == 0 and bool((rows[:10] > 0).all())
    with pytest.raises(SystemExit):  # --class-lr without --init is refused
        tu.main(["--steps", "1", "--num-classes", "10", "--class-lr", "1e-3", "--out", str(tmp_path / "x")])


def test_train_classifier_path(tmp_path, random_mnist):
    x, y = random_mnist
    torch.manual_seed(0)
    model = MNISTClassifier()
    before = [p.detach().clone() for p in model.parameters()]
    losses = tc.train_classifier(model, x, y, epochs=2, batch_size=16, device="cpu", show_progress=False)
    assert len(losses) == 2 * (64 // 16) and all(math.isfinite(v) for v in losses)
    assert not model.training and any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # shuffled epochs: every image once per epoch
    nxt = tc.shuffled_epochs(torch.arange(8.0)[:, None, None, None].expand(8, 1, 28, 28), torch.arange(8), 2,
                             torch.Generator().manual_seed(0))
    labels = torch.cat([nxt()[1] for _ in range(4)])
    assert sorted(labels.tolist()) == list(range(8))
    # shifts pad with the background value −1
    shifted = tc.shift(torch.ones(1, 1, 28, 28), torch.Generator().manual_seed(1), max_shift=2)
    assert shifted.shape == (1, 1, 28, 28) and set(shifted.unique().tolist()) <= {-1.0, 1.0}
    # the command line: trains, saves with a card (accuracy on random labels is low: exit status 1)
    out = tmp_path / "clf"
    assert tc.main(["--epochs", "1", "--batch-size", "32", "--out", str(out)]) == 1
    card = read_card(out)
    assert card["command"] == f"python -m minidiff.scripts.train_classifier --epochs 1 --batch-size 32 --out {out}"
    assert isinstance(load_checkpoint(out, MNISTClassifier), MNISTClassifier)
