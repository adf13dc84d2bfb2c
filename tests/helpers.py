"""Small helpers shared by test files (pytest puts tests/ on sys.path, so `from helpers import ...`)."""

import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def random_mixture_params(seed=0, K=3, D=2):
    """Means (K, D), stds (K,) and *unnormalised* weights (K,) of a random Gaussian mixture, float64."""
    g = gen(seed)
    means = 2 * torch.randn(K, D, generator=g, dtype=torch.float64)
    std = 0.3 + torch.rand(K, generator=g, dtype=torch.float64)
    weights = 0.2 + torch.rand(K, generator=g, dtype=torch.float64)
    return means, std, weights


def assert_reference_passes(check, objs):
    """A lesson's reference implementation passes every test of its check, with full points."""
    res = check(*objs, quiet=True)
    assert res.status == "ok" and res.passed == res.total and res.score == res.points, res.messages


def assert_mutant_caught(mid, check, objs, needle, wrong_formula, slips_keep_points=False):
    """A known-wrong implementation fails a test, its hint names the mistake (`needle`: a string or several),
    and a wrong formula keeps at most a third of the points (the grading rule in AUTHORING.md); with
    `slips_keep_points`, a mistake that is not a wrong formula keeps more than a third."""
    res = check(*objs, quiet=True)
    text = "\n".join(res.messages)
    assert res.passed < res.total, f"{mid}: the check passed a wrong function"
    for n in (needle,) if isinstance(needle, str) else needle:
        assert n in text, f"{mid}: hint should contain {n!r}; got:\n{text}"
    if wrong_formula:
        assert res.score <= res.points / 3 + 1e-9, f"{mid}: a wrong formula scored {res.score} of {res.points}"
    elif slips_keep_points:
        assert res.score > res.points / 3, f"{mid}: a slip (not a wrong formula) scored only {res.score} of {res.points}"


def load_benchmark(name: str):
    """benchmarks/<name>.py imported as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
