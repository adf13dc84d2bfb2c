"""minidiff.data.moving: bouncing tracks, the sub-pixel renderer, and the video sampler."""

import pytest
import torch

from minidiff.data import moving

torch.set_num_threads(1)


def test_bounce_track_is_a_straight_line_between_the_walls():
    start, velocity = torch.tensor([[12.0, 14.0]]), torch.tensor([[1.0, -0.5]])
    out = moving.bounce_track(start, velocity, 5)
    k = torch.arange(5.0)[:, None]
    assert torch.allclose(out[0], start + k * velocity)


def test_bounce_track_reflects_like_a_stepwise_simulation():
    g = torch.Generator().manual_seed(0)
    start = moving.LOW + (moving.HIGH - moving.LOW) * torch.rand(200, 2, generator=g, dtype=torch.float64)
    velocity = 6 * (2 * torch.rand(200, 2, generator=g, dtype=torch.float64) - 1)  # |v| < L: one reflection a step
    p, v, steps = start.clone(), velocity.clone(), [start.clone()]
    for _ in range(11):
        p = p + v
        hi, lo = p > moving.HIGH, p < moving.LOW
        p = torch.where(hi, 2 * moving.HIGH - p, torch.where(lo, 2 * moving.LOW - p, p))
        v = torch.where(hi | lo, -v, v)
        steps.append(p.clone())
    assert torch.allclose(moving.bounce_track(start, velocity, 12), torch.stack(steps, 1), atol=1e-9)


def test_bounce_track_bad_input():
    with pytest.raises(ValueError, match="start"):
        moving.bounce_track(torch.zeros(3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="low < high"):
        moving.bounce_track(torch.zeros(3, 2), torch.zeros(3, 2), 4, 5.0, 5.0)
    with pytest.raises(ValueError, match="frames"):
        moving.bounce_track(torch.zeros(3, 2), torch.zeros(3, 2), 0)


def test_shift_moves_the_centre_of_mass_by_exactly_the_shift():
    g = torch.Generator().manual_seed(1)
    img = torch.zeros(5, 20, 20)
    img[:, 6:14, 6:14] = torch.rand(5, 8, 8, generator=g)
    shift = 4 * (2 * torch.rand(5, 2, generator=g) - 1)
    out = moving.shift_images(img, shift)
    assert torch.allclose(out.sum((1, 2)), img.sum((1, 2)), rtol=1e-5)
    assert torch.allclose(moving.center_of_mass(out), moving.center_of_mass(img) + shift, atol=1e-4)


def test_patches_from_fake_mnist():
    images = -torch.ones(3, 1, 28, 28)
    images[:, :, 10:18, 12:16] = 1.0
    p = moving.digit_patches(images)
    assert p.shape == (3, moving.PATCH, moving.PATCH) and p.min() >= 0 and p.max() <= 1
    with pytest.raises(ValueError, match="28, 28"):
        moving.digit_patches(torch.zeros(3, 1, 32, 32))


def _fake_data(n=40):
    g = torch.Generator().manual_seed(2)
    patches = torch.zeros(n, moving.PATCH, moving.PATCH)
    patches[:, 4:12, 5:11] = torch.rand(n, 8, 6, generator=g)
    return moving.MovingDigits(patches, torch.arange(n) % 10)


def test_sample_shapes_range_labels_and_tracks():
    data = _fake_data()
    videos, labels, tracks = data.sample(16, torch.Generator().manual_seed(0))
    assert videos.shape == (16, 1, moving.FRAMES, moving.CANVAS, moving.CANVAS)
    assert videos.min() >= -1 and videos.max() <= 1
    assert tracks.shape == (16, moving.FRAMES, 2) and labels.shape == (16,)
    ink = (videos[:, 0] + 1) / 2
    assert torch.allclose(moving.center_of_mass(ink), tracks, atol=1e-3)  # the centre of mass follows the track
    steps = (tracks[:, 1:] - tracks[:, :-1]).norm(dim=-1)
    assert (steps <= moving.SPEED[1] + 1e-4).all()  # a reflection never lengthens a step
    again, _, _ = data.sample(16, torch.Generator().manual_seed(0))
    assert torch.equal(videos, again)


def test_sample_with_labels_and_errors():
    data = _fake_data()
    want = torch.tensor([3, 3, 7, 0])
    _, labels, _ = data.sample(4, torch.Generator().manual_seed(0), labels=want)
    assert torch.equal(labels, want)
    with pytest.raises(ValueError, match="labels"):
        data.sample(4, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="patches"):
        moving.MovingDigits(torch.zeros(4, 28, 28), torch.zeros(4))
    with pytest.raises(ValueError, match="no digit of class"):
        moving.MovingDigits(torch.zeros(2, 16, 16), torch.tensor([0, 1])).sample(1, labels=torch.tensor([5]))
