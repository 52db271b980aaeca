"""What every image-file dataset shares: the split class, transforms and file checks.

The datasets themselves: `photos` (BFFHQ, BAR, CelebA, Waterbirds) and `user_data` (csv,
image_folder, npz).

Every image-file split is an `ImageFileDataset`: file paths plus `y` / `bias` tensors.
Images are decoded with PIL in `__getitem__`, so DataLoader workers (`data.num_workers`)
do the decoding. When a split is built, every file is checked once (it exists, is not
empty, and PIL's `verify()` accepts it; a JPEG without its end marker is fully decoded),
so a missing, corrupt or truncated image stops the run before training, with a one-line
`DataError` naming the file.

Transforms (from `DataConfig`): `image_size` (0 = the dataset's default: 224 for the
photo benchmarks, the first training image's longer side for csv / image_folder);
train with `augment`: Resize((s, s)) + RandomCrop(s, padding=4) + RandomHorizontalFlip
(DFA's BFFHQ recipe; at 32x32 it is the CIFAR recipe, the resize then being a no-op);
evaluation (and train without `augment`): Resize((s, s)). Then ToTensor and, with
`normalize` = cifar | imagenet, Normalize with those statistics (none: values in [0, 1]).

Bias convention: a sample is bias-aligned iff bias == y; -1 means unknown. A split's
bias-label metrics are only computed when every bias label is known.

Folders: each benchmark is read from `data.path` when set, else from
`<data root>/<name>` (data root: `data.root`, $DENETDM_DATA, or ~/.cache/denetdm/data).
The releases' own validation splits (DFA `valid/`, CelebA partition 1, Waterbirds
split 1) are not loaded; `create_dataset` holds out part of train when selection=val.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image
from tqdm.auto import tqdm

from .spec import DataConfig
from ..errors import ConfigError, DataError, one_line
from .base import NORMALIZATION, BiasDataset, data_root

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
PHOTO_SIZE = 224  # default side for the photo benchmarks (DFA's BFFHQ setting)
TEST_FRACTION = 0.2  # held out as test when a user dataset names no splits
_CHECK_CHUNK = 256


def _rows(numbers: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


# --------------------------------------------------------------------------- transforms


def image_transform(size: int, augment: bool = False, normalize: str = "none", train: bool = True):
    """PIL image -> float tensor (3, size, size): the train or evaluation pipeline (a torchvision
    Compose; imported here, as it adds about 160 MB to a process that in-memory data never needs)."""
    from torchvision import transforms as T

    if normalize not in ("none", *NORMALIZATION):
        raise ConfigError(f"data.normalize={normalize!r} is unknown; choose one of: none, {', '.join(NORMALIZATION)}")
    steps = [T.Resize((size, size))]
    if train and augment:
        steps += [T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()]
    steps.append(T.ToTensor())
    if normalize != "none":
        steps.append(T.Normalize(*NORMALIZATION[normalize]))
    return T.Compose(steps)


# --------------------------------------------------------------------------- file checks


def _jpeg_complete(path: str, size: int) -> bool:
    """A whole JPEG ends with the EOI marker (some writers pad a few bytes after it)."""
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 64))
        return b"\xff\xd9" in fh.read()


def _check_file(path: str) -> Optional[Tuple[str, str]]:
    """None for a plausible whole image, else ("missing" | "corrupt", reason)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return "missing", ""
    if size == 0:
        return "corrupt", "empty file"
    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        if fmt == "JPEG" and not _jpeg_complete(path, size):
            with Image.open(path) as im:  # no end marker: decode it fully to be sure
                im.load()
    except Exception as exc:  # PIL raises many types for bad files
        return "corrupt", one_line(exc) or type(exc).__name__
    return None


def _check_chunk(paths: Sequence[str]) -> List[Optional[Tuple[str, str]]]:
    return [_check_file(p) for p in paths]


def check_images(paths: Sequence[str], progress: bool = True, desc: str = "checking images", hint: str = "") -> None:
    """Every file exists and PIL accepts it, else one DataError naming the file(s)."""
    chunks = [paths[i : i + _CHECK_CHUNK] for i in range(0, len(paths), _CHECK_CHUNK)]
    missing: List[str] = []
    corrupt: List[Tuple[str, str]] = []
    workers = max(1, min(8, os.cpu_count() or 1, len(chunks)))
    with ThreadPoolExecutor(workers) as pool, tqdm(
        total=len(paths), desc=desc, unit="img", disable=not progress, leave=False
    ) as bar:
        for chunk, results in zip(chunks, pool.map(_check_chunk, chunks)):
            for path, result in zip(chunk, results):
                if result is None:
                    continue
                if result[0] == "missing":
                    missing.append(path)
                else:
                    corrupt.append((path, result[1]))
            bar.update(len(chunk))
    hint = f"; {hint}" if hint else ""
    if missing:
        raise DataError(
            f"{len(missing)} of {len(paths)} image files do not exist, e.g. {', '.join(missing[:3])}{hint}"
        )
    if corrupt:
        path, reason = corrupt[0]
        more = f" ({len(corrupt) - 1} more bad files)" if len(corrupt) > 1 else ""
        raise DataError(
            f"corrupt or truncated image {path} ({reason}){more}: replace it with a good copy "
            f"(re-download or re-extract the dataset) or remove it from the dataset"
        )


