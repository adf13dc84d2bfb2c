"""Test settings shared by nbval kernels and unit tests (see tools/test_env.py)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
import test_env  # noqa: E402

test_env.apply()  # before any kernel starts: kernels inherit this environment

# Fixture notebooks are inputs to the grader tests, not lessons: nbval must not run them.
collect_ignore_glob = ["tests/fixtures/*", "lessons/*", "nbsrc/*", "build/*"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Every unit test on one torch thread: xdist already runs one worker per core, and
    some results (float sums) depend on the thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
