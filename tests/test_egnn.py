"""minidiff.egnn: the zero-CoM projection, the EGCL's and the EGNN's equivariance, the loss, sampling."""

from functools import partial

import pytest
import torch

from minidiff.egnn import EGCL, EGNN, com_free_loss, com_free_noise, egcl_update, remove_mean, sample_conformers
from minidiff.schedules import NoiseSchedule
from minidiff.training import train

torch.set_num_threads(1)


def _batch(B=4, N=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, N)
    mask[0, -2:] = 0
    mask[1, -1:] = 0
    x = remove_mean(torch.randn(B, N, 3, generator=g, dtype=dtype), mask)
    h = torch.nn.functional.one_hot(torch.randint(0, 3, (B, N), generator=g), 3).to(dtype) * mask[..., None]
    kinds = torch.randint(0, 5, (B, N, N), generator=g)
    kinds = torch.triu(kinds, 1) + torch.triu(kinds, 1).transpose(1, 2)
    bonds = torch.nn.functional.one_hot(kinds, 5).to(dtype)
    return x, h, bonds, mask.to(dtype)


def _transform(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=dtype))
    Q[:, 0] = -Q[:, 0] if torch.det(Q) > 0 else Q[:, 0]  # include a reflection
    return Q, 3 * torch.randn(1, 1, 3, generator=g, dtype=dtype)


def test_remove_mean_projects_over_real_atoms():
    x, _, _, mask = _batch()
    x = torch.randn_like(x)
    p = remove_mean(x, mask)
    assert (p.sum(1).abs() < 1e-5).all() and (p[mask == 0] == 0).all()
    assert torch.allclose(remove_mean(p, mask), p)  # a projection
    with pytest.raises(ValueError, match="mask"):
        remove_mean(x, mask[:, :3])
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        remove_mean(x[0], mask)


def test_com_free_noise_covariance_is_the_projection():
    mask = torch.tensor([[1.0, 1, 1, 1, 0]]).expand(40000, -1)
    eps = com_free_noise((40000, 5, 3), mask, torch.Generator().manual_seed(0))
    cov = torch.cov(eps[:, :4, 0].T.double())
    P = torch.eye(4, dtype=torch.float64) - 1 / 4  # I − 11ᵀ/n
    assert torch.allclose(cov, P, atol=0.02)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_egnn_is_equivariant(dtype, tol):
    torch.manual_seed(0)
    model = EGNN(3, 5, hidden=16, layers=3).to(dtype)
    for layer in model.layers:  # large coordinate updates, so that a broken symmetry would show
        torch.nn.init.normal_(layer.phi_x[-1].weight, std=0.3)
    x, h, bonds, mask = _batch(dtype=dtype)
    t = torch.tensor([1, 100, 500, 999])
    out = model(x, t, h, bonds, mask)
    assert out.abs().max() > 1e-2
    Q, b = _transform(1, dtype)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(2))
    moved = model(((x @ Q.T + b) * mask[..., None])[:, perm], t, h[:, perm], bonds[:, perm][:, :, perm], mask[:, perm])
    assert (moved - (out @ Q.T)[:, perm]).abs().max() <= tol
    assert (out.sum(1).abs() < 1e-5).all() and (out[mask == 0] == 0).all()


def test_egcl_update_is_the_layer_forward_and_works_in_2d():
    torch.manual_seed(0)
    layer = EGCL(8, 2)
    h, x, a, mask = torch.randn(2, 4, 8), torch.randn(2, 4, 2), torch.randn(2, 4, 4, 2), torch.ones(2, 4)
    h1, x1 = layer(h, x, a, mask)
    h2, x2 = egcl_update(layer, h, x, a, mask)
    assert torch.equal(h1, h2) and torch.equal(x1, x2)
    a = (a + a.transpose(1, 2)) / 2
    R = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    hr, xr = layer(h, x @ R.T, a, mask)
    h0, x0 = layer(h, x, a, mask)
    assert torch.allclose(xr, x0 @ R.T, atol=1e-6) and torch.allclose(hr, h0, atol=1e-6)


def test_loss_gradients_are_finite_and_training_lowers_it():
    s = NoiseSchedule.make("cosine", 100)
    x, h, bonds, mask = _batch(B=8, seed=3)
    model = EGNN(3, 5, hidden=16, layers=2)
    loss = com_free_loss(s, model, (x, h, bonds, mask), torch.Generator().manual_seed(0))
    loss.backward()
    unused = {n for n, _ in model.named_parameters() if n.startswith(f"layers.{len(model.layers) - 1}.phi_h")}
    for n, p in model.named_parameters():  # the last layer's feature update feeds nothing
        assert (p.grad is None) if n in unused else torch.isfinite(p.grad).all(), n
    res = train(model, partial(com_free_loss, s), (x, h, bonds, mask), 60, batch_size=8, lr=3e-3, show_progress=False)
    assert sum(res.losses[-10:]) < sum(res.losses[:10])


def test_sampling_stays_centred():
    s = NoiseSchedule.make("cosine", 20)
    x, h, bonds, mask = _batch()
    model = EGNN(3, 5, hidden=8, layers=1)
    for steps in (None, 5):
        out = sample_conformers(s, model, h, bonds, mask, steps=steps, generator=torch.Generator().manual_seed(0))
        scale = out.abs().max()  # an untrained model's samples are large: compare the centre with their size
        assert out.shape == x.shape and (out.sum(1).abs() < 1e-5 * scale).all() and (out[mask == 0] == 0).all()


def test_model_input_errors():
    model = EGNN(3, 5, hidden=8, layers=1)
    x, h, bonds, mask = _batch()
    t = torch.tensor([1, 2, 3, 4])
    with pytest.raises(ValueError, match="h must have shape"):
        model(x, t, h[..., :2], bonds, mask)
    with pytest.raises(ValueError, match="bonds must have shape"):
        model(x, t, h, bonds[..., :2], mask)
    with pytest.raises(ValueError, match="t must"):
        model(x, t[:2], h, bonds, mask)
    with pytest.raises(TypeError):
        model(x.long(), t, h, bonds, mask)
