"""minidiff.eval.cas: class coverage, balanced subsets, the one training recipe, the score."""

import pytest
import torch

from minidiff.eval.cas import (
    check_classes,
    classification_accuracy_score,
    per_class_subset,
    synthetic_digits,
    train_classifier_on,
)
from minidiff.schedules import NoiseSchedule

torch.set_num_threads(1)


def _toy_digits(n_per_class, seed=0):
    """Ten easy classes: a bright square at a class-dependent place, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(n_per_class)
    x = -torch.ones(len(labels), 1, 28, 28) + 0.1 * torch.randn(len(labels), 1, 28, 28, generator=g)
    for i, k in enumerate(labels.tolist()):
        r, c = 3 + 8 * (k // 4), 3 + 6 * (k % 4)
        x[i, 0, r:r + 5, c:c + 5] = 1.0
    return x.clamp(-1, 1), labels


def test_missing_classes_are_a_clear_error():
    with pytest.raises(ValueError, match=r"class\(es\) \[3, 7\]"):
        check_classes(torch.tensor([0, 1, 2, 4, 5, 6, 8, 9]))
    x, y = _toy_digits(2)
    keep = y != 5
    with pytest.raises(ValueError, match="no example of class"):
        train_classifier_on(x[keep], y[keep], steps=2)
    with pytest.raises(TypeError, match="LongTensor"):
        check_classes(torch.zeros(10))


def test_per_class_subset_is_balanced_and_in_order():
    x, y = _toy_digits(5)
    xs, ys = per_class_subset(x, y, 3)
    assert torch.equal(ys, torch.arange(10).repeat_interleave(3))
    assert torch.equal(xs[:3], x[:3])
    with pytest.raises(ValueError, match="has only 5"):
        per_class_subset(x, y, 6)


def test_training_learns_and_is_deterministic():
    x, y = _toy_digits(10)
    xt, yt = _toy_digits(5, seed=1)
    assert classification_accuracy_score(x, y, xt, yt, steps=40) > 0.9
    a, b = train_classifier_on(x, y, steps=3), train_classifier_on(x, y, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_synthetic_digits_labels_and_shape():
    from minidiff.unet import UNet

    torch.manual_seed(0)
    net = UNet(1, (8, 16), num_classes=10).eval()
    s = NoiseSchedule.make("cosine", 1000)
    x, y = synthetic_digits(s, net, 2, 2.0, steps=2)
    assert x.shape == (20, 1, 28, 28) and torch.equal(y, torch.arange(10).repeat_interleave(2))
