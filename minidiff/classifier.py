"""A small MNIST classifier: the measuring instrument of lessons 05-08.

It is trained by this repo's code (the CLI below) to ≥ 99 % test accuracy and shipped in
data/checkpoints/mnist_classifier.pt. Two uses:

* its 128 penultimate features φ(x) stand in for Inception features: "classifier FID"
  is the Fréchet distance between Gaussians fitted to φ(generated) and φ(MNIST test)
  (minidiff.fid);
* its predicted labels give the class histogram of generated digits (are all ten present,
  equally often?) and, in lesson 08, whether guided samples show the requested digit.

Input: images (B, 1, 28, 28) in [-1, 1], the same range the diffusion models produce.

    python -m minidiff.classifier --epochs 3 --out data/checkpoints/mnist_classifier
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .notebook import pick_device, progress


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


def train_classifier(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, epochs: int = 3,
                     batch_size: int = 128, lr: float = 3e-3, seed: int = 0, device=None,
                     show_progress: bool = True) -> list[float]:
    """Cross-entropy, AdamW, a one-cycle learning rate (warm-up 10 %, cosine down), shuffled epochs,
    random ±2-pixel shifts as augmentation. Returns the loss of every step."""
    device = torch.device(device) if device is not None else pick_device()
    model.to(device).train()
    images, labels = images.to(device), labels.to(device)
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    per_epoch = n // batch_size
    total = epochs * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    losses = []
    bar = progress(range(total), desc="training classifier", disable=not show_progress, mininterval=1.0)
    for step in bar:
        if step % per_epoch == 0:
            order = torch.randperm(n, generator=g).to(device)
        idx = order[(step % per_epoch) * batch_size : (step % per_epoch + 1) * batch_size]
        x = _shift(images[idx], g)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate the whole batch by one random (dy, dx) in ±max_shift, padding with background (−1)."""
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    return padded[:, :, max_shift + dy : max_shift + dy + 28, max_shift + dx : max_shift + dx + 28]


def load_classifier(name: str = "mnist_classifier", device="cpu") -> MNISTClassifier:
    """The shipped classifier, sha256-verified (minidiff.checkpoints.load_checkpoint)."""
    from .checkpoints import load_checkpoint  # noqa: PLC0415

    return load_checkpoint(name, device=device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.classifier", description="Train the MNIST classifier.")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="data/checkpoints/mnist_classifier")
    args = p.parse_args(argv)

    from .checkpoints import save_checkpoint  # noqa: PLC0415
    from .data.mnist import mnist_images  # noqa: PLC0415
    from .train_unet import _hardware  # noqa: PLC0415

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device()
    x_train, y_train = mnist_images("train")
    x_test, y_test = mnist_images("test")
    model = MNISTClassifier()
    t0 = time.perf_counter()
    losses = train_classifier(model, x_train, y_train, args.epochs, args.batch_size, args.lr, args.seed, device)
    seconds = time.perf_counter() - t0
    model.cpu()
    acc = accuracy(model, x_test, y_test)
    print(f"test accuracy {acc:.4f} after {args.epochs} epochs ({seconds:.0f} s)")
    cmd = "python -m minidiff.classifier " + " ".join(argv if argv is not None else sys.argv[1:])
    card = {
        "name": "mnist_classifier",
        "description": "MNIST classifier; its 128 penultimate features define classifier FID (minidiff.fid)",
        "command": cmd,
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "augmentation": "random ±2 px shifts", "final_loss": round(sum(losses[-50:]) / 50, 4)},
        "budget": {"seconds": round(seconds)},
        "hardware": _hardware(device),
        "torch": torch.__version__,
        "parameters": sum(q.numel() for q in model.parameters()),
        "metrics": {"test_accuracy": round(acc, 4)},
    }
    save_checkpoint(model, args.out, card=card)
    print(f"saved {args.out}.pt and .json")
    return 0 if acc >= 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
