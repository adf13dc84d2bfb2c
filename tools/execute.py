"""Run solution notebooks under the test settings and store their outputs.

    python tools/execute.py solutions/01_noise_schedules.ipynb [more.ipynb ...]

Runs each notebook in a fresh kernel with nbclient (in-process, not the
`jupyter execute` CLI, which hung at kernel shutdown on lesson 05), then strips
metadata noise with `nbstripout --keep-output --keep-count` (keep-count matters:
nbval skips cells without execution counts and fails those with outputs).
"""

import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_env  # noqa: E402


def main(paths):
    test_env.apply()
    for p in paths:
        t0 = time.time()
        nb = nbformat.read(p, as_version=4)
        # cwd = the notebook's folder, as nbval and Jupyter use; a cell that fails raises here
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(Path(p).resolve().parent)}}).execute()
        nbformat.write(nb, p)
        subprocess.run([sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", p], check=True)
        print(f"{p}: executed in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
