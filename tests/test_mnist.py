"""MNIST source: download from a local HTTP server (no internet), checksums, fallbacks, errors."""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import os
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import pytest
import torch

from denetdm.data import mnist
from denetdm.data.mnist import DEFAULT_MIRRORS, MNIST_FILES, load_mnist, mnist_dir
from denetdm.errors import DataError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TEST_NAMES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

Served = Tuple[str, List[str]]  # base URL, request paths seen


@contextlib.contextmanager
def _serving(directory: Path) -> Iterator[Served]:
    seen: List[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # silence, but record
            seen.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _link_real(dst: Path, names=tuple(MNIST_FILES)) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dst / f"{name}.gz").symlink_to(REAL / f"{name}.gz")
    return dst


def _real_content(name: str) -> bytes:
    return gzip.decompress((REAL / f"{name}.gz").read_bytes())


def _altered(name: str) -> bytes:
    """Valid idx header, one flipped payload byte: only the checksum can tell."""
    data = bytearray(_real_content(name))
    data[-1] ^= 1
    return bytes(data)


def _local_files(root: Path) -> List[str]:
    d = mnist_dir(root)
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


@pytest.fixture(scope="module")
def real() -> Path:
    if not all((REAL / f"{n}.gz").is_file() for n in MNIST_FILES):
        pytest.skip(f"real MNIST not found at {REAL}")
    return REAL


@pytest.fixture(autouse=True)
def _no_env_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mnist.MIRRORS_ENV, raising=False)


