"""minidiff.course.grader: solutions get full marks, untouched lessons zero, and grading survives
wrong answers, infinite loops and dead kernels.

Two layers: a fixture lesson "99" (tests/fixtures: three tiny exercises, fast) and the real
lessons (parametrized over whatever solutions/ and lessons/ hold; each notebook is graded
once per test, under the `tiny` tier, so pytest-xdist can spread them).
"""

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minidiff.course import grader

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))

grader.load_check_module(FIXTURES / "lesson99.py")  # registers lesson "99" in this process

_spec = importlib.util.spec_from_file_location("make_lessons", ROOT / "tools" / "make_lessons.py")
ml = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ml)


def _rows(res):
    return {r["exercise"]: r for r in res["exercises"]}


# -- editing a solved notebook into a broken one -------------------------------------------
def solution_blocks(nb):
    """(cell index, line of BEGIN, line of END, indent) of every code solution block."""
    blocks = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        for j, line in enumerate(lines):
            if line.strip().startswith(ml.BEGIN):
                end = next(k for k in range(j, len(lines)) if lines[k].strip().startswith(ml.END))
                blocks.append((i, j, end, line[: len(line) - len(line.lstrip())]))
    return blocks


def exercise_of(nb, lesson, cell_index):
    """The exercise checked next after a cell: the one a solution block in that cell belongs to."""
    where = grader.check_cells(nb, lesson, [e.name for e in grader.exercises(lesson)])
    after = sorted((c, name) for name, c in where.items() if c >= cell_index)
    return after[0][1] if after else None


def break_block(nb, lesson, how, skip_last=True):
    """Edit the first solution block that `how` can edit, of an exercise other than the last.

    how(lines, begin, end, indent) edits the cell's lines in place and returns True if it could.
    Returns the exercise whose block was edited.
    """
    last = grader.exercises(lesson)[-1].name
    for i, begin, end, indent in solution_blocks(nb):
        name = exercise_of(nb, lesson, i)
        if name is None or (skip_last and name == last):
            continue
        lines = nb.cells[i].source.split("\n")
        if how(lines, begin, end, indent):
            nb.cells[i].source = "\n".join(lines)
            return name
    raise AssertionError("no solution block could be edited")


def off_by_one(lines, begin, end, indent):
    """`return X` at the block's own indentation becomes `return (X) + 1`: wrong, but it runs."""
    for k in range(begin + 1, end):
        if lines[k].startswith(indent + "return "):
            expr = lines[k][len(indent + "return "):]
            try:
                ast.parse(f"({expr})")  # one whole expression on this line
            except SyntaxError:
                continue
            lines[k] = f"{indent}return ({expr}) + 1"
            return True
    return False


def infinite_loop(lines, begin, end, indent):
    lines.insert(begin + 1, indent + "while True: pass")
    return True


def kill_kernel_after_first_check(nb, lesson):
    where = grader.check_cells(nb, lesson, [e.name for e in grader.exercises(lesson)])
    first = min(where.values())
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell("import os; os._exit(1)"))


