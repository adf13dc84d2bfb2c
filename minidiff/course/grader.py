"""Grade lesson notebooks: run each in a fresh kernel and collect what its check cells report.

    python -m minidiff.course.grader lessons/01_noise_schedules.ipynb [more.ipynb | a folder]
           [--timeout 120] [--json grades.json] [--tier tiny|cpu|gpu] [--checks my_lesson.py]
    minidiff-grade submissions/alice/            # same thing, installed entry point

Every check cell (`check.cosine_betas(cosine_betas)`) appends its result to the file
named by $MINIDIFF_GRADE_LOG (see minidiff/course/checks/core.py). The grader points that
variable at a temporary file, runs the notebook cell by cell with nbclient and reads
the file back. The list of exercises and their points comes from the lesson's check
module (`minidiff.course.checks.exercises_for("01")`, the lesson id being the file name's
two-digit prefix), so an exercise whose check never reported still appears, with 0
points and the reason: its cell timed out, the kernel died, the stub still raises
NotImplementedError, or no cell calls the check. When a check reports several times
the last report counts.

Scores come from the checks themselves (the grading rule in AUTHORING.md and
minidiff.course.checks.core.exercise_score): decisive tests (values against a closed form,
the reference or an autograd gradient) weigh 3, incidental ones (shape, dtype, errors raised)
1; once a decisive test fails the exercise earns at most a third of its points.

Cells after the last check cell are not run: they cannot change a score.

Grading goes on whatever the notebook does: errors are allowed; a cell that runs past
--timeout is interrupted (and the kernel restarted if it does not answer); a dead
kernel is restarted. After a restart the earlier cells are run again (without the one
that hung or crashed) so that later exercises still have their definitions.

Exit status: 0 once grading completed, whatever the scores; 2 for usage errors
(missing file, no check module for the lesson).

This is a formative grader: learner code runs with the grader's permissions and could
write to the log itself. Run untrusted submissions in a container.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from minidiff.course.kernel_io import poll_client_in_slices

LESSON_FILE = re.compile(r"^(\d\d)_.*\.ipynb$")
PROBE_TIMEOUT = 15  # seconds a kernel gets to answer after an interrupt
# Run before the notebook, outside its time limits: importing torch can take longer
# than a short --timeout on a busy machine, and that is not the learner's fault.
WARM_UP = "import minidiff.course.checks.core, minidiff.course.notebook"
WARM_UP_TIMEOUT = 300


class UsageError(Exception):
    """Bad command line: missing notebook, unknown lesson."""


# -- which notebooks, which exercises ---------------------------------------------------
def lesson_id(path: Path) -> str:
    m = LESSON_FILE.match(path.name)
    if not m:
        raise UsageError(f"{path}: a lesson file name starts with its two-digit number, e.g. 01_noise_schedules.ipynb")
    return m.group(1)


def find_notebooks(paths: list[Path]) -> list[Path]:
    """Notebook files, expanding folders to their NN_*.ipynb (sorted)."""
    found = []
    for p in paths:
        if p.is_dir():
            inside = sorted(q for q in p.glob("*.ipynb") if LESSON_FILE.match(q.name))
            if not inside:
                raise UsageError(f"{p}: no lesson notebooks (NN_*.ipynb) in this folder")
            found += inside
        elif p.is_file():
            found.append(p)
        else:
            raise UsageError(f"{p}: no such file or folder")
    return found


def load_check_module(path: Path) -> None:
    """Import a check module from a file, registering its exercises (custom or test lessons)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or not path.is_file():
        raise UsageError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def exercises(lesson: str) -> list:
    """The lesson's exercises (name, points), from its check module or from checks already loaded."""
    from minidiff.course.checks import REGISTRY, exercises_for

    try:
        return exercises_for(lesson)
    except ModuleNotFoundError as e:
        if e.name != f"minidiff.course.checks.lesson{lesson}":
            raise  # the check module exists but is broken: show the real error
        if REGISTRY.get(lesson):
            return list(REGISTRY[lesson])
        raise UsageError(f"lesson {lesson}: no check module minidiff/course/checks/lesson{lesson}.py "
                         "(pass one with --checks FILE)") from None


