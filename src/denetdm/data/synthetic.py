"""A tiny Colored-MNIST-like dataset that needs no download: smoke tests and quick trials.

Each class is a fixed random 12x12 binary stroke pattern with pixel noise, coloured by
the same protocol as Colored MNIST (`ratio` conflicting in train, 10% aligned in test).
"""
from __future__ import annotations

import torch

from .spec import DataConfig
from .base import DATASETS, Splits, TensorBiasDataset
from .colored_mnist import NUM_CLASSES, SEVERITY_STD, TEST_ALIGNED_RATIO, assign_bias, colorize

SIZES = {"train": 2000, "test": 1000}
SIDE = 12


@DATASETS.register("synthetic")
def synthetic(cfg: DataConfig, progress: bool = True) -> Splits:
    generator = torch.Generator().manual_seed(cfg.seed)
    prototypes = torch.rand(NUM_CLASSES, SIDE, SIDE, generator=generator) < 0.3
    severity = cfg.severity if cfg.severity in SEVERITY_STD else 4

    def split(n: int, aligned_ratio: float) -> TensorBiasDataset:
        y = torch.arange(n) % NUM_CLASSES
        flips = torch.rand(n, SIDE, SIDE, generator=generator) < 0.1
        grey = ((prototypes[y] ^ flips).to(torch.uint8) * 255)
        bias = assign_bias(y, aligned_ratio)
        return TensorBiasDataset(colorize(grey, bias, severity, generator), y, bias, NUM_CLASSES, NUM_CLASSES)

    train = split(SIZES["train"], 1.0 - cfg.ratio)
    return Splits(train=train, test=split(SIZES["test"], TEST_ALIGNED_RATIO), name="synthetic")
