"""Exponential moving average of a model's weights (lesson 05; lesson 04 may use it).

    θ_ema ← decay · θ_ema + (1 − decay) · θ

Samples from the averaged weights are smoother than from the raw, noisy SGD
iterate; every strong diffusion model samples from an EMA.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """Keeps a frozen copy of `model` whose weights trail the live ones."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)  # ema + (1−decay)(p − ema)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)  # buffers (e.g. running stats) are copied, not averaged

    def state_dict(self):
        return {"decay": self.decay, "model": self.model.state_dict()}

    def load_state_dict(self, state) -> None:
        self.decay = state["decay"]
        self.model.load_state_dict(state["model"])
