"""The training loop, evaluation, run folders and checkpoints.

`train` reads top to bottom: build data and method, then for each of the method's
phases run epochs of `update` calls over shuffled index slices, evaluate, let the
selection protocol keep the chosen epoch, check the phase label-free (the method may ask
to train it again from fresh weights) and checkpoint. Bias labels are touched only by
evaluation and by the opt-in oracle protocol.
"""
from __future__ import annotations

import json
import os
import platform
import random
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import Config, config_from_dict, to_yaml
from .data import create_dataset
from .data.base import BiasDataset, Splits
from .errors import ConfigError, RunFolderError
from .fileio import save_atomic, write_text_atomic
from .methods import create_method
from .metrics import SUMMARY_KEYS, pseudo_group_summary, summarize
from .selection import DESCRIPTIONS, HELD_OUT, Selector

CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use --device cpu or auto")
    return device


def machine_info(device: torch.device) -> Dict[str, object]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@torch.no_grad()
def evaluate(model, split: BiasDataset, names: Iterable[str], batch_size: int = 2048, groups: bool = False,
             use_bias: bool = True, pseudo: bool = False, proxy: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """Summaries per predictor on one split; bias-label metrics only where labels exist and `use_bias`.
    `pseudo` adds the label-free (class, `proxy` prediction) group accuracies of `pseudo_group_summary`."""
    was_training = model.training
    model.eval()
    predictors = model.predictors()
    names = list(names)
    preds = {name: [] for name in names}
    proxy_pred = []
    for _, x, _, _ in split.batches(torch.arange(len(split)), batch_size):
        for name in names:
            preds[name].append(predictors[name](x).argmax(dim=1))
        if pseudo and proxy is not None:
            proxy_pred.append(predictors[proxy](x).argmax(dim=1))
    model.train(was_training)
    bias = split.bias if split.has_bias and use_bias else None
    out = {n: summarize(torch.cat(p), split.y, bias, split.num_classes, split.num_bias, groups) for n, p in preds.items()}
    if pseudo:
        proxy_pred = torch.cat(proxy_pred) if proxy is not None else None
        for name, p in preds.items():
            out[name].update(pseudo_group_summary(torch.cat(p), split.y, split.num_classes, proxy_pred))
    return out


TRAIN_FIT_TITLE = "fit of the training labels (label-free; the selected epoch of each phase)"


def format_table(results: Dict[str, Dict[str, float]], selection: str, title: str = "") -> str:
    """A fixed-width table of the summaries, titled by the selection protocol unless `title` is given."""
    keys = [k for k in SUMMARY_KEYS if any(k in m for m in results.values())]
    width = max(len(n) for n in results) + 2
    lines = [title or f"selection: {selection} = {DESCRIPTIONS[selection]}", "model".ljust(width) + "".join(k.rjust(13) for k in keys)]
    for name, metrics in results.items():
        lines.append(name.ljust(width) + "".join(f"{metrics.get(k, float('nan')):13.2f}" for k in keys))
    return "\n".join(lines)


def format_estimate(estimate: dict) -> str:
    """One line a user without bias labels can read: how well the deployed model debiased, estimated."""
    values = [f"{k} ~ {estimate[k]:.2f}" for k in ("unbiased", "conflicting") if k in estimate]
    if not values:
        values = [f"class-balanced ~ {estimate['class_balanced']:.2f}"]
    return (f"label-free ESTIMATE for {estimate['predictor']} on the test split (no bias labels; groups from the "
            f"bias proxy {estimate['proxy']}): " + ", ".join(values))


def default_run_dir(preset: str) -> Path:
    stem = Path(preset).stem
    return Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(out: Path) -> Path:
    """A new, empty run folder; an existing non-empty one is never overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunFolderError(f"run folder {out} already exists and is not empty; choose another --out or delete it")
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    return out


def checkpoint_dict(cfg: Config, model, phase: str, selected_epoch: Optional[int], state: Optional[dict] = None) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "phase": phase,
        "selected_epoch": selected_epoch,
        "state_dict": model.state_dict() if state is None else state,
    }


def rng_state(shuffle: torch.Generator, device: torch.device) -> dict:
    state = {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    shuffle.set_state(state["shuffle"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_oracle_start(path: Path, cfg: Config) -> dict:
    """The state an oracle run takes over from a finished run of the same config (see `train`)."""
    ckpt = load_checkpoint(path)
    if cfg.selection != "oracle" or {**ckpt["config"], "selection": "oracle"} != cfg.to_dict():
        raise RunFolderError(f"{path} was saved for another config; an oracle run can only continue a run of its own config")
    return ckpt


def setup_runtime(cfg: Config) -> torch.device:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(cfg.flush_denormal)
    return resolve_device(cfg.device)


def train(cfg: Config, out: Path, quiet: bool = False, preset: str = "", start_from: Optional[Path] = None) -> dict:
    """Train `cfg` end to end into the run folder `out`; returns the results dict.

    `start_from`: another run's `oracle_start.pt`; this (oracle) run then takes over the phases that
    run already trained, with their weights, records and random state, and trains the rest.
    """
    start_time = time.time()
    out = prepare_run_dir(Path(out))
    device = setup_runtime(cfg)
    write_text_atomic(out / "config.yaml", to_yaml(cfg))
    seed_everything(cfg.seed)
    splits: Splits = create_dataset(cfg.data, with_val=cfg.selection in HELD_OUT, progress=not quiet).to(device)
    model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train)).to(device)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    eval_splits = {"test": splits.test, **({"val": splits.val} if splits.val is not None else {})}
    selected, scores = {}, {}  # per phase: the kept epoch, and its selection score where the protocol has one
    phases = model.phases()
    # Selection never changes how a phase trains, only where the next phase starts. So a run that does
    # not select by oracle shadows that protocol: while every earlier phase would have kept the same
    # epoch, the oracle run is this run, and its numbers are read off here (`oracle_view`); after a
    # phase, the state an oracle run would start the next one from is saved (`oracle_start.pt`), so an
    # oracle twin trains only the phases after it (`start_from`).
    shadowing = cfg.selection != "oracle" and splits.test.has_bias and start_from is None
    oracle_epochs: Dict[str, int] = {}
    train_fit: Dict[str, dict] = {}
    run_warnings = []
    restarts: Dict[str, List[str]] = {}  # phase -> per restart, the warnings that made it train again

    def check_phase(phase) -> List[str]:
        """How well the phase's selected predictors fit the training labels (label-free), and what the
        method makes of it, as soon as the phase ends."""
        train_fit[phase.name] = evaluate(model, splits.train, phase.predictors, use_bias=False)
        return model.phase_warnings(phase.name, train_fit[phase.name])

    def train_phase(phase, final_phase: bool, log) -> Optional[Selector]:
        """Train one attempt at `phase` and restore its selected epoch; returns the oracle shadow, if any."""
        nonlocal shadowing
        attempt = len(restarts.get(phase.name, []))
        pool = model.start_phase(phase, splits.train)
        pool = torch.arange(len(splits.train)) if pool is None else pool.cpu()
        selector = Selector(cfg.selection, phase, proxy_metric=cfg.proxy_metric)
        shadow = Selector("oracle", phase, keep_weights=not final_phase) if shadowing else None
        steps = (len(pool) // phase.optim.batch_size if phase.drop_last else -(-len(pool) // phase.optim.batch_size))
        bar = tqdm(total=steps * phase.optim.epochs, desc=phase.name, unit="step", disable=quiet, dynamic_ncols=True)
        for epoch in range(phase.optim.epochs):
            model.train()
            totals: Dict[str, float] = {}
            order = pool[torch.randperm(len(pool), generator=shuffle)]
            for batch in splits.train.batches(order, phase.optim.batch_size, phase.drop_last):
                for key, value in model.update(batch).items():
                    totals[key] = totals.get(key, 0.0) + value
                bar.update()
            record = {"phase": phase.name, **({"attempt": attempt} if attempt else {}), "epoch": epoch,
                      "time_s": round(time.time() - start_time, 2)}
            record.update({f"train_{k}": float(v) / steps for k, v in totals.items()})
            last = epoch == phase.optim.epochs - 1
            if (epoch + 1) % cfg.eval_every == 0 or last:
                metrics = {name: evaluate(model, split, phase.predictors, pseudo=name == "val", proxy=phase.proxy)
                           for name, split in eval_splits.items()}
                selector.observe(epoch, metrics, model)
                if shadow is not None:
                    shadow.observe(epoch, metrics, model)
                record.update(metrics)
                monitor = metrics["test"][phase.monitor]
                bar.set_postfix(loss=f"{record.get('train_loss', 0):.3f}", test_acc=f"{monitor['accuracy']:.1f}")
            log.write(json.dumps(record) + "\n")
            log.flush()
        bar.close()
        if shadow is not None:
            oracle_epochs[phase.name] = shadow.best_epoch
            if not final_phase:
                save_atomic({**checkpoint_dict(cfg, model, phase.name, shadow.best_epoch, shadow.best_state),
                             "selected_epochs": dict(oracle_epochs), "rng": rng_state(shuffle, device),
                             "restarts": {k: list(v) for k, v in restarts.items()}},
                            out / "checkpoints" / "oracle_start.pt")
                # Restarting reads the selected epoch, so an oracle run restarts alike only from the same one.
                shadowing = shadow.best_epoch == selector.best_epoch
        selector.restore(model)
        selected[phase.name] = selector.best_epoch
        if selector.best_score is not None:
            scores[phase.name] = selector.best_score
        return shadow

    start = load_oracle_start(start_from, cfg) if start_from is not None else None
    with open(out / "metrics.jsonl", "a") as log:
        if start is not None:
            taken = start["selected_epochs"]
            restarts.update(start.get("restarts", {}))
            source = Path(start_from).parent.parent / "metrics.jsonl"
            for line in source.read_text().splitlines(True):
                rec = json.loads(line)
                if rec["phase"] in taken and rec.get("attempt", 0) <= len(restarts.get(rec["phase"], [])):
                    log.write(line)
            model.load_state_dict(start["state_dict"])
            set_rng_state(start["rng"], shuffle)
            selected.update(taken)
        for i, phase in enumerate(phases):
            final_phase = i == len(phases) - 1
            trained = False
            while True:
                if phase.name not in selected:
                    shadow = train_phase(phase, final_phase, log)
                    trained = True
                messages = check_phase(phase)
                # The method may start a phase again from fresh weights when its check warns (an opt-in
                # deviation from the paper); the final phase is never restarted.
                if not messages or final_phase or not model.restart_phase(phase.name, len(restarts.get(phase.name, []))):
                    break
                restarts.setdefault(phase.name, []).append(" ".join(messages))
                del selected[phase.name]
                warnings.warn(f"{restarts[phase.name][-1]} [restart {len(restarts[phase.name])}: training {phase.name} "
                              "again from fresh weights]", stacklevel=2)
            for message in messages:
                warnings.warn(message, stacklevel=2)
                run_warnings.append(message)
            if trained:
                save_atomic(checkpoint_dict(cfg, model, phase.name, selected[phase.name]),
                            out / "checkpoints" / f"{phase.name}.pt")
    final = evaluate(model, splits.test, model.predictors(), groups=True)
    estimate = label_free_estimate(model, splits.test, phases[-1])
    results = {
        "selection": cfg.selection,
        "selection_description": DESCRIPTIONS[cfg.selection],
        "selected_epochs": selected,
        **({"selection_scores": scores} if scores else {}),
        "deployed": model.phases()[-1].monitor,
        "uses_bias_labels": getattr(model, "uses_bias_labels", False),
        "test": final,
        "train_fit": train_fit,
        "estimate": estimate,
        "warnings": run_warnings,
        **({"restarts": restarts} if restarts else {}),
        "method": cfg.method.NAME,
        "preset": preset,
        "wall_time_s": round(time.time() - start_time, 1),
        "machine": machine_info(device),
        **({"started_from": str(start_from)} if start_from is not None else {}),
    }
    if shadowing and shadow.best_metrics is not None:  # a phase of 0 epochs selects nothing
        results["oracle_view"] = {
            "selection": "oracle", "selection_description": DESCRIPTIONS["oracle"],
            "selected_epochs": oracle_epochs, "test": shadow.best_metrics["test"],
        }
    save_atomic(checkpoint_dict(cfg, model, "final", None), out / "checkpoints" / "final.pt")
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    return results


def label_free_estimate(model, test: BiasDataset, phase) -> dict:
    """The deployed model's unbiased and conflicting accuracy on the test split as estimated without
    bias labels: its class labels, with the final phase's bias proxy's predictions as the groups
    (`pseudo_group_summary`). Reported, never selected on."""
    deployed = phase.monitor
    summary = evaluate(model, test, [deployed], use_bias=False, pseudo=True, proxy=phase.proxy)[deployed]
    estimate = {"split": "test", "predictor": deployed, "proxy": phase.proxy or "none (classes are the groups)"}
    if not phase.proxy:  # no groups to estimate with: what a class-balanced view says
        return {**estimate, "class_balanced": summary["pseudo_unbiased"]}
    names = {"pseudo_unbiased": "unbiased", "pseudo_conflicting": "conflicting", "pseudo_aligned": "aligned",
             "pseudo_worst": "worst_group", "pseudo_conflicting_share": "proxy_disagrees_pct"}
    return {**estimate, **{name: summary[key] for key, name in names.items()}}


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "final.pt"
    if not path.is_file():
        raise RunFolderError(f"checkpoint {path} does not exist; pass a .pt file or a run folder holding checkpoints/final.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunFolderError(f"checkpoint {path} cannot be read ({type(exc).__name__}); it is truncated or not a denetdm checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunFolderError(f"{path} is not a denetdm checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def evaluate_checkpoint(path: Path, data_root: Optional[str] = None, device: str = "auto", quiet: bool = False,
                        split: str = "test"):
    """Rebuild a checkpoint's model and data and recompute its test table, or (`split="train"`) how
    well each predictor fits the training labels, label-free."""
    if split not in ("test", "train"):
        raise ConfigError(f"cannot evaluate on split {split!r}; use test or train")
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["config"])
    if data_root:
        cfg.data.root = data_root
    cfg.device = device
    dev = setup_runtime(cfg)
    splits = create_dataset(cfg.data, with_val=cfg.selection in HELD_OUT, progress=not quiet).to(dev)
    model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train))
    model.load_state_dict(ckpt["state_dict"])
    model.to(dev)
    if split == "train":
        return cfg, evaluate(model, splits.train, model.predictors(), use_bias=False)
    return cfg, evaluate(model, splits.test, model.predictors(), groups=True)
