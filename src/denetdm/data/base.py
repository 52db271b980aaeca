"""The dataset contract: a sample is `(index, x, y, bias)`, with bias = -1 where unknown.

Bias labels ride along with every sample but only evaluation and opt-in oracle
selection read them. Small datasets live in memory as tensors and are batched by
index slices, so the training loop has no per-sample Python.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import torch

from .spec import DataConfig
from ..errors import ConfigError
from ..registry import Registry

Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

DATASETS: Registry = Registry("dataset")


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "denetdm"


def data_root(cfg: DataConfig) -> Path:
    """Where raw datasets live: the config, then $DENETDM_DATA, then the per-user cache."""
    return Path(cfg.root or os.environ.get("DENETDM_DATA") or cache_home() / "data").expanduser()


def generated_root() -> Path:
    """Generated datasets are cached apart from raw data, which may be read-only."""
    return Path(os.environ.get("DENETDM_CACHE") or cache_home() / "generated").expanduser()


class BiasDataset(torch.utils.data.Dataset):
    """A split in the contract. Subclasses hold `y` and `bias` as tensors (for metrics and
    up-sampling) and implement `__getitem__`, `subset` and, if faster, `batches`."""

    y: torch.Tensor
    bias: torch.Tensor
    num_classes: int
    num_bias: int
    device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self[0][1].shape)

    @property
    def has_bias(self) -> bool:
        return bool((self.bias >= 0).all())

    def subset(self, index: torch.Tensor, train: bool = True) -> "BiasDataset":
        """The samples at `index`; `train=False` gives them the evaluation transform."""
        raise NotImplementedError

    def to(self, device: torch.device) -> "BiasDataset":
        self.device = torch.device(device)
        return self

    def batches(self, order: torch.Tensor, batch_size: int, drop_last: bool = False) -> Iterator[Batch]:
        """Batches in `order` (indices into this split), on the split's device."""
        loader = torch.utils.data.DataLoader(
            self, batch_size=batch_size, sampler=order.tolist(), drop_last=drop_last,
            num_workers=getattr(self, "num_workers", 0), pin_memory=self.device.type == "cuda",
        )
        for batch in loader:
            yield tuple(t.to(self.device, non_blocking=True) for t in batch)


NORMALIZATION = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def random_crop_flip(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """RandomCrop(size, padding) + RandomHorizontalFlip for a whole batch at once."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (n, 1), device=x.device)
    rows = (torch.arange(h, device=x.device) + oy)[:, None, :, None]
    cols = (torch.arange(w, device=x.device) + ox)[:, None, None, :]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    flip = torch.rand(n, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class TensorBiasDataset(BiasDataset):
    """An in-memory split. `x` is uint8 images (N, C, H, W), scaled to [0, 1] per batch,
    then augmented (training splits, if asked) and normalised, all on whole batches.

    `rows`: which images of `x` this split holds (None: all of them, in order). A subset shares its
    parent's images instead of copying them, so holding out a validation split costs no image memory."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor, num_classes: int, num_bias: int,
                 normalize: str = "none", augment: bool = False, rows: Optional[torch.Tensor] = None):
        assert len(y) == len(bias) == (len(x) if rows is None else len(rows))
        self.x, self.y, self.bias, self.rows = x, y.long(), bias.long(), rows
        self.num_classes, self.num_bias = num_classes, num_bias
        self.normalize, self.augment = normalize, augment

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255.0)
        if self.augment:
            x = random_crop_flip(x)
        if self.normalize != "none":
            mean, std = (torch.tensor(v, device=x.device)[:, None, None] for v in NORMALIZATION[self.normalize])
            x = (x - mean) / std
        return x

    def images(self, index: torch.Tensor) -> torch.Tensor:
        """The raw images of the samples at `index` (positions in this split)."""
        return self.x[index if self.rows is None else self.rows[index]]

    def __getitem__(self, i: int) -> Batch:
        return torch.tensor(i), self._prepare(self.images(torch.tensor([i], device=self.y.device)))[0], self.y[i], self.bias[i]

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: torch.Tensor, train: bool = True) -> "TensorBiasDataset":
        index = index.to(self.y.device)
        return TensorBiasDataset(self.x, self.y[index], self.bias[index], self.num_classes, self.num_bias,
                                 self.normalize, self.augment and train, index if self.rows is None else self.rows[index])

    def to(self, device: torch.device, moved: Optional[dict] = None) -> "TensorBiasDataset":
        """`moved`: tensors already copied to `device` by id, so that splits sharing images share the copy."""
        self.device = torch.device(device)
        moved = {} if moved is None else moved
        if id(self.x) not in moved:
            moved[id(self.x)] = self.x.to(device)
        self.x = moved[id(self.x)]
        self.y, self.bias = self.y.to(device), self.bias.to(device)
        self.rows = None if self.rows is None else self.rows.to(device)
        return self

    def batches(self, order: torch.Tensor, batch_size: int, drop_last: bool = False) -> Iterator[Batch]:
        """Index slices of the in-memory tensors: no per-sample Python."""
        order = order.to(self.y.device)
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            yield idx, self._prepare(self.images(idx)), self.y[idx], self.bias[idx]


@dataclass
class Splits:
    """`val` exists only when a selection protocol asks for it; test is never trained on."""

    train: BiasDataset
    test: BiasDataset
    val: Optional[BiasDataset] = None
    name: str = ""

    def to(self, device: torch.device) -> "Splits":
        moved: dict = {}  # a held-out split's images are its training split's: one copy on the device
        for split in (self.train, self.test, self.val):
            if isinstance(split, TensorBiasDataset):
                split.to(device, moved)
            elif split is not None:
                split.to(device)
        return self


def hold_out(train: BiasDataset, fraction: float, seed: int) -> Tuple[BiasDataset, BiasDataset]:
    """A random `fraction` of train as validation: same distribution, bias ratio included."""
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(fraction * len(train)))
    return train.subset(perm[n_val:].sort().values), train.subset(perm[:n_val].sort().values, train=False)


def create_dataset(cfg: DataConfig, with_val: bool = False, progress: bool = True) -> Splits:
    return finish_splits(DATASETS.get(cfg.name)(cfg, progress=progress), cfg, with_val)


def finish_splits(splits: Splits, cfg: DataConfig, with_val: bool) -> Splits:
    """What every dataset gets, however it was built: normalisation and augmentation of in-memory
    splits, and a held-out validation split when the selection protocol needs one."""
    if cfg.normalize not in ("none", *NORMALIZATION):
        raise ConfigError(f"data.normalize={cfg.normalize!r} is unknown; use none, cifar or imagenet")
    for split in (splits.train, splits.test, splits.val):
        if isinstance(split, TensorBiasDataset):  # file datasets build these into their transforms
            split.normalize, split.augment = cfg.normalize, cfg.augment and split is splits.train
    if with_val and splits.val is None:  # a dataset that ships a validation split keeps it
        splits.train, splits.val = hold_out(splits.train, cfg.val_fraction, cfg.seed)
    return splits


def list_datasets():
    return DATASETS.names()
