"""The data section of a config: which dataset, and how it is built."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional, Tuple


@dataclass
class DataConfig:
    name: str = "colored_mnist"
    root: Optional[str] = None  # raw data; default $DENETDM_DATA or the per-user cache
    ratio: float = 0.01  # bias-conflicting fraction of the training set
    severity: int = 4  # colour-noise severity 1..5 (sigma 0.05 .. 0.002)
    seed: int = 0  # seed of the generator's colour jitter and of the held-out split
    val_fraction: float = 0.1  # held out from train, only when selection is `proxy` or `val`
    download: bool = True
    path: Optional[str] = None  # dataset folder or file (CSV, image folder, .npz); default under root
    target_attr: str = "Blond_Hair"  # CelebA target attribute
    bias_attr: str = "Male"  # CelebA bias attribute
    corruption_type: str = "type0"  # Corrupted CIFAR-10: type0 | type1
    image_size: int = 0  # 0 keeps the dataset's default size
    augment: bool = False  # the dataset's training augmentation (crop + flip)
    normalize: str = "none"  # none | cifar | imagenet
    num_workers: int = 0  # DataLoader workers for image files


# Keys every dataset reads (the held-out split, normalisation and augmentation are applied to all).
COMMON_KEYS = ("name", "root", "seed", "val_fraction", "augment", "normalize")
_FILES = ("path", "image_size", "num_workers")
_MNIST = ("ratio", "download")
# The keys each registered dataset reads besides the common ones: a config shows only these, and
# setting another one is an error (a CelebA attribute on Waterbirds would otherwise be silently ignored).
DATASET_KEYS = {
    "colored_mnist": (*_MNIST, "severity"),
    "mnist_background": _MNIST, "mnist_patch": _MNIST, "mnist_stripes": _MNIST, "mnist_corruption": _MNIST,
    "synthetic": ("ratio", "severity"),
    "corrupted_cifar10": ("path", "ratio", "severity", "corruption_type"),
    "bffhq": (*_FILES, "ratio"),
    "bar": (*_FILES, "ratio"),
    "celeba": (*_FILES, "target_attr", "bias_attr"),
    "waterbirds": _FILES,
    "csv": _FILES, "image_folder": _FILES,
    "npz": ("path",),
    "in_memory": (),
}


def dataset_keys(name: str) -> Tuple[str, ...]:
    """The DataConfig keys dataset `name` reads, in field order (every key for an unknown name, whose
    error comes from the dataset registry)."""
    own = DATASET_KEYS.get(name)
    return tuple(f.name for f in fields(DataConfig) if own is None or f.name in COMMON_KEYS or f.name in own)
