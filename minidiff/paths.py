"""Where minidiff looks for files: one search order for data, checkpoints and caches.

    1. an environment variable, if set:   MINIDIFF_MNIST_DIR, MINIDIFF_CHECKPOINT_DIR, MINIDIFF_CACHE_DIR
    2. the course repository's data/:     <repo>/data/mnist, <repo>/data/checkpoints, <repo>/data/cache
    3. a user cache:                      ~/.cache/minidiff/... (or $XDG_CACHE_HOME/minidiff/...)

<repo> is the folder that holds minidiff's source when it is installed editable
(`pip install -e .`), else the first of the current folder and its parents that holds
`data/checkpoints` (a clone of the course, for a plain `pip install .`). The first
candidate that exists is used; when none exists, the first one that could be created is.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV = {"mnist": "MINIDIFF_MNIST_DIR", "checkpoints": "MINIDIFF_CHECKPOINT_DIR", "cache": "MINIDIFF_CACHE_DIR"}


def repo_root() -> Path | None:
    """The course repository: minidiff's own parent when installed editable, else the current
    folder or a parent of it that holds data/checkpoints; None outside a clone."""
    here = Path(__file__).resolve().parents[1]
    if (here / "data" / "checkpoints").is_dir():
        return here
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "data" / "checkpoints").is_dir() and (folder / "minidiff").is_dir():
            return folder
    return None


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "minidiff"


def candidates(kind: str) -> list[Path]:
    """The folders searched for `kind` ("mnist", "checkpoints" or "cache"), in order."""
    if kind not in ENV:
        raise ValueError(f"kind must be one of {sorted(ENV)}, got {kind!r}")
    env = os.environ.get(ENV[kind])
    if env:
        return [Path(env).expanduser()]
    repo = repo_root()
    out = [repo / "data" / kind] if repo is not None else []
    return out + [user_cache() / kind]


def find_dir(kind: str) -> Path:
    """The first folder of `candidates(kind)` that exists, else the first one (to be created)."""
    options = candidates(kind)
    return next((p for p in options if p.is_dir()), options[0])


def sha256_file(path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (data files and checkpoints are verified with it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()
