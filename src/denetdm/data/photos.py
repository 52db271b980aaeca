"""The photo benchmarks read from their releases' files: BFFHQ, BAR, CelebA, Waterbirds.

Shared conventions (splits, transforms, checks, folders): `files`.

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
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from .spec import DataConfig
from ..errors import DataError, one_line
from .base import DATASETS, BiasDataset, Splits

from .files import (ImageFileDataset, PHOTO_SIZE, _dataset_dir, _image_size, _images_under, _name_labels, _pct, _pct_ratio, _split)


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
