"""Command-line entry points that train and ship the course's checkpoints.

    python -m minidiff.scripts.train_unet ...         the MNIST U-Nets of lessons 05 and 08
    python -m minidiff.scripts.train_classifier ...   the MNIST classifier behind classifier FID

Each writes NAME.pt with a card NAME.json whose `command` reproduces it. The library never
imports this package.
"""

from __future__ import annotations

import platform

import torch


def hardware(device: torch.device) -> str:
    """A one-line description of where a model was trained, for its card."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {torch.get_num_threads()} threads)"
