"""minidiff.eval.fid against closed forms: 1-D Gaussians, commuting covariances, invariances, the floor."""

import pytest
import torch

from minidiff.eval.fid import fid_from_features, frechet_distance, gaussian_stats, sqrtm_psd

torch.set_num_threads(1)


def test_sqrtm_psd_squares_back():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    S = A @ A.T
    R = sqrtm_psd(S)
    assert torch.allclose(R @ R, S, atol=1e-9) and torch.allclose(R, R.T)
    # rank-deficient PSD matrices (tiny negative eigenvalues from rounding) stay real
    v = torch.randn(6, 1, generator=g, dtype=torch.float64)
    R1 = sqrtm_psd(v @ v.T)
    assert torch.isfinite(R1).all() and torch.allclose(R1 @ R1, v @ v.T, atol=1e-9)


def test_one_dimensional_closed_form():
    # d² = (m1 − m2)² + (s1 − s2)² for N(m1, s1²), N(m2, s2²)
    d = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-1.0]), torch.tensor([[9.0]]))
    assert d == pytest.approx(4 + 1, rel=1e-12)


def test_diagonal_covariances_closed_form():
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 1.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    expected = (mu1 - mu2).pow(2).sum() + (s1.sqrt() - s2.sqrt()).pow(2).sum()
    d = frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert d == pytest.approx(expected.item(), rel=1e-10)


def test_rotation_invariance_and_symmetry():
    g = torch.Generator().manual_seed(1)
    f1 = torch.randn(500, 5, generator=g, dtype=torch.float64)
    f2 = torch.randn(400, 5, generator=g, dtype=torch.float64) * 1.5 + 0.3
    Q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    d = fid_from_features(f1, f2)
    assert d == pytest.approx(fid_from_features(f1 @ Q, f2 @ Q), rel=1e-8)
    assert d == pytest.approx(fid_from_features(f2, f1), rel=1e-8)
    assert fid_from_features(f1, f1) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_stats_unbiased():
    f = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, cov = gaussian_stats(f)
    assert torch.allclose(mu, torch.tensor([2.0, 4.0], dtype=torch.float64))
    assert torch.allclose(cov, torch.cov(f.T).double())


def test_floor_shrinks_with_sample_count():
    """Two samples of the same distribution: FID > 0, decreasing roughly like 1/n."""
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(20_000, 8, generator=g)
    small = [fid_from_features(torch.randn(100, 8, generator=g), ref) for _ in range(5)]
    large = [fid_from_features(torch.randn(3000, 8, generator=g), ref) for _ in range(5)]
    assert min(small) > 0 and sum(large) / 5 < 0.2 * sum(small) / 5


def test_shape_errors():
    with pytest.raises(ValueError):
        gaussian_stats(torch.randn(10))
    with pytest.raises(ValueError):
        frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))
