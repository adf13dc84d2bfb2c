"""Sinusoidal timestep embedding (lesson 04; the U-Net of lesson 05 reuses it).

The network must know *how noisy* its input is. Feeding the integer t directly
gives one badly scaled number; instead t is mapped to sines and cosines at
geometrically spaced frequencies (Vaswani et al. 2017, §3.5; DDPM appendix B):

    emb(t)[i]         = sin(t · ω_i),   emb(t)[i + d/2] = cos(t · ω_i),
    ω_i = max_period^(−i / (d/2)),  i = 0 .. d/2 − 1.
"""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Embed timesteps t (shape (B,), integer or float) as (B, dim) float32 features."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a torch.Tensor of shape (B,), got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be a positive even number, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