def check_cells(nb, lesson: str, names: list[str]) -> dict[str, int]:
    """For each exercise, the index of the last code cell that calls its check."""
    alias = "check"
    for cell in nb.cells:
        m = re.search(rf"(?:from\s+minidiff\.(?:course\.)?checks\s+import\s+lesson{lesson}|import\s+[\w.]*lesson{lesson})\s+as\s+(\w+)",
                      cell.source if cell.cell_type == "code" else "")
        if m:
            alias = m.group(1)
            break
    where = {}
    for name in names:
        call = re.compile(rf"\b{alias}\.{name}\s*\(")
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and call.search(cell.source):
                where[name] = i
    return where


# -- running the notebook ------------------------------------------------------------------
@dataclass
class CellRun:
    index: int
    status: str  # ok | error | timeout | dead
    seconds: float
    error: str = ""  # "NameError: name 'x' is not defined", for error cells


@dataclass
class Run:
    cells: list[CellRun] = field(default_factory=list)
    restarts: int = 0


class _Kernel:
    """An nbclient kernel that can be restarted mid-notebook."""

    def __init__(self, nb, cwd: Path, env: dict, timeout: float, stderr_path: Path):
        from nbclient import NotebookClient

        self.env, self.timeout, self.stderr_path = env, timeout, stderr_path
        self.client = NotebookClient(
            nb, timeout=timeout, allow_errors=True, kernel_name="python3",
            resources={"metadata": {"path": str(cwd)}}, record_timing=False,
            shutdown_kernel="immediate",
        )

    async def start(self):
        self.client.km = self.client.create_kernel_manager()
        with open(self.stderr_path, "ab") as stderr:  # kernel noise goes to the record, not the table
            await self.client.async_start_new_kernel(env=self.env, stderr=stderr)
        poll_client_in_slices(await self.client.async_start_new_kernel_client())  # see course/kernel_io.py
        await self.run(nbformat.v4.new_code_cell(WARM_UP), 0, timeout=WARM_UP_TIMEOUT)

    async def stop(self):
        try:
            await self.client._async_cleanup_kernel()
        except Exception:  # already dead: nothing left to stop
            pass
        self.client.km, self.client.kc = None, None

    async def restart(self):
        await self.stop()
        await self.start()

    async def interrupt(self):
        await self.client.km.interrupt_kernel()

    async def run(self, cell, index: int, timeout: float | None = None) -> CellRun:
        """Run one code cell; report ok/error/timeout/dead instead of raising."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        limit = timeout or self.timeout
        self.client.timeout = limit
        errors = []

        def on_error(cell, cell_index, execute_reply):
            c = execute_reply["content"]
            errors.append(f"{c.get('ename', 'Error')}: {c.get('evalue', '')}")

        self.client.on_cell_error = on_error
        t0 = time.monotonic()
        try:
            await self.client.async_execute_cell(cell, index)
            status = "error" if errors else "ok"
        except CellTimeoutError:
            status = "timeout"
            _cancel_leftover_tasks()  # nbclient leaves its output reader running after a timeout
        except DeadKernelError:
            status = "dead"
        finally:
            self.client.timeout = self.timeout
        seconds = time.monotonic() - t0
        if status in ("ok", "error") and seconds >= limit:
            # nbclient can hand back a cell that used up the whole limit as finished (seen: 30.02 s under
            # --timeout 30, after a stall at a widget cell); a cell that ran for the whole limit never passes
            status, errors = "timeout", [f"ran for {seconds:.1f} s, the whole time limit of {limit:g} s"]
        return CellRun(index, status, round(seconds, 2), errors[-1] if errors else "")


def _cancel_leftover_tasks():
    current = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not current:
            task.cancel()


async def _run_notebook(nb, cwd: Path, env: dict, timeout: float, stderr_path: Path,
                        stop_after: int | None = None) -> Run:
    """Run the code cells up to and including cell `stop_after` (all of them if None), surviving errors,
    time-outs and kernel deaths."""
    kernel = _Kernel(copy.deepcopy(nb), cwd, env, timeout, stderr_path)
    run = Run()
    await kernel.start()
    try:
        for i, cell in enumerate(nb.cells):
            if stop_after is not None and i > stop_after:
                break
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            result = await kernel.run(copy.deepcopy(cell), i)
            run.cells.append(result)
            if result.status == "timeout":
                await kernel.interrupt()
                probe = await kernel.run(nbformat.v4.new_code_cell("pass"), i, timeout=PROBE_TIMEOUT)
                if probe.status == "ok":
                    continue
                result.error = "the kernel did not answer after the interrupt; restarted"
            if result.status in ("timeout", "dead"):
                await _restart_and_replay(kernel, nb, run)
    finally:
        await kernel.stop()
    return run


async def _restart_and_replay(kernel: _Kernel, nb, run: Run) -> None:
    """A fresh kernel, then the cells that finished before (not those that hung or died)."""
    run.restarts += 1
    await kernel.restart()
    for done in list(run.cells):
        if done.status in ("ok", "error"):
            again = await kernel.run(copy.deepcopy(nb.cells[done.index]), done.index)
            if again.status in ("timeout", "dead"):  # flaky this time: stop replaying, start clean
                run.restarts += 1
                await kernel.restart()
                return


# -- scoring ---------------------------------------------------------------------------------
def _reason_unreported(name: str, cell: int | None, cells: dict[int, CellRun], previous_check: int,
                       timeout: float) -> tuple[str, str]:
    """(status, message) for an exercise whose check never reported."""
    if cell is None:
        return "missing", f"no cell calls check.{name}(...)"
    # what went wrong between the previous exercise's check cell and this one
    before = [cells[i] for i in sorted(cells) if previous_check < i < cell]
    if any("NotImplementedError" in c.error for c in before + [cells.get(cell, CellRun(cell, "", 0))]):
        return "not attempted", "not attempted: the exercise still raises NotImplementedError"
    run = cells.get(cell)
    if run is None:
        return "not run", f"check cell {cell} never ran"
    if run.status == "timeout":
        return "timeout", f"check cell never finished: cell {cell} timed out after {timeout:g} s"
    if run.status == "dead":
        return "kernel died", f"the kernel died while running check cell {cell}"
    for c in reversed(before):
        if c.status == "timeout":
            return "timeout", f"check cell {cell} could not run: cell {c.index} timed out after {timeout:g} s"
        if c.status == "dead":
            return "kernel died", f"check cell {cell} could not run: the kernel died in cell {c.index}"
    if run.status == "error":
        return "error", f"check cell {cell} raised {run.error}"
    return "error", f"check cell {cell} ran but its check reported nothing"


def score(nb, lesson: str, reports: list[dict], run: Run, timeout: float) -> list[dict]:
    """One row per exercise of the lesson, in the check module's order."""
    exs = exercises(lesson)
    where = check_cells(nb, lesson, [e.name for e in exs])
    last = {r["exercise"]: r for r in reports if r.get("lesson") == lesson}  # the last report counts
    cells = {c.index: c for c in run.cells}  # a replayed cell keeps its first run's record
    rows, previous = [], -1
    for ex in exs:
        r = last.get(ex.name)
        cell = where.get(ex.name)
        if r:
            msgs = r.get("messages") or []
            row = dict(status=r["status"], score=min(max(float(r["score"]), 0.0), ex.points),
                       passed=r["passed"], total=r["total"], messages=msgs,
                       message=msgs[0].split("\n")[0] if msgs else f"{r['passed']}/{r['total']} tests passed")
        else:
            status, message = _reason_unreported(ex.name, cell, cells, previous, timeout)
            row = dict(status=status, score=0.0, passed=0, total=0, messages=[message], message=message)
        rows.append(dict(exercise=ex.name, points=ex.points, cell=cell, **row))
        previous = cell if cell is not None else previous
    return rows


