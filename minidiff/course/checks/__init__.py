"""Checks for the lessons' exercises: one module per lesson (lesson01, lesson02, ...).

In a notebook:  `from minidiff.course.checks import lesson01 as check`, then `check.cosine_betas(cosine_betas)`.
"""

import importlib

from .core import REGISTRY, Tester, exercise  # noqa: F401


def exercises_for(lesson: str):
    """The registered exercises of lesson "NN", importing its check module."""
    importlib.import_module(f"minidiff.course.checks.lesson{lesson}")
    return list(REGISTRY.get(lesson, []))
