"""minidiff.eval.coverage: k-NN precision and recall (Kynkäänniemi et al. 2019), class TV."""

import pytest
import torch

from minidiff.eval import coverage


def test_radii_exclude_the_point_itself():
    f = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert torch.allclose(coverage.knn_radii(f, 1), torch.tensor([1.0, 1.0, 2.0, 4.0]))
    assert torch.allclose(coverage.knn_radii(f, 2), torch.tensor([3.0, 2.0, 3.0, 6.0]))


def test_hand_made_precision_and_recall():
    real = torch.arange(10.0)[:, None]
    fake = torch.tensor([[0.5], [1.5], [2.5], [3.5], [20.0], [20.5]])
    p, r = coverage.precision_recall(real, fake, k=1)
    assert p == pytest.approx(4 / 6)  # real balls have radius 1: 20 and 20.5 are outside all of them
    assert r == pytest.approx(0.5)  # fake balls: radius 1 around 0.5..3.5 cover 0..4; radius 0.5 around 20, 20.5 none
    a = torch.randn(30, 5)
    assert coverage.precision_recall(a, a.clone()) == (1.0, 1.0)
    assert coverage.precision_recall(a, a + 100) == (0.0, 0.0)


def test_mode_dropping_shows_in_recall_not_precision():
    g = torch.Generator().manual_seed(0)
    centres = 10 * torch.randn(10, 8, generator=g)
    real = centres.repeat_interleave(50, 0) + torch.randn(500, 8, generator=g)
    fake = centres[:1].repeat(500, 1) + torch.randn(500, 8, generator=g)  # one mode of ten
    p, r = coverage.precision_recall(real, fake, k=3)
    assert p > 0.7 and r < 0.15


def test_class_tv_and_bad_input():
    assert coverage.class_tv(torch.full((10,), 0.1)) == pytest.approx(0.0, abs=1e-6)
    one = torch.zeros(10, dtype=torch.float64)
    one[3] = 1
    assert coverage.class_tv(one) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="more than k"):
        coverage.knn_radii(torch.randn(3, 2), 3)
    with pytest.raises(ValueError, match="feature dimension"):
        coverage.precision_recall(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match="float tensor"):
        coverage.precision_recall(torch.randn(10), torch.randn(10, 1))
    with pytest.raises(ValueError, match="histogram"):
        coverage.class_tv(torch.ones(10, dtype=torch.long))