def write_variant(nb, folder: Path, name: str, check_module: Path | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if check_module:
        shutil.copy(check_module, folder)
    path = folder / name
    nbformat.write(nb, path)
    return path


# -- fixture lesson 99 (fast) ----------------------------------------------------------------
FIXTURE = FIXTURES / "99_fixture.ipynb"


def test_fixture_cli_two_learners(tmp_path, capsys):
    """The CLI on two folders: alice solved everything, bob handed in the untouched lesson."""
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    write_variant(nbformat.read(FIXTURE, 4), alice, "99_fixture.ipynb", FIXTURES / "lesson99.py")
    write_variant(nbformat.reads(ml.render(FIXTURE), as_version=4), bob, "99_fixture.ipynb", FIXTURES / "lesson99.py")
    out = tmp_path / "grades.json"
    assert grader.main([str(alice), str(bob), "--timeout", "30", "--tier", "tiny", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^add\s+2\s+2\s+ok\s", table, re.M) and "total: 6 / 6" in table
    assert re.search(r"^add\s+2\s+0\s+not attempted\s", table, re.M) and "total: 0 / 6" in table
    assert "TOTAL over 2 notebooks: 6 / 12" in table

    grades = json.loads(out.read_text())
    assert grades["total"] == {"score": 6, "points": 12}
    assert grades["folders"] == {str(alice): {"score": 6, "points": 6}, str(bob): {"score": 0, "points": 6}}
    assert grades["graded_at"] and grades["tier"] == "tiny"
    solved, untouched = grades["notebooks"]
    assert solved["lesson"] == "99" and solved["notebook"] == str(alice / "99_fixture.ipynb")
    assert [(r["exercise"], r["points"], r["score"], r["status"]) for r in solved["exercises"]] == [
        ("add", 2, 2, "ok"), ("square", 1, 1, "ok"), ("total", 3, 3, "ok")]
    assert all(c["status"] == "ok" and c["seconds"] >= 0 for c in solved["cells"])
    assert solved["kernel_restarts"] == untouched["kernel_restarts"] == 0
    assert [r["status"] for r in untouched["exercises"]] == ["not attempted"] * 3, grader.explain(untouched)
    assert [r["score"] for r in untouched["exercises"]] == [0, 0, 0]
    # a top-level stub: its check cell raised NameError, the reason names the stub instead
    assert "NotImplementedError" in _rows(untouched)["total"]["message"]


def test_fixture_wrong_loop_and_dead_kernel(tmp_path, capsys):
    """add is off by one, square loops forever, then the kernel dies: total still scores."""
    nb = nbformat.read(FIXTURE, 4)
    assert break_block(nb, "99", off_by_one) == "add"
    nb.cells[6].source = nb.cells[6].source.replace("y = x * x", "while True: pass")  # square never returns
    nb.cells.insert(8, nbformat.v4.new_code_cell("import os; os._exit(1)"))  # after square's check
    path = write_variant(nb, tmp_path, "99_broken.ipynb", FIXTURES / "lesson99.py")
    res = grader.grade([path], timeout=8, tier="tiny")["notebooks"][0]
    rows = _rows(res)
    assert (rows["add"]["score"], rows["add"]["status"]) == (0, "failed"), grader.explain(res)
    assert "add(2, 3) == 5" in rows["add"]["message"]
    assert (rows["square"]["score"], rows["square"]["status"]) == (0, "timeout"), grader.explain(res)
    assert "timed out after 8 s" in rows["square"]["message"]
    assert (rows["total"]["score"], rows["total"]["status"]) == (3, "ok"), grader.explain(res)
    assert res["kernel_restarts"] == 1
    assert [c["status"] for c in res["cells"] if c["index"] in (7, 8)] == ["timeout", "dead"]
    assert "total: 3 / 6" in capsys.readouterr().out


def test_last_report_counts_missing_check_and_stuck_kernel(tmp_path, monkeypatch):
    """A check cell run twice: the second (passing) report wins. A kernel that ignores the
    interrupt is restarted and the earlier cells re-run. A deleted check cell is 'missing'."""
    nb = nbformat.read(FIXTURE, 4)
    nb.cells[3].source = "def add(a, b):\n    return a - b"
    nb.cells[4].source = "check.add(add)\ndef add(a, b):\n    return a + b\ncheck.add(add)"
    nb.cells[5] = nbformat.v4.new_code_cell(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)  # deaf to the interrupt\nwhile True: pass")
    nb.cells[10].source = "print('forgot the check')"
    path = write_variant(nb, tmp_path, "99_odd.ipynb", FIXTURES / "lesson99.py")
    monkeypatch.setattr(grader, "PROBE_TIMEOUT", 3)
    res = grader.grade_notebook(path, timeout=8, tier="tiny")
    rows = _rows(res)
    assert rows["add"]["score"] == 2 and rows["square"]["score"] == 1, grader.explain(res)
    assert res["kernel_restarts"] == 1 and "did not answer" in res["cells"][3]["error"], grader.explain(res)
    assert (rows["total"]["status"], rows["total"]["score"]) == ("missing", 0)
    assert "check.total" in rows["total"]["message"]


def test_cells_after_the_last_check_are_not_run(tmp_path):
    """A cell after the last check cannot change a score: the grader stops before it (here it would hang)."""
    nb = nbformat.read(FIXTURE, 4)
    last = max(grader.check_cells(nb, "99", ["add", "square", "total"]).values())
    nb.cells.append(nbformat.v4.new_code_cell("while True: pass"))
    path = write_variant(nb, tmp_path, "99_tail.ipynb", FIXTURES / "lesson99.py")
    res = grader.grade_notebook(path, timeout=60, tier="tiny")
    assert res["score"] == res["points"] == 6, grader.explain(res)
    assert max(c["index"] for c in res["cells"]) == last
    assert all(c["status"] == "ok" for c in res["cells"])


def test_usage_errors(tmp_path, capsys):
    assert grader.main([str(tmp_path / "01_nope.ipynb")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "77_unknown.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), bad)
    assert grader.main([str(bad)]) == 2
    assert "no check module minidiff/course/checks/lesson77.py" in capsys.readouterr().err
    odd = tmp_path / "notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), odd)
    assert grader.main([str(odd)]) == 2
    assert grader.main([str(tmp_path / "empty_dir_that_is_missing")]) == 2


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "minidiff.course.grader", "no/such/01_x.ipynb"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such file" in r.stderr


# -- the real lessons ---------------------------------------------------------------------------
BROKEN_FROM = next((p for p in SOLUTIONS if p.name.startswith("01_")), SOLUTIONS[0] if SOLUTIONS else None)


@pytest.mark.skipif(BROKEN_FROM is None, reason="no solution notebooks yet")
@pytest.mark.parametrize("kind", ["wrong", "loop", "dead"])
def test_broken_solution_is_graded_on(kind, tmp_path):
    """From solutions/01: an off-by-one answer loses exactly its exercise's points; an infinite
    loop is timed out and later exercises still score; a dead kernel is restarted and graded on."""
    lesson = grader.lesson_id(BROKEN_FROM)
    nb = nbformat.read(BROKEN_FROM, 4)
    points = {e.name: e.points for e in grader.exercises(lesson)}
    if kind == "wrong":
        broken = break_block(nb, lesson, off_by_one)
    elif kind == "loop":
        broken = break_block(nb, lesson, infinite_loop)
    else:
        broken = None
        kill_kernel_after_first_check(nb, lesson)
    path = write_variant(nb, tmp_path, BROKEN_FROM.name)
    timeout = 10 if kind == "loop" else 300
    res = grader.grade_notebook(path, timeout=timeout, tier="tiny")
    rows = _rows(res)
    for name, p in points.items():
        if name == broken:
            assert rows[name]["score"] < p, grader.explain(res)
        else:
            assert rows[name]["score"] == p, grader.explain(res)
    if kind == "wrong":
        assert rows[broken]["status"] in ("failed", "error"), grader.explain(res)
        assert res["score"] == sum(points.values()) - (points[broken] - rows[broken]["score"])
    if kind == "loop":
        assert rows[broken]["status"] == "timeout" and rows[broken]["score"] == 0, grader.explain(res)
        assert "timed out after 10 s" in rows[broken]["message"]
        assert list(points).index(broken) < len(points) - 1  # later exercises exist, and scored above
    if kind == "dead":
        assert res["kernel_restarts"] == 1 and any(c["status"] == "dead" for c in res["cells"]), grader.explain(res)


def test_a_cell_that_used_the_whole_limit_is_a_timeout_even_if_nbclient_returns():
    """nbclient has returned normally from a cell that stalled for exactly --timeout; that is never 'ok'."""
    import asyncio

    class SlowButReturning:
        timeout = None
        on_cell_error = None

        async def async_execute_cell(self, cell, index):
            await asyncio.sleep(0.3)  # returns without raising CellTimeoutError

    kernel = grader._Kernel.__new__(grader._Kernel)
    kernel.client, kernel.timeout = SlowButReturning(), 0.2
    res = asyncio.run(kernel.run(object(), 3))
    assert res.status == "timeout" and "whole time limit" in res.error
    kernel.timeout = 5
    assert asyncio.run(kernel.run(object(), 3)).status == "ok"
