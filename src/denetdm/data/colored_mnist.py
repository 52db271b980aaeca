"""Colored MNIST, the LfF protocol that DeNetDM evaluates on.

Each digit class has one colour; a fraction `ratio` of the training images (the
bias-conflicting ones) gets one of the other nine colours instead. Which images
conflict is fixed by MNIST's file order, as in the protocol; only the colour jitter
is random, and here it is seeded. The test split is MNIST's test set with every colour
at 10% within every class (10% aligned). Results are cached on disk keyed by every
parameter, so a change of ratio, severity or seed builds a new file.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .spec import DataConfig
from ..errors import DataError
from ..fileio import hash_tensor, save_atomic
from .base import DATASETS, Splits, TensorBiasDataset, data_root, generated_root
from .mnist import MNIST_FILES, load_mnist

PROTOCOL_VERSION = 1
NUM_CLASSES = 10
TEST_ALIGNED_RATIO = 0.1

# Mean colour per class (RGB in [0, 1]), the LfF palette to three decimals.
PALETTE = torch.tensor(
    [
        [0.984, 0.313, 0.169],
        [0.991, 0.916, 0.352],
        [0.673, 0.461, 0.580],
        [0.783, 0.832, 0.601],
        [0.088, 0.778, 0.982],
        [0.321, 0.961, 0.446],
        [0.025, 0.236, 0.759],
        [0.555, 0.102, 0.762],
        [0.208, 0.393, 0.019],
        [0.834, 0.202, 0.267],
    ]
)
# Severity 1..5 -> standard deviation of the per-image colour noise.
SEVERITY_STD = {1: 0.05, 2: 0.02, 3: 0.01, 4: 0.005, 5: 0.002}


def assign_bias(labels: torch.Tensor, aligned_ratio: float, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """Bias label per sample: contiguous blocks in dataset order within each class.

    Class y gives a share `aligned_ratio` to bias y and (1 - aligned_ratio)/(K-1) to each
    other value; block boundaries are the rounded cumulative counts, so block k holds the
    samples of class y whose rank falls below boundary k.
    """
    labels_np = labels.cpu().numpy()
    counts = np.bincount(labels_np, minlength=num_classes)
    eye = np.eye(num_classes)
    shares = aligned_ratio * eye + (1.0 - aligned_ratio) / (num_classes - 1) * (1.0 - eye)
    boundaries = np.round(counts[:, None] * np.cumsum(shares, axis=1))
    order = np.argsort(labels_np, kind="stable")
    rank = np.empty_like(labels_np)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(labels_np)) - np.repeat(starts, counts)
    bias = np.empty_like(labels_np)
    for y in range(num_classes):
        members = labels_np == y
        bias[members] = np.searchsorted(boundaries[y], rank[members], side="right")
    return torch.from_numpy(bias.astype(np.int64))


def colorize(digits: torch.Tensor, bias: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Grey digits (N, 28, 28) uint8 -> coloured (N, 3, 28, 28) uint8.

    One noise vector per image, shared by its pixels; the colour multiplies the grey
    level, so the background stays black. Float-to-uint8 truncates, as in the protocol.
    """
    noise = torch.randn(len(digits), 3, generator=generator) * SEVERITY_STD[severity]
    colour = (PALETTE[bias] + noise).clamp_(0.0, 1.0)
    return (colour[:, :, None, None] * digits[:, None].float()).to(torch.uint8)


def _build_split(images, labels, aligned_ratio, severity, generator, progress, desc):
    bias = assign_bias(labels, aligned_ratio)
    out = torch.empty(len(labels), 3, 28, 28, dtype=torch.uint8)
    chunk = 5000
    for start in tqdm(range(0, len(labels), chunk), desc=desc, unit="chunk", disable=not progress, leave=False):
        sl = slice(start, start + chunk)
        out[sl] = colorize(images[sl], bias[sl], severity, generator)
    return out, bias


def cache_params(cfg: DataConfig) -> dict:
    return {
        "protocol": "lff-colored-mnist",
        "version": PROTOCOL_VERSION,
        "ratio": cfg.ratio,
        "severity": cfg.severity,
        "seed": cfg.seed,
        "test_aligned_ratio": TEST_ALIGNED_RATIO,
        "source": MNIST_FILES,
    }


def cache_path(cfg: DataConfig) -> Path:
    digest = hashlib.sha256(json.dumps(cache_params(cfg), sort_keys=True).encode()).hexdigest()[:10]
    name = f"ColoredMNIST-Skewed{cfg.ratio:g}-Severity{cfg.severity}-seed{cfg.seed}-{digest}.pt"
    return generated_root() / "colored_mnist" / name


def generate(cfg: DataConfig, progress: bool = True) -> dict:
    """Build both splits from real MNIST; deterministic given the config."""
    if cfg.severity not in SEVERITY_STD:
        raise DataError(f"data.severity={cfg.severity} is not one of 1..5; use 4 for the paper's setting")
    root = data_root(cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    tensors = {}
    for split, aligned in (("train", 1.0 - cfg.ratio), ("test", TEST_ALIGNED_RATIO)):
        images, labels = load_mnist(root, split, download=cfg.download, progress=progress)
        x, bias = _build_split(images, labels, aligned, cfg.severity, generator, progress, f"Colored MNIST {split}")
        tensors.update({f"{split}_x": x, f"{split}_y": labels, f"{split}_bias": bias})
    return tensors


def tensor_digest(tensors: dict) -> str:
    """SHA-256 over the generated arrays, in key order: the checksum a cache file is verified by."""
    h = hashlib.sha256()
    for key in sorted(k for k in tensors if k not in ("params", "sha256")):
        h.update(key.encode())
        hash_tensor(h, tensors[key])
    return h.hexdigest()


def cached(path: Path, params: dict, build, what: str) -> dict:
    """The tensors `build()` makes for `params`, from the cache file at `path` when its params match and
    its content still has the checksum it was saved with; otherwise built again and saved."""
    if path.is_file():
        try:
            stored = torch.load(path, weights_only=True)
            if stored.get("params") == json.loads(json.dumps(params)) and stored.get("sha256") == tensor_digest(stored):
                return stored
        except Exception:  # a truncated or foreign cache file is simply rebuilt
            pass
    tensors = build()
    tensors["sha256"] = tensor_digest(tensors)
    try:
        save_atomic({**tensors, "params": params}, path)
    except OSError as exc:
        raise DataError(f"cannot write the {what} cache {path} ({exc.strerror}); set DENETDM_CACHE to a writable folder") from None
    return tensors


def tensor_splits(tensors: dict, name: str) -> Splits:
    def split(part: str) -> TensorBiasDataset:
        return TensorBiasDataset(tensors[f"{part}_x"], tensors[f"{part}_y"], tensors[f"{part}_bias"], NUM_CLASSES, NUM_CLASSES)

    return Splits(train=split("train"), test=split("test"), name=name)


@DATASETS.register("colored_mnist")
def colored_mnist(cfg: DataConfig, progress: bool = True) -> Splits:
    tensors = cached(cache_path(cfg), cache_params(cfg), lambda: generate(cfg, progress=progress), "Colored MNIST")
    return tensor_splits(tensors, "colored_mnist")
