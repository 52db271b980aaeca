"""Backbones by name. A backbone maps inputs to a feature vector of size `out_dim`;
heads are owned by the methods, so that DeNetDM can share one across branches."""
from __future__ import annotations

import math
from typing import Tuple

from torch import nn

from .spec import ModelSpec
from ..errors import ConfigError
from ..registry import Registry

MODELS: Registry = Registry("model")


@MODELS.register("mlp")
class MLP(nn.Module):
    """Flatten, then `depth - 1` Linear+ReLU layers of `width` units (the head is the depth-th).

    With depth 5 this is the paper's Colored MNIST deep branch and target, with depth 3
    its shallow branch, and with depth 4 the LfF/DFA baseline MLP.
    """

    def __init__(self, input_shape: Tuple[int, ...], spec: ModelSpec):
        super().__init__()
        depth, width = spec.depth, spec.width
        if depth < 2:
            raise ConfigError(f"an MLP backbone needs depth >= 2 (one hidden layer plus the head), got {depth}; "
                              "set method.<model>.depth=2 or more")
        layers, fan_in = [nn.Flatten()], math.prod(input_shape)
        for _ in range(depth - 1):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.out_dim = width
        self.depth = depth
        self.input_scale = spec.input_scale

    def forward(self, x):
        return self.body(x * self.input_scale if self.input_scale != 1.0 else x)


class Projected(nn.Module):
    """A backbone followed by a linear projection, so its features fit another branch's head."""

    def __init__(self, backbone: nn.Module, dim: int):
        super().__init__()
        self.backbone, self.proj = backbone, nn.Linear(backbone.out_dim, dim)
        self.out_dim, self.depth = dim, getattr(backbone, "depth", 0)

    def forward(self, x):
        return self.proj(self.backbone(x))


def create_model(spec: ModelSpec, input_shape: Tuple[int, ...]) -> nn.Module:
    """Factories take `(input_shape, spec)` and expose `out_dim` (and `depth` where defined)."""
    model = MODELS.get(spec.arch)(input_shape, spec)
    return Projected(model, spec.proj_dim) if spec.proj_dim > 0 else model


def list_models():
    return MODELS.names()


from . import cnn, resnet_cifar, torchvision_resnet  # noqa: E402,F401  (registration)
