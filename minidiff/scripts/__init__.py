"""Command-line entry points that train and ship the course's checkpoints.

    python -m minidiff.scripts.train_unet ...         the MNIST U-Nets of lessons 05 and 08
    python -m minidiff.scripts.train_classifier ...   the MNIST classifier behind classifier FID
    python -m minidiff.scripts.train_toy ...          lesson 04's 2D models
    python -m minidiff.scripts.train_text ...         lesson 14's text-conditioned U-Net
    python -m minidiff.scripts.train_latent ...       lesson 15's autoencoder and latent U-Net
    python -m minidiff.scripts.train_beyond ...       lesson 16's sound U-Net and conformer EGNN
    python -m minidiff.scripts.train_video ...        lesson 17's video U-Net and frame classifier
    python -m minidiff.scripts.train_gan ...          lesson 18's DCGANs (and the diffusion GAN)
    python -m minidiff.scripts.train_distill ...      lesson 18's progressively distilled students
    python -m minidiff.scripts.train_superres ...     lesson 19's super-resolution U-Net
    python -m minidiff.scripts.train_memorisation ... lesson 19's U-Nets trained on tiny subsets

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