# --------------------------------------------------------------------------- the dataset


class ImageFileDataset(BiasDataset):
    """A split of image files: `paths` with `y` and `bias` tensors and a torchvision transform.

    Built from a `DataConfig` by the factories below; `subset(index, train=False)` gives the
    same files with the evaluation transform. `meta` carries dataset facts (e.g. CelebA's
    attribute-to-bias map) to subsets.
    """

    def __init__(
        self,
        paths: Sequence[str],
        y,
        bias,
        num_classes: int,
        num_bias: int,
        size: int,
        *,
        augment: bool = False,
        normalize: str = "none",
        train: bool = True,
        num_workers: int = 0,
        class_names: Optional[Sequence[str]] = None,
        meta: Optional[dict] = None,
        verify: bool = True,
        progress: bool = True,
        desc: str = "checking images",
        hint: str = "",
    ):
        self.paths = [str(p) for p in paths]
        self.y = torch.as_tensor(y, dtype=torch.long).reshape(-1)
        self.bias = torch.as_tensor(bias, dtype=torch.long).reshape(-1)
        if not len(self.paths) == len(self.y) == len(self.bias):
            raise ValueError("paths, y and bias must have the same length")
        self.num_classes, self.num_bias = int(num_classes), int(num_bias)
        self.size, self.augment, self.normalize, self.train = int(size), bool(augment), normalize, bool(train)
        self.num_workers = int(num_workers)
        self.class_names = list(class_names) if class_names is not None else None
        self.meta = dict(meta or {})
        self.transform = image_transform(self.size, self.augment, self.normalize, self.train)
        if verify:
            check_images(self.paths, progress=progress, desc=desc, hint=hint)

    def __getitem__(self, i: int):
        i = int(i)
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                x = self.transform(im.convert("RGB"))
        except OSError as exc:
            raise DataError(f"cannot decode image {path} ({one_line(exc)}); replace or remove it") from None
        return torch.tensor(i), x, self.y[i], self.bias[i]

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return (3, self.size, self.size)

    def subset(self, index: torch.Tensor, train: bool = True) -> "ImageFileDataset":
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        out = ImageFileDataset(
            [self.paths[i] for i in index.tolist()], self.y[index], self.bias[index], self.num_classes,
            self.num_bias, self.size, augment=self.augment, normalize=self.normalize, train=self.train and train,
            num_workers=self.num_workers, class_names=self.class_names, meta=self.meta, verify=False,
        )
        return out.to(self.device)


# --------------------------------------------------------------------------- helpers


def _image_size(cfg: DataConfig, default: int) -> int:
    if cfg.image_size < 0:
        raise ConfigError(f"data.image_size={cfg.image_size} must be positive (or 0 for the dataset's default)")
    return int(cfg.image_size or default)


def _split(cfg: DataConfig, paths, y, bias, num_classes, num_bias, size, train, progress, desc, **kw):
    """One split with the config's transform settings and loader workers."""
    return ImageFileDataset(
        paths, y, bias, num_classes, num_bias, size, augment=cfg.augment, normalize=cfg.normalize, train=train,
        num_workers=cfg.num_workers, progress=progress, desc=desc, **kw,
    )


def _dataset_dir(cfg: DataConfig, name: str, *aliases: str) -> Path:
    """`data.path`, else the first existing `<data root>/<name or alias>`, else `<data root>/<name>`."""
    if cfg.path:
        return Path(cfg.path).expanduser()
    root = data_root(cfg)
    for candidate in (name, *aliases):
        if (root / candidate).is_dir():
            return root / candidate
    return root / name


def _images_under(folder: Path) -> List[Path]:
    """Image files below `folder` (any depth), sorted; hidden files skipped."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def _pct(ratio: float) -> str:
    """0.005 -> "0.5pct", 0.01 -> "1pct": the folder / file naming of the releases."""
    return f"{ratio * 100:g}pct"


def _pct_ratio(name: str) -> str:
    try:
        return f"{float(name[:-3]) / 100:g}"
    except ValueError:
        return "?"


def _name_labels(path: Path) -> Tuple[int, int]:
    """`<id>_<target>_<bias>.<ext>` -> (target, bias), as the DFA-style releases name files."""
    parts = path.stem.rsplit("_", 2)
    try:
        if len(parts) != 3:
            raise ValueError
        return int(parts[1]), int(parts[2])
    except ValueError:
        raise DataError(
            f"cannot read the labels from the file name {path}: expected <id>_<target>_<bias>.<ext>, "
            f"as in the release; rename the file or remove it"
        ) from None


def _stratified_holdout(y: torch.Tensor, fraction: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices: a seeded `fraction` of every class is test."""
    generator = torch.Generator().manual_seed(seed)
    test = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        n_test = int(round(fraction * len(members)))
        test.append(members[torch.randperm(len(members), generator=generator)[:n_test]])
    is_test = torch.zeros(len(y), dtype=torch.bool)
    if test:
        is_test[torch.cat(test)] = True
    return torch.nonzero(~is_test).flatten(), torch.nonzero(is_test).flatten()


def _first_image_side(path: str) -> int:
    try:
        with Image.open(path) as im:
            return max(im.size)
    except Exception as exc:
        raise DataError(f"corrupt or truncated image {path} ({one_line(exc)}): replace or remove it") from None


# --------------------------------------------------------------------------- BFFHQ
