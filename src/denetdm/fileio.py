"""Atomic writes: a crash never leaves half a checkpoint, cache or results file; and checksums of
tensors."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Tuple

import torch


# Files are created as open(..., "w") would make them (group-readable under the usual umask), not the
# owner-only mode of a temporary file.
_UMASK = os.umask(0)
os.umask(_UMASK)


def hash_tensor(h, tensor: torch.Tensor) -> None:
    """Feed a tensor's bytes to the hashlib object `h` without copying them (`tobytes()` would hold a
    second copy of the training images at the peak of a run's memory)."""
    array = tensor.detach().cpu().contiguous().numpy()
    h.update(memoryview(array.reshape(-1)).cast("B"))


def save_atomic(obj, path: Path) -> None:
    """torch.save through a temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    """Through a temporary file, then an atomic rename; a failed write (a full disk) leaves neither."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(obj, **kwargs) -> str:
    """Strict JSON (RFC 8259), which every parser reads: a NaN or infinity is written as null."""
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


# (resolved path, mtime_ns, size) -> digest: each data file is hashed once per process.
_DIGESTS: Dict[Tuple[str, int, int], str] = {}


def file_digest(path: Path, compute: Callable[[], str]) -> str:
    """`compute()` (a hash of the file's content), remembered while the file is unchanged."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        _DIGESTS[key] = compute()
    return _DIGESTS[key]
