"""Corrupted CIFAR-10, the LfF protocol that DeNetDM evaluates on.

The bias attribute is a corruption: class i's aligned corruption is corruption i of the
type's list (`type0`: Snow, Frost, Fog, Brightness, Contrast, Spatter, Elastic, JPEG,
Pixelate, Saturate; `type1`: the noises, the blurs and Original). Which training images
conflict is fixed by the source's order, exactly as for Colored MNIST (`assign_bias`,
aligned ratio 1 - `data.ratio`); the test split is CIFAR-10's test set with every
corruption at 10% within every class. Only the corruptions' own randomness is drawn, and
here it is seeded by `data.seed` (one child generator per image).

Severity: `data.severity` in 1..5 is the CIFAR-10-C level itself. The paper's
"Severity4" configuration calls the corruption functions with severity + 1, i.e. level 5,
the strongest, so the paper's setting is `data.severity=5` here.

Sources:

* the CIFAR-10 python batches (`data_batch_1..5`, `test_batch`) in
  `<data root>/cifar10/cifar-10-batches-py/`, or in the folder `data.path` names (the
  folder itself or its `cifar-10-batches-py/`);
* any folder of images (`data.path`): one sub-folder per class, class names sorted to
  labels 0..K-1 (2 <= K <= 10; class i's aligned corruption is corruption i), images of
  any size centre-cropped to a square and resized to 32x32. With `train/` and `test/`
  sub-folders those are the splits; otherwise a fixed sixth of each class (CIFAR-10's
  10k/60k), chosen by a permutation seeded independently of `data.seed`, is the test
  split. The test split is 1/K aligned, i.e. uniform over corruptions.

Results are cached on disk keyed by every parameter and by the source's identity (the
CIFAR batches' content hashes; a folder's file names, sizes and modification times).
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .spec import DataConfig
from ..errors import DataError, one_line
from .base import DATASETS, Splits, TensorBiasDataset, data_root, generated_root
from ..fileio import file_digest, save_atomic
from .colored_mnist import assign_bias

PROTOCOL_VERSION = 1
NUM_CLASSES = 10
IMAGE_SIZE = 32
TYPES = ("type0", "type1")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_FILES: Dict[str, Tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
FOLDER_TEST_FRACTION = 1.0 / 6.0
FOLDER_SPLIT_SEED = 20240  # fixed: the folder's test images do not move with data.seed
_SPLIT_CODES = {"train": 0, "test": 1}
_CHUNK = 2000

def default_cifar10_dir(cfg: DataConfig) -> Path:
    return data_root(cfg) / "cifar10" / CIFAR10_DIRNAME


def _missing_cifar(where: Path) -> DataError:
    return DataError(
        f"CIFAR-10 not found in {where}: download {CIFAR10_URL} and extract it so that "
        f"{where}/data_batch_1 exists (or set data.path / --data-dir / DENETDM_DATA to where it is, "
        "or point data.path at a folder of class sub-folders of images)"
    )


def _file_sha256(path: Path) -> str:
    def compute() -> str:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    return file_digest(path, compute)


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles: allow only what a batch of numpy arrays needs."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"), ("builtins", "object"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """One python batch -> images uint8 (N, 32, 32, 3) RGB and labels int64 (N,)."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        data = np.asarray(data, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if data.ndim != 2 or data.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE or len(data) != len(labels):
            raise ValueError(f"data {data.shape} and labels {labels.shape} are not a CIFAR batch")
        if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise ValueError("labels outside 0..9")
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror}); check the file's permissions") from None
    except Exception as exc:  # a truncated or foreign file
        raise DataError(
            f"{path} is not a CIFAR-10 python batch ({one_line(exc)}); re-extract {CIFAR10_URL}"
        ) from None
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _list_images(folder: Path) -> List[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _class_dirs(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_image(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Any image file -> uint8 (size, size, 3) RGB: centre square crop, then resize."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
            if side != size:
                im = im.resize((size, size), Image.BICUBIC)
            return np.asarray(im, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read the image {path} ({one_line(exc)}); remove or replace it") from None


@dataclass
class Source:
    """Where the clean images come from; `identity` enters the cache key."""

    kind: str  # "cifar10" | "folder"
    location: Path
    identity: str
    classes: List[str]
    files: Dict[str, List[Tuple[Path, int]]] = field(default_factory=dict)  # folder: split -> (file, label)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, split: str, progress: bool = False) -> Tuple[np.ndarray, np.ndarray]:
        """Images uint8 (N, 32, 32, 3) and labels int64 (N,), in the source's order."""
        if self.kind == "cifar10":
            parts = [read_cifar_batch(self.location / name) for name in CIFAR10_FILES[split]]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        from tqdm.auto import tqdm

        entries = self.files[split]
        images = np.empty((len(entries), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for n, (path, _) in enumerate(
            tqdm(entries, desc=f"reading {split} images", unit="img", disable=not progress, leave=False)
        ):
            images[n] = load_image(path)
        return images, np.array([label for _, label in entries], dtype=np.int64)


def _cifar_source(folder: Path) -> Source:
    names = [n for split in ("train", "test") for n in CIFAR10_FILES[split]]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        if len(missing) == len(names):
            raise _missing_cifar(folder)
        raise DataError(f"CIFAR-10 in {folder} lacks {', '.join(missing)}; re-extract {CIFAR10_URL} there")
    digest = hashlib.sha256()
    for n in names:
        digest.update(f"{n}:{_file_sha256(folder / n)}\n".encode())
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    return Source("cifar10", folder, "cifar10-python:" + digest.hexdigest(), classes)


def _folder_source(folder: Path) -> Source:
    split_dirs = {s: folder / s for s in ("train", "test")}
    if all(d.is_dir() for d in split_dirs.values()):
        per_split = {s: _class_dirs(d) for s, d in split_dirs.items()}
        classes = [d.name for d in per_split["train"]]
        if [d.name for d in per_split["test"]] != classes:
            raise DataError(f"{folder}/train and {folder}/test must hold the same class sub-folders")
        files = {
            s: [(p, y) for y, d in enumerate(dirs) for p in _list_images(d)] for s, dirs in per_split.items()
        }
    else:
        dirs = _class_dirs(folder)
        classes = [d.name for d in dirs]
        files = {"train": [], "test": []}
        rng = np.random.default_rng(FOLDER_SPLIT_SEED)
        for y, d in enumerate(dirs):
            images = _list_images(d)
            n_test = int(round(len(images) * FOLDER_TEST_FRACTION))
            test = set(rng.permutation(len(images))[:n_test].tolist())
            for i, p in enumerate(images):
                files["test" if i in test else "train"].append((p, y))
    if not 2 <= len(classes) <= NUM_CLASSES:
        raise DataError(
            f"{folder} has {len(classes)} class sub-folders; an image folder needs 2..{NUM_CLASSES} "
            "(one per class, images inside), or CIFAR-10's python batches"
        )
    for split, entries in files.items():
        counts = np.bincount([y for _, y in entries], minlength=len(classes))
        if counts.min() == 0:
            empty = classes[int(np.argmin(counts))]
            raise DataError(
                f"class {empty!r} of {folder} has no {split} images ({', '.join(sorted(IMAGE_EXTENSIONS))}); add some"
            )
    digest = hashlib.sha256()
    for split in ("train", "test"):
        for p, y in files[split]:
            st = p.stat()
            digest.update(f"{split}:{y}:{p.relative_to(folder).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return Source("folder", folder, "image-folder:" + digest.hexdigest(), classes, files)


def resolve_source(cfg: DataConfig) -> Source:
    """CIFAR-10 batches or an image folder, from `data.path` or the data root."""
    if not cfg.path:
        return _cifar_source(default_cifar10_dir(cfg))
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(
            f"data.path={cfg.path} does not exist; point it at CIFAR-10's {CIFAR10_DIRNAME} folder "
            f"(from {CIFAR10_URL}) or at a folder of class sub-folders of images"
        )
    if not path.is_dir():
        raise DataError(
            f"data.path={cfg.path} is a file; point it at CIFAR-10's extracted {CIFAR10_DIRNAME} folder "
            "or at a folder of class sub-folders of images"
        )
    for candidate in (path, path / CIFAR10_DIRNAME):
        if (candidate / "data_batch_1").is_file() or (candidate / "test_batch").is_file():
            return _cifar_source(candidate)
    return _folder_source(path)


def _check(cfg: DataConfig) -> None:
    if cfg.severity not in (1, 2, 3, 4, 5):
        raise DataError(f"data.severity={cfg.severity} is not one of 1..5; use 5 for the paper's setting")
    if cfg.corruption_type not in TYPES:
        raise DataError(f"data.corruption_type={cfg.corruption_type!r} is not one of {', '.join(TYPES)}")
    if not 0.0 <= cfg.ratio <= 1.0:
        raise DataError(f"data.ratio={cfg.ratio} is not a fraction in [0, 1]")
    if cfg.seed < 0:
        raise DataError(f"data.seed={cfg.seed} must be >= 0")


def unbiased_aligned_ratio(num_classes: int) -> float:
    """Every corruption equally often within each class: 0.1 for CIFAR-10."""
    return 1.0 / num_classes


def cache_params(cfg: DataConfig, source: Source) -> dict:
    from .corruptions import TYPES as CORRUPTION_TYPES

    return {
        "protocol": "lff-corrupted-cifar10",
        "version": PROTOCOL_VERSION,
        "ratio": cfg.ratio,
        "severity": cfg.severity,
        "seed": cfg.seed,
        "corruption_type": cfg.corruption_type,
        "corruptions": CORRUPTION_TYPES[cfg.corruption_type],
        "test_aligned_ratio": unbiased_aligned_ratio(source.num_classes),
        "image_size": IMAGE_SIZE,
        "classes": source.classes,
        "source": source.identity,
    }


def cache_path(cfg: DataConfig, source: Optional[Source] = None) -> Path:
    source = source or resolve_source(cfg)
    digest = hashlib.sha256(json.dumps(cache_params(cfg, source), sort_keys=True).encode()).hexdigest()[:10]
    prefix = "CorruptedCIFAR10" if source.kind == "cifar10" else "CorruptedFolder"
    name = (
        f"{prefix}-Type{cfg.corruption_type[-1]}-Skewed{cfg.ratio:g}-Severity{cfg.severity}-seed{cfg.seed}-{digest}.pt"
    )
    return generated_root() / "corrupted_cifar10" / name


def generate(cfg: DataConfig, source: Optional[Source] = None, progress: bool = True) -> dict:
    """Build both splits; deterministic given the config and the source."""
    from tqdm.auto import tqdm

    from .corruptions import corrupt

    _check(cfg)
    source = source or resolve_source(cfg)
    k = source.num_classes
    tensors = {}
    for split, aligned in (("train", 1.0 - cfg.ratio), ("test", unbiased_aligned_ratio(k))):
        images, labels = source.load(split, progress=progress)
        labels_t = torch.from_numpy(labels)
        bias = assign_bias(labels_t, aligned, num_classes=k)
        out = np.empty_like(images)
        seed = [cfg.seed, _SPLIT_CODES[split]]
        desc = f"Corrupted CIFAR-10 {split}"
        with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for start in range(0, len(images), _CHUNK):
                sl = slice(start, start + _CHUNK)
                out[sl] = corrupt(images[sl], bias[sl].numpy(), cfg.corruption_type, cfg.severity, seed, offset=start)
                bar.update(len(out[sl]))
        x = torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
        tensors.update({f"{split}_x": x, f"{split}_y": labels_t, f"{split}_bias": bias})
    return tensors


@DATASETS.register("corrupted_cifar10")
def corrupted_cifar10(cfg: DataConfig, progress: bool = True) -> Splits:
    _check(cfg)
    source = resolve_source(cfg)
    params = json.loads(json.dumps(cache_params(cfg, source)))
    path = cache_path(cfg, source)
    tensors = None
    if path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            if stored.get("params") == params:
                tensors = stored
        except Exception:  # a truncated or foreign cache file is simply rebuilt
            tensors = None
    if tensors is None:
        tensors = generate(cfg, source, progress=progress)
        try:
            save_atomic({**tensors, "params": params}, path)
        except OSError as exc:
            raise DataError(
                f"cannot write the Corrupted CIFAR-10 cache {path} ({exc.strerror}); "
                "set DENETDM_CACHE to a writable folder"
            ) from None

    k = source.num_classes

    def split(name: str) -> TensorBiasDataset:
        return TensorBiasDataset(tensors[f"{name}_x"], tensors[f"{name}_y"], tensors[f"{name}_bias"], k, k)

    return Splits(train=split("train"), test=split("test"), name="corrupted_cifar10")
