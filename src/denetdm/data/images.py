"""Image datasets read from files: BFFHQ, BAR, CelebA, Waterbirds, and your own data.

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

bffhq (Biased FFHQ, 2 classes, 2 bias values)
    DFA release (github.com/kakaoenterprise/Learning-Debiased-Disentangled, Google Drive):
        bffhq/0.5pct/align/<label>/*.png, bffhq/0.5pct/conflict/<label>/*.png   train
        bffhq/test/*.png                                                          test
    `data.ratio` picks the `<100*ratio>pct` folder (the release has 0.5pct: data.ratio=0.005).
    The official DeNetDM re-organised layout, bffhq/train/{align,conflict}/<label>/* and
    bffhq/test/*, is accepted too (folder `bffhq` or `bFFHQ`; it is the 0.5% set).
    Labels come from file names `<id>_<target>_<bias>.<ext>`: attribute 0 is the target,
    attribute 1 the bias, both binary, as in DFA's loader. (DFA describes the target as
    age and the bias as gender; the DeNetDM text says the reverse; the labels are the
    release's either way.) The whole test set is returned (half aligned); the headline
    "conflicting accuracy" is the mean of the off-diagonal group accuracies.

bar (Biased Action Recognition, 6 classes; bias = place, 6 values)
    Classes in order: climbing, diving, fishing, racing, throwing, vaulting; the aligned
    places: rock wall, underwater, water surface, paved track, playing field, sky.
    Two layouts:
    * the original release (github.com/alinlab/BAR): bar/train/<class>_<n>.jpg,
      bar/test/<class>_<n>.jpg (+ metadata.json, not needed); the class is the file-name
      prefix ("pole vaulting" -> vaulting). Places are not labelled: bias = -1. For the
      1% / 5% settings (BiasAdv) put a list of train files at bar/<100*ratio>pct.txt
      (one file name per line, optionally followed by a TAB and the place index 0..5,
      or "aligned"; blank lines and '#' comments are skipped) or bar/<100*ratio>pct.json
      (a list of names, or an object name -> place index or null); names may omit the
      extension. Without such a file all train images are used, with a warning.
    * the BiasEnsemble re-organisation: bar/train/align/<class>/*,
      bar/train/conflict/<100*ratio>pct/<class>/*, bar/test/<class>/*, labels from
      `<id>_<target>_<bias>.<ext>` names; align images get bias = y, conflict images -1
      (their place is unknown, only that it is not the class's own).
    The test set is entirely bias-conflicting; its bias labels are unknown (-1), so the
    headline metric is plain accuracy.

celeba (2 classes, 2 bias values)
    The standard release (mmlab.ie.cuhk.edu.hk/projects/CelebA.html; also the layout that
    torchvision.datasets.CelebA(root=<data root>, download=True) writes):
        celeba/list_attr_celeba.txt       count, 40 attribute names, `<file> ±1 x40` rows
        celeba/list_eval_partition.txt    `<file> 0|1|2` (train / val / test)
        celeba/img_align_celeba/*.jpg
    The full official partitions are used (not the BiasCon subsample). y = (target_attr
    == 1) with `data.target_attr` / `data.bias_attr` (default Blond_Hair / Male). Let
    a = (bias_attr == 1). On the train split, if the target is at least as frequent among
    a = 1 as among a = 0, then bias = a, else bias = 1 - a: the bias value "aligned" with
    a class is the one positively associated with it. For Blond_Hair / Male, blond hair is
    more frequent among women, so bias = 1 - Male (women align with blond, men with
    not-blond), and the paper's reported group (Blond_Hair = 0, Male = 0), non-blond
    women, is the bias-conflicting group (y, bias) = (0, 1): see `celeba_paper_group`.

waterbirds (2 classes, 2 bias values)
    WILDS / group-DRO release: waterbirds/metadata.csv (columns img_filename, y, split,
    place; split 0 train, 1 val, 2 test) with the images under the same folder. Also
    found as waterbirds_v1.0 or waterbird_complete95_forest2water2. bias = place
    (aligned iff place == y: landbird on land, waterbird on water).

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
import json
import os
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from tqdm.auto import tqdm

from .spec import DataConfig
from ..errors import ConfigError, DataError, one_line
from .base import DATASETS, NORMALIZATION, BiasDataset, Splits, TensorBiasDataset, data_root

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
PHOTO_SIZE = 224  # default side for the photo benchmarks (DFA's BFFHQ setting)
TEST_FRACTION = 0.2  # held out as test when a user dataset names no splits
_CHECK_CHUNK = 256


def _rows(numbers: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


# --------------------------------------------------------------------------- transforms


def image_transform(size: int, augment: bool = False, normalize: str = "none", train: bool = True) -> T.Compose:
    """PIL image -> float tensor (3, size, size): the train or evaluation pipeline."""
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


def _bffhq_labels(paths: Sequence[Path]) -> Tuple[torch.Tensor, torch.Tensor]:
    labels = [_name_labels(p) for p in paths]
    y = torch.tensor([t for t, _ in labels], dtype=torch.long)
    bias = torch.tensor([b for _, b in labels], dtype=torch.long)
    for values, what in ((y, "target"), (bias, "bias")):
        bad = torch.nonzero((values < 0) | (values > 1)).flatten()
        if len(bad):
            raise DataError(f"{paths[int(bad[0])]} has {what} label {int(values[bad[0]])}; BFFHQ labels are 0 or 1")
    return y, bias


@DATASETS.register("bffhq")
def bffhq(cfg: DataConfig, progress: bool = True) -> Splits:
    root = _dataset_dir(cfg, "bffhq", "bFFHQ")
    pct = _pct(cfg.ratio)
    get = (
        f"download bffhq from the Google Drive linked in github.com/kakaoenterprise/Learning-Debiased-Disentangled "
        f"and unpack it so that {root}/0.5pct/align and {root}/test exist (or set data.path to the bffhq folder)"
    )
    if (root / pct / "align").is_dir():
        train_dir = root / pct  # DFA release
    elif (root / "train" / "align").is_dir():
        train_dir = root / "train"  # DeNetDM's re-organised copy
    else:
        available = sorted(p.name for p in root.glob("*pct") if (p / "align").is_dir()) if root.is_dir() else []
        if available:
            options = ", ".join(f"{a} (data.ratio={_pct_ratio(a)})" for a in available)
            raise DataError(f"data.ratio={cfg.ratio:g} asks for {root / pct}, which does not exist; found {options}")
        raise DataError(f"BFFHQ not found at {root}: {get}")
    train_paths = _images_under(train_dir / "align") + _images_under(train_dir / "conflict")
    test_paths = _images_under(root / "test")
    if not train_paths or not test_paths:
        empty = train_dir if not train_paths else root / "test"
        raise DataError(f"BFFHQ at {root} is incomplete: no images under {empty}; {get}")
    size = _image_size(cfg, PHOTO_SIZE)
    y, bias = _bffhq_labels(train_paths)
    train = _split(cfg, train_paths, y, bias, 2, 2, size, True, progress, "checking BFFHQ train")
    y, bias = _bffhq_labels(test_paths)
    test = _split(cfg, test_paths, y, bias, 2, 2, size, False, progress, "checking BFFHQ test")
    return Splits(train=train, test=test, name="bffhq")


# --------------------------------------------------------------------------- BAR

BAR_CLASSES = ("climbing", "diving", "fishing", "racing", "throwing", "vaulting")
BAR_PLACES = ("rock wall", "underwater", "water surface", "paved track", "playing field", "sky")
_BAR_ALIASES = {"pole vaulting": "vaulting", "pole_vaulting": "vaulting", "polevaulting": "vaulting"}


def _bar_class(path: Path) -> int:
    prefix = path.stem.rsplit("_", 1)[0].strip().lower()
    name = _BAR_ALIASES.get(prefix, prefix)
    if name not in BAR_CLASSES:
        raise DataError(
            f"cannot tell the BAR class of {path}: file names start with one of "
            f"{', '.join(BAR_CLASSES)} (or 'pole vaulting'); remove or rename the file"
        )
    return BAR_CLASSES.index(name)


def _bar_place(value, where: str, y: int) -> int:
    """A split file's place entry: an index 0..5, "aligned", or empty / null / -1 (unknown)."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "-1")):
        return -1
    if isinstance(value, str) and value.strip().lower() in ("aligned", "align"):
        return y
    try:
        place = int(value)
    except (TypeError, ValueError):
        place = -2
    if not -1 <= place < len(BAR_PLACES):
        raise DataError(f"{where}: place {value!r} is not an index 0..5, 'aligned' or empty")
    return place