@pytest.fixture
def serve() -> Iterator[Callable[[Path], Served]]:
    """Start throwaway HTTP servers on 127.0.0.1; all are shut down after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda directory: stack.enter_context(_serving(directory))


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def downloaded(real: Path, tmp_path_factory: pytest.TempPathFactory):
    """All four files downloaded once from a local server, shared by the tests that read them."""
    served = _link_real(tmp_path_factory.mktemp("served"))
    root = tmp_path_factory.mktemp("root")
    with _serving(served) as (url, seen):
        train = load_mnist(root, "train", mirrors=[url], progress=True)
        test = load_mnist(root, "test", mirrors=[url], progress=False)
    return root, train, test, seen


def test_public_constants() -> None:
    assert DEFAULT_MIRRORS == ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
    assert sorted(MNIST_FILES) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    )
    assert mnist_dir("/x") == Path("/x/mnist")


def test_download_then_load(downloaded) -> None:
    root, (xtr, ytr), (xte, yte), seen = downloaded
    assert sorted(f"/{n}.gz" for n in MNIST_FILES) == sorted(set(seen))
    assert _local_files(root) == sorted(f"{n}.gz" for n in MNIST_FILES)  # no temp files left
    for name in MNIST_FILES:
        assert (mnist_dir(root) / f"{name}.gz").read_bytes() == (REAL / f"{name}.gz").read_bytes()
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert xtr.dtype == xte.dtype == torch.uint8
    assert ytr.dtype == yte.dtype == torch.int64
    assert ytr.shape == (60000,) and yte.shape == (10000,)
    assert torch.bincount(ytr, minlength=10).tolist() == TRAIN_COUNTS
    assert torch.bincount(yte, minlength=10).tolist() == TEST_COUNTS
    assert ytr[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    # Present now: loads offline and gives the same tensors.
    x2, y2 = load_mnist(root, "test", download=False)
    assert torch.equal(x2, xte) and torch.equal(y2, yte)


def test_corrupt_download_is_refused(real: Path, serve, tmp_path: Path) -> None:
    served = _link_real(tmp_path / "served", ["train-images-idx3-ubyte"])
    (served / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_altered("train-labels-idx1-ubyte")))
    url, _ = serve(served)
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path / "root", "train", mirrors=[url], progress=False)
    msg = str(exc.value)
    assert "checksum" in msg and "train-labels-idx1-ubyte" in msg and "\n" not in msg
    assert not any(f.startswith("train-labels") or f.endswith(".part") for f in _local_files(tmp_path / "root"))


def test_falls_back_after_404(real: Path, serve, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    bad_url, bad_seen = serve(tmp_path / "empty")
    good_url, _ = serve(_link_real(tmp_path / "served", TEST_NAMES))
    x, y = load_mnist(tmp_path / "root", "test", mirrors=[bad_url, good_url], progress=False)
    assert x.shape == (10000, 28, 28) and torch.bincount(y, minlength=10).tolist() == TEST_COUNTS
    assert set(bad_seen) == {f"/{n}.gz" for n in TEST_NAMES}  # the 404 mirror was tried first


def test_corrupt_local_file_is_reported_and_untouched(real: Path, tmp_path: Path, closed_url: str) -> None:
    d = _link_real(mnist_dir(tmp_path), ["t10k-images-idx3-ubyte"])
    bad = d / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(_altered("t10k-labels-idx1-ubyte")))
    before, mtime = bad.read_bytes(), bad.stat().st_mtime_ns
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, "test", mirrors=[closed_url], progress=False)
    msg = str(exc.value)
    assert str(bad) in msg and "corrupt" in msg and "\n" not in msg
    assert bad.read_bytes() == before and bad.stat().st_mtime_ns == mtime


def test_truncated_local_gz_is_reported(real: Path, tmp_path: Path) -> None:
    d = _link_real(mnist_dir(tmp_path), ["t10k-images-idx3-ubyte"])
    bad = d / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes((REAL / "t10k-labels-idx1-ubyte.gz").read_bytes()[:100])
    with pytest.raises(DataError, match="corrupt") as exc:
        load_mnist(tmp_path, "test", download=False)
    assert str(bad) in str(exc.value)


def test_raw_file_preferred_over_gz(real: Path, tmp_path: Path) -> None:
    d = _link_real(mnist_dir(tmp_path), ["t10k-images-idx3-ubyte"])
    (d / "t10k-labels-idx1-ubyte").write_bytes(_real_content("t10k-labels-idx1-ubyte"))
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not a gzip file")
    _, y = load_mnist(tmp_path, "test", download=False)
    assert torch.bincount(y, minlength=10).tolist() == TEST_COUNTS


def test_bad_idx_header_is_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = mnist_dir(tmp_path)
    d.mkdir(parents=True)
    junk = {"t10k-images-idx3-ubyte": b"\x00\x00\x08\x03" + b"\x00" * 20, "t10k-labels-idx1-ubyte": b"\x00" * 12}
    for name, data in junk.items():
        (d / name).write_bytes(data)
        monkeypatch.setitem(MNIST_FILES, name, hashlib.sha256(data).hexdigest())  # pass the checksum
    with pytest.raises(DataError, match="idx"):
        load_mnist(tmp_path, "test", download=False)


def test_absent_without_download_names_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, "train", download=False)
    assert str(mnist_dir(tmp_path)) in str(exc.value)


def test_absent_with_unreachable_mirror_names_folder(tmp_path: Path, closed_url: str) -> None:
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, "test", mirrors=[closed_url], progress=False)
    msg = str(exc.value)
    assert str(mnist_dir(tmp_path)) in msg and "could not be downloaded" in msg and "\n" not in msg
    assert not any(f.endswith(".part") for f in _local_files(tmp_path))


def test_env_mirrors_are_honoured(real: Path, serve, tmp_path: Path, closed_url: str, monkeypatch) -> None:
    url, seen = serve(_link_real(tmp_path / "served", TEST_NAMES))
    monkeypatch.setenv(mnist.MIRRORS_ENV, f"{closed_url}, {url.rstrip('/')}")
    x, _ = load_mnist(tmp_path / "root", "test", progress=False)
    assert x.shape == (10000, 28, 28)
    assert set(seen) == {f"/{n}.gz" for n in TEST_NAMES}


def test_unwritable_folder_is_reported(tmp_path: Path, closed_url: str) -> None:
    root = tmp_path / "a_file"
    root.write_text("")  # mnist/ cannot be created under a file
    with pytest.raises(DataError, match="not writable"):
        load_mnist(root, "test", mirrors=[closed_url], progress=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_folder_is_reported(tmp_path: Path, closed_url: str) -> None:
    d = mnist_dir(tmp_path)
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(DataError, match="not writable"):
            load_mnist(tmp_path, "test", mirrors=[closed_url], progress=False)
    finally:
        d.chmod(0o755)
