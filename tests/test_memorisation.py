"""minidiff.eval.memorisation: nearest neighbours and the memorisation share."""

import pytest
import torch

from minidiff.eval.memorisation import memorisation_share, nearest_neighbours, null_share

torch.set_num_threads(1)


def test_nearest_neighbours_brute_force():
    torch.manual_seed(0)
    q, r = torch.randn(37, 1, 5, 5), torch.randn(50, 1, 5, 5)
    d, i = nearest_neighbours(q, r, batch_size=8)
    full = ((q.flatten(1)[:, None].double() - r.flatten(1)[None].double()) ** 2).sum(-1).sqrt()
    assert torch.allclose(d, full.min(1).values) and torch.equal(i, full.argmin(1))
    assert d.dtype == torch.float64 and i.dtype == torch.long


def test_copies_are_memorised_and_fresh_draws_are_not():
    torch.manual_seed(1)
    train, test = torch.randn(200, 6), torch.randn(100, 6)
    copies = train[:50] + 1e-3 * torch.randn(50, 6)
    assert memorisation_share(copies, train, test)["share"] == 1.0
    # fresh draws of the same distribution: the share averages 1 / (n_test + 1) (exchangeability)
    shares = [memorisation_share(torch.randn(400, 6), train, torch.randn(19, 6))["share"] for _ in range(40)]
    assert abs(sum(shares) / len(shares) - null_share(19)) < 0.015


def test_features_and_images_alike_and_errors():
    out = memorisation_share(torch.randn(5, 1, 4, 4), torch.randn(9, 1, 4, 4), torch.randn(3, 16))
    assert out["d_gen"].shape == (5,) and out["null"] == 0.25
    with pytest.raises(ValueError, match="compare like with like"):
        nearest_neighbours(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="non-empty"):
        nearest_neighbours(torch.randn(0, 4), torch.randn(3, 4))
    with pytest.raises(TypeError):
        nearest_neighbours(torch.zeros(3, 4, dtype=torch.long), torch.randn(3, 4))


@pytest.mark.parametrize("name,n", [("unet_tiny100", 100), ("unet_tiny20", 20)])
def test_shipped_tiny_subset_models(name, n):
    from minidiff.checkpoints import checkpoint_paths, load_eps_model, read_card
    from minidiff.unet import UNet

    if not checkpoint_paths(name)[0].exists():
        pytest.skip(f"{name} not shipped")
    card = read_card(name)
    assert card["command"].startswith("python -m minidiff.scripts.train_memorisation ")
    assert card["training"]["n_train"] == n
    load_eps_model(name, UNet)
