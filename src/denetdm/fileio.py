"""Atomic writes: a crash never leaves half a checkpoint, cache or results file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# (resolved path, mtime_ns, size) -> digest: each data file is hashed once per process.
_DIGESTS: Dict[Tuple[str, int, int], str] = {}


def file_digest(path: Path, compute: Callable[[], str]) -> str:
    """`compute()` (a hash of the file's content), remembered while the file is unchanged."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        _DIGESTS[key] = compute()
    return _DIGESTS[key]
