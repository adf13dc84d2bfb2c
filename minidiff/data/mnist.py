"""MNIST from the four official idx files, verified by SHA-256, parsed by hand, cached.

    images, labels = load_mnist("train")           # uint8 (60000, 28, 28), int64 (60000,)
    x, y = mnist_images("train", device=lesson.device)   # float32 (N, 1, 28, 28) in [-1, 1]

    python -m minidiff.data.mnist download [--root DIR]  # fetch the files from a public mirror
    python -m minidiff.data.mnist verify [--root DIR]    # check them against the official SHA-256

Where the files are looked for: the `root` argument, else the environment variable
MINIDIFF_MNIST_DIR, else `<repo>/data/mnist` (git-ignored), else ~/.cache/minidiff/mnist
(see `minidiff.paths`). A file that is missing, or whose
SHA-256 differs from the official one, is never used: MNISTError says which file, what is wrong
and what to do. Parsed arrays are cached in memory and on disk (`.npz` in MINIDIFF_CACHE_DIR,
else `<repo>/data/cache`), keyed by the files' SHA-256.

The idx format (LeCun et al.): a big-endian header, magic = 0x00 0x00 <type> <ndim> (type 0x08 is
unsigned byte, so images have magic 2051 = 0x0803 and labels 2049 = 0x0801), then ndim
big-endian uint32 sizes, then prod(sizes) bytes, row-major.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import socket
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from ..paths import find_dir, sha256_file

SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SIZES = {"train": 60_000, "test": 10_000}

# The official files' SHA-256 (the same as ../shared/data/mnist/SHA256SUMS).
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FILES = tuple(SHA256)

# Public mirrors of the original files (yann.lecun.com now often refuses downloads).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the one torchvision uses
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # the one TensorFlow uses
)

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
MAX_DOWNLOAD_BYTES = 64 * 2**20  # the largest file is 9.9 MB; anything far bigger is not MNIST

FIX = (
    "Run `python -m minidiff.data.mnist download` (add `--root DIR` for another folder), "
    "or set MINIDIFF_MNIST_DIR to a folder holding the four official .gz files."
)


class MNISTError(RuntimeError):
    """A missing, corrupt, truncated or unofficial MNIST file, or a failed download."""


# ---------------------------------------------------------------- where


def mnist_dir(root=None) -> Path:
    """The folder of the .gz files: `root`, else `paths.find_dir("mnist")`: $MINIDIFF_MNIST_DIR,
    then <repo>/data/mnist, then ~/.cache/minidiff/mnist."""
    if root is not None:
        return Path(root).expanduser()
    return find_dir("mnist")


def cache_dir() -> Path:
    """Where parsed arrays are kept: $MINIDIFF_CACHE_DIR, then <repo>/data/cache, then ~/.cache/minidiff/cache."""
    return find_dir("cache")


def _where(root) -> str:
    if root is not None:
        return "the root argument"
    if os.environ.get("MINIDIFF_MNIST_DIR"):
        return "MINIDIFF_MNIST_DIR"
    return "the default location"


# ---------------------------------------------------------------- verify


def verify_file(path, root=None) -> str:
    """Check one file against its official SHA-256; return the digest or raise MNISTError.

    On a mismatch, parse the file anyway to say *why* (truncated, corrupt, or a valid idx
    file that simply is not the official one), since a cut-off download is the usual cause.
    """
    path = Path(path)
    if path.name not in SHA256:
        raise ValueError(f"{path.name!r} is not one of the MNIST files {FILES}")
    if not path.is_file():
        raise MNISTError(f"{path}: missing (looked in {path.parent}, from {_where(root)}). {FIX}")
    digest = sha256_file(path)
    if digest != SHA256[path.name]:
        try:
            read_idx(path)
            why = "it parses as an idx file, but it is not the official one"
        except MNISTError as e:
            why = str(e).removeprefix(f"{path}: ")
        raise MNISTError(
            f"{path}: checksum mismatch (sha256 {digest[:16]}…, expected {SHA256[path.name][:16]}…); "
            f"{why}. The download command replaces a bad file. {FIX}"
        )
    return digest


# ---------------------------------------------------------------- parse


def read_idx(path) -> np.ndarray:
    """Parse a gzipped idx file of unsigned bytes into a numpy uint8 array of its dims.

    Raises MNISTError naming the file if it is not gzip, truncated, or its header
    (magic 0x0000 08 ndim, ndim big-endian uint32 sizes) disagrees with its payload.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except EOFError as e:
        raise MNISTError(f"{path}: truncated (the gzip stream ends early: {e})") from e
    except (OSError, zlib.error) as e:
        raise MNISTError(f"{path}: corrupt (not a valid gzip file: {e})") from e
    if len(data) < 4:
        raise MNISTError(f"{path}: truncated ({len(data)} bytes, shorter than the 4-byte idx magic)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 3:
        raise MNISTError(f"{path}: corrupt (magic number {magic}; an idx file of bytes starts 0x000008 and has 1-3 dims)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTError(f"{path}: truncated (the header needs {header} bytes, the file has {len(data)})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected, got = int(np.prod(dims)), len(data) - header
    if got < expected:
        raise MNISTError(f"{path}: truncated (header says dims {dims} = {expected} bytes, payload has {got})")
    if got > expected:
        raise MNISTError(f"{path}: corrupt ({got - expected} bytes after the {expected} that dims {dims} describe)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _parse_split(split: str, images_path: Path, labels_path: Path):
    images, labels = read_idx(images_path), read_idx(labels_path)
    n = SIZES[split]
    if images.shape != (n, 28, 28):
        raise MNISTError(f"{images_path}: corrupt (images have shape {images.shape}, expected {(n, 28, 28)})")
    if labels.shape != (n,):
        raise MNISTError(f"{labels_path}: corrupt (labels have shape {labels.shape}, expected {(n,)})")
    if labels.max() > 9:
        raise MNISTError(f"{labels_path}: corrupt (a label is {labels.max()}, digits are 0-9)")
    return images, labels


# ---------------------------------------------------------------- cache


def _cache_file(cache: Path, split: str, digests) -> Path:
    return cache / f"mnist-{split}-{digests[0][:16]}-{digests[1][:16]}.npz"


def _read_cache(path: Path, split: str):
    try:
        with np.load(path) as z:
            images, labels = z["images"], z["labels"]
    except Exception:  # a half-written or foreign cache file is rebuilt, never trusted
        return None
    n = SIZES[split]
    if images.shape != (n, 28, 28) or images.dtype != np.uint8 or labels.shape != (n,) or labels.dtype != np.uint8:
        return None
    return images, labels


def _write_cache(path: Path, images, labels) -> None:
    # Write to a temp file and rename, so a parallel reader never sees half a file.
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like the data
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache folder only costs speed
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


@functools.lru_cache(maxsize=4)
def _load_arrays(split: str, images_path: Path, labels_path: Path, stamp, cache: Path, root_given: bool):
    """Verified arrays of one split. `stamp` (size, mtime) of both files is part of the key,
    so that a file replaced on disk is verified again; the disk cache is keyed by SHA-256."""
    root = images_path.parent if root_given else None
    digests = (verify_file(images_path, root), verify_file(labels_path, root))
    cached = _read_cache(_cache_file(cache, split, digests), split)
    if cached is not None:
        return cached
    images, labels = _parse_split(split, images_path, labels_path)
    _write_cache(_cache_file(cache, split, digests), images, labels)
    return images, labels


def _stamp(*paths):
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


# ---------------------------------------------------------------- public API


def _check_split(split) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_mnist(split: str = "train", root=None):
    """MNIST as (images uint8 (N, 28, 28), labels int64 (N,)), N = 60000 (train) or 10000 (test).

    Each file is checked against its official SHA-256 before use (MNISTError otherwise).
    Returns fresh tensors each call (the cached arrays cannot be modified through them).
    """
    _check_split(split)
    folder = mnist_dir(root).resolve()
    paths = [folder / name for name in SPLITS[split]]
    stamp = _stamp(*paths)
    if None in stamp:  # not cached: a missing file must not stay "missing" once downloaded
        for p in paths:
            verify_file(p, root)
    images, labels = _load_arrays(split, *paths, stamp, cache_dir().resolve(), root is not None)
    return torch.tensor(images), torch.tensor(labels, dtype=torch.int64)


def mnist_images(split: str = "train", root=None, device="cpu"):
    """Images scaled to [-1, 1] as float32 (N, 1, 28, 28): x = pixel / 127.5 − 1, and the int64
    labels, both on `device`. The train set is 188 MB as float32: it fits on any GPU, and
    keeping it there avoids a DataLoader in the training loops."""
    images, labels = load_mnist(split, root)
    x = images.to(device).unsqueeze(1).float().div_(127.5).sub_(1.0)
    return x, labels.to(device)


def verify_mnist(root=None) -> dict:
    """{file name: "ok" or what is wrong} for the four files; never raises for a bad file."""
    folder = mnist_dir(root)
    report = {}
    for name in FILES:
        try:
            verify_file(folder / name, root)
            report[name] = "ok"
        except MNISTError as e:
            report[name] = str(e)
    return report


# ---------------------------------------------------------------- download


def _is_connection_failure(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return False  # the server answered
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    return isinstance(err, (ConnectionError, TimeoutError, socket.timeout, socket.gaierror, OSError))


def _fetch(url: str, dest: Path, timeout: float) -> str:
    """Stream url into a temp file next to dest; rename onto dest only if the SHA-256 matches.
    Returns "ok" or raises (the temp file is always removed on failure)."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            for chunk in iter(lambda: r.read(2**16), b""):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise MNISTError(f"served more than {MAX_DOWNLOAD_BYTES} bytes: not an MNIST file")
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != SHA256[dest.name]:
            raise MNISTError(f"checksum mismatch ({size} bytes, sha256 {h.hexdigest()[:16]}…): bad file rejected")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return "ok"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_mnist(root=None, mirrors=MIRRORS, timeout: float = 30, verbose: bool = True) -> dict:
    """Fetch the four files into `root` (default as in `mnist_dir`), skipping files that already
    verify. Each mirror is tried in turn; one that fails or serves a file with the wrong SHA-256
    is skipped and the reason recorded. Returns {file name: [attempt, ...]}, each attempt a
    string "<url>: ok | <reason>" (or "already present").

    Raises MNISTError if some file came from no mirror, listing every mirror's failure.
    """
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    if not mirrors:
        raise ValueError("mirrors is empty: give at least one base URL")
    folder = mnist_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    log = print if verbose else (lambda *a, **k: None)
    report, failed, offline = {}, [], False
    for name in FILES:
        dest = folder / name
        if dest.is_file() and sha256_file(dest) == SHA256[name]:
            report[name] = ["already present"]
            log(f"{name}: already present, checksum ok")
            continue
        attempts = report[name] = []
        unreachable = 0  # mirrors that could not even be connected to
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            log(f"{name}: downloading {url} ...", end=" ", flush=True)
            try:
                _fetch(url, dest, timeout)
            except Exception as e:  # noqa: BLE001 - any failure: record it, try the next mirror
                unreachable += _is_connection_failure(e) and not isinstance(e, MNISTError)
                attempts.append(f"{url}: {type(e).__name__}: {e}")
                log(f"failed ({e})")
                continue
            attempts.append(f"{url}: ok")
            log("ok, checksum verified")
            break
        else:
            failed.append(name)
            if unreachable == len(mirrors):  # offline: the other files would fail the same way
                offline = True
                failed += [n for n in FILES if n not in report]
                break
    if failed:
        why = "no network: no mirror could be reached" if offline else "every mirror failed"
        attempts = " (each attempt is listed above)" if verbose else ":\n" + "\n".join(
            f"  {a}" for n in failed for a in report.get(n, []))
        raise MNISTError(
            f"could not download {', '.join(failed)} into {folder}: {why}{attempts}\n"
            "Try again later or pass other mirrors (--mirror URL); or copy the four official files into that folder "
            "(or point MINIDIFF_MNIST_DIR at a folder that has them)."
        )
    return report


# ---------------------------------------------------------------- CLI


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minidiff.data.mnist", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help="fetch the four official files and verify them")
    dl.add_argument("--root", help="folder for the files (default: $MINIDIFF_MNIST_DIR or <repo>/data/mnist)")
    dl.add_argument("--timeout", type=float, default=30, help="seconds per connection (default 30)")
    dl.add_argument("--mirror", action="append", help="base URL to try (repeatable; default: the public mirrors)")
    vf = sub.add_parser("verify", help="check the files against the official SHA-256")
    vf.add_argument("--root", help="folder of the files (default: $MINIDIFF_MNIST_DIR or <repo>/data/mnist)")
    args = parser.parse_args(argv)

    if args.command == "download":
        try:
            download_mnist(args.root, mirrors=args.mirror or MIRRORS, timeout=args.timeout)
        except MNISTError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"MNIST is ready in {mnist_dir(args.root)}")
        return 0

    report = verify_mnist(args.root)
    for name, status in report.items():
        print(f"{name}: {status}" if status == "ok" else f"{name}: FAILED\n  {status}")
    bad = sum(s != "ok" for s in report.values())
    print(f"{4 - bad} of 4 files ok in {mnist_dir(args.root)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
