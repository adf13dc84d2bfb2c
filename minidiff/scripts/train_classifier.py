"""Train the MNIST classifier that measures every generated digit (classifier FID, accuracy).

    python -m minidiff.scripts.train_classifier --epochs 3 --out data/checkpoints/mnist_classifier

Cross-entropy, AdamW, a one-cycle learning rate (warm-up 10 %, cosine down), shuffled epochs and
random ±2-pixel shifts as augmentation, run by the library's one training loop (`training.train`).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from ..checkpoints import save_checkpoint
from ..data.mnist import mnist_images
from ..eval.classifier import MNISTClassifier, accuracy
from ..training import train
from ..utils import count_parameters, pick_device
from . import hardware


def shift(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate the whole batch by one random (dy, dx) in ±max_shift, padding with background (−1)."""
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=g))
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    return padded[:, :, max_shift + dy : max_shift + dy + 28, max_shift + dx : max_shift + dx + 28]


def shuffled_epochs(images: torch.Tensor, labels: torch.Tensor, batch_size: int, g: torch.Generator):
    """A function returning the next (shifted images, labels) batch of shuffled epochs."""
    n = images.shape[0]
    per_epoch = n // batch_size
    state = {"step": 0, "order": None}

    def next_batch():
        k = state["step"] % per_epoch
        if k == 0:
            state["order"] = torch.randperm(n, generator=g).to(images.device)
        idx = state["order"][k * batch_size : (k + 1) * batch_size]
        state["step"] += 1
        return shift(images[idx], g), labels[idx]

    return next_batch


def cross_entropy(model, batch, generator=None) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def train_classifier(model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, epochs: int = 3,
                     batch_size: int = 128, lr: float = 3e-3, seed: int = 0, device=None,
                     show_progress: bool = True) -> list[float]:
    """Train `model` in place; returns the loss of every step."""
    device = torch.device(device) if device is not None else pick_device()
    images, labels = images.to(device), labels.to(device)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * (images.shape[0] // batch_size)
    res = train(model.to(device), cross_entropy, None, steps, batch_size=batch_size, lr=lr, weight_decay=1e-4,
                batches=shuffled_epochs(images, labels, batch_size, g),
                make_scheduler=lambda opt, n: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=n,
                                                                                  pct_start=0.1),
                device=device, show_progress=show_progress, desc="training classifier")
    model.eval()
    return res.losses


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.scripts.train_classifier", description="Train the MNIST classifier.")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="data/checkpoints/mnist_classifier")
    args = p.parse_args(argv)

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
    cmd = "python -m minidiff.scripts.train_classifier " + " ".join(argv if argv is not None else sys.argv[1:])
    card = {
        "name": "mnist_classifier",
        "description": "MNIST classifier; its 128 penultimate features define classifier FID (minidiff.eval.fid)",
        "command": cmd,
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "augmentation": "random ±2 px shifts", "final_loss": round(sum(losses[-50:]) / 50, 4)},
        "budget": {"seconds": round(seconds)},
        "hardware": hardware(device),
        "torch": torch.__version__,
        "parameters": count_parameters(model),
        "metrics": {"test_accuracy": round(acc, 4)},
    }
    save_checkpoint(model, args.out, card=card)
    print(f"saved {args.out}.pt and .json")
    return 0 if acc >= 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
