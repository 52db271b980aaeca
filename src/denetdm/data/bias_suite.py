"""A suite of bias types on real MNIST, beyond Colored MNIST's foreground colour.

Every dataset follows the Colored MNIST protocol: ten bias values, one per digit class; a fraction
`data.ratio` of the training images is bias-conflicting (the same MNIST-order blocks as Colored
MNIST, `assign_bias`); the test split is MNIST's test set with each bias value at 10% within each class.
Images are 3 x 28 x 28 uint8, so every Colored MNIST preset runs on them unchanged
(`data.name=mnist_background` ...). Generation is seeded by `data.seed`; the cache is verified by
the SHA-256 of its arrays.

- `mnist_background`: a white digit on a background of the class's colour (the Colored MNIST palette).
- `mnist_patch`: a grey digit and a 5 x 5 white square at one of ten places along the border.
- `mnist_stripes`: a grey digit over a sinusoidal grating at one of ten orientations (a texture).
  The grating's phase is fixed, so the texture is one pattern per bias value, like a watermark.
- `mnist_corruption`: one of ten image corruptions per class (noise, blur, contrast, pixelation,
  inversion, fog ...), in the spirit of Corrupted CIFAR-10.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .spec import DataConfig
from .base import DATASETS, Splits, data_root, generated_root
from .colored_mnist import MNIST_FILES, NUM_CLASSES, PALETTE, SEVERITY_STD, TEST_ALIGNED_RATIO, assign_bias, cached, tensor_splits
from .mnist import load_mnist

SUITE_VERSION = 1
# Top-left corners of the patch: the four corners and six places between them along the border.
PATCH_CORNERS = [(0, 0), (0, 23), (23, 0), (23, 23), (0, 11), (23, 11), (11, 0), (11, 23), (6, 6), (17, 17)]
PATCH_SIZE = 5


def _grey3(x: torch.Tensor) -> torch.Tensor:
    return x[:, None].expand(-1, 3, -1, -1)


def background(digits: torch.Tensor, bias: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    fg = digits.float()[:, None] / 255.0
    colour = (PALETTE[bias] + torch.randn(len(bias), 3, generator=g) * SEVERITY_STD[4]).clamp(0, 1)
    return fg + (1.0 - fg) * colour[:, :, None, None]


def patch(digits: torch.Tensor, bias: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    out = digits.float() / 255.0
    rows = torch.arange(28)[None, :, None]
    cols = torch.arange(28)[None, None, :]
    r0, c0 = (torch.tensor([c[i] for c in PATCH_CORNERS])[bias][:, None, None] for i in (0, 1))
    inside = (rows >= r0) & (rows < r0 + PATCH_SIZE) & (cols >= c0) & (cols < c0 + PATCH_SIZE)
    return _grey3(torch.where(inside, torch.ones_like(out), out))


def stripes(digits: torch.Tensor, bias: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    theta = bias.float() * math.pi / NUM_CLASSES
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    wave = torch.sin(2 * math.pi / 6.0 * (xx[None] * theta.cos()[:, None, None] + yy[None] * theta.sin()[:, None, None]))
    grating = 0.25 + 0.2 * wave
    return _grey3(torch.maximum(digits.float() / 255.0, grating))


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    k = kernel / kernel.sum()
    return F.conv2d(x[:, None], k[None, None], padding=(k.shape[0] // 2, k.shape[1] // 2))[:, 0]


def _corrupt(x: torch.Tensor, kind: int, g: torch.Generator) -> torch.Tensor:
    """One of ten corruptions of grey images in [0, 1] (N, 28, 28)."""
    if kind == 0:  # gaussian noise
        return x + 0.3 * torch.randn(x.shape, generator=g)
    if kind == 1:  # impulse noise
        u = torch.rand(x.shape, generator=g)
        return torch.where(u < 0.08, torch.zeros_like(x), torch.where(u > 0.92, torch.ones_like(x), x))
    if kind == 2:  # gaussian blur
        t = torch.arange(-3.0, 4.0)
        k = torch.exp(-(t**2) / (2 * 1.5**2))
        return _blur(x, k[:, None] * k[None, :])
    if kind == 3:  # horizontal motion blur
        return _blur(x, torch.ones(1, 9))
    if kind == 4:  # low contrast
        return 0.35 + 0.3 * x
    if kind == 5:  # brightness
        return 0.5 + 0.5 * x
    if kind == 6:  # pixelate
        return F.interpolate(F.avg_pool2d(x[:, None], 4), scale_factor=4, mode="nearest")[:, 0]
    if kind == 7:  # invert
        return 1.0 - x
    if kind == 8:  # fog: a smooth random field
        field = torch.rand(len(x), 1, 4, 4, generator=g)
        return x + 0.6 * F.interpolate(field, size=(28, 28), mode="bilinear", align_corners=False)[:, 0]
    grid = ((torch.arange(28) % 4 == 0)[None, :] | (torch.arange(28) % 4 == 0)[:, None]).float()  # 9: a grid
    return torch.maximum(x, 0.6 * grid[None])


def corruption(digits: torch.Tensor, bias: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    x = digits.float() / 255.0
    out = torch.empty_like(x)
    for kind in range(NUM_CLASSES):
        members = bias == kind
        if members.any():
            out[members] = _corrupt(x[members], kind, g)
    return _grey3(out)


BIAS_TYPES = {"background": background, "patch": patch, "stripes": stripes, "corruption": corruption}


def suite_params(kind: str, cfg: DataConfig) -> dict:
    return {"protocol": f"mnist-{kind}", "version": SUITE_VERSION, "ratio": cfg.ratio, "seed": cfg.seed,
            "test_aligned_ratio": TEST_ALIGNED_RATIO, "source": MNIST_FILES}


def suite_cache_path(kind: str, cfg: DataConfig) -> Path:
    digest = hashlib.sha256(json.dumps(suite_params(kind, cfg), sort_keys=True).encode()).hexdigest()[:10]
    return generated_root() / "bias_suite" / f"MNIST-{kind}-Skewed{cfg.ratio:g}-seed{cfg.seed}-{digest}.pt"


def generate_suite(kind: str, cfg: DataConfig, progress: bool = True) -> dict:
    """Both splits of one bias type from real MNIST; deterministic given the config."""
    g = torch.Generator().manual_seed(cfg.seed)
    tensors = {}
    for split, aligned in (("train", 1.0 - cfg.ratio), ("test", TEST_ALIGNED_RATIO)):
        images, labels = load_mnist(data_root(cfg), split, download=cfg.download, progress=progress)
        bias = assign_bias(labels, aligned)
        x = torch.cat([BIAS_TYPES[kind](images[s : s + 5000], bias[s : s + 5000], g) for s in range(0, len(labels), 5000)])
        tensors.update({f"{split}_x": (x.clamp(0, 1) * 255).to(torch.uint8), f"{split}_y": labels, f"{split}_bias": bias})
    return tensors


def _register(kind: str) -> None:
    name = f"mnist_{kind}"

    def load(cfg: DataConfig, progress: bool = True) -> Splits:
        tensors = cached(suite_cache_path(kind, cfg), suite_params(kind, cfg),
                         lambda: generate_suite(kind, cfg, progress), f"MNIST {kind}")
        return tensor_splits(tensors, name)

    DATASETS.register(name)(load)


for _kind in BIAS_TYPES:
    _register(_kind)
