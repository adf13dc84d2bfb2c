"""The bottom layer: argument checks, random numbers, the device, progress bars.

Every other module of minidiff may import from here; this module imports nothing of
minidiff's. The checks give one clear message that names the argument and the fix, so
that a wrong shape, dtype or device fails at the call, not three functions later.
"""

from __future__ import annotations

import os

import torch

# -- argument checks ---------------------------------------------------------------------


def check_float(name: str, x) -> torch.Tensor:
    """x itself, if it is a floating-point tensor; a TypeError naming `name` otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}: use {name}.float()")
    return x


def check_same_shape(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {tuple(a.shape)} but {b_name} has {tuple(b.shape)}: they must match")


def check_same_device(*tensors) -> None:
    devices = {x.device for x in tensors if isinstance(x, torch.Tensor)}
    if len(devices) > 1:
        raise ValueError(f"tensors are on different devices {sorted(map(str, devices))}: move them with .to(device)")


def check_schedule(schedule):
    """The schedule itself, if it has β, α and ᾱ tables (duck-typed, so that a schedule made
    before an `importlib.reload` still works)."""
    if not all(hasattr(schedule, a) for a in ("betas", "alphas", "alphas_cumprod")):
        raise TypeError(f"schedule must be a minidiff NoiseSchedule, got {type(schedule).__name__}: "
                        "make one with NoiseSchedule.make('linear', T)")
    return schedule


def check_timesteps(t, x_t: torch.Tensor, low: int = 0, high: int | None = None) -> torch.Tensor:
    """t as a LongTensor (B,) on x_t's device: an int is repeated for the whole batch.
    With `high`, every entry must lie in low..high."""
    t = torch.as_tensor(t, device=x_t.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must hold integer timesteps (torch.long), got dtype {t.dtype}: use t.long()")
    if t.dim() == 0:
        t = t.expand(x_t.shape[0])
    if t.shape != (x_t.shape[0],):
        raise ValueError(f"t must be an int or have shape (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
    if high is not None and t.numel() and ((t < low).any() or (t > high).any()):
        raise ValueError(f"t must lie in {low}..{high}; got min {int(t.min())}, max {int(t.max())}")
    return t.long()


def check_prediction(name: str, out, x_t: torch.Tensor) -> torch.Tensor:
    """A model's output must be a tensor shaped like its input x_t."""
    if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{name} must be a tensor shaped like x_t {tuple(x_t.shape)}, got {got}")
    return out


def check_image_range(name: str, x: torch.Tensor, tol: float = 1e-3) -> torch.Tensor:
    """x itself if every pixel lies in [−1, 1] (the course's image scale); a ValueError otherwise."""
    check_float(name, x)
    lo, hi = x.min().item(), x.max().item()
    if not (-1 - tol <= lo and hi <= 1 + tol):  # NaN fails the comparison too
        raise ValueError(f"{name} must hold pixels in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]: "
                         "scale 8-bit images with x / 127.5 − 1 and [0, 1] images with 2x − 1")
    return x


def check_positive_int(name: str, n, allow_zero: bool = False) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} int, got {n!r}")
    return n


def batch_shape(shape) -> tuple:
    """`shape` as a tuple whose first entry, the batch size, is positive (every sampler's x_T)."""
    shape = tuple(shape)
    if not shape or shape[0] < 1:
        raise ValueError(f"shape must start with a positive batch size, got {shape}")
    return shape


# -- random numbers ----------------------------------------------------------------------


def randn(shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32) -> torch.Tensor:
    """N(0, I) of `shape` on `device`. With a generator the numbers are drawn on the generator's
    device, then moved: results depend only on the seed, and a CPU generator works for CUDA."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def randint(high: int, size: tuple, generator: torch.Generator | None = None, device=None, low: int = 0) -> torch.Tensor:
    """Uniform integers in low..high−1, drawn like `randn` (on the generator's device, then moved)."""
    gdev = generator.device if generator is not None else device
    return torch.randint(low, high, size, generator=generator, device=gdev).to(device)


# -- the device, progress bars, sizes -------------------------------------------------------


def pick_device() -> torch.device:
    """cuda, then Apple's mps, then cpu. Never hard-code 'cuda'."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def progress_enabled() -> bool:
    """Progress bars help learners, but their timings change every run, so the tests (and the
    runs that store outputs) switch them off with MINIDIFF_NO_PROGRESS=1."""
    return os.environ.get("MINIDIFF_NO_PROGRESS", "0") in ("", "0")


def progress(iterable=None, **kwargs):
    """tqdm's notebook-aware bar, or a silent pass-through under tests."""
    if not progress_enabled():
        kwargs["disable"] = True
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
