"""torchvision ResNet-18/50 with the fc removed: the paper's BFFHQ deep branch and targets.

Nothing is ever downloaded. `spec.pretrained` is None (random init), a state-dict file, or
"torchvision" for ImageNet weights already in torchvision's local cache.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Tuple
from urllib.parse import urlparse

import torch
from torch import nn

from .spec import ModelSpec
from ..errors import ConfigError
from . import MODELS
from .cnn import check_input

# name -> (torchvision constructor, its weights enum, feature width, depth). IMAGENET1K_V1 is what the
# official code's `pretrained=True` loads.
_ARCHS: Dict[str, Tuple[str, str, int, int]] = {
    "resnet18": ("resnet18", "ResNet18_Weights", 512, 18),
    "resnet50": ("resnet50", "ResNet50_Weights", 2048, 50),
}


def cached_weights_path(weights: Any) -> Path:
    """Where torch.hub would cache `weights` (honours $TORCH_HOME at call time)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _load_file(path: Path, name: str, hint: str) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"pretrained weights for {name} not found at {path}; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ConfigError(f"cannot read pretrained weights {path} ({type(exc).__name__}); {hint}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} is not a plain state dict of tensors; save `model.state_dict()` instead")
    return state


def _load_into(model: nn.Module, state: Dict[str, torch.Tensor], path: Path, name: str) -> None:
    """Loads a torchvision state dict; its fc.* keys, if any, are dropped (the head is removed)."""
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or bad:
        first = (missing or unexpected or bad)[0]
        raise ConfigError(
            f"{path} does not match torchvision {name} ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(bad)} mis-shaped keys, e.g. {first!r}); give a {name} state dict"
        )
    model.load_state_dict(state)


def _factory(name: str) -> Callable[[Tuple[int, ...], ModelSpec], nn.Module]:
    ctor_name, weights_name, out_dim, depth = _ARCHS[name]

    def build(input_shape: Tuple[int, ...], spec: ModelSpec) -> nn.Module:
        # Imported here: torchvision adds about 160 MB to every process that loads it, and the MLP and
        # CNN runs never need it.
        import torchvision

        ctor, weights = getattr(torchvision.models, ctor_name), getattr(torchvision.models, weights_name).IMAGENET1K_V1
        if check_input(spec, input_shape, 1) != 3:
            raise ConfigError(
                f"{name} takes 3-channel images, got input shape {tuple(input_shape)}; "
                "use RGB data or a backbone that takes any channel count (cnn3, cnn4, resnet20, mlp)"
            )
        model = ctor(weights=None)
        model.fc = nn.Identity()
        if spec.pretrained == "torchvision":
            path = cached_weights_path(weights)
            hint = f"download {weights.url} and put it at {path} (this package never downloads)"
            _load_into(model, _load_file(path, name, hint), path, name)
        elif spec.pretrained:
            path = Path(spec.pretrained).expanduser()
            hint = f"give a file saved with torch.save({name}.state_dict(), path), or pretrained=torchvision"
            _load_into(model, _load_file(path, name, hint), path, name)
        model.out_dim, model.depth = out_dim, depth
        return model

    build.__doc__ = f"torchvision {name} without its fc ({out_dim}-d); `depth`/`width` are ignored."
    return build


for _name in _ARCHS:
    MODELS.register(_name)(_factory(_name))
