"""Exponential moving average of a model's weights (lesson 05; lesson 04 may use it).

    θ_ema ← decay · θ_ema + (1 − decay) · θ

Samples from the averaged weights are smoother than from the raw, noisy SGD
iterate; every strong diffusion model samples from an EMA.

With `warmup=True` the n-th update (n = 0, 1, ...) uses decay_n = min(decay, (1 + n) / (10 + n)),
the warm-up of TensorFlow's ExponentialMovingAverage(num_updates=...): a constant 0.999 keeps
0.999^n of the random initial weights (30 % after 1200 steps), the warm-up forgets them at once.
benchmarks/recipes.md measures the difference.
"""

from __future__ import annotations

import copy

import torch


class EMA:
    """Keeps a frozen copy of `model` whose weights trail the live ones."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)  # ema + (1−decay)(p − ema)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)  # buffers (e.g. running stats) are copied, not averaged
        self.num_updates += 1

    def state_dict(self):
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "model": self.model.state_dict()}

    def load_state_dict(self, state) -> None:
        self.decay = state["decay"]
        self.warmup, self.num_updates = state.get("warmup", False), state.get("num_updates", 0)
        self.model.load_state_dict(state["model"])
