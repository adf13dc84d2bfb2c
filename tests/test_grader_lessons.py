"""The grader gives every untouched learner notebook zero, all 'not attempted', without crashing.

In a file of its own so that pytest-xdist (--dist loadfile) runs it beside the other grader tests.
"""

from pathlib import Path

import pytest

from minidiff.course import grader

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_untouched_lesson_gets_zero(path):
    res = grader.grade_notebook(path, timeout=300, tier="tiny")
    assert res["exercises"] and res["score"] == 0, grader.explain(res)
    assert all(r["status"] == "not attempted" for r in res["exercises"]), grader.explain(res)
    assert res["kernel_restarts"] == 0 and not any(c["status"] in ("timeout", "dead") for c in res["cells"]), \
        grader.explain(res)