def _bar_split_list(file: Path) -> Dict[str, object]:
    """name -> place entry (None when not given), from a .txt or .json split list."""
    try:
        if file.suffix == ".json":
            data = json.loads(file.read_text(encoding="utf-8"))
            if isinstance(data, list):
                return {str(name): None for name in data}
            if isinstance(data, dict):
                return {str(name): place for name, place in data.items()}
            raise DataError(f"{file} must hold a JSON list of file names or an object name -> place")
        out: Dict[str, object] = {}
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, _, place = line.partition("\t")
            out[name.strip()] = place.strip() or None
        return out
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the BAR split list {file} ({one_line(exc)}); fix or remove it") from None


def _bar_original(cfg: DataConfig, root: Path, size: int, progress: bool) -> Splits:
    train_paths = _images_under(root / "train")
    test_paths = _images_under(root / "test")
    if not test_paths:
        raise DataError(f"BAR at {root} has no images under {root / 'test'}; copy the release's test/ folder there")
    train_y = [_bar_class(p) for p in train_paths]
    train_bias = [-1] * len(train_paths)
    pct = _pct(cfg.ratio)
    lists = [root / f"{pct}.txt", root / f"{pct}.json"]
    split_file = next((f for f in lists if f.is_file()), None)
    if split_file is None:
        warnings.warn(
            f"no BAR split list {lists[0]} (or .json) for data.ratio={cfg.ratio:g}: training on all "
            f"{len(train_paths)} train images, whose conflicting ratio is unknown"
        )
    else:
        wanted = _bar_split_list(split_file)
        index = {}
        for i, p in enumerate(train_paths):
            index[p.name] = i
            index.setdefault(p.stem, i)
        unknown = [name for name in wanted if name not in index]
        if unknown:
            raise DataError(
                f"{len(unknown)} names in {split_file} are not in {root / 'train'}, e.g. {', '.join(unknown[:3])}; "
                f"list the train file names, one per line"
            )
        keep = sorted({index[name] for name in wanted})
        places = {index[name]: place for name, place in wanted.items()}
        train_paths = [train_paths[i] for i in keep]
        train_bias = [
            _bar_place(places[i], f"{split_file}, {train_paths[k].name}", train_y[i]) for k, i in enumerate(keep)
        ]
        train_y = [train_y[i] for i in keep]
    test_y = [_bar_class(p) for p in test_paths]
    kw = dict(class_names=BAR_CLASSES)
    train = _split(cfg, train_paths, train_y, train_bias, 6, 6, size, True, progress, "checking BAR train", **kw)
    test_bias = [-1] * len(test_paths)
    test = _split(cfg, test_paths, test_y, test_bias, 6, 6, size, False, progress, "checking BAR test", **kw)
    return Splits(train=train, test=test, name="bar")


