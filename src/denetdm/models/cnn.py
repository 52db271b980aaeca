"""The paper's shallow branches: small plain CNNs (no residual connections)."""
from __future__ import annotations

from typing import Tuple

from torch import Tensor, nn

from .spec import ModelSpec
from ..errors import ConfigError
from . import MODELS


def reject_pretrained(spec: ModelSpec) -> None:
    """Backbones without published weights refuse `pretrained` rather than silently ignore it."""
    if spec.pretrained:
        raise ConfigError(
            f"model {spec.arch!r} has no pretrained weights (got pretrained={spec.pretrained!r}); "
            "remove `pretrained` or use resnet18/resnet50"
        )


def check_input(spec: ModelSpec, input_shape: Tuple[int, ...], min_size: int) -> int:
    """Returns the channel count; the unpadded convs need inputs of at least `min_size` pixels."""
    if len(input_shape) != 3 or min(input_shape[1:]) < min_size:
        raise ConfigError(
            f"model {spec.arch!r} needs (C, H, W) images of at least {min_size}x{min_size}, "
            f"got {tuple(input_shape)}; resize the data (data.image_size) or pick another model"
        )
    return int(input_shape[0])


def _block(cin: int, cout: int, k: int, pool: bool) -> list:
    layers = [nn.Conv2d(cin, cout, k), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return layers + [nn.MaxPool2d(2)] if pool else layers


@MODELS.register("cnn3")
class CNN3(nn.Module):
    """3-layer CNN, the shallow branch for 32x32 Corrupted CIFAR-10 (and BAR per the paper).

    Three unpadded 5x5 convs (32, 64, 64 channels) with BN/ReLU and two 2x2 max pools leave a
    1x1x64 map at 32x32. The paper does not say how BAR's larger images fit a 64-d output, so
    an adaptive average pool to 1x1 precedes the flatten: it is the identity at 32x32 and keeps
    the features 64-d at any size >= 32.
    """

    def __init__(self, input_shape: Tuple[int, ...], spec: ModelSpec):
        super().__init__()
        reject_pretrained(spec)
        cin = check_input(spec, input_shape, 32)
        self.features = nn.Sequential(
            *_block(cin, 32, 5, pool=True), *_block(32, 64, 5, pool=True), *_block(64, 64, 5, pool=False)
        )
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.out_dim, self.depth = 64, 3

    def forward(self, x: Tensor) -> Tensor:
        return self.flatten(self.pool(self.features(x)))


@MODELS.register("cnn4")
class CNN4(nn.Module):
    """4-layer CNN, the shallow branch for 224x224 BFFHQ/CelebA (official code's layout).

    Spatial sizes at 224: 218->109, 107->53, 51->25, 23->1 (adaptive pool). In the third
    layer the max pool comes before BN, as in the official code. Needs inputs >= 42x42.
    """

    def __init__(self, input_shape: Tuple[int, ...], spec: ModelSpec):
        super().__init__()
        reject_pretrained(spec)
        cin = check_input(spec, input_shape, 42)
        self.features = nn.Sequential(
            *_block(cin, 64, 7, pool=True),
            *_block(64, 128, 3, pool=True),
            nn.Conv2d(128, 512, 3), nn.MaxPool2d(2), nn.BatchNorm2d(512), nn.ReLU(inplace=True),
            *_block(512, 512, 3, pool=False),
        )
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten()
        self.out_dim, self.depth = 512, 4

    def forward(self, x: Tensor) -> Tensor:
        return self.flatten(self.pool(self.features(x)))