# -- one notebook, many notebooks ---------------------------------------------------------------
def grade_notebook(path: Path, timeout: float = 120, tier: str | None = None) -> dict:
    """Run one notebook in a fresh kernel and score it; returns the JSON-ready record."""
    path = Path(path)
    lesson = lesson_id(path)
    names = [e.name for e in exercises(lesson)]  # fails early on an unknown lesson
    nb = nbformat.read(path, as_version=4)
    # cells after the last check cell cannot change a score: they are not run
    where = check_cells(nb, lesson, names)
    stop_after = max(where.values()) if where else None
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="minidiff-grade-") as tmp:
        log = Path(tmp) / "grades.jsonl"
        env = {**os.environ, "MINIDIFF_GRADE_LOG": str(log), "MINIDIFF_NO_PROGRESS": "1"}
        if tier:
            env["MINIDIFF_TIER"] = tier
        stderr = Path(tmp) / "kernel-stderr.txt"
        run = asyncio.run(_run_notebook(nb, path.resolve().parent, env, timeout, stderr, stop_after))
        reports = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
        noise = "running over TCP without encryption"  # ipykernel's start-up warning, every time
        lines = stderr.read_text(errors="replace").splitlines() if stderr.exists() else []
        kernel_stderr = [line for line in lines if noise not in line][-20:]
    rows = score(nb, lesson, reports, run, timeout)
    return {
        "notebook": str(path),
        "lesson": lesson,
        "score": round(sum(r["score"] for r in rows), 4),
        "points": sum(r["points"] for r in rows),
        "seconds": round(time.monotonic() - t0, 2),
        "kernel_restarts": run.restarts,
        "exercises": rows,
        "cells": [asdict(c) for c in run.cells],
        "kernel_stderr": kernel_stderr,
    }


