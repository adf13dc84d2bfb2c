"""The grader gives every solution notebook full marks (at the tiny budget).

In a file of its own so that pytest-xdist (--dist loadfile) runs it beside the other grader tests.
"""

from pathlib import Path

import pytest

from minidiff.course import grader

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_gets_full_marks(path):
    res = grader.grade_notebook(path, timeout=300, tier="tiny")
    assert res["exercises"], f"{path.name}: its check module registers no exercises"
    assert len(res["exercises"]) >= 3, f"{path.name}: a lesson has at least three graded exercises"
    assert res["score"] == res["points"], grader.explain(res)
    assert res["kernel_restarts"] == 0
