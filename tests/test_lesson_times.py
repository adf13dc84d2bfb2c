"""benchmarks/lesson_times.py: a notebook that runs gets its time, one that raises gets a row that
names the cell and the error (and the next notebook still runs), and --append keeps earlier rows."""

import json
from pathlib import Path

import nbformat
from helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


def notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_times_rows_errors_and_append(tmp_path):
    lesson_times = load_benchmark("lesson_times")
    bad = notebook(tmp_path / "01_bad.ipynb", "x = 1", "raise ValueError('boom in the second cell')")
    good = notebook(tmp_path / "02_good.ipynb", "import os\nprint(os.environ['MINIDIFF_TIER'])")
    out = tmp_path / "times.md"
    assert lesson_times.main([str(bad), str(good), "--tier", "tiny", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    rows = {r["lesson"]: r for r in res["rows"]}
    assert rows["02_good"]["status"] == "ok" and rows["02_good"]["seconds"] > 0
    assert rows["01_bad"]["status"].startswith("error: cell 1 (raise ValueError")
    assert "boom in the second cell" in rows["01_bad"]["status"]
    assert "| 01_bad |" in out.read_text() and "tier `tiny`" in out.read_text()

    good2 = notebook(tmp_path / "02_good.ipynb", "y = 2")  # re-run one lesson: its row is replaced, the other kept
    assert lesson_times.main([str(good2), "--tier", "tiny", "--out", str(out), "--append"]) == 0
    res2 = json.loads(out.with_suffix(".json").read_text())
    assert [r["lesson"] for r in res2["rows"]] == ["01_bad", "02_good"]
    assert res2["rows"][0] == rows["01_bad"] and len(res2["commands"]) == 2
