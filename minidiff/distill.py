"""Progressive distillation: a student that takes one DDIM step where its teacher takes two (lesson 18).

Salimans & Ho (2022), "Progressive Distillation for Fast Sampling of Diffusion Models", Algorithm 2.
The teacher is a model sampled with DDIM (η = 0) on 2N steps. The student, a copy of the teacher's
network, learns to land in one step where the teacher lands in two; then it becomes the teacher,
and N halves: 2N → N → N/2 → ... → 1. Each round is an ordinary training run (`training.train`).

Write α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), so that x_t = α_t x_0 + σ_t ε (DDPM eq. 4). On the student's grid
t > t'' (`student_grid`), with t' the midpoint on the teacher's grid of 2N steps, one loss term is:

    1. x_0 from the data, ε ~ N(0, I), x_t = α_t x_0 + σ_t ε
    2. two teacher DDIM steps:  x_t → x_{t'} → x_{t''}                                (DDIM eq. 12, η = 0)
    3. the x̃ that makes ONE DDIM step from x_t land on x_{t''}: a DDIM step is
           x_{t''} = α_{t''} x̂ + σ_{t''} (x_t − α_t x̂)/σ_t,   so
           x̃ = (x_{t''} − (σ_{t''}/σ_t) x_t) / (α_{t''} − (σ_{t''}/σ_t) α_t)
    4. the student, a v-network, regresses the v of (x̃, ε̃ = (x_t − α_t x̃)/σ_t):
           L = ‖v_θ(x_t, t) − (α_t ε̃ − σ_t x̃)‖²  = (1 + SNR_t) ‖x̂_θ − x̃‖²
       (v-prediction, Salimans & Ho 2022, §4; the "SNR + 1" weighting of their paper).

At the last step (t'' = 0) σ_{t''} = 0 and x̃ = x_{t''}: the student's x̂_0 must equal the teacher's final sample.
A student with N steps samples with `ddim.ddim_sample(schedule, EpsFromV(student, schedule), shape, steps=N)`.
"""

from __future__ import annotations

import copy
from functools import partial

import torch

from .ddim import ddim_step, ddim_timesteps
from .forward import add_noise
from .schedules import extract
from .training import train
from .utils import check_float, check_positive_int, check_same_shape, check_schedule, check_timesteps, randint, randn
from .vpred import EpsFromV, velocity


def student_grid(T: int, steps: int) -> torch.Tensor:
    """The `steps` + 1 times of an N-step DDIM sampler, T = τ_1 > ... > τ_N > τ_{N+1} = 0 (LongTensor).
    For N a power of two dividing into T evenly enough, student_grid(T, 2N)[2i] == student_grid(T, N)[i]."""
    return torch.tensor(ddim_timesteps(T, steps) + [0], dtype=torch.long)


def alpha_sigma(schedule, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t), shaped to broadcast against x (computed in float64, then x's dtype)."""
    abar = schedule.alphas_cumprod
    return extract(abar.sqrt(), t, x), extract((1 - abar).sqrt(), t, x)


def distillation_target(schedule, x_t: torch.Tensor, t, x_next: torch.Tensor, t_next) -> torch.Tensor:
    """x̃ = (x_{t''} − (σ_{t''}/σ_t) x_t) / (α_{t''} − (σ_{t''}/σ_t) α_t): the x̂_0 for which one DDIM step
    (η = 0) from x_t at t lands exactly on x_next at t_next < t (Salimans & Ho 2022, Algorithm 2)."""
    s = check_schedule(schedule)
    check_float("x_t", x_t)
    check_float("x_next", x_next)
    check_same_shape("x_next", x_next, "x_t", x_t)
    t, t_next = check_timesteps(t, x_t, 1, s.T), check_timesteps(t_next, x_t, 0, s.T)
    if (t_next >= t).any():
        raise ValueError("t_next must be earlier than t (0 ≤ t_next < t)")
    a, sig = alpha_sigma(s, t, x_t)
    a_n, sig_n = alpha_sigma(s, t_next, x_t)
    ratio = sig_n / sig
    return (x_next - ratio * x_t) / (a_n - ratio * a)


def teacher_two_steps(schedule, teacher, x_t: torch.Tensor, t, t_mid, t_next, clip_denoised: float | None = 1.0):
    """x_t → x_{t'} → x_{t''}: two DDIM steps (η = 0) of the teacher ε-model."""
    x_mid = ddim_step(schedule, teacher, x_t, t, t_mid, clip_denoised=clip_denoised)
    return ddim_step(schedule, teacher, x_mid, t_mid, t_next, clip_denoised=clip_denoised)


def distill_loss(schedule, teacher, steps: int, student, x0: torch.Tensor, generator: torch.Generator | None = None,
                 clip_denoised: float | None = 1.0) -> torch.Tensor:
    """One progressive-distillation loss (stages 1–4 of the module docstring) for a student of `steps` steps.
    teacher: an ε-model (e.g. EpsFromV(teacher_net, schedule)) sampled on 2·steps; student: a v-network.
    `partial(distill_loss, schedule, teacher, steps)` is a loss_fn for `training.train`."""
    s = check_schedule(schedule)
    check_positive_int("steps", steps)
    check_float("x0", x0)
    grid, fine = student_grid(s.T, steps).to(x0.device), student_grid(s.T, 2 * steps).to(x0.device)
    # 1. a point on the student's grid, and x_t
    i = randint(steps, (x0.shape[0],), generator, x0.device)
    t, t_mid, t_next = grid[i], fine[2 * i + 1], grid[i + 1]
    x_t = add_noise(s, x0, randn(x0.shape, generator, x0.device), t)
    with torch.no_grad():
        # 2. two teacher steps, 3. the target x̃ of one step
        x_next = teacher_two_steps(s, teacher, x_t, t, t_mid, t_next, clip_denoised)
        x_tilde = distillation_target(s, x_t, t, x_next, t_next)
        a, sig = alpha_sigma(s, t, x_t)
        v_tilde = velocity(s, x_tilde, (x_t - a * x_tilde) / sig, t)
    # 4. the student regresses v
    return (student(x_t, t) - v_tilde).pow(2).mean()


def distill_round(schedule, teacher_net: torch.nn.Module, images: torch.Tensor, steps: int, train_steps: int,
                  **train_kwargs):
    """One round: a copy of `teacher_net` (a v-network, sampled on 2·steps) trained for `train_steps` loop
    steps to sample in `steps`. Returns training.train's TrainResult (`.sampling_model` is the student);
    train_kwargs go to train (batch_size, lr, ema_decay, max_seconds, ...)."""
    teacher = EpsFromV(copy.deepcopy(teacher_net).eval().requires_grad_(False), schedule)
    student = copy.deepcopy(teacher_net).train().requires_grad_(True)
    return train(student, partial(distill_loss, schedule, teacher, steps), images, train_steps, **train_kwargs)