def _bar_reorganised(cfg: DataConfig, root: Path, size: int, progress: bool) -> Splits:
    pct = _pct(cfg.ratio)
    conflict_root = root / "train" / "conflict"
    if not (conflict_root / pct).is_dir():
        available = sorted(p.name for p in conflict_root.glob("*pct") if p.is_dir())
        options = ", ".join(f"{a} (data.ratio={_pct_ratio(a)})" for a in available) or "none"
        raise DataError(
            f"data.ratio={cfg.ratio:g} asks for {conflict_root / pct}, which does not exist; found {options}"
        )
    align = _images_under(root / "train" / "align")
    conflict = _images_under(conflict_root / pct)
    test_paths = _images_under(root / "test")
    if not align or not test_paths:
        raise DataError(f"BAR at {root} is incomplete: train/align and test/ need images")
    train_paths = align + conflict
    train_y = [_name_labels(p)[0] for p in train_paths]
    train_bias = train_y[: len(align)] + [-1] * len(conflict)
    test_y = [_name_labels(p)[0] for p in test_paths]
    bad = [p for p, t in zip(train_paths + test_paths, train_y + test_y) if not 0 <= t < 6]
    if bad:
        raise DataError(f"{bad[0]} has a class label outside 0..5; BAR has six classes")
    kw = dict(class_names=BAR_CLASSES)
    train = _split(cfg, train_paths, train_y, train_bias, 6, 6, size, True, progress, "checking BAR train", **kw)
    test_bias = [-1] * len(test_paths)
    test = _split(cfg, test_paths, test_y, test_bias, 6, 6, size, False, progress, "checking BAR test", **kw)
    return Splits(train=train, test=test, name="bar")


@DATASETS.register("bar")
def bar(cfg: DataConfig, progress: bool = True) -> Splits:
    root = _dataset_dir(cfg, "bar", "BAR")
    size = _image_size(cfg, PHOTO_SIZE)
    if (root / "train" / "align").is_dir():
        return _bar_reorganised(cfg, root, size, progress)
    if (root / "train").is_dir() and _images_under(root / "train"):
        return _bar_original(cfg, root, size, progress)
    raise DataError(
        f"BAR not found at {root}: clone or download github.com/alinlab/BAR and put its train/ and test/ folders "
        f"in {root} (or set data.path); for the 1%/5% settings add {root}/1pct.txt or 5pct.txt listing train files"
    )


