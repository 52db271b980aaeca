"""The paper's analyses as runnable settings: Figures 2a, 2b, 3, 4 and the rank checks.

Every setting trains (or not) with the library's own methods, probes frozen features on
the dataset's unbiased test split (halved: probe fit / probe score), and writes JSON plus
PNG and SVG plots.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence

import torch

from ..config import Config
from ..methods.base import OptimConfig
from ..models.spec import ModelSpec
from ..data import create_dataset
from ..errors import ConfigError
from ..methods.erm import ERM, ERMConfig
from ..methods.registry import create_method
from ..training import setup_runtime, seed_everything
from .decodability import decodability
from .figures import FIGURES  # noqa: F401  (cli and callers read it here too)
from .rank import effective_rank, layer_features, theorem1_check


def parse_model(text: str) -> ModelSpec:
    """`mlp:5` is an MLP with 5 linear layers (head included); other names take no depth."""
    arch, _, depth = text.partition(":")
    try:
        return ModelSpec(arch=arch, depth=int(depth)) if depth else ModelSpec(arch=arch)
    except ValueError:
        raise ConfigError(f"model {text!r} is not NAME or NAME:DEPTH (e.g. mlp:5, resnet20)") from None


@torch.no_grad()
def materialize(split, device):
    """The whole evaluation split as tensors (with its evaluation transform)."""
    xs, ys, bs = zip(*[(x, y, b) for _, x, y, b in split.batches(torch.arange(len(split)), 1024)])
    return torch.cat(xs).to(device), torch.cat(ys), torch.cat(bs)


def _setup(cfg: Config):
    device = setup_runtime(cfg)
    splits = create_dataset(cfg.data, progress=False).to(device)
    if not splits.test.has_bias:
        raise ConfigError("the decodability and rank analyses need bias labels on the test split")
    return device, splits, materialize(splits.test, device)


def _erm(spec: ModelSpec, cfg: Config, splits, lr: float, batch_size: int) -> ERM:
    erm_cfg = ERMConfig(model=spec, optim=OptimConfig(lr=lr, batch_size=batch_size, epochs=1))
    model = ERM(erm_cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train))
    return model


def _iterate(model, phase, train, iterations: Sequence[int], seed: int, on_checkpoint) -> None:
    """Train `model` in `phase` for max(iterations) steps, calling back at each listed step."""
    model.to(train.device)
    model.start_phase(phase, train)
    model.train()
    marks, step = sorted(set(iterations)), 0
    shuffle = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(train), generator=shuffle)
        for batch in train.batches(order, phase.optim.batch_size, drop_last=True):
            if step in marks:
                on_checkpoint(step)
            if step >= marks[-1]:
                return
            model.update(batch)
            step += 1


def run_decodability(cfg: Config, mode: str, models: Sequence[str] = (), iterations: Sequence[int] = (0,),
                     seeds: Sequence[int] = (0,), lr: float = 1e-3, batch_size: int = 64) -> dict:
    device, splits, (x, y, bias) = _setup(cfg)
    nc, nb = splits.test.num_classes, splits.test.num_bias
    curves: Dict[str, dict] = {}

    def record(label: str, step: int, backbone, seed: int) -> None:
        d = decodability(backbone, x, y, bias, nc, nb, seed)
        c = curves.setdefault(label, {"x": [], "core": [], "bias": [], "seed": []})
        c["x"].append(step), c["core"].append(d["core"]), c["bias"].append(d["bias"]), c["seed"].append(seed)

    for seed in seeds:
        seed_everything(seed)
        if mode == "init":
            for name in models:
                spec = parse_model(name)
                record(name, spec.depth if spec.arch == "mlp" else 0, _erm(spec, cfg, splits, lr, batch_size).backbone.to(device), seed)
        elif mode == "erm":
            for name in models:
                model = _erm(parse_model(name), cfg, splits, lr, batch_size)
                _iterate(model, model.phases()[0], splits.train, iterations, seed,
                         lambda step: record(name, step, model.backbone, seed))
        elif mode == "denetdm":
            model = create_method(cfg, splits.train.input_shape, nc, len(splits.train))

            def both(step):
                record("deep branch", step, model.deep, seed)
                record("shallow branch", step, model.shallow, seed)

            _iterate(model, model.phases()[0], splits.train, iterations, seed, both)
        else:
            raise ConfigError(f"mode {mode!r} is unknown; use init, erm or denetdm")
    return {"mode": mode, "dataset": cfg.data.name, "ratio": cfg.data.ratio, "chance_core": 100 / nc,
            "chance_bias": 100 / nb, "lr": lr, "batch_size": batch_size, "curves": curves}


def run_rank(cfg: Config, models: Sequence[str], iterations: Sequence[int], seed: int = 0, lr: float = 1e-3,
             batch_size: int = 64, samples: int = 1000, draws: int = 5) -> dict:
    """Per-layer effective rank during ERM training, and Theorem 1 on inputs and features."""
    device, splits, (x, y, bias) = _setup(cfg)
    probe = x[:samples]
    seed_everything(seed)
    out = {"dataset": cfg.data.name, "ratio": cfg.data.ratio, "samples": samples, "centered": False,
           "theorem1": {"input": theorem1_check(x.cpu(), y, bias, draws=draws, seed=seed)["input"]},
           "layers": {}, "features": {}}
    for name in models:
        model = _erm(parse_model(name), cfg, splits, lr, batch_size)
        layers = out["layers"][name] = {"x": [], "ranks": []}
        feats = out["features"][name] = {}

        def checkpoint(step):
            layers["x"].append(step)
            layers["ranks"].append([effective_rank(f.cpu()) for f in layer_features(model.backbone, probe)])
            if step in (min(iterations), max(iterations)):
                fn = lambda t: layer_features(model.backbone, t.to(device))[-1].cpu()
                feats[str(step)] = theorem1_check(x.cpu(), y, bias, features=fn, draws=draws, seed=seed)["features"]

        model.eval()
        _iterate(model, model.phases()[0], splits.train, iterations, seed, checkpoint)
    return out


def plot_decodability(result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curves = result["curves"]
    if result["mode"] == "init":  # one curve per attribute across the networks' depths
        curves = {"untrained MLPs": {k: [v for c in curves.values() for v in c[k]] for k in ("x", "core", "bias")}}
    for i, (label, c) in enumerate(curves.items()):
        xs = sorted(set(c["x"]))
        for attr, style in (("core", "-"), ("bias", "--")):
            values = [torch.tensor([v for x, v in zip(c["x"], c[attr]) if x == s]) for s in xs]
            mean = [v.mean().item() for v in values]
            std = [v.std().item() if len(v) > 1 else 0.0 for v in values]
            ax.errorbar(xs, mean, yerr=std, fmt=style, marker="o", color=f"C{i}", capsize=2,
                        label=f"{label}: {'core (digit/object)' if attr == 'core' else 'bias (colour/corruption)'}")
    ax.axhline(result["chance_core"], color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("depth (linear layers)" if result["mode"] == "init" else "training iterations")
    ax.set_ylabel("linear decodability (%)")
    ax.set_title(title, fontsize=10)
    _finish(fig, ax, path)


def plot_rank(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, layers) in enumerate(result["layers"].items()):
        for j, (step, ranks) in enumerate(zip(layers["x"], layers["ranks"])):
            if j in (0, len(layers["x"]) - 1):
                ax.plot(range(1, len(ranks) + 1), ranks, "-o" if j == 0 else "--s", color=f"C{i}",
                        label=f"{name}, iteration {step}")
    ax.set_xlabel("layer (after each ReLU)")
    ax.set_ylabel("effective rank of features")
    _finish(fig, ax, path)


def _finish(fig, ax, path: Path) -> None:
    """Grid, legend, and the figure as PNG and SVG."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    for suffix in (".png", ".svg"):
        fig.savefig(path.with_suffix(suffix), dpi=120)
    plt.close(fig)


def save(result: dict, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=1))
    return path