def grade(paths: list[Path], timeout: float = 120, tier: str | None = None, out=None) -> dict:
    """Grade notebooks and folders of notebooks; print a table for each and a total."""
    out = out or sys.stdout
    notebooks = find_notebooks([Path(p) for p in paths])
    for nb in notebooks:
        exercises(lesson_id(nb))  # all usage errors before any kernel starts
    results = []
    for nb in notebooks:
        res = grade_notebook(nb, timeout=timeout, tier=tier)
        print_table(res, out)
        results.append(res)
    folders = {}  # one learner per folder when a teacher grades submissions/*/
    for r in results:
        f = folders.setdefault(str(Path(r["notebook"]).parent), {"score": 0.0, "points": 0.0})
        f["score"], f["points"] = round(f["score"] + r["score"], 4), f["points"] + r["points"]
    total = {"score": round(sum(r["score"] for r in results), 4), "points": sum(r["points"] for r in results)}
    if len(folders) > 1:
        for name, f in folders.items():
            print(f"{name}: {f['score']:g} / {f['points']:g}", file=out)
    if len(results) > 1:
        print(f"TOTAL over {len(results)} notebooks: {total['score']:g} / {total['points']:g}", file=out)
    return {
        "graded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timeout": timeout,
        "tier": tier,
        "total": total,
        "folders": folders,
        "notebooks": results,
    }


def print_table(res: dict, out=None) -> None:
    out = out or sys.stdout
    rows = [(r["exercise"], f"{r['points']:g}", f"{r['score']:.3g}", r["status"], _short(r["message"]))
            for r in res["exercises"]]
    head = ("exercise", "points", "score", "status", "message")
    widths = [max(len(x[i]) for x in rows + [head]) for i in range(4)]
    print(f"\n{res['notebook']}  (lesson {res['lesson']}, {res['seconds']:.0f} s"
          + (f", {res['kernel_restarts']} kernel restart(s)" if res["kernel_restarts"] else "") + ")", file=out)
    for row in [head] + rows:
        print("  ".join(x.ljust(w) for x, w in zip(row, widths)) + "  " + row[4], file=out)
    print(f"total: {res['score']:g} / {res['points']:g}", file=out)


def explain(res: dict) -> str:
    """Everything one notebook's grading found, unabridged: every exercise's messages and every
    cell's status. For a teacher chasing a surprising score (and for the grader's own tests)."""
    return "\n".join(f"{r['exercise']}: {r['score']}/{r['points']} {r['status']}: {r['messages']}"
                     for r in res["exercises"]) + f"\ncells: {res['cells']}"


def _short(text: str, width: int = 70) -> str:
    text = " ".join(text.lstrip("✗ ").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="minidiff-grade", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="lesson notebooks (NN_*.ipynb) or folders of them")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per cell (default 120)")
    ap.add_argument("--json", type=Path, help="write the grades (with timings) to this file")
    ap.add_argument("--tier", choices=("tiny", "cpu", "gpu"), help="MINIDIFF_TIER for the kernels")
    ap.add_argument("--checks", type=Path, action="append", default=[],
                    help="a check module file to load, for lessons outside minidiff.course.checks")
    args = ap.parse_args(argv)
    try:
        for path in args.checks:
            load_check_module(path)
        grades = grade(args.paths, timeout=args.timeout, tier=args.tier)
    except UsageError as e:
        print(f"minidiff-grade: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(grades, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
