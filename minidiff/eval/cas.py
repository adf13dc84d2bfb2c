"""Classification Accuracy Score (lesson 19; Ravuri & Vinyals 2019, "Classification Accuracy Score
for Conditional Generative Models").

Is a class-conditional generator a good *data source*? Train a classifier on its samples only,
then test that classifier on real held-out data:

    CAS = accuracy on the real test set of a classifier trained on (x ~ p_θ(x | y), y)

A generator that draws every class, in all its variety, gives a classifier as good as real data
does; one that draws a few typical digits per class (strong guidance: lesson 08's mode seeking)
or misses some writing styles gives a worse one, however good each sample looks.

The classifier is the course's `MNISTClassifier` and every training set gets the same short recipe
(`train_classifier_on`): `steps` AdamW steps of random batches, a linear warm-up then cosine decay
of the learning rate (`training.lr_at`), random ±2-pixel shifts of each batch, by the library's
one loop `training.train`. A training set must hold every class (`check_classes`): a classifier
never shown a 7 cannot be scored on 7s.

Contents: `synthetic_digits`, `check_classes`, `per_class_subset`, `train_classifier_on`,
`classification_accuracy_score`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..guidance import guided_sample
from ..training import train
from ..utils import check_float, check_positive_int
from .classifier import MNISTClassifier, accuracy


def synthetic_digits(schedule, model, n_per_class: int, w: float, steps: int = 10, seed: int = 0,
                     num_classes: int = 10, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """A labelled synthetic training set: n_per_class guided samples of each class (lesson 08's
    `guidance.guided_sample`: DDIM with `steps` jumps, scale w, x̂_0 clipped), labels in class order.
    Returns (images (N, 1, 28, 28) on the CPU, labels (N,) long), N = num_classes · n_per_class."""
    n_per_class = check_positive_int("n_per_class", n_per_class)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    images = guided_sample(schedule, model, labels, w, (1, 28, 28), steps=steps,
                           generator=torch.Generator().manual_seed(seed), batch_size=batch_size)
    return images, labels


def _check_labelled(images, labels) -> None:
    check_float("images", images)
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"images must be digits of shape (N, 1, 28, 28), got {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long or labels.shape != (images.shape[0],):
        raise TypeError(f"labels must be a LongTensor of shape (N,) = ({images.shape[0]},), "
                        f"got {getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")


def check_classes(labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """The count of each class (num_classes,); a ValueError naming the classes that are missing."""
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.long or labels.dim() != 1:
        raise TypeError(f"labels must be a 1-D LongTensor, got {getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    counts = torch.bincount(labels.cpu(), minlength=num_classes)
    missing = [k for k in range(num_classes) if counts[k] == 0]
    if missing:
        raise ValueError(f"the training set has no example of class(es) {missing}: a classifier trained on it "
                         f"cannot learn them, so its accuracy would say nothing about the data source")
    return counts


def per_class_subset(images: torch.Tensor, labels: torch.Tensor, n_per_class: int,
                     num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n_per_class digits of each class (in class order): a balanced subset, the same on every run."""
    _check_labelled(images, labels)
    n_per_class = check_positive_int("n_per_class", n_per_class)
    counts = check_classes(labels, num_classes)
    if counts.min() < n_per_class:
        raise ValueError(f"n_per_class = {n_per_class} but class {int(counts.argmin())} has only {int(counts.min())} digits")
    idx = torch.cat([torch.nonzero(labels == k).flatten()[:n_per_class] for k in range(num_classes)])
    return images[idx], labels[idx]


# Copied from minidiff.scripts.train_classifier.shift (the library may not import scripts)
def _shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate the whole batch by one random (dy, dx) in ±max_shift, padding with background (−1)."""
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    return padded[:, :, max_shift + dy : max_shift + dy + 28, max_shift + dx : max_shift + dx + 28]


def train_classifier_on(images: torch.Tensor, labels: torch.Tensor, steps: int = 400, batch_size: int = 64,
                        lr: float = 3e-3, seed: int = 0, device=None) -> MNISTClassifier:
    """A fresh `MNISTClassifier` trained on (images, labels) with the one recipe of every CAS arm; eval mode, CPU."""
    _check_labelled(images, labels)
    check_classes(labels)
    torch.manual_seed(seed)  # the initial weights
    model = MNISTClassifier()
    shifts = torch.Generator().manual_seed(seed)

    def loss_fn(net, batch, generator=None):
        x, y = batch
        return F.cross_entropy(net(_shift(x, shifts)), y)

    train(model, loss_fn, (images.clamp(-1, 1), labels), steps, batch_size=batch_size, lr=lr, warmup=steps // 10,
          weight_decay=1e-4, seed=seed, device=device, show_progress=False, desc="CAS classifier")
    return model.cpu().eval()


def classification_accuracy_score(images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor,
                                  test_labels: torch.Tensor, steps: int = 400, seed: int = 0, device=None) -> float:
    """CAS: train on (images, labels) (`train_classifier_on`), return the accuracy on (test_images, test_labels)."""
    _check_labelled(test_images, test_labels)
    model = train_classifier_on(images, labels, steps=steps, seed=seed, device=device)
    return accuracy(model, test_images, test_labels)