# --------------------------------------------------------------------------- CelebA

CELEBA_PAPER_GROUP = {"Blond_Hair": 0, "Male": 0}  # the group DeNetDM reports (non-blond women)


def _read_celeba_attrs(file: Path) -> Tuple[List[str], List[str], np.ndarray]:
    """(attribute names, file names, values in {-1, 1} of shape (N, A))."""
    lines = file.read_text(encoding="utf-8").splitlines()
    try:
        count = int(lines[0].split()[0])
        names = lines[1].split()
        files, tokens = [], []
        for line in lines[2:]:
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(names) + 1:
                raise ValueError(f"a row has {len(parts) - 1} values for {len(names)} attributes: {line[:60]!r}")
            files.append(parts[0])
            tokens.extend(parts[1:])
        values = np.array(tokens).astype(np.int8).reshape(len(files), len(names))
        if not np.isin(values, (-1, 1)).all():
            raise ValueError("attribute values must be -1 or 1")
    except (IndexError, ValueError) as exc:
        raise DataError(
            f"{file} is not in the CelebA format (count line, attribute names, then `<file> ±1 ...` rows): "
            f"{one_line(exc)}; re-download it"
        ) from None
    if count != len(files):
        raise DataError(
            f"{file} announces {count} images but lists {len(files)}; the file is truncated, re-download it"
        )
    return names, files, values


def _read_celeba_partition(file: Path) -> Dict[str, int]:
    out = {}
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataError(f"{file} line {number} is not `<file> 0|1|2`: {line[:60]!r}; re-download it")
        out[parts[0]] = int(parts[1])
    return out


def attribute_group(split: BiasDataset, target_value: int, bias_attr_value: int) -> Tuple[int, int]:
    """(y, bias) of the CelebA group with target attribute = target_value and bias attribute =
    bias_attr_value (0/1 = -1/+1 in list_attr_celeba.txt)."""
    attr_to_bias = split.meta["attr_to_bias"]
    return int(target_value), int(attr_to_bias[int(bias_attr_value)])


def celeba_paper_group(split: BiasDataset) -> Tuple[int, int]:
    """(y, bias) of the group the paper reports: target attribute 0 and bias attribute 0,
    i.e. (Blond_Hair = 0, Male = 0) for the default attributes; it is (0, 1) there."""
    return attribute_group(split, 0, 0)


@DATASETS.register("celeba")
def celeba(cfg: DataConfig, progress: bool = True) -> Splits:
    root = _dataset_dir(cfg, "celeba", "CelebA")
    attr_file, part_file = root / "list_attr_celeba.txt", root / "list_eval_partition.txt"
    images = root / "img_align_celeba"
    missing = [p.name for p in (attr_file, part_file, images) if not p.exists()]
    if missing:
        raise DataError(
            f"CelebA not found at {root} (missing {', '.join(missing)}): download img_align_celeba.zip, "
            f"list_attr_celeba.txt and list_eval_partition.txt from mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
            f"(or run torchvision.datasets.CelebA(root='{root.parent}', download=True)) and put them in {root}"
        )
    names, files, values = _read_celeba_attrs(attr_file)
    for attr, key in ((cfg.target_attr, "data.target_attr"), (cfg.bias_attr, "data.bias_attr")):
        if attr not in names:
            raise DataError(f"{key}={attr!r} is not a CelebA attribute; choose one of: {', '.join(names)}")
    if cfg.target_attr == cfg.bias_attr:
        raise DataError(f"data.target_attr and data.bias_attr are both {cfg.target_attr!r}; pick two attributes")
    partition = _read_celeba_partition(part_file)
    unlisted = [f for f in files if f not in partition]
    if unlisted:
        raise DataError(
            f"{len(unlisted)} images of {attr_file.name} are not in {part_file.name}, e.g. {unlisted[0]}; "
            f"re-download both"
        )
    split_of = torch.tensor([partition[f] for f in files])
    target = torch.from_numpy((values[:, names.index(cfg.target_attr)] == 1).astype(np.int64))
    attr = torch.from_numpy((values[:, names.index(cfg.bias_attr)] == 1).astype(np.int64))
    is_train = split_of == 0
    if not is_train.any() or not (split_of == 2).any():
        raise DataError(f"{part_file} has no train (0) or no test (2) rows; re-download it")

    def rate(a: int) -> float:
        members = is_train & (attr == a)
        return float(target[members].double().mean()) if members.any() else 0.0

    flip = rate(1) < rate(0)  # the target is more frequent where the bias attribute is absent
    bias = 1 - attr if flip else attr
    meta = {
        "target_attr": cfg.target_attr, "bias_attr": cfg.bias_attr,
        "attr_to_bias": (1, 0) if flip else (0, 1),
    }
    size = _image_size(cfg, PHOTO_SIZE)
    class_names = (f"not {cfg.target_attr}", cfg.target_attr)

    def split(code: int, train: bool, desc: str) -> ImageFileDataset:
        idx = torch.nonzero(split_of == code).flatten()
        paths = [str(images / files[i]) for i in idx.tolist()]
        return _split(cfg, paths, target[idx], bias[idx], 2, 2, size, train, progress, desc,
                      class_names=class_names, meta=meta)

    train, test = split(0, True, "checking CelebA train"), split(2, False, "checking CelebA test")
    return Splits(train=train, test=test, name="celeba")


