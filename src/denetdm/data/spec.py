"""The data section of a config: which dataset, and how it is built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class DataConfig:
    name: str = "colored_mnist"
    root: Optional[str] = None  # raw data; default $DENETDM_DATA or the per-user cache
    ratio: float = 0.01  # bias-conflicting fraction of the training set
    severity: int = 4  # colour-noise severity 1..5 (sigma 0.05 .. 0.002)
    seed: int = 0  # seed of the generator's colour jitter
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
