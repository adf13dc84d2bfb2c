"""A small MLP that predicts the noise ε from (x_t, t) for 2D toy data (lesson 04).

    ε_θ(x_t, t) = MLP([x_t, e(t)])                       (DDPM eq. 14's ε_θ)

where e(t) is the sinusoidal timestep embedding of `minidiff.embedding` passed through
a small two-layer "time MLP". The time features are added to every hidden layer
(not only concatenated at the input), so that each layer can change what it does
with the noise level: at t near T the best guess is ε ≈ x_t, near t = 1 the network
must find the offset from the data manifold.

Optionally the input x_t is widened by random Fourier features (Tancik et al. 2020),

    γ(x) = [x, sin(2π x B), cos(2π x B)],   B ∈ R^{dim × m} drawn once from N(0, s²),

which lets a small MLP draw sharp edges (the checkerboard's squares: benchmarks/toy2d.md)
that it learns only slowly from x alone, as MLPs fit low frequencies first (Rahaman et al.
2019; Tancik et al. 2020).

Lessons 06 and 07 reuse this network (as a score model: s_θ = −ε_θ / √(1 − ᾱ_t)).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .embedding import timestep_embedding


class EpsMLP(nn.Module):
    """ε_θ(x_t, t) for points x_t of shape (B, dim) and integer timesteps t of shape (B,).

    dim:       data dimension (2 for the toys)
    hidden:    width of the hidden layers
    depth:     number of hidden layers (each: Linear + time features + SiLU)
    emb_dim:   size of the sinusoidal embedding of t (even)
    t_scale:   t is multiplied by this before embedding. With T = 100 the integer t spans
               only 1..100, so the slowest sines barely move; `t_scale = 1000 / T` spreads
               any T over the range the embedding was designed for.
    fourier_features: m, the number of random frequencies (0: none, the plain MLP of x_t)
    fourier_scale:    s, their standard deviation in cycles per unit of x
    fourier_seed:     seed of the generator that draws B (a buffer: saved with the weights)

    `config` holds the constructor arguments (for `minidiff.checkpoints.save_checkpoint`).
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, emb_dim: int = 32, t_scale: float = 1.0,
                 fourier_features: int = 0, fourier_scale: float = 1.0, fourier_seed: int = 0):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        if emb_dim < 2 or emb_dim % 2:
            raise ValueError(f"emb_dim must be a positive even number, got {emb_dim}")
        if isinstance(fourier_features, bool) or not isinstance(fourier_features, int) or fourier_features < 0:
            raise ValueError(f"fourier_features must be an int >= 0, got {fourier_features!r}")
        if fourier_features and not fourier_scale > 0:
            raise ValueError(f"fourier_scale must be positive, got {fourier_scale!r}")
        self.dim, self.emb_dim, self.t_scale = dim, emb_dim, float(t_scale)
        self.config = dict(dim=dim, hidden=hidden, depth=depth, emb_dim=emb_dim, t_scale=float(t_scale),
                           fourier_features=fourier_features, fourier_scale=float(fourier_scale), fourier_seed=fourier_seed)
        in_dim = dim
        if fourier_features:
            # B comes from its own generator: it depends on fourier_seed alone, not on torch's global seed
            g = torch.Generator().manual_seed(fourier_seed)
            self.register_buffer("fourier_B", fourier_scale * torch.randn(dim, fourier_features, generator=g))
            in_dim = dim + 2 * fourier_features
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(in_dim, hidden)
        self.layers = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth - 1)])
        self.time_proj = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.out = nn.Linear(hidden, dim)
        # Start by predicting ε = 0: the loss starts near E|ε|² = 1 instead of a random value.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.dim:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must be a tensor of shape (B, {self.dim}), got {shape}")
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
        temb = self.time_mlp(timestep_embedding(t * self.t_scale, self.emb_dim).to(x_t.dtype))
        h = self.inp(self.features(x_t))
        for i, proj in enumerate(self.time_proj):
            if i > 0:
                h = self.layers[i - 1](h)
            h = nn.functional.silu(h + proj(temb))
        return self.out(h)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """γ(x) = [x, sin(2π x B), cos(2π x B)] with Fourier features, else x itself."""
        if not hasattr(self, "fourier_B"):
            return x
        angles = 2 * math.pi * x @ self.fourier_B.to(x.dtype)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1)
