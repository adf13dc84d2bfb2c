"""tools/make_lessons.py: lessons/ stays in sync with solutions/, stubs are right, bad markers fail."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "99_fixture.ipynb"

_spec = importlib.util.spec_from_file_location("make_lessons", ROOT / "tools" / "make_lessons.py")
ml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ml)


# -- the sync test ---------------------------------------------------------------
def test_lessons_match_solutions():
    """Every solutions/NN_*.ipynb has a lesson, every lesson a solution, and each lesson
    is exactly what the generator writes. Fix: `python tools/make_lessons.py`."""
    problems = ml.stale(ml.default_solutions())
    assert not problems, "lessons/ is out of sync with solutions/:\n" + "\n".join(problems)


def test_sync_check_detects_drift(tmp_path, monkeypatch):
    sols, les = tmp_path / "solutions", tmp_path / "lessons"
    sols.mkdir()
    les.mkdir()
    monkeypatch.setattr(ml, "ROOT", tmp_path)
    monkeypatch.setattr(ml, "SOLUTIONS", sols)
    monkeypatch.setattr(ml, "LESSONS", les)
    (sols / "99_fixture.ipynb").write_bytes(FIXTURE.read_bytes())
    assert ml.main(["--check"]) == 1  # lesson missing
    assert ml.main([]) == 0
    assert ml.main(["--check"]) == 0
    before = (les / "99_fixture.ipynb").read_bytes()
    assert ml.main([]) == 0 and (les / "99_fixture.ipynb").read_bytes() == before  # idempotent
    (les / "99_fixture.ipynb").write_text(before.decode().replace("not written yet", "done"))
    assert ml.stale(ml.default_solutions()) == ["lessons/99_fixture.ipynb: differs from what 99_fixture.ipynb generates"]
    ml.main([])
    (les / "98_orphan.ipynb").write_bytes(before)  # a lesson whose master was deleted
    assert ml.stale(ml.default_solutions()) == ["lessons/98_orphan.ipynb: has no master solutions/98_orphan.ipynb"]


def test_cli_check_runs():
    r = subprocess.run([sys.executable, "tools/make_lessons.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    assert (r.returncode == 0) == (r.stdout.strip() == "")


# -- what a generated lesson looks like --------------------------------------------
@pytest.fixture(scope="module")
def fixture_lesson():
    return nbformat.reads(ml.render(FIXTURE), as_version=4)


def test_cells_stay_one_to_one(fixture_lesson):
    master = nbformat.read(FIXTURE, as_version=4)
    assert [c.cell_type for c in fixture_lesson.cells] == [c.cell_type for c in master.cells]
    assert [c.id for c in fixture_lesson.cells] == [c.id for c in master.cells]


def test_no_outputs_or_counts(fixture_lesson):
    for cell in fixture_lesson.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert set(cell.metadata) <= {"tags"}
        assert "SOLUTION" not in cell.source and "HIDDEN" not in cell.source
    assert set(fixture_lesson.metadata) == {"kernelspec", "language_info"}


def test_stubs(fixture_lesson):
    src = [c.source for c in fixture_lesson.cells]
    assert src[3] == ('def add(a, b):\n    """a + b."""\n    # YOUR CODE HERE: return the sum\n'
                      '    raise NotImplementedError("add: not written yet")')
    assert "# YOUR CODE HERE: see the exercise text above" in src[6]
    assert src[7] == "check.square(square)"  # hidden tests removed
    assert src[9].startswith('# YOUR CODE HERE: sum the integers 0..9\nraise NotImplementedError("total: not written yet")')
    assert src[11] == "**Question.** Why?\n\n_Your answer here._"
    assert "return a + b" not in "".join(src) and "sum(range(10))" not in "".join(src)


def test_stubs_raise_not_implemented(fixture_lesson):
    ns = {}
    exec(fixture_lesson.cells[3].source, ns)
    exec(fixture_lesson.cells[6].source, ns)
    with pytest.raises(NotImplementedError, match="add: not written yet"):
        ns["add"](1, 2)
    with pytest.raises(NotImplementedError, match="square: not written yet"):
        ns["square"](1)
    with pytest.raises(NotImplementedError, match="total: not written yet"):
        exec(fixture_lesson.cells[9].source, {})


def test_deterministic_bytes():
    a, b = ml.render(FIXTURE), ml.render(FIXTURE)
    assert a == b and a.endswith("\n")
    assert json.loads(a)["cells"][4]["execution_count"] is None


def test_stub_keeps_marker_indentation():
    src = ("class A:\n    def f(self):\n        if True:\n"
           "            ### BEGIN SOLUTION\n            return 1\n            ### END SOLUTION\n        return 2")
    out = ml.strip_source(src)
    assert '            raise NotImplementedError("f: not written yet")' in out.split("\n")
    assert out.endswith("        return 2")


# -- bad markers ------------------------------------------------------------------
@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx = 1\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
         r"lesson\.ipynb: cell 2, line 3: nested '### BEGIN SOLUTION'.*opened at line 1"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n",
         r"lesson\.ipynb: cell 2, line 2: '### BEGIN SOLUTION' is never closed"),
        ("x = 1\n### END SOLUTION",
         r"lesson\.ipynb: cell 2, line 2: '### END SOLUTION' without a matching '### BEGIN SOLUTION'"),
        ("### BEGIN HIDDEN TESTS\n### END SOLUTION",
         r"cell 2, line 2: '### END SOLUTION' without"),
        ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION",
         r"cell 2, line 2: nested '### BEGIN HIDDEN TESTS'"),
    ],
    ids=["nested", "unclosed", "stray-end", "mismatched-end", "hidden-inside-solution"],
)
def test_marker_errors(source, message):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("y = 2"),
                                         nbformat.v4.new_code_cell(source)])
    with pytest.raises(ml.MarkerError, match=message):
        ml.make_lesson(nb, name="lesson.ipynb")


def test_marker_error_in_markdown():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nanswer")])
    with pytest.raises(ml.MarkerError, match=r"cell 0, line 1: '### BEGIN SOLUTION' is never closed"):
        ml.make_lesson(nb, name="lesson.ipynb")
