"""A model section of a config: a backbone by registry name and its shape."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ModelSpec:
    """A backbone by registry name. For MLPs `depth` counts linear layers including the head."""

    arch: str = "mlp"
    depth: int = 5
    width: int = 100
    pretrained: Optional[str] = None  # a weights file, or "torchvision" for torchvision's local cache
    proj_dim: int = 0  # > 0 appends Linear(out_dim -> proj_dim), e.g. ResNet-18 into a 64-d head
    # MLP only: multiplies the inputs. LfF's official MLP divides its [0, 1] inputs by 255 again,
    # so the paper's re-run baselines saw [0, 1/255]; 0.00392156862745098 reproduces that.
    input_scale: float = 1.0
