"""Test settings shared by nbval kernels and unit tests (see tools/test_env.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
import test_env  # noqa: E402

test_env.apply()  # before any kernel starts: kernels inherit this environment

# Fixture notebooks are inputs to the grader tests, not lessons: nbval must not run them.
collect_ignore_glob = ["tests/fixtures/*", "lessons/*", "nbsrc/*", "build/*"]
