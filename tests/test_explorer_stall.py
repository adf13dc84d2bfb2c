"""Every lesson's explorer (its ipywidgets `interact` cell) runs headless without stalling.

Run headless, an `interact` cell could wait on an idle kernel until the client's time limit:
the kernel had sent its reply, but nbclient's asyncio poll of the shell socket missed it while
nbclient was sending the Output widget's state on that same socket, and read it only when the
poll timed out. tools/execute.py's StallSafeClient polls in one-second slices, so such a reply
is read at most a second late; a cell that still does not come back is a real stall.

Each lesson runs up to its explorer once, then the explorer cell RUNS times in the same kernel
through that client, with one event-loop run per cell as `jupyter nbconvert --execute` does.
A stall fails with the lesson, the run and the cell index.

Slow (every lesson up to its explorer, one after the other: 3.5 to 4.5 minutes on a busy 2-core
machine), so it runs only with MINIDIFF_SLOW=1. MINIDIFF_STALL_RUNS=N repeats each explorer N times
instead of 20; for example, 50 runs of lessons 05 and 06:

    MINIDIFF_SLOW=1 MINIDIFF_STALL_RUNS=50 python -m pytest tests/test_explorer_stall.py -k "05_ or 06_"
"""

import copy
import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("execute", ROOT / "tools" / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

RUNS = int(os.environ.get("MINIDIFF_STALL_RUNS", "20"))
EXPLORER_TIMEOUT = 120  # seconds per explorer run; those of lessons 05 and 06 took under 1 s when they did not stall
EXPLORER = re.compile(r"^\s*(?:\w+\.)?interact(?:_manual)?\(", re.MULTILINE)
NOTEBOOKS = sorted((ROOT / "solutions").glob("0*.ipynb"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MINIDIFF_SLOW") != "1", reason="slow: set MINIDIFF_SLOW=1 to run"),
]


def explorer_index(nb) -> int:
    found = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and EXPLORER.search(c.source)]
    assert len(found) == 1, f"expected one explorer cell (a call to interact), found cells {found}"
    return found[0]


def figures_in_output_widgets(client) -> int:
    """Output widgets (one per `interact` call) that hold a figure."""
    return sum(any("image/png" in out.get("data", {}) for out in state.get("outputs", []))
               for state in client.widget_state.values())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_explorer_never_stalls(path):
    nb = nbformat.read(path, as_version=4)
    index = explorer_index(nb)
    nb.cells = nb.cells[: index + 1]
    client = execute.StallSafeClient(nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells[:index]):
            client.execute_cell(cell, i)  # an error or a stall here fails the test with its cell
        client.timeout = EXPLORER_TIMEOUT
        figures_before = figures_in_output_widgets(client)
        for run in range(1, RUNS + 1):
            cell = copy.deepcopy(nb.cells[index])
            try:
                client.execute_cell(cell, index)
            except execute.CellStalled as e:
                pytest.fail(f"{path.name}, explorer run {run} of {RUNS}: {e}")
            # it ran, not just returned: the widget is shown and its Output widget caught the figure
            assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in cell.outputs), \
                f"{path.name}, explorer run {run}: no widget in the cell's outputs"
            assert figures_in_output_widgets(client) == figures_before + run, f"{path.name}, explorer run {run}: no new figure"
