"""Run solution notebooks under the test settings and store their outputs.

    python tools/execute.py solutions/01_noise_schedules.ipynb [more.ipynb ...]

Runs each notebook with nbclient (`jupyter execute --inplace`), then strips
metadata noise with `nbstripout --keep-output --keep-count` (keep-count matters:
nbval skips cells without execution counts and fails those with outputs).
"""

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_env  # noqa: E402


def main(paths):
    test_env.apply()
    for p in paths:
        t0 = time.time()
        subprocess.run([sys.executable, "-m", "jupyter", "execute", "--inplace", "--timeout=900", p], check=True)
        subprocess.run([sys.executable, "-m", "nbstripout", "--keep-output", "--keep-count", p], check=True)
        print(f"{p}: executed in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
