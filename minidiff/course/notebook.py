"""One call at the top of every lesson: seeds, threads, figures, device and budget.

    from minidiff.course.notebook import setup
    lesson = setup()                      # prints one line: device, tier, seed
    steps = lesson.budget(cpu=2_000, gpu=20_000)

Why one helper: nbval compares the outputs stored in solutions/ with a fresh run,
so every notebook must start from the same random state and the same number of
CPU threads (a float32 sum over 10^6 numbers differs between 1 and 2 threads).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..utils import pick_device, progress, progress_enabled  # noqa: F401  (re-exported for the lessons)

TIERS = ("tiny", "cpu", "gpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every cuda device


@dataclass
class Lesson:
    """What a lesson needs to size itself: where to compute and how much."""

    device: torch.device
    tier: str
    seed: int

    def budget(self, *, cpu, gpu=None, tiny=None):
        """Pick a number by tier. `gpu` defaults to `cpu`, `tiny` to `cpu`.

        Lessons size training and sampling with this and never with hand-edited
        constants, so that one notebook serves a laptop, a GPU and the test suite.
        """
        if self.tier == "gpu":
            return cpu if gpu is None else gpu
        if self.tier == "tiny":
            return cpu if tiny is None else tiny
        return cpu


def default_tier(device: torch.device) -> str:
    tier = os.environ.get("MINIDIFF_TIER")
    if tier:
        if tier not in TIERS:
            raise ValueError(f"MINIDIFF_TIER={tier!r} is not one of {TIERS}")
        return tier
    return "gpu" if device.type in ("cuda", "mps") else "cpu"


def set_figure_defaults() -> None:
    import matplotlib as mpl

    # An explicit size: nbval compares "<Figure size 640x480 ...>" text, and the
    # default changed between matplotlib-inline versions. Low dpi keeps the PNGs
    # stored in solutions/ small.
    mpl.rcParams.update(
        {
            "figure.figsize": (6.0, 4.0),
            "figure.dpi": 72,
            "savefig.dpi": 72,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "image.cmap": "gray",
            "animation.html": "jshtml",
            "animation.embed_limit": 8.0,
        }
    )


def setup(seed: int = 0, tier: str | None = None, threads: int | None = None, quiet: bool = False) -> Lesson:
    """Seed python/numpy/torch, fix CPU threads, set figure defaults, pick device and tier.

    threads: CPU threads for torch. Default 1 (or $MINIDIFF_THREADS): results are
    then bit-identical run to run, and the test suite can run two notebooks at
    once on a 2-core machine. Raise it on a laptop for speed (outputs may then
    differ in the last digits from the stored ones).
    """
    threads = int(threads or os.environ.get("MINIDIFF_THREADS", 1))
    torch.set_num_threads(threads)
    seed_everything(seed)
    set_figure_defaults()
    device = pick_device()
    tier = tier or default_tier(device)
    if tier not in TIERS:
        raise ValueError(f"tier={tier!r} is not one of {TIERS}")
    lesson = Lesson(device=device, tier=tier, seed=seed)
    if not quiet:
        print(f"minidiff: device={device.type}, tier={tier}, seed={seed}")
    return lesson


def use(mine, reference, name: str | None = None):
    """Your function if its check passed, minidiff's `reference` otherwise; prints which one.

        ddpm_step = use(ddpm_step, minidiff.sampling.ddpm_step)

    Later cells then run on your own code once it is right, and the lesson still runs to the
    end while an exercise is unfinished.
    """
    from .checks.core import PASSED

    name = name or getattr(reference, "__name__", "this function")
    if PASSED.get(name, False):
        print(f"using your {name} (its check passed)")
        return mine
    print(f"using minidiff's {name} (yours has not passed its check yet)")
    return reference
