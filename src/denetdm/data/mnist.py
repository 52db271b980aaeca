"""MNIST source: the four idx files, fetched on demand and checked by content.

Checksums are of the DECOMPRESSED bytes: mirrors recompress the files, so the .gz
bytes differ between copies while the content does not. A file the user put in
place is never deleted or overwritten; a bad one is reported with the fix.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from tqdm import tqdm

from ..errors import DataError, one_line
from ..fileio import file_digest

MNIST_FILES: Dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
DEFAULT_MIRRORS: Tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MIRRORS_ENV = "DENETDM_MNIST_MIRRORS"

_SPLITS = {"train": "train", "test": "t10k"}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_TIMEOUT_S = 30.0
_CHUNK = 1 << 16
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)

def mnist_dir(root: Union[str, os.PathLike]) -> Path:
    return Path(root) / "mnist"


def _fix_missing(d: Path) -> str:
    names = ", ".join(MNIST_FILES)
    return (
        f"put the four MNIST files ({names}, raw or .gz) in {d} "
        "or pass --data-dir / set DENETDM_DATA to a folder that holds mnist/"
    )


def _mirrors(mirrors: Optional[Sequence[str]]) -> List[str]:
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV, "")
        mirrors = [m.strip() for m in env.split(",") if m.strip()] or list(DEFAULT_MIRRORS)
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _find(d: Path, name: str) -> Optional[Path]:
    for p in (d / name, d / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def _content(path: Path, name: str) -> bytes:
    """Read and decompress a present file and check its hash; never touch the file itself."""
    fix = "delete it and run again to re-download, or replace it with a good copy"
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if path.name.endswith(".gz") else raw
    except _GZIP_ERRORS as e:
        raise DataError(f"MNIST file {path} is corrupt (not a valid gzip file: {one_line(e)}); {fix}") from None
    except OSError as e:
        raise DataError(f"MNIST file {path} cannot be read ({one_line(e)}); check its permissions") from None
    if file_digest(path, lambda: hashlib.sha256(data).hexdigest()) != MNIST_FILES[name]:
        raise DataError(f"MNIST file {path} is corrupt (SHA-256 of its content does not match); {fix}")
    return data


def _fetch(url: str, fh, desc: str, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress, leave=False) as bar:
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                bar.update(len(chunk))


def _download(d: Path, name: str, mirrors: List[str], progress: bool) -> Path:
    """Try each mirror; only a .gz whose content hashes right is moved into place."""
    dest = d / f"{name}.gz"
    reasons: List[str] = []
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=d, prefix=f".{name}.gz.", suffix=".part")
        except OSError as e:
            reason = f"{d} is not writable: {one_line(e.strerror or e)}"
            raise DataError(f"MNIST file {name} is missing from {d} and could not be downloaded ({reason}); {_fix_missing(d)}") from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                _fetch(url, fh, name, progress)
            gz = tmp.read_bytes()
            data = gzip.decompress(gz)
            digest = hashlib.sha256(data).hexdigest()
            if digest != MNIST_FILES[name]:
                reasons.append(f"{url}: SHA-256 checksum of the content failed")
                continue
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
            return dest
        except urllib.error.HTTPError as e:
            reasons.append(f"{url}: HTTP {e.code}")
        except urllib.error.URLError as e:
            reasons.append(f"{url}: {one_line(e.reason)}")
        except _GZIP_ERRORS as e:
            reasons.append(f"{url}: not a valid gzip file ({one_line(e)})")
        except OSError as e:  # timeouts, resets, disk full
            reasons.append(f"{url}: {one_line(e)}")
        finally:
            tmp.unlink(missing_ok=True)
    reason = "; ".join(reasons) or "no mirrors given"
    raise DataError(f"MNIST file {name} is missing from {d} and could not be downloaded ({reason}); {_fix_missing(d)}")


def _parse(data: bytes, magic: int, ndim: int, path: Path) -> np.ndarray:
    """Validate the idx header before trusting it to size the array."""
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataError(f"MNIST file {path} is not an idx file (too short); replace it with a good copy")
    got_magic, *dims = np.frombuffer(data, dtype=">u4", count=1 + ndim).tolist()
    if got_magic != magic or len(data) != head + math.prod(dims):
        raise DataError(
            f"MNIST file {path} has a bad idx header (magic {got_magic}, dims {dims}, {len(data)} bytes); "
            "replace it with a good copy"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims)


def load_mnist(
    root: Union[str, os.PathLike],
    split: str,
    download: bool = True,
    mirrors: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 (N, 28, 28) and labels int64 (N,) of one split, fetched first if absent.

    `mirrors` (base URLs) defaults to $DENETDM_MNIST_MIRRORS (comma-separated), else DEFAULT_MIRRORS.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    d = mnist_dir(root)
    img_name, lbl_name = (f"{_SPLITS[split]}-images-idx3-ubyte", f"{_SPLITS[split]}-labels-idx1-ubyte")
    paths: Dict[str, Path] = {}
    for name in (lbl_name, img_name):  # labels first: small, so a bad mirror fails fast
        p = _find(d, name)
        if p is None:
            if not download:
                raise DataError(f"MNIST file {name} is missing from {d} and download is off; {_fix_missing(d)}")
            p = _download(d, name, _mirrors(mirrors), progress)
        paths[name] = p

    images = _parse(_content(paths[img_name], img_name), _IMAGES_MAGIC, 3, paths[img_name])
    labels = _parse(_content(paths[lbl_name], lbl_name), _LABELS_MAGIC, 1, paths[lbl_name])
    if images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0] or labels.max(initial=0) > 9:
        raise DataError(
            f"MNIST files in {d} disagree (images {tuple(images.shape)}, labels {tuple(labels.shape)}); "
            "replace them with good copies"
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
