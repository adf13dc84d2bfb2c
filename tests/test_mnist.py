"""minidiff.data.mnist: the real files, every way a file can be bad, the caches, and the
download path against a local HTTP server (127.0.0.1 only: these tests never use the internet)."""

import contextlib
import functools
import gzip
import http.server
import os
import shutil
import socket
import threading
from pathlib import Path

import pytest
import torch

from minidiff import paths
from minidiff.data import mnist
from minidiff.data.mnist import MNISTError, load_mnist, mnist_images, read_idx

DOWNLOAD_HINT = "python -m minidiff.data.mnist download"
SMALL = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # the test split, 1.6 MB


@pytest.fixture(scope="module", autouse=True)
def isolated_env(tmp_path_factory):
    """A temp cache folder (never <repo>/data/cache), and loopback requests that bypass any proxy."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIDIFF_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            mp.delenv(var, raising=False)
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        mnist._load_arrays.cache_clear()
        yield
        mnist._load_arrays.cache_clear()


@pytest.fixture(scope="module")
def real_dir():
    d = os.environ.get("MINIDIFF_MNIST_DIR")
    if not d or not Path(d).is_dir():
        pytest.skip(f"the real MNIST files are needed: MINIDIFF_MNIST_DIR={d!r} is not a folder ({DOWNLOAD_HINT})")
    return Path(d)


def copy_files(src: Path, dst: Path, names=mnist.FILES) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src / name, dst / name)
    return dst


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def idx_bytes(dims, payload: bytes) -> bytes:
    """An idx file of unsigned bytes: magic 0x00 0x00 0x08 ndim, big-endian dims, payload."""
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


# ---------------------------------------------------------------- the real files


def test_train_split(real_dir):
    x, y = load_mnist("train")
    assert x.shape == (60_000, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (60_000,) and y.dtype == torch.int64
    assert y[:5].tolist() == [5, 0, 4, 1, 9]
    assert y.min() == 0 and y.max() == 9
    assert torch.bincount(y).tolist()[:2] == [5923, 6742]  # the well-known class counts
    assert x.min() == 0 and x.max() == 255


def test_test_split_and_root_argument(real_dir):
    x, y = load_mnist("test", root=real_dir)
    assert x.shape == (10_000, 28, 28) and y.shape == (10_000,)
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    assert set(y.unique().tolist()) == set(range(10))


def test_mnist_images_scaled_to_minus_one_one(real_dir):
    x, y = mnist_images("test")
    raw, labels = load_mnist("test")
    assert x.shape == (10_000, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert x.min() == -1 and x.max() == 1
    assert torch.allclose(x[:, 0], raw.float() / 127.5 - 1)
    assert torch.equal(y, labels)


def test_bad_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist("validation")


def test_returned_tensors_are_copies(real_dir):
    x, y = load_mnist("test")
    x[0] = 0
    y[0] = 3
    x2, y2 = load_mnist("test")
    assert x2[0].max() > 0 and y2[0] == 7


def test_disk_cache_is_written_and_used(real_dir, monkeypatch):
    load_mnist("test")
    digests = (mnist.SHA256[SMALL[0]], mnist.SHA256[SMALL[1]])
    cached = mnist._cache_file(Path(os.environ["MINIDIFF_CACHE_DIR"]), "test", digests)
    assert cached.is_file()
    ref = load_mnist("test")

    def no_parsing(path):
        raise AssertionError("parsed although a disk cache exists")

    mnist._load_arrays.cache_clear()  # forget the memory cache, keep the disk cache
    monkeypatch.setattr(mnist, "read_idx", no_parsing)
    x, y = load_mnist("test")
    assert torch.equal(x, ref[0]) and torch.equal(y, ref[1])
    # with an empty cache folder the parse is needed again (so the check above could fail)
    mnist._load_arrays.cache_clear()
    monkeypatch.setenv("MINIDIFF_CACHE_DIR", str(cached.parent / "empty"))
    with pytest.raises(AssertionError, match="parsed although"):
        load_mnist("test")
    mnist._load_arrays.cache_clear()


def test_a_broken_cache_file_is_rebuilt(real_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDIFF_CACHE_DIR", str(tmp_path))
    digests = (mnist.SHA256[SMALL[0]], mnist.SHA256[SMALL[1]])
    mnist._cache_file(tmp_path, "test", digests).write_bytes(b"not an npz")
    mnist._load_arrays.cache_clear()
    x, y = load_mnist("test")
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    mnist._load_arrays.cache_clear()


def test_verify_cli(real_dir, tmp_path, capsys):
    assert mnist.main(["verify", "--root", str(real_dir)]) == 0
    assert "4 of 4 files ok" in capsys.readouterr().out
    assert mnist.main(["verify", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "0 of 4 files ok" in out and "missing" in out and DOWNLOAD_HINT in out


# ---------------------------------------------------------------- where the files are looked for


def test_location_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDIFF_MNIST_DIR", str(tmp_path / "env"))
    assert mnist.mnist_dir(tmp_path / "arg") == tmp_path / "arg"
    assert mnist.mnist_dir() == tmp_path / "env"
    monkeypatch.delenv("MINIDIFF_MNIST_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # an empty user cache
    repo_dir = paths.repo_root() / "data" / "mnist"
    assert mnist.mnist_dir() == repo_dir  # the course's data/mnist, whether it exists yet or not
    if not repo_dir.exists():  # then an existing user cache is used instead
        (tmp_path / "xdg" / "minidiff" / "mnist").mkdir(parents=True)
        assert mnist.mnist_dir() == tmp_path / "xdg" / "minidiff" / "mnist"


# ---------------------------------------------------------------- bad files


def test_missing_file_says_how_to_download(tmp_path):
    with pytest.raises(MNISTError) as e:
        load_mnist("test", root=tmp_path)
    msg = str(e.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "missing" in msg
    assert DOWNLOAD_HINT in msg and "MINIDIFF_MNIST_DIR" in msg


def test_root_argument_wins_over_env(real_dir, tmp_path):
    copy_files(real_dir, tmp_path, SMALL[:1])  # labels missing here, present in MINIDIFF_MNIST_DIR
    with pytest.raises(MNISTError, match="t10k-labels-idx1-ubyte.gz: missing"):
        load_mnist("test", root=tmp_path)


def test_checksum_mismatch_is_detected(real_dir, tmp_path):
    copy_files(real_dir, tmp_path, SMALL)
    flip_byte(tmp_path / SMALL[1])
    with pytest.raises(MNISTError) as e:
        load_mnist("test", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / SMALL[1]) in msg and "checksum mismatch" in msg and DOWNLOAD_HINT in msg


def test_valid_but_unofficial_file_is_refused(real_dir, tmp_path):
    """A well-formed idx file with one label changed parses fine, but is not MNIST."""
    copy_files(real_dir, tmp_path, SMALL[:1])
    raw = bytearray(gzip.decompress((real_dir / SMALL[1]).read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    (tmp_path / SMALL[1]).write_bytes(gzip.compress(bytes(raw)))
    assert read_idx(tmp_path / SMALL[1]).shape == (10_000,)
    with pytest.raises(MNISTError, match="checksum mismatch.*not the official one"):
        load_mnist("test", root=tmp_path)


def test_truncated_payload(real_dir, tmp_path):
    copy_files(real_dir, tmp_path, SMALL[:1])
    raw = gzip.decompress((real_dir / SMALL[1]).read_bytes())
    (tmp_path / SMALL[1]).write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(MNISTError, match=r"t10k-labels-idx1-ubyte\.gz: truncated.*payload has 4996"):
        read_idx(tmp_path / SMALL[1])
    with pytest.raises(MNISTError) as e:
        load_mnist("test", root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path / SMALL[1]) in msg and "truncated" in msg and DOWNLOAD_HINT in msg


def test_truncated_gzip_stream(real_dir, tmp_path):
    data = (real_dir / SMALL[1]).read_bytes()
    (tmp_path / SMALL[1]).write_bytes(data[: len(data) // 2])
    with pytest.raises(MNISTError, match=r"t10k-labels-idx1-ubyte\.gz: truncated \(the gzip stream ends early"):
        read_idx(tmp_path / SMALL[1])


@pytest.mark.parametrize(
    "content, why",
    [
        (b"this is not gzip at all", r"corrupt \(not a valid gzip file"),
        (gzip.compress(idx_bytes([3], bytes([1, 2, 3]))[:2]), "truncated"),
        (gzip.compress(b"\x00\x00\x0d\x01" + bytes(8)), "corrupt .magic number 3329"),  # float idx, not bytes
        (gzip.compress(idx_bytes([2, 2], bytes(3))), r"truncated \(header says dims \(2, 2\) = 4 bytes, payload has 3\)"),
        (gzip.compress(idx_bytes([3], bytes(5))), "corrupt .2 bytes after the 3"),
    ],
    ids=["not-gzip", "short-header", "bad-magic", "short-payload", "trailing-bytes"],
)
def test_read_idx_errors(tmp_path, content, why):
    path = tmp_path / "x-idx.gz"
    path.write_bytes(content)
    with pytest.raises(MNISTError, match=why) as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_parses_a_small_file(tmp_path):
    path = tmp_path / "small.gz"
    path.write_bytes(gzip.compress(idx_bytes([2, 3], bytes(range(6)))))
    a = read_idx(path)
    assert a.shape == (2, 3) and a.dtype.name == "uint8" and a[1].tolist() == [3, 4, 5]


# ---------------------------------------------------------------- download, from 127.0.0.1 only


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def mirrors(real_dir, tmp_path_factory):
    """A local HTTP server with a good mirror (copies of the real files) and a bad one
    (each file with one byte flipped). Yields their base URLs; shuts the server down after."""
    site = tmp_path_factory.mktemp("site")
    copy_files(real_dir, site / "good")
    copy_files(real_dir, site / "bad")
    for name in mnist.FILES:
        flip_byte(site / "bad" / name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield {"good": f"{base}/good/", "bad": f"{base}/bad/", "absent": f"{base}/absent/"}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 at a port nobody listens on: connections are refused at once."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_download_from_a_mirror_then_load(mirrors, tmp_path):
    root = tmp_path / "dl"
    report = mnist.download_mnist(root, mirrors=[mirrors["good"]], timeout=5, verbose=False)
    assert all(attempts == [f"{mirrors['good']}{name}: ok"] for name, attempts in report.items())
    assert sorted(p.name for p in root.iterdir()) == sorted(mnist.FILES)  # no temp files left
    assert set(mnist.verify_mnist(root).values()) == {"ok"}
    assert load_mnist("test", root=root)[1][:5].tolist() == [7, 2, 1, 0, 4]
    # a second run downloads nothing
    again = mnist.download_mnist(root, mirrors=[mirrors["good"]], timeout=5, verbose=False)
    assert all(a == ["already present"] for a in again.values())


def test_bad_mirror_is_rejected_and_leaves_nothing(mirrors, tmp_path):
    root = tmp_path / "dl"
    with pytest.raises(MNISTError) as e:
        mnist.download_mnist(root, mirrors=[mirrors["bad"]], timeout=5, verbose=False)
    msg = str(e.value)
    assert "checksum mismatch" in msg and mirrors["bad"] in msg and "no network" not in msg
    assert list(root.iterdir()) == []


def test_fallback_to_the_next_mirror(mirrors, tmp_path):
    root = tmp_path / "dl"
    root.mkdir()
    (root / SMALL[1]).write_bytes(b"a broken earlier download")  # replaced, not trusted
    order = [closed_port_url(), mirrors["absent"], mirrors["bad"], mirrors["good"]]
    report = mnist.download_mnist(root, mirrors=order, timeout=5, verbose=False)
    for name, attempts in report.items():
        assert len(attempts) == 4, attempts
        assert "Connection refused" in attempts[0] or "URLError" in attempts[0]
        assert "404" in attempts[1]
        assert "checksum mismatch" in attempts[2]
        assert attempts[3] == f"{mirrors['good']}{name}: ok"
    assert set(mnist.verify_mnist(root).values()) == {"ok"}
    assert sorted(p.name for p in root.iterdir()) == sorted(mnist.FILES)


def test_unreachable_mirror_says_no_network(tmp_path):
    root = tmp_path / "dl"
    url = closed_port_url()
    with pytest.raises(MNISTError, match="no network") as e:
        mnist.download_mnist(root, mirrors=[url], timeout=2, verbose=False)
    msg = str(e.value)
    first, *others = mnist.FILES
    assert f"{url}{first}" in msg  # the attempt that showed the network is down
    assert all(name in msg for name in others) and not any(f"{url}{name}" in msg for name in others)  # not tried
    assert list(root.iterdir()) == []


def test_download_cli(mirrors, tmp_path, capsys):
    root = tmp_path / "cli"
    assert mnist.main(["download", "--root", str(root), "--mirror", mirrors["bad"], "--mirror", mirrors["good"], "--timeout", "5"]) == 0
    assert "MNIST is ready" in capsys.readouterr().out
    assert mnist.main(["download", "--root", str(tmp_path / "x"), "--mirror", closed_port_url(), "--timeout", "2"]) == 1
    out, err = capsys.readouterr()
    assert "no network" in err and out.count("failed (") == 1  # each failure printed once, then one summary
    assert "attempt is listed above" in err and "URLError" not in err  # the attempts are not repeated
