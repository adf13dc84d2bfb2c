"""A small MNIST classifier: the measuring instrument of lessons 05-08.

It is trained by this repo's code (`python -m minidiff.scripts.train_classifier`) to ≥ 99 % test
accuracy and shipped in data/checkpoints/mnist_classifier.pt. Two uses:

* its 128 penultimate features φ(x) stand in for Inception features: "classifier FID"
  is the Fréchet distance between Gaussians fitted to φ(generated) and φ(MNIST test)
  (`eval.fid`);
* its predicted labels give the class histogram of generated digits (are all ten present,
  equally often?) and, in lesson 08, whether guided samples show the requested digit.

Input: images (B, 1, 28, 28) in [-1, 1], the same range the diffusion models produce.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..checkpoints import load_checkpoint


class MNISTClassifier(nn.Module):
    """conv-conv-pool, conv-conv-pool, Linear → 128 features φ(x) → Linear → 10 logits.

    BatchNorm after each conv (fine here: a classifier sees clean images only), ReLU,
    dropout before the last layer. `features(x)` returns φ(x), the input of the last layer.
    """

    def __init__(self, channels: tuple[int, int] = (16, 32), feature_dim: int = 128, num_classes: int = 10,
                 dropout: float = 0.3):
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.config = dict(channels=[c1, c2], feature_dim=feature_dim, num_classes=num_classes, dropout=dropout)

        def conv(ci, co):
            return [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU()]

        self.body = nn.Sequential(*conv(1, c1), *conv(c1, c1), nn.MaxPool2d(2),       # 28 → 14
                                  *conv(c1, c2), *conv(c2, c2), nn.MaxPool2d(2),      # 14 → 7
                                  nn.Flatten(), nn.Linear(c2 * 7 * 7, feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): the (B, feature_dim) penultimate activations."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"x must be images of shape (B, 1, 28, 28) in [-1, 1], got {tuple(getattr(x, 'shape', ()))}")
        return self.body(x.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


@torch.no_grad()
def _batched(fn, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, x.shape[0], batch_size)])


def extract_features(model: MNISTClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """φ(images) as a float32 CPU tensor (N, feature_dim); the model is put in eval mode.
    Images outside [-1, 1] are clamped (samples overshoot slightly; the classifier never saw that)."""
    model.eval()
    device = next(model.parameters()).device
    return _batched(model.features, images.clamp(-1, 1), batch_size, device)


def predict(model: MNISTClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels (N,) int64 of images in [-1, 1]."""
    model.eval()
    device = next(model.parameters()).device
    return _batched(lambda x: model(x).argmax(1), images.clamp(-1, 1), batch_size, device).long()


def accuracy(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose predicted label equals the true one."""
    return (predict(model, images) == labels.cpu()).float().mean().item()


def class_histogram(labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Fraction of samples in each class (num_classes,), summing to 1."""
    counts = torch.bincount(labels.cpu().long(), minlength=num_classes).double()
    return counts / counts.sum().clamp(min=1)


def load_classifier(name: str = "mnist_classifier", device="cpu") -> MNISTClassifier:
    """The shipped classifier, sha256-verified (minidiff.checkpoints.load_checkpoint)."""
    return load_checkpoint(name, MNISTClassifier, device=device)
