"""Typed run configuration: dataclasses, YAML presets and `key.sub=value` overrides.

A preset is a YAML file (shipped in `denetdm/presets/` or any path). It may name a
`base` preset whose values it extends. Every key is checked against the dataclasses,
so a typo is an error that names the key instead of a silently ignored setting.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from .errors import ConfigError

PRESET_DIR = Path(__file__).parent / "presets"
SELECTIONS = ("proxy", "last", "val", "oracle")
PROXY_METRICS = ("pseudo_unbiased", "pseudo_worst", "pseudo_conflicting")


@dataclass
class OptimConfig:
    """One training phase's optimiser and schedule (no LR schedule, as in the paper)."""

    optimizer: str = "adam"  # adam | sgd; weight decay is the coupled L2 term, as in the official code
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only; Adam uses its default betas
    epochs: int = 100
    batch_size: int = 64


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


@dataclass
class Config:
    method: Any = None  # the method's own config dataclass, chosen by `method.name`
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # proxy (label-free, the default) | last | val | oracle (uses test bias labels; printed as oracle)
    selection: str = "proxy"
    proxy_metric: str = "pseudo_unbiased"  # what `proxy` maximises: pseudo_unbiased | pseudo_worst | pseudo_conflicting
    eval_every: int = 1  # epochs between evaluations that are logged
    flush_denormal: bool = True  # CPU speed: subnormal weights from L2 decay are flushed to zero
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only, the method section led by its name: what `config_from_dict` reads."""
        data = dataclasses.asdict(self)
        data["method"] = {"name": self.method.NAME, **data["method"]}
        return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check a YAML value against a field type; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} is a section; set its keys instead (e.g. {path}.<key>=...)")
        return build(tp, value, path)
    if tp is float and not isinstance(value, bool):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            pass
    if tp is Any or (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{path} must be {_type_name(tp)}, got {value!r}")


def build(cls: type, raw: Dict[str, Any], path: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        full = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _merge(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def list_presets() -> List[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _preset_path(preset: str) -> Path:
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"preset file {preset} does not exist; pass a YAML file or a preset name")
        return path
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(list_presets())}")
    return path


def load_preset(preset: str) -> Dict[str, Any]:
    """The preset's raw dict with its `base` chain resolved."""
    path = _preset_path(preset)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path} is not valid YAML ({exc}); fix the file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"preset {path} must be a mapping of keys to values")
    base = raw.pop("base", None)
    return _merge(load_preset(base), raw) if base else raw


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
    """`a.b=1` strings into a nested dict; values are parsed as YAML scalars."""
    out: Dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. data.ratio=0.05)")
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override")
        node[leaf] = yaml.safe_load(text) if text.strip() else None
    return out


def config_from_dict(raw: Dict[str, Any]) -> Config:
    from .methods import method_config_class

    raw = dict(raw)
    method = dict(raw.pop("method", None) or {})
    name = method.pop("name", None)
    if not name:
        raise ConfigError("config has no method.name; set it (e.g. method.name=denetdm)")
    cfg = build(Config, raw)
    cfg.method = build(method_config_class(name), method, "method")
    validate(cfg)
    return cfg


def load_config(preset: str = "colored_mnist", overrides: Sequence[str] = ()) -> Config:
    """The resolved config of a preset plus command-line overrides."""
    return config_from_dict(_merge(load_preset(preset), parse_overrides(overrides)))


def validate(cfg: Config) -> None:
    if not 0.0 < cfg.data.ratio < 1.0:
        raise ConfigError(
            f"data.ratio={cfg.data.ratio} is outside (0, 1); give the conflicting fraction, e.g. 0.01 for 1%"
        )
    if cfg.selection not in SELECTIONS:
        raise ConfigError(f"selection {cfg.selection!r} is unknown; choose one of: {', '.join(SELECTIONS)}")
    if cfg.proxy_metric not in PROXY_METRICS:
        raise ConfigError(f"proxy_metric {cfg.proxy_metric!r} is unknown; choose one of: {', '.join(PROXY_METRICS)}")
    if not 0.0 < cfg.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={cfg.data.val_fraction} is outside (0, 1)")
    if cfg.eval_every < 1:
        raise ConfigError("eval_every must be at least 1")
    cfg.method.validate()


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
