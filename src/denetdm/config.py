"""Typed run configuration: dataclasses, YAML presets and `key.sub=value` overrides.

A preset is a YAML file (shipped in `denetdm/presets/` or any path). It may name a
`base` preset whose values it extends. Every key is checked against the dataclasses,
so a typo is an error that names the key instead of a silently ignored setting.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import yaml

from .data.spec import DataConfig, dataset_keys
from .estimate import EstimateConfig
from .errors import ConfigError
from .methods.registry import method_config_class

PRESET_DIR = Path(__file__).parent / "presets"
SELECTIONS = ("proxy", "last", "val", "oracle")
PROXY_METRICS = ("pseudo_unbiased", "pseudo_worst", "pseudo_conflicting")


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
    # Not in the paper (none is faithful): bf16 runs each training step under torch.autocast (weights,
    # optimiser and evaluation stay fp32). On the Colored MNIST MLPs on a CPU with AVX512-BF16 it was no
    # faster per epoch and 2.0 and 2.9 points lower on two runs (docs/usage.md, "Mixed precision").
    amp: str = "none"
    loggers: str = ""  # beside metrics.jsonl: csv, tensorboard (comma-separated; loggers.py)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)  # the label-free estimate's bias reader

    def to_dict(self) -> Dict[str, Any]:
        """Plain types only, the method section led by its name: what `config_from_dict` reads."""
        data = dataclasses.asdict(self)
        data["method"] = {"name": self.method.NAME, **data["method"]}
        data["data"] = {k: data["data"][k] for k in dataset_keys(self.data.name)}  # only what the dataset reads
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
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be a list, e.g. [1, 0], got {value!r}")
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} is a section; set its keys instead (e.g. {path}.<key>=...)")
        return build(tp, value, path)
    if tp is float and not isinstance(value, bool):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"{path} must be a finite number, got {value!r}")
            return number
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


def _merge(base: Dict[str, Any], extra: Dict[str, Any], path: str = "") -> Dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        full = f"{path}.{key}" if path else key
        if isinstance(out.get(key), dict) and not isinstance(value, dict):
            hint = f"{full}.name={value}" if key == "method" else f"{full}.<key>=..."
            raise ConfigError(f"{full} is a section, not a value; set its keys instead (e.g. {hint})")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(_rebased(full, out[key], value.get("name")), value, full)
        else:
            out[key] = value
    return out


def _rebased(path: str, section: Dict[str, Any], name: Any) -> Dict[str, Any]:
    """What a base's method or data section leaves to an override that names another method or
    dataset: nothing of another method's settings; of the data settings, those the new dataset reads
    (a Waterbirds preset built on BFFHQ's keeps its image size, not its conflicting ratio)."""
    if path not in ("method", "data") or name is None or name == section.get("name"):
        return section
    if path == "method":
        return {}
    keep = dataset_keys(name) if isinstance(name, str) else ()
    return {k: v for k, v in section.items() if k in keep}


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
        node[leaf] = _scalar(text)
    return out


def _scalar(text: str) -> Any:
    """An override's value as YAML reads it (1e-3, true, null, [1, 2]); text YAML cannot read (a path
    with a colon and a brace, say) stays the string it is, and the key's type check judges it."""
    if not text.strip():
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def config_from_dict(raw: Dict[str, Any]) -> Config:
    raw = dict(raw)
    method = dict(raw.pop("method", None) or {})
    name = method.pop("name", None)
    if not name:
        raise ConfigError("config has no method.name; set it (e.g. method.name=denetdm)")
    cfg = build(Config, raw)
    _check_data_keys(cfg, raw.get("data") or {})
    cfg.method = build(method_config_class(name), method, "method")
    validate(cfg)
    return cfg


def _check_data_keys(cfg: Config, raw: Dict[str, Any]) -> None:
    """A data key the dataset does not read must stay at its default: it would be ignored otherwise.
    (Configs written before datasets declared their keys list every key, at its default.)"""
    keys, defaults = dataset_keys(cfg.data.name), DataConfig()
    for key in raw:
        if key not in keys and getattr(cfg.data, key) != getattr(defaults, key):
            own = ", ".join(k for k in keys if k != "name")
            raise ConfigError(f"data.{key} is not a setting of dataset {cfg.data.name!r}; remove it "
                              f"(its settings: {own})")


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
    if cfg.amp not in ("none", "bf16"):
        raise ConfigError(f"amp={cfg.amp!r} is unknown; use none (fp32) or bf16 (autocast of the training steps)")
    if cfg.threads < 0:
        raise ConfigError(f"threads={cfg.threads} must be >= 0 (0 keeps torch's default)")
    from .loggers import parse_loggers

    parse_loggers(cfg.loggers)
    cfg.estimate.validate()
    cfg.method.validate()


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
