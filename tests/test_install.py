"""A plain (non-editable) `pip install .` works: the package, the course machinery and the
checkpoint search order (minidiff.paths) all behave as documented."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory):
    pytest.importorskip("setuptools")  # the build backend; present in every venv made by `python -m venv` on 3.11
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, timeout=300)
    return target


def run(code: str, cwd: Path, site: Path, **env) -> str:
    e = {k: v for k, v in os.environ.items() if not k.startswith("MINIDIFF_") and k != "PYTHONPATH"}
    e.update(PYTHONPATH=str(site), **env)
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=e, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


CODE = """
import minidiff, minidiff.course.grader, minidiff.course.checks.lesson01
from minidiff.paths import find_dir
print(minidiff.__file__)
print(find_dir("checkpoints"))
"""


def test_plain_install_inside_a_clone_finds_the_repo_checkpoints(plain_install):
    # from lessons/, as a notebook runs: the installed copy is imported, the clone's data/ is found
    out = run(CODE + """
from minidiff.checkpoints import load_checkpoint
from minidiff.eval.classifier import MNISTClassifier
print(type(load_checkpoint("mnist_classifier", MNISTClassifier)).__name__)
""", ROOT / "lessons", plain_install).splitlines()
    assert out[0].startswith(str(plain_install)), out
    assert Path(out[1]) == ROOT / "data" / "checkpoints"
    assert out[2] == "MNISTClassifier"


def test_plain_install_outside_a_clone_uses_the_variable_then_the_user_cache(plain_install, tmp_path):
    out = run(CODE, tmp_path, plain_install, HOME=str(tmp_path), XDG_CACHE_HOME="").splitlines()
    assert Path(out[1]) == tmp_path / ".cache" / "minidiff" / "checkpoints"
    out = run(CODE, tmp_path, plain_install, MINIDIFF_CHECKPOINT_DIR=str(ROOT / "data" / "checkpoints")).splitlines()
    assert Path(out[1]) == ROOT / "data" / "checkpoints"
    err = run("""
from minidiff.checkpoints import CheckpointError, load_checkpoint
from minidiff.unet import UNet
try:
    load_checkpoint("unet_mnist", UNet)
except CheckpointError as e:
    print(e)
""", tmp_path, plain_install, HOME=str(tmp_path), XDG_CACHE_HOME="")
    assert "checkpoint file not found" in err and "MINIDIFF_CHECKPOINT_DIR" in err, err
