"""CIFAR ResNets (He et al. 2016, Sec. 4.2; the layout of Idelbayev's implementation).

ResNet-20 is the paper's deep branch for Corrupted CIFAR-10 and BAR. The final linear layer
is dropped: the backbone returns the 64-d globally pooled features.
"""
from __future__ import annotations

from typing import Callable, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from .spec import ModelSpec
from . import MODELS
from .cnn import check_input, reject_pretrained


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample by `stride`, zero-pad the new channels. No parameters."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.pad = stride, extra_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        lo = self.pad // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.pad - lo))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with an identity or option-A shortcut, ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        needs = stride != 1 or cin != cout
        self.shortcut: nn.Module = ShortcutA(stride, cout - cin) if needs else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """conv3x3(16) + 3 stages of `n` BasicBlocks (16/32/64 channels, strides 1/2/2) + GAP."""

    def __init__(self, n: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.out_dim, self.depth = 64, 6 * n + 2  # depth: the standard name (counts the removed fc)
        for m in self.modules():  # as in the reference: Kaiming-normal conv weights, BN defaults
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def _factory(n: int) -> Callable[[Tuple[int, ...], ModelSpec], CifarResNet]:
    def build(input_shape: Tuple[int, ...], spec: ModelSpec) -> CifarResNet:
        reject_pretrained(spec)
        return CifarResNet(n, check_input(spec, input_shape, 1))

    build.__doc__ = f"ResNet-{6 * n + 2} for CIFAR-sized inputs; `depth`/`width` are ignored."
    return build


for _n in (1, 3, 5, 9):
    MODELS.register(f"resnet{6 * _n + 2}")(_factory(_n))
