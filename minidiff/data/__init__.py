"""Data for the lessons: 2D toy datasets (`toy`) and MNIST from the official files (`mnist`).

    from minidiff.data import sample, density          # 2D toys, exact densities
    from minidiff.data import mnist_images             # (N, 1, 28, 28) in [-1, 1]

The MNIST names are imported lazily, so that `python -m minidiff.data.mnist` runs the
module once (no double import) and the toy datasets load without touching the disk.
"""

from .toy import (
    DATASETS,
    Checkerboard,
    EntropyEstimate,
    GaussianMixture,
    checkerboard,
    density,
    gmm8,
    moons,
    sample,
    swiss_roll,
)

_MNIST_NAMES = ("load_mnist", "mnist_images", "download_mnist", "verify_mnist", "MNISTError", "MIRRORS")

__all__ = [
    "DATASETS", "Checkerboard", "EntropyEstimate", "GaussianMixture", "checkerboard", "density",
    "gmm8", "moons", "sample", "swiss_roll", *_MNIST_NAMES,
]


def __getattr__(name):
    if name in _MNIST_NAMES:
        from . import mnist

        return getattr(mnist, name)
    raise AttributeError(f"module 'minidiff.data' has no attribute {name!r}")
