"""Your own data: a CSV of image paths, an image folder, or arrays in an .npz.

Shared conventions (splits, transforms, checks): `files`.

csv (your data; data.path = the CSV file)
    A header line is required, with columns `path` (relative to the CSV's folder, or
    absolute), `label`, optional `bias`, optional `split` (train / val / test). Labels are
    integers 0..K-1 (K = the number of distinct labels), or, if any is not an integer,
    names: the sorted distinct names become 0..K-1. `bias` holds integers >= 0 (or, with
    named labels, label names) with bias == label meaning aligned; leave the column out
    if the bias is unknown. Without a `split` column a seeded, per-class 20% of the rows
    is held out as test (data.seed). Rows with split=val become the `val` split.

image_folder (your data; data.path = the folder)
    <path>/train/<class>/* and <path>/test/<class>/*, or only <path>/<class>/*, in which
    case a seeded per-class 20% is held out as test. Classes are the sorted folder names;
    bias is unknown (-1).

npz (your data; data.path = the .npz file, held in memory)
    Arrays `x` (N,H,W,C or N,C,H,W, or N,H,W; uint8 0..255 or float in [0, 1], rounded
    to uint8), `y` (integers 0..K-1), optional `bias` (integers, -1 unknown), optional
    `split` (0 train / 1 val / 2 test, or the strings). Without `split` a seeded per-class
    20% is test. These splits are `TensorBiasDataset`s at the stored size (image_size does
    not apply); `augment` (train only) and `normalize` are recorded on them like on the
    other in-memory datasets, which apply them per batch where the base class supports it.
"""
from __future__ import annotations

import csv
import os
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .spec import DataConfig
from ..errors import DataError, one_line
from .base import DATASETS, Splits, TensorBiasDataset, finish_splits

from .files import (TEST_FRACTION, _first_image_side, _image_size, _images_under, _rows, _split, _stratified_holdout)


_SPLIT_NAMES = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "test": 2, "testing": 2}


