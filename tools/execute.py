"""Run solution notebooks under the test settings and store their outputs.

    python tools/execute.py solutions/01_noise_schedules.ipynb [more.ipynb ...]

Runs each notebook in a fresh kernel with nbclient (in-process, not the
`jupyter execute` CLI, which hung at kernel shutdown on lesson 05), then strips
metadata noise with `nbstripout --keep-output --keep-count` (keep-count matters:
nbval skips cells without execution counts and fails those with outputs).

A cell that does not come back within CELL_TIMEOUT seconds, or comes back only
after using all of it, stops the run with its index and the notebook is not
written. minidiff/course/kernel_io.py says why a cell can appear to stall although the
kernel has finished it, and how the client avoids that.
"""

import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError
from nbclient.util import run_sync

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_env  # noqa: E402

from minidiff.course.kernel_io import poll_client_in_slices  # noqa: E402

CELL_TIMEOUT = 600  # seconds per cell; no solution cell took a minute on one thread of a busy 2-core machine
IOPUB_TIMEOUT = 60  # seconds a cell's outputs may still arrive after its reply; past that the cell fails


class CellStalled(RuntimeError):
    """A cell did not come back within its time limit, or came back only after using all of it."""


class StallSafeClient(NotebookClient):
    """nbclient whose channels are polled in slices, and whose stalled cells fail with their index."""

    def __init__(self, nb, **kw):
        kw.setdefault("timeout", CELL_TIMEOUT)
        kw.setdefault("iopub_timeout", IOPUB_TIMEOUT)
        kw.setdefault("raise_on_iopub_timeout", True)  # outputs that never arrive fail, never pass
        super().__init__(nb, **kw)

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        poll_client_in_slices(kc)  # see minidiff/course/kernel_io.py
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)  # the sync names must call the overrides

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        limit = self._get_timeout(cell)
        t0 = time.monotonic()
        try:
            result = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except CellTimeoutError as e:
            what = (f"its outputs were still incomplete {self.iopub_timeout} s after its reply" if "IOPub" in str(e)
                    else f"it did not finish within {limit} s")
            raise CellStalled(f"cell {cell_index}: {what}: {_first_line(cell)}") from e
        seconds = time.monotonic() - t0
        if limit and seconds >= limit:
            raise CellStalled(f"cell {cell_index} came back only after its whole time limit "
                              f"({seconds:.1f} s of {limit} s): {_first_line(cell)}")
        return result

    execute_cell = run_sync(async_execute_cell)


def _first_line(cell) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
    return lines[0][:80] if lines else ""


def main(paths):
    test_env.apply()
    for p in paths:
        t0 = time.time()
        nb = nbformat.read(p, as_version=4)
        # cwd = the notebook's folder, as nbval and Jupyter use; a cell that raises raises here
        client = StallSafeClient(nb, kernel_name="python3",
                                 resources={"metadata": {"path": str(Path(p).resolve().parent)}})
        try:
            client.execute()
        except CellStalled as e:
            sys.exit(f"{p}: {e}; the notebook was not written")
        nbformat.write(nb, p)
        subprocess.run([sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", p], check=True)
        print(f"{p}: executed in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
