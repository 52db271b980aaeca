"""Datasets in the `(index, x, y, bias)` contract, by registry name."""
from . import bias_suite, colored_mnist, corrupted_cifar10, photos, synthetic, user_data  # noqa: F401  (registration)
from .base import DATASETS, BiasDataset, Splits, TensorBiasDataset, create_dataset, list_datasets

__all__ = ["BiasDataset", "DATASETS", "Splits", "TensorBiasDataset", "create_dataset", "list_datasets"]