# --------------------------------------------------------------------------- Waterbirds


@DATASETS.register("waterbirds")
def waterbirds(cfg: DataConfig, progress: bool = True) -> Splits:
    root = _dataset_dir(cfg, "waterbirds", "waterbirds_v1.0", "waterbird_complete95_forest2water2")
    meta_file = root / "metadata.csv"
    if not meta_file.is_file():
        raise DataError(
            f"Waterbirds not found at {root} (no metadata.csv): download waterbirds_v1.0 from WILDS "
            f"(wilds.get_dataset('waterbirds', download=True)) or waterbird_complete95_forest2water2 from "
            f"github.com/kohpangwei/group_DRO and unpack it so that {meta_file} exists (or set data.path)"
        )
    with open(meta_file, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        rows = list(reader)
    lacking = [c for c in ("img_filename", "y", "split", "place") if c not in columns]
    if lacking:
        raise DataError(f"{meta_file} lacks the column(s) {', '.join(lacking)}; it should be the WILDS metadata.csv")
    try:
        table = torch.tensor([[int(r["y"]), int(r["place"]), int(r["split"])] for r in rows], dtype=torch.long)
    except (TypeError, ValueError):
        raise DataError(f"{meta_file} has non-integer y / place / split values; re-download it") from None
    if len(table) == 0 or not bool(((table[:, :2] >= 0) & (table[:, :2] <= 1)).all()):
        raise DataError(f"{meta_file} is empty or has y / place outside 0..1; re-download it")
    size = _image_size(cfg, PHOTO_SIZE)

    def split(code: int, train: bool, desc: str) -> ImageFileDataset:
        idx = torch.nonzero(table[:, 2] == code).flatten()
        if not len(idx):
            raise DataError(f"{meta_file} has no rows with split={code}; re-download it")
        paths = [str(root / rows[i]["img_filename"]) for i in idx.tolist()]
        return _split(cfg, paths, table[idx, 0], table[idx, 1], 2, 2, size, train, progress, desc,
                      class_names=("landbird", "waterbird"))

    return Splits(train=split(0, True, "checking Waterbirds train"), test=split(2, False, "checking Waterbirds test"),
                  name="waterbirds")


# --------------------------------------------------------------------------- your own data

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


@DATASETS.register("npz")
def npz(cfg: DataConfig, progress: bool = True) -> Splits:
    keys = "x (images), y (labels 0..K-1), optional bias and split"
    file = _user_file(cfg, "npz", "file.npz", f"it holds arrays {keys}")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"cannot read {file} as .npz ({one_line(exc)}); save it with numpy.savez and plain (non-object) arrays"
        ) from None
    lacking = [k for k in ("x", "y") if k not in arrays]
    if lacking:
        raise DataError(
            f"{file} lacks the array(s) {', '.join(lacking)} (has: {', '.join(arrays) or 'none'}); it needs {keys}"
        )
    x, y_np = arrays["x"], arrays["y"].reshape(-1)
    n = len(x)
    if len(y_np) != n:
        raise DataError(f"{file}: x has {n} images but y has {len(y_np)} labels")
    if np.issubdtype(x.dtype, np.floating):
        if n and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
            raise DataError(f"{file}: float x must lie in [0, 1]; store 0..255 values as uint8")
        x = np.round(x * 255.0).astype(np.uint8)
    elif np.issubdtype(x.dtype, np.integer):
        if n and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{file}: integer x must lie in 0..255")
        x = x.astype(np.uint8)
    else:
        raise DataError(f"{file}: x has dtype {x.dtype}; use uint8 or float in [0, 1]")
    x = torch.from_numpy(np.ascontiguousarray(_channels_first(x, file)))
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
