"""minidiff.eval.metrics: energy distance, MMD and the data floor, against closed forms."""

import math

import pytest
import torch

from minidiff.eval import metrics


def test_energy_distance_of_two_point_masses():
    # All x at 0, all y at a: E‖X − Y‖ = |a|, the within-sample terms are 0, so D_E = 2|a|.
    x = torch.zeros(10, 2)
    y = torch.tensor([[3.0, 4.0]]).expand(7, 2)
    assert math.isclose(metrics.energy_distance(x, y), 10.0, rel_tol=1e-12)
    assert metrics.energy_distance(x, x) == 0.0


def test_energy_distance_of_two_point_sets_by_hand():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[3.0]])
    # E|X − Y| = (3 + 2)/2, E|X − X'| over all 4 pairs = (0 + 1 + 1 + 0)/4, E|Y − Y'| = 0
    assert math.isclose(metrics.energy_distance(x, y), 2 * 2.5 - 0.5, rel_tol=1e-12)
    assert math.isclose(metrics.energy_distance(y, x), 4.5, rel_tol=1e-12)


def test_mmd_of_two_point_masses():
    x, y = torch.zeros(5, 1), torch.ones(3, 1)
    h = (0.5, 2.0)
    expected = sum(2 * (1 - math.exp(-1 / (2 * b * b))) for b in h)
    assert math.isclose(metrics.mmd(x, y, bandwidths=h), expected, rel_tol=1e-12)


def test_floor_is_the_v_statistic_bias_and_a_shift_is_detected():
    # For X, X' iid, E[D_E] of the V-statistic is 2 E‖X − X'‖ / n (the diagonal zeros):
    # for N(0, 1) in 1D, E|X − X'| = 2/√π.
    g = torch.Generator().manual_seed(0)
    normal = lambda n, g: torch.randn(n, 1, generator=g)  # noqa: E731
    n = 500
    fl = metrics.floor(normal, n, repeats=40, generator=g)
    expected = 2 * (2 / math.sqrt(math.pi)) / n
    assert abs(fl - expected) < 0.25 * expected, (fl, expected)
    shifted = normal(n, g) + 0.3
    assert metrics.distance_to_data(shifted, normal, generator=g) > 5 * fl


def test_quality_of_a_perfect_and_of_a_wrong_model():
    g = torch.Generator().manual_seed(1)
    normal = lambda n, g: torch.randn(n, 2, generator=g)  # noqa: E731
    perfect = metrics.quality(normal(8000, g), normal, chunk=500, generator=g)
    assert 0.7 < perfect.ratio < 1.3 and perfect.n == 500, perfect
    wide = metrics.quality(1.15 * normal(8000, g), normal, chunk=500, generator=g)
    assert wide.ratio > 2, wide
    with pytest.raises(ValueError, match="chunk"):
        metrics.distance_to_data(torch.zeros(10, 2), normal, chunk=11)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same dimension"):
        metrics.energy_distance(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        metrics.energy_distance(torch.zeros(3, 1, 2, 2), torch.zeros(3, 4))
    with pytest.raises(TypeError, match="floating"):
        metrics.mmd(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="finite"):
        metrics.energy_distance(torch.full((3, 2), float("nan")), torch.zeros(3, 2))
