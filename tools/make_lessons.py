"""Generate the learner notebooks in lessons/ from the solved masters in solutions/.

    python tools/make_lessons.py                 # regenerate lessons/ from every solutions/NN_*.ipynb
    python tools/make_lessons.py solutions/01_noise_schedules.ipynb
    python tools/make_lessons.py --check         # exit 1 and list the lessons that are out of date

In code cells each block between nbgrader's markers

    ### BEGIN SOLUTION <what to write>
    ...solution...
    ### END SOLUTION

becomes, at the marker's indentation,

    # YOUR CODE HERE: <what to write>
    raise NotImplementedError("<function name>: not written yet")

`### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` blocks are removed; in markdown
cells a solution block becomes "_Your answer here._". Cells stay 1:1 with the
master; outputs, execution counts and metadata noise are dropped, and the JSON is
written the same way every time (same master -> byte-identical lesson).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, LESSONS = ROOT / "solutions", ROOT / "lessons"

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKDOWN_STUB = "_Your answer here._"
KEEP_CELL_METADATA = ("tags",)  # nbval/nbclient honour tags such as raises-exception
DEFAULT_KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


class MarkerError(ValueError):
    """A solution/hidden-test marker that is nested, unclosed or unmatched."""


def _enclosing_def(lines: list[str], i: int, indent: str) -> str | None:
    """Name of the def/class that a marker at line i (indented by `indent`) sits in."""
    for line in reversed(lines[:i]):
        m = re.match(r"(\s*)(?:async\s+)?(?:def|class)\s+(\w+)", line)
        if m and len(m.group(1)) < len(indent):
            return m.group(2)
    return None


def strip_source(source: str, *, markdown: bool = False, where: str = "", exercise: str | None = None) -> str:
    """Replace solution blocks by stubs and drop hidden tests in one cell's source.

    `where` names the cell in error messages; `exercise` names a top-level stub
    (one outside any function), e.g. the check that the next cell calls.
    """
    lines = source.split("\n")
    out: list[str] = []
    open_at: tuple[str, int] | None = None  # (marker, 1-based line) of the block being skipped
    for i, line in enumerate(lines):
        s = line.strip()
        lineno = i + 1
        if s.startswith(BEGIN) or s.startswith(BEGIN_HIDDEN):
            marker = BEGIN if s.startswith(BEGIN) else BEGIN_HIDDEN
            if open_at:
                raise MarkerError(f"{where}, line {lineno}: nested '{marker}' inside the "
                                  f"'{open_at[0]}' block opened at line {open_at[1]}; close it first")
            open_at = (marker, lineno)
            if marker == BEGIN_HIDDEN:
                continue
            indent = line[: len(line) - len(line.lstrip())]
            if markdown:
                out.append(indent + MARKDOWN_STUB)
                continue
            what = s[len(BEGIN):].strip() or "see the exercise text above"
            name = _enclosing_def(lines, i, indent) or exercise or "this exercise"
            out.append(f"{indent}# YOUR CODE HERE: {what}")
            out.append(f'{indent}raise NotImplementedError("{name}: not written yet")')
        elif s.startswith(END) or s.startswith(END_HIDDEN):
            marker = END if s.startswith(END) else END_HIDDEN
            expected = BEGIN if marker == END else BEGIN_HIDDEN
            if not open_at or open_at[0] != expected:
                raise MarkerError(f"{where}, line {lineno}: '{marker}' without a matching '{expected}'")
            open_at = None
        elif not open_at:
            out.append(line)
    if open_at:
        raise MarkerError(f"{where}, line {open_at[1]}: '{open_at[0]}' is never closed "
                          f"(add '{END if open_at[0] == BEGIN else END_HIDDEN}')")
    return "\n".join(out)


def _next_check_name(cells, start: int) -> str | None:
    """The exercise that the next code cells check (`check.NAME(...)`), for top-level stubs."""
    for cell in cells[start:start + 3]:
        if cell.cell_type == "code":
            m = re.search(r"\bcheck\.(\w+)\s*\(", cell.source)
            if m:
                return m.group(1)
    return None


def make_lesson(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner version of a solved notebook (a new object; `nb` is left alone)."""
    lesson = nbformat.v4.new_notebook()
    lesson.metadata = {
        "kernelspec": dict(nb.metadata.get("kernelspec") or DEFAULT_KERNELSPEC),
        "language_info": {"name": "python"},
    }
    for i, cell in enumerate(nb.cells):
        where = f"{name}: cell {i}"
        if cell.cell_type == "code":
            src = strip_source(cell.source, where=where, exercise=_next_check_name(nb.cells, i))
            new = nbformat.v4.new_code_cell(src)  # no outputs, execution_count None
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(strip_source(cell.source, markdown=True, where=where))
            if cell.get("attachments"):
                new.attachments = cell.attachments
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        new.metadata = {k: cell.metadata[k] for k in KEEP_CELL_METADATA if k in cell.metadata}
        new.id = cell.get("id") or f"cell-{i:03d}"  # keep the master's ids: cells stay comparable 1:1
        lesson.cells.append(new)
    return lesson


def render(solution: Path) -> str:
    """The exact text of the lesson generated from `solution`."""
    nb = nbformat.read(solution, as_version=4)
    text = nbformat.writes(make_lesson(nb, name=solution.name))  # json with sorted keys, indent 1
    return text if text.endswith("\n") else text + "\n"


def _rel(p: Path) -> str:
    return os.path.relpath(p, ROOT)


def lesson_path(solution: Path) -> Path:
    return LESSONS / Path(solution).name


def default_solutions() -> list[Path]:
    return sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def stale(solutions: list[Path], check_orphans: bool = True) -> list[str]:
    """Problems that `--check` reports: lessons that differ, are missing, or have no master."""
    problems = []
    for sol in solutions:
        dest = lesson_path(sol)
        if not dest.exists():
            problems.append(f"{_rel(dest)}: missing (generate it from {sol.name})")
        elif dest.read_text(encoding="utf-8") != render(sol):
            problems.append(f"{_rel(dest)}: differs from what {sol.name} generates")
    if check_orphans:
        names = {s.name for s in solutions}
        for les in sorted(LESSONS.glob("[0-9][0-9]_*.ipynb")):
            if les.name not in names:
                problems.append(f"{_rel(les)}: has no master solutions/{les.name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("solutions", nargs="*", type=Path, help="solution notebooks (default: solutions/NN_*.ipynb)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if any lesson is out of date")
    args = ap.parse_args(argv)
    sols = [p.resolve() for p in args.solutions] or default_solutions()
    for p in sols:
        if not p.exists():
            ap.error(f"{p}: no such file")
    try:
        if args.check:
            problems = stale(sols, check_orphans=not args.solutions)
            for p in problems:
                print(p)
            if problems:
                print("run `python tools/make_lessons.py` to regenerate lessons/", file=sys.stderr)
            return 1 if problems else 0
        LESSONS.mkdir(exist_ok=True)
        for sol in sols:
            text, dest = render(sol), lesson_path(sol)
            if not dest.exists() or dest.read_text(encoding="utf-8") != text:
                dest.write_text(text, encoding="utf-8")
                print(f"wrote {_rel(dest)}")
    except MarkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