def _int_or_none(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def _encode_labels(values: Sequence[str], where: Callable[[int], str]) -> Tuple[torch.Tensor, Optional[List[str]]]:
    """Integer labels 0..K-1 as given, or names sorted to 0..K-1; errors name the row."""
    ints = [_int_or_none(v) for v in values]
    if all(v is not None for v in ints):
        k = len(set(ints))
        for row, v in enumerate(ints):
            if v < 0 or v >= k:
                raise DataError(
                    f"{where(row)}: label {v} is out of range; integer labels must be 0..K-1 with K the number "
                    f"of distinct labels (here {k}, so 0..{k - 1}); renumber them or use class names"
                )
        return torch.tensor(ints, dtype=torch.long), None
    names = sorted(set(values))
    lookup = {n: i for i, n in enumerate(names)}
    return torch.tensor([lookup[v] for v in values], dtype=torch.long), names


def _holdout_splits(y: torch.Tensor, seed: int) -> torch.Tensor:
    """Split codes (0 train / 2 test) for data that names no splits."""
    codes = torch.zeros(len(y), dtype=torch.long)
    codes[_stratified_holdout(y, TEST_FRACTION, seed)[1]] = 2
    if not (codes == 2).any() or not (codes == 0).any():
        raise DataError(
            f"{len(y)} samples are too few to hold out {TEST_FRACTION:.0%} of each class as test; "
            f"add samples or mark the splits yourself"
        )
    return codes


def _file_splits(cfg, name, paths, y, bias, split_codes, num_classes, num_bias, progress, class_names, hint) -> Splits:
    size = _image_size(cfg, 0) or _first_image_side(paths[int(torch.nonzero(split_codes == 0)[0])])
    parts = {}
    for code, label in ((0, "train"), (1, "val"), (2, "test")):
        idx = torch.nonzero(split_codes == code).flatten()
        if not len(idx):
            continue
        parts[label] = _split(
            cfg, [paths[i] for i in idx.tolist()], y[idx], bias[idx], num_classes, num_bias, size, code == 0,
            progress, f"checking {label} images", class_names=class_names, hint=hint,
        )
    return Splits(train=parts["train"], test=parts["test"], val=parts.get("val"), name=name)


def _user_file(cfg: DataConfig, name: str, what: str, help: str) -> Path:
    """The file a user dataset reads, or a one-line error saying how to point at it."""
    if not cfg.path:
        raise DataError(f"data.name={name} needs data.path=<{what}>; {help}")
    file = Path(cfg.path).expanduser()
    if not file.is_file():
        raise DataError(f"{name} file {file} does not exist; set data.path to {what} ({help})")
    return file


@DATASETS.register("csv")
def csv_dataset(cfg: DataConfig, progress: bool = True) -> Splits:
    header_help = "the first line must be a header: path,label[,bias][,split]"
    file = _user_file(cfg, "csv", "your file.csv", header_help)
    try:
        with open(file, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            numbered = [(reader.line_num, r) for r in reader if any(cell.strip() for cell in r)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {file} as a UTF-8 CSV ({one_line(exc)}); save it as UTF-8 CSV") from None
    lines = [n for n, _ in numbered]  # file line numbers, for messages
    rows = [r for _, r in numbered]
    if not header:
        raise DataError(f"{file} is empty; {header_help}")
    columns = {c.strip().lower(): i for i, c in enumerate(header)}
    lacking = [c for c in ("path", "label") if c not in columns]
    if lacking:
        raise DataError(
            f"{file} lacks the column(s) {', '.join(lacking)} (its header is: {','.join(header)}); {header_help}"
        )
    if not rows:
        raise DataError(f"{file} has a header but no rows")

    def cell(row: List[str], column: str) -> str:
        i = columns.get(column)
        return row[i].strip() if i is not None and i < len(row) else ""

    def where(i: int) -> str:
        return f"{file} row {lines[i]}"

    for column in ("path", "label"):
        empty = [lines[i] for i, r in enumerate(rows) if not cell(r, column)]
        if empty:
            raise DataError(f"{file}: the {column} column is empty on rows {_rows(empty)}; fill it in")
    paths = [cell(r, "path") for r in rows]
    paths = [p if os.path.isabs(p) else str(file.parent / p) for p in (os.path.expanduser(p) for p in paths)]
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise DataError(
            f"{len(absent)} of {len(paths)} paths in {file} do not exist, e.g. {', '.join(absent[:3])}; "
            f"relative paths are read from the CSV's folder {file.parent}"
        )
    y, class_names = _encode_labels([cell(r, "label") for r in rows], where)
    num_classes = int(y.max()) + 1
    bias = torch.full_like(y, -1)
    if "bias" in columns:
        values = [cell(r, "bias") for r in rows]
        empty = [lines[i] for i, v in enumerate(values) if not v]
        if empty and len(empty) < len(values):
            raise DataError(
                f"{file}: the bias column is empty on rows {_rows(empty)} ({len(empty)} of {len(values)}); "
                f"fill it in, or drop the column if the bias is unknown"
            )
        if not empty:
            lookup = {n: i for i, n in enumerate(class_names or [])}
            for i, v in enumerate(values):
                b = _int_or_none(v)
                b = lookup.get(v) if b is None else b
                if b is None or b < 0:
                    raise DataError(
                        f"{where(i)}: bias {v!r} must be an integer >= 0{' or a label name' if class_names else ''} "
                        f"(bias == label means aligned)"
                    )
                bias[i] = b
        _check_bias_values(bias.numpy(), num_classes, file)
    num_bias = max(num_classes, int(bias.max()) + 1)
    if "split" in columns:
        codes = []
        for i, r in enumerate(rows):
            code = _SPLIT_NAMES.get(cell(r, "split").lower())
            if code is None:
                raise DataError(f"{where(i)}: split {cell(r, 'split')!r} is not train, val or test")
            codes.append(code)
        split_codes = torch.tensor(codes)
        for code, label in ((0, "train"), (2, "test")):
            if not (split_codes == code).any():
                raise DataError(
                    f"{file} has no rows with split={label}; add some, or drop the split column to hold out "
                    f"{TEST_FRACTION:.0%} as test"
                )
    else:
        split_codes = _holdout_splits(y, cfg.seed)
    hint = f"fix the paths in {file}"
    return _file_splits(cfg, "csv", paths, y, bias, split_codes, num_classes, num_bias, progress, class_names, hint)


def _class_folders(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []


@DATASETS.register("image_folder")
def image_folder(cfg: DataConfig, progress: bool = True) -> Splits:
    layout = "<path>/train/<class>/* and <path>/test/<class>/*, or <path>/<class>/*"
    if not cfg.path:
        raise DataError(f"data.name=image_folder needs data.path=<folder> laid out as {layout}")
    root = Path(cfg.path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; set data.path to a folder laid out as {layout}")
    train_root = root / "train" if (root / "train").is_dir() else root
    classes = [c for c in _class_folders(train_root) if _images_under(c)]
    if not classes:
        raise DataError(f"no class folders with images in {train_root}; lay the images out as {layout}")
    names = [c.name for c in classes]
    paths: List[str] = []
    labels: List[int] = []
    codes: List[int] = []

    def add(folder: Path, label: int, code: int) -> None:
        found = _images_under(folder)
        paths.extend(str(p) for p in found)
        labels.extend([label] * len(found))
        codes.extend([code] * len(found))

    for label, folder in enumerate(classes):
        add(folder, label, 0)
    test_root = root / "test"
    if train_root != root and test_root.is_dir():
        for folder in _class_folders(test_root):
            if folder.name not in names:
                if _images_under(folder):
                    raise DataError(
                        f"test class folder {folder} has no train counterpart; train classes: {', '.join(names)}"
                    )
                continue
            add(folder, names.index(folder.name), 2)
    y = torch.tensor(labels, dtype=torch.long)
    split_codes = torch.tensor(codes, dtype=torch.long)
    if not (split_codes == 2).any():
        split_codes = _holdout_splits(y, cfg.seed)
    bias = torch.full_like(y, -1)
    return _file_splits(cfg, "image_folder", paths, y, bias, split_codes, len(names), len(names), progress, names, "")


def _channels_first(x: np.ndarray, file: Path) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise DataError(f"{file}: x has shape {x.shape}; expected (N, H, W, C), (N, C, H, W) or (N, H, W)")
    channels = (1, 3, 4)
    if x.shape[-1] in channels and x.shape[1] not in channels:
        return x.transpose(0, 3, 1, 2)
    if x.shape[1] in channels:
        return x
    if x.shape[-1] in channels:
        return x.transpose(0, 3, 1, 2)
    raise DataError(f"{file}: x has shape {x.shape}; cannot tell the channel axis (1, 3 or 4 channels, first or last)")


def _check_bias_values(bias: np.ndarray, num_classes: int, file: Path) -> None:
    """Bias labels are 0..B-1 (or the class numbers) and -1 where unknown: checked before group tables
    of that size are built, and so that a typo never turns into "unknown"."""
    known = np.unique(bias[bias != -1])
    if len(known) and (known[0] < 0 or known[-1] >= max(len(known), num_classes)):
        bad = known[0] if known[0] < 0 else known[-1]
        raise DataError(f"{file}: bias value {bad} is not allowed; bias labels are 0..B-1 (B distinct values, here "
                        f"{len(known)}, or the class numbers 0..{num_classes - 1}) and -1 where unknown")


def _read_npz(file: Path, needed: Sequence[str], keys: str) -> dict:
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"cannot read {file} as .npz ({one_line(exc)}); save it with numpy.savez and plain (non-object) arrays"
        ) from None
    lacking = [k for k in needed if k not in arrays]
    if lacking:
        raise DataError(
            f"{file} lacks the array(s) {', '.join(lacking)} (has: {', '.join(arrays) or 'none'}); it needs {keys}"
        )
    return arrays


def _images_uint8(x: np.ndarray, file: Path) -> torch.Tensor:
    """uint8 (N, C, H, W) from uint8 0..255 or float [0, 1] images, channels first or last."""
    if np.issubdtype(x.dtype, np.floating):
        if len(x) and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
            raise DataError(f"{file}: float x must lie in [0, 1]; store 0..255 values as uint8")
        x = np.round(x * 255.0).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.integer):
        if len(x) and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{file}: integer x must lie in 0..255")
        x = x.astype(np.uint8)
    else:
        raise DataError(f"{file}: x has dtype {x.dtype}; use uint8 or float in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(_channels_first(x, file)))


def npz_images(file: Path) -> torch.Tensor:
    """The `x` images of an .npz as training reads them (for `denetdm predict`)."""
    return _images_uint8(_read_npz(Path(file), ("x",), "x (images)")["x"], file)


@DATASETS.register("npz")
def npz(cfg: DataConfig, progress: bool = True) -> Splits:
    file = _user_file(cfg, "npz", "file.npz", f"it holds arrays {ARRAY_KEYS}")
    return arrays_splits(_read_npz(file, ("x", "y"), ARRAY_KEYS), cfg, file)


ARRAY_KEYS = "x (images), y (labels 0..K-1), optional bias and split"


def arrays_splits(arrays: dict, cfg: DataConfig, file) -> Splits:
    """Train / val / test splits from the arrays of an .npz, or the same arrays held in memory (`file`
    then names where they came from in the errors)."""
    lacking = [k for k in ("x", "y") if k not in arrays]
    if lacking:
        raise DataError(f"{file} lacks {', '.join(lacking)} (has: {', '.join(arrays) or 'none'}); it needs {ARRAY_KEYS}")
    arrays = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in arrays.items()}
    y_np = arrays["y"].reshape(-1)
    x = _images_uint8(arrays["x"], file)
    n = len(x)
    if len(y_np) != n:
        raise DataError(f"{file}: x has {n} images but y has {len(y_np)} labels")
    if not np.issubdtype(y_np.dtype, np.integer):
        raise DataError(f"{file}: y must hold integers 0..K-1, got dtype {y_np.dtype}")
    if n == 0 or int(y_np.min()) < 0:
        raise DataError(f"{file}: y is empty or negative; labels must be integers 0..K-1")
    classes = np.unique(y_np)
    if classes[-1] != len(classes) - 1:  # checked before a head (and group tables) of that size is built
        raise DataError(f"{file}: y holds {len(classes)} distinct labels but its largest is {classes[-1]}; "
                        f"labels must be 0..K-1, so renumber them 0..{len(classes) - 1}")
    y = torch.from_numpy(y_np.astype(np.int64))
    num_classes = len(classes)
    bias = torch.full_like(y, -1)
    if "bias" in arrays:
        b = arrays["bias"].reshape(-1)
        if len(b) != n or not np.issubdtype(b.dtype, np.integer):
            raise DataError(f"{file}: bias must hold {n} integers (-1 where unknown)")
        _check_bias_values(b, num_classes, file)
        bias = torch.from_numpy(b.astype(np.int64))
    num_bias = max(num_classes, int(bias.max()) + 1)
    if "split" in arrays:
        s = arrays["split"].reshape(-1)
        if len(s) != n:
            raise DataError(f"{file}: split has {len(s)} entries for {n} images")
        if np.issubdtype(s.dtype, np.integer):
            codes = s.astype(np.int64)
            bad = ~np.isin(codes, (0, 1, 2))
        else:
            names = [str(v).strip().lower() for v in s.tolist()]
            codes = np.array([_SPLIT_NAMES.get(v, -1) for v in names], dtype=np.int64)
            bad = codes < 0
        if bad.any():
            raise DataError(f"{file}: split entry {s[np.argmax(bad)]!r} is not 0/1/2 or train/val/test")
        split_codes = torch.from_numpy(codes)
        for code, label in ((0, "train"), (2, "test")):
            if not (split_codes == code).any():
                raise DataError(f"{file} has no {label} samples in split")
    else:
        split_codes = _holdout_splits(y, cfg.seed)
    if cfg.image_size and cfg.image_size != x.shape[-1]:
        warnings.warn(
            f"data.image_size={cfg.image_size} does not apply to npz data; its images stay {tuple(x.shape[1:])}"
        )

    def part(code: int) -> Optional[TensorBiasDataset]:
        idx = torch.nonzero(split_codes == code).flatten()
        if not len(idx):
            return None
        split = TensorBiasDataset(x[idx], y[idx], bias[idx], num_classes, num_bias)
        split.normalize, split.augment = cfg.normalize, bool(cfg.augment and code == 0)
        return split

    return Splits(train=part(0), test=part(2), val=part(1), name="npz")


def memory_splits(data, cfg: DataConfig, with_val: bool) -> Splits:
    """Splits from data given in memory: a dict of arrays or tensors as in an .npz, or a `Splits` of
    datasets in the (index, x, y, bias) contract."""
    if isinstance(data, Splits):
        splits = data
    elif isinstance(data, dict):
        splits = arrays_splits(data, cfg, "the arrays given to denetdm.train")
    else:
        raise DataError(f"data={type(data).__name__} is not usable; give a dict of arrays (x, y, optional bias and "
                        "split, as in an .npz) or a denetdm.data.Splits")
    return finish_splits(splits, cfg, with_val)


@DATASETS.register("in_memory")
def in_memory(cfg: DataConfig, progress: bool = True) -> Splits:
    """The name a run trained on arrays given to `denetdm.train(..., data=...)` records: they are not in
    any file, so they cannot be read again from the config."""
    raise DataError("this run was trained on in-memory data (denetdm.train(..., data=...)); pass the same data "
                    "again: denetdm.train(cfg, run_dir, data=..., resume=True), or evaluate its model with denetdm.load_run")
