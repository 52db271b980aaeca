"""The training loop, evaluation and run folders.

`train` builds data and method, then `Trainer.run` goes through the method's phases: each
`run_phase` trains an attempt (`train_attempt`: epochs of `update` calls over shuffled index
slices, each evaluated, scored by the selection protocol, logged and saved as a resume point),
restores the kept epoch, checks the phase label-free (the method may ask to train it again from
fresh weights) and checkpoints it. Bias labels are touched only by evaluation and by the opt-in
oracle protocol. Checkpoints and the resume point: `checkpoints.py`; the oracle twin: `oracle_twin.py`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import math
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from .config import Config, config_from_dict, to_yaml
from .data import create_dataset
from .data.user_data import memory_splits
from .data.base import BiasDataset, Splits
from .averaging import WeightAverage
from .checkpoints import (RESUME, STATUS, checkpoint_dict, load_checkpoint, load_resume_point, read_status,
                          rng_state, save_resume_point, set_rng_state, write_status)
from .errors import ConfigError, DenetdmError, RunFolderError, one_line
from .fileio import dumps, hash_tensor, save_atomic, write_text_atomic
from . import distributed, oracle_twin
from .distributed import WORLD
from .deploy import data_meta
from .estimate import label_free_estimate
from .methods import create_method
from .loggers import create_loggers
from .metrics import SUMMARY_KEYS, pseudo_group_summary, split_predictions, summarize
from .selection import DESCRIPTIONS, HELD_OUT, Selector

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use --device cpu or auto")
    return device


def provenance(splits: Splits) -> Dict[str, object]:
    """What produced a result: the package and its git commit (when run from a checkout), the command
    line, and a SHA-256 of the data as trained on (labels, bias labels, and the images or their paths)."""
    from . import __version__

    h = hashlib.sha256()
    hashed = set()  # a held-out split shares its training split's images: hashed once, its rows apart
    for split in (splits.train, splits.val, splits.test):
        if split is None:
            continue
        for part in (getattr(split, "x", None), getattr(split, "rows", None), split.y, split.bias):
            if isinstance(part, torch.Tensor) and id(part) not in hashed:
                hashed.add(id(part))
                hash_tensor(h, part)
        h.update("\n".join(getattr(split, "paths", [])).encode())
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"denetdm": __version__, "git_commit": commit, "command": sys.argv, "data_sha256": h.hexdigest()}


def machine_info(device: torch.device) -> Dict[str, object]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        **({"processes": WORLD.size} if WORLD.size > 1 else {}),
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
    names = list(names)
    wanted = list(dict.fromkeys([*names, *([proxy] if pseudo and proxy is not None else [])]))
    preds = split_predictions(lambda x: model.predict_many(x, wanted), wanted, split, batch_size)
    model.train(was_training)

    bias = split.bias if split.has_bias and use_bias else None
    out = {n: summarize(preds[n], split.y, bias, split.num_classes, split.num_bias, groups) for n in names}
    if pseudo:
        proxy_pred = preds[proxy] if proxy is not None else None
        for name in names:
            out[name].update(pseudo_group_summary(preds[name], split.y, split.num_classes, proxy_pred))
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


def default_run_dir(preset: str) -> Path:
    stem = Path(preset).stem
    return Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def setup_runtime(cfg: Config) -> torch.device:
    """Threads, denormals and the device; under torchrun, this process's rank and its device."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(cfg.flush_denormal)
    return resolve_device(distributed.setup(cfg.device)[1])


def check_new_run_dir(out: Path) -> None:
    """A run never writes into a folder that holds anything: an earlier run is never overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        hint = f"resume it with: denetdm train --resume {out}" if (out / STATUS).is_file() else "choose another --out or delete it"
        raise RunFolderError(f"run folder {out} already exists and is not empty; {hint}")


def check_resumable(out: Path, cfg: Config) -> None:
    status = read_status(out)
    if status is None or not (out / "config.yaml").is_file():
        raise RunFolderError(f"{out} is not a denetdm run folder (no status.json or config.yaml); nothing to resume")
    if status["status"] == "complete":
        raise RunFolderError(f"run {out} is already complete; evaluate it with: denetdm evaluate {out}")
    if read_run_config(out).to_dict() != cfg.to_dict():
        raise RunFolderError(f"run {out} was started with another config; resume it with its own (denetdm train --resume {out})")


def read_run_config(out: Path) -> Config:
    """The config of a run folder, for `denetdm train --resume`."""
    path = Path(out) / "config.yaml"
    if not path.is_file():
        raise RunFolderError(f"{out} is not a denetdm run folder (no config.yaml); nothing to resume")
    return config_from_dict(yaml.safe_load(path.read_text()))


class TrainingDiverged(DenetdmError):
    """A non-finite training loss: the run stops rather than report numbers from NaN weights."""


@dataclass
class RunState:
    """What a run has decided so far; saved with every resume point."""

    selected: Dict[str, int] = field(default_factory=dict)  # phase -> the kept epoch
    scores: Dict[str, float] = field(default_factory=dict)  # phase -> its selection score, where there is one
    finished: List[str] = field(default_factory=list)  # phases checked and checkpointed
    oracle_epochs: Dict[str, int] = field(default_factory=dict)
    train_fit: Dict[str, dict] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    restarts: Dict[str, List[str]] = field(default_factory=dict)  # phase -> per restart, the warnings behind it
    # phase -> its candidate settings, each one's best selection score so far, and the kept one
    candidates: Dict[str, dict] = field(default_factory=dict)
    shadowing: bool = False
    elapsed_s: float = 0.0  # wall time of earlier sessions of this run


def train(cfg: Config, out: Path, quiet: bool = False, preset: str = "", start_from: Optional[Path] = None,
          resume: bool = False, data=None) -> dict:
    """Train `cfg` end to end into the run folder `out`; returns the results dict.

    `start_from`: another run's `oracle_start.pt`; this (oracle) run then takes over the phases that
    run already trained, with their weights, records and random state, and trains the rest.
    `resume`: go on with the unfinished run in `out` from its last finished epoch, to the numbers it
    would have reached uninterrupted (on the same machine).
    `data`: train on data in memory instead of `cfg.data`'s dataset, no file written first: a dict of
    numpy arrays or tensors (x, y, optional bias and split, as in an .npz) or a `denetdm.data.Splits`.
    The run records `data.name: in_memory`.
    """
    cfg = config_from_dict(cfg.to_dict())  # a config edited in code is checked as a file is, before any work
    if data is not None:
        cfg.data.name = "in_memory"
    out = Path(out)
    device = setup_runtime(cfg)
    if resume:
        check_resumable(out, cfg)
    else:
        check_new_run_dir(out)
    distributed.barrier()  # every rank has checked the folder before rank 0 writes into it
    seed_everything(cfg.seed)
    with_val = cfg.selection in HELD_OUT
    splits: Splits = (create_dataset(cfg.data, with_val=with_val, progress=not quiet) if data is None
                      else memory_splits(data, cfg.data, with_val)).to(device)
    model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train)).to(device)
    distributed.check_method(model)
    distributed.sync_module(model)
    point = load_resume_point(out) if resume else None
    if not WORLD.main:  # the other ranks train alongside and write nothing
        return Trainer(cfg, out, True, preset, splits, model, device, point, start_from).run()
    # Only now, with data and model built, does the folder appear: a failed start leaves nothing behind.
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not resume:
        write_text_atomic(out / "config.yaml", to_yaml(cfg))
    return run_in_folder(Trainer(cfg, out, quiet, preset, splits, model, device, point, start_from))


def run_in_folder(trainer: "Trainer", extra: Optional[dict] = None) -> dict:
    """Run `trainer` in its run folder: status running, then final.pt, results.json (with `extra`) and
    status complete, or status failed with the reason; the resume point goes once the run is complete."""
    out = trainer.out
    write_status(out, "running")
    try:
        results = {**trainer.run(), **(extra or {})}
        save_atomic({**checkpoint_dict(trainer.cfg, trainer.model, "final", None), "meta": data_meta(trainer.splits)},
                    out / "checkpoints" / "final.pt")
        write_text_atomic(out / "results.json", dumps(results, indent=2))
    except BaseException as exc:
        write_status(out, "failed", one_line(exc) or type(exc).__name__)
        raise
    write_status(out, "complete")
    (out / "checkpoints" / RESUME).unlink(missing_ok=True)
    return results


class Trainer:
    """One run of a method over its phases: `run()` reads top to bottom, one `run_phase` per phase;
    each phase's attempt is `train_attempt`, one epoch `train_epoch`."""

    def __init__(self, cfg: Config, out: Path, quiet: bool, preset: str, splits: Splits, model, device: torch.device,
                 point: Optional[dict], start_from: Optional[Path]):
        self.cfg, self.out, self.quiet, self.preset = cfg, out, quiet, preset
        self.splits, self.model, self.device = splits, model, device
        self.point, self.start_from = point, start_from
        self.start_time = time.time()
        self.shuffle = torch.Generator().manual_seed(cfg.seed)
        self.eval_splits = {"test": splits.test, **({"val": splits.val} if splits.val is not None else {})}
        self.phases = model.phases()
        # A run that does not select by oracle shadows that protocol (oracle_twin.py).
        shadowing = cfg.selection != "oracle" and splits.test.has_bias and start_from is None
        self.run_state = RunState(**point["run"]) if point is not None else RunState(shadowing=shadowing)
        self.shadow: Optional[Selector] = None  # the oracle shadow of the phase trained last
        self.average: Optional[WeightAverage] = None  # the weight average of the phase training (method.<phase>.ema)
        self.log = None
        self.loggers: list = []

    def run(self) -> dict:
        run = self.run_state
        with (open(self.out / "metrics.jsonl", "a") if WORLD.main else io.StringIO()) as self.log:
            kept = self.point["log_bytes"] if self.point is not None else 0
            self.log.truncate(kept)  # drop the records of epochs the resume point does not hold
            self.log.seek(kept)
            if self.point is not None:
                set_rng_state(self.point["rng"], self.shuffle)
            elif self.start_from is not None:
                oracle_twin.take_over(self.start_from, self.cfg, self.model, self.shuffle, run, self.log)
            self.log.flush()  # a resumed or taken-over run's loggers start from the records kept so far
            self.loggers = create_loggers(self.cfg.loggers, self.out) if WORLD.main else []
            try:
                for i, phase in enumerate(self.phases):
                    if phase.name not in run.finished:
                        self.run_phase(phase, final_phase=i == len(self.phases) - 1)
            finally:
                for logger in self.loggers:
                    logger.close()
        return self.results()

    def run_phase(self, phase, final_phase: bool) -> None:
        """Train the phase (unless an oracle start brought it), check it label-free, train it again
        from fresh weights while the method asks to (an opt-in deviation from the paper; never the
        final phase), and checkpoint its selected epoch."""
        run, trained = self.run_state, False
        while True:
            if phase.name not in run.selected:
                self.shadow = self.train_attempt(phase, final_phase)
                trained = True
            run.train_fit[phase.name] = evaluate(self.model, self.splits.train, phase.predictors, use_bias=False)
            messages = self.model.phase_warnings(phase.name, run.train_fit[phase.name])
            if not messages or final_phase or not self.model.restart_phase(phase.name, len(run.restarts.get(phase.name, []))):
                break
            distributed.sync_module(self.model)  # the fresh weights of rank 0 on every rank
            run.restarts.setdefault(phase.name, []).append(" ".join(messages))
            del run.selected[phase.name]
            warnings.warn(f"{run.restarts[phase.name][-1]} [restart {len(run.restarts[phase.name])}: training "
                          f"{phase.name} again from fresh weights]", stacklevel=2)
            self.say(f"warning: {run.restarts[phase.name][-1]} [restart {len(run.restarts[phase.name])}]", False)
        for message in messages:
            warnings.warn(message, stacklevel=2)
            self.say(f"warning: {message}", False)
            run.warnings.append(message)
        if trained and not final_phase and WORLD.main:  # the final phase's weights are final.pt: no second copy
            save_atomic(checkpoint_dict(self.cfg, self.model, phase.name, run.selected[phase.name]),
                        self.out / "checkpoints" / f"{phase.name}.pt")
        run.finished.append(phase.name)

    def train_attempt(self, phase, final_phase: bool) -> Optional[Selector]:
        """Train one attempt at `phase` (from the resume point where there is one) and restore its
        selected epoch; returns the oracle shadow, if any."""
        model, run, point = self.model, self.run_state, self.point
        attempt = len(run.restarts.get(phase.name, []))
        resuming = point is not None and point["phase"] == phase.name and point["attempt"] == attempt
        model.candidate = 0
        if resuming:  # start_phase may read the weights (JTT's identification model) and values (rates, candidate)
            model.load_state_dict(point["model"])
            model.load_train_state(point["train_state"])
        pool = self.start_phase(phase)
        selector = Selector(self.cfg.selection, phase, proxy_metric=self.cfg.proxy_metric)
        shadow = Selector("oracle", phase, keep_weights=not final_phase) if run.shadowing else None
        first_epoch = 0
        if resuming:
            model.load_state_dict(point["model"])
            model.load_train_state(point["train_state"])
            pool = point["pool"]
            selector.load(point["selector"])
            if self.average is not None:
                self.average.load_state_dict(point["average"])
            if shadow is not None:
                shadow.load(point["shadow"])
            set_rng_state(point["rng"], self.shuffle)
            first_epoch, self.point = point["epoch"] + 1, None
        # Candidate settings are ranked by the selection score; `last` has none, so it trains the first only.
        candidates = model.candidates(phase.name)[: None if selector.protocol != "last" else 1]
        if len(candidates) > 1 and not (resuming and phase.name in run.candidates):  # a restart ranks afresh
            run.candidates[phase.name] = {"settings": candidates, "scores": [None] * len(candidates),
                                          "eligible": [False] * len(candidates)}
        size = phase.optim.batch_size
        steps = len(pool) // size if phase.drop_last else -(-len(pool) // size)
        # Progress bars on a terminal only; piped to a file, one line per epoch (`say`).
        total = phase.optim.epochs * len(candidates)
        bar = tqdm(total=steps * total, initial=steps * (first_epoch + model.candidate * phase.optim.epochs),
                   desc=phase.name, unit="step", disable=self.quiet or not sys.stderr.isatty(), dynamic_ncols=True)
        for candidate in range(model.candidate, len(candidates)):
            if candidate != model.candidate:  # the next setting, from the same start as the first
                model.candidate, first_epoch = candidate, 0
                pool = self.start_phase(phase)
            for epoch in range(first_epoch, phase.optim.epochs):
                self.train_epoch(phase, attempt, epoch, pool, selector, shadow, bar)
            passed = selector.close()
            if shadow is not None:
                shadow.close()
            if phase.name in run.candidates:
                run.candidates[phase.name]["eligible"][candidate] = passed
        bar.close()
        if phase.name in run.candidates:
            run.candidates[phase.name]["chosen"] = selector.best_candidate
        if shadow is not None:
            run.oracle_epochs[phase.name] = shadow.best_epoch
            if not final_phase and WORLD.main:
                oracle_twin.save_start(self.out, self.cfg, model, phase.name, shadow, run, self.shuffle, self.device)
                # Restarting reads the selected epoch, so an oracle run restarts alike only from the same one.
                run.shadowing = shadow.best_epoch == selector.best_epoch
        if self.average is not None and selector.best_state is None:  # `last` kept no copy: the final average
            self.average.load_into_model()
        selector.restore(model)
        run.selected[phase.name] = selector.best_epoch
        if selector.best_score is not None:
            run.scores[phase.name] = selector.best_score
        return shadow

    def start_phase(self, phase):
        """The method's start of the phase (or of its next candidate setting), a fresh weight average
        where the phase asks for one, and the index pool its epochs draw from."""
        pool = self.model.start_phase(phase, self.splits.train)
        self.average = WeightAverage(self.model, phase.optim.ema) if phase.optim.ema else None
        return torch.arange(len(self.splits.train)) if pool is None else pool.cpu()

    def train_epoch(self, phase, attempt: int, epoch: int, pool, selector, shadow, bar) -> None:
        """One pass of `update` over the shuffled pool, a stop on a non-finite loss, the evaluation the
        selection protocol scores, one metrics record, and a resume point."""
        model, run = self.model, self.run_state
        model.train()
        totals: Dict[str, float] = {}
        order = pool[torch.randperm(len(pool), generator=self.shuffle)]
        size, drop_last, weights = phase.optim.batch_size, phase.drop_last, itertools.repeat(1.0)
        if WORLD.size > 1:  # this rank's share of each batch: consecutive slices of size / world size
            shards = distributed.shard(order, size, drop_last)
            order, size, drop_last = torch.cat([i for i, _ in shards]), size // WORLD.size, False
            weights = [w for _, w in shards]
        n = 0
        amp = self.cfg.amp == "bf16"
        for n, (batch, WORLD.weight) in enumerate(zip(self.splits.train.batches(order, size, drop_last), weights), 1):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                logged = model.update(batch)
            for key, value in logged.items():
                totals[key] = totals.get(key, 0.0) + value * (WORLD.weight / WORLD.size)
            if self.average is not None:
                self.average.update()
            bar.update()
        if totals and WORLD.size > 1:  # the epoch's mean losses over all ranks, the same on each
            totals = dict(zip(totals, distributed.all_sum(torch.stack([torch.as_tensor(v) for v in totals.values()]))))
        record = {"phase": phase.name, **({"attempt": attempt} if attempt else {}),
                  **({"candidate": model.candidate} if model.candidate else {}), "epoch": epoch,
                  "time_s": round(self.elapsed(), 2)}
        record.update({f"train_{k}": float(v) / n for k, v in totals.items()})
        bad = [k for k, v in record.items() if k.startswith("train_") and not math.isfinite(v)]
        if bad:
            last_good = f"epoch {epoch - 1} in {self.out / 'checkpoints' / RESUME}" if epoch else "none in this phase"
            raise TrainingDiverged(
                f"{phase.name}, epoch {epoch}: the training loss is not finite ({', '.join(bad)}); the run stopped "
                f"(last good state: {last_good}); lower the learning rate (method.*.lr) and train again")
        score = ""
        if (epoch + 1) % self.cfg.eval_every == 0 or epoch == phase.optim.epochs - 1:
            with self.average.swapped_in() if self.average is not None else contextlib.nullcontext():
                metrics = {name: evaluate(model, split, phase.predictors, pseudo=name == "val", proxy=phase.proxy)
                           for name, split in self.eval_splits.items()}
                eligible = "val" not in metrics or model.epoch_eligible(phase.name, metrics["val"])
                selector.observe(epoch, metrics, model, model.candidate, eligible)
                if shadow is not None:
                    shadow.observe(epoch, metrics, model, model.candidate)
            ranked = run.candidates.get(phase.name)
            if ranked is not None and selector.latest is not None:
                best = ranked["scores"][model.candidate]
                ranked["scores"][model.candidate] = selector.latest if best is None else max(best, selector.latest)
            record.update(metrics)
            bar.set_postfix(loss=f"{record.get('train_loss', 0):.3f}",
                            test_acc=f"{metrics['test'][phase.monitor]['accuracy']:.1f}")
            score = f", selection score {selector.latest:.2f}" if selector.latest is not None else ""
        which = "".join([f" (attempt {attempt + 1})" if attempt else "",
                         f" (candidate {model.candidate + 1}: {model.candidates(phase.name)[model.candidate]})"
                         if phase.name in run.candidates else ""])
        self.say(f"{phase.name}{which} epoch {epoch + 1}/{phase.optim.epochs}: "
                 f"loss {record.get('train_loss', float('nan')):.4f}{score} [{record['time_s']:.0f} s]", bar.disable)
        self.log.write(dumps(record) + "\n")
        self.log.flush()
        for logger in self.loggers:
            logger.log(record)
        if not WORLD.main:
            return
        save_resume_point(self.out, {
            "phase": phase.name, "attempt": attempt, "epoch": epoch, "pool": pool, "model": model.state_dict(),
            "train_state": model.train_state(), "selector": selector.state(),
            "shadow": shadow.state() if shadow is not None else None, "rng": rng_state(self.shuffle, self.device),
            "average": self.average.state_dict() if self.average is not None else None,
            "log_bytes": self.log.tell(), "run": {**asdict(run), "elapsed_s": self.elapsed()}})

    def say(self, line: str, to_stderr: bool = True) -> None:
        """A line for `log.txt` in the run folder, and for stderr unless quiet or a progress bar shows it."""
        if not WORLD.main:
            return
        with open(self.out / "log.txt", "a") as fh:
            fh.write(line + "\n")
        if to_stderr and not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return self.run_state.elapsed_s + time.time() - self.start_time

    def results(self) -> dict:
        run, model, splits, phases, cfg = self.run_state, self.model, self.splits, self.phases, self.cfg
        final = evaluate(model, splits.test, model.predictors(), groups=True)
        results = {
            "selection": cfg.selection,
            "selection_description": DESCRIPTIONS[cfg.selection],
            "selected_epochs": run.selected,
            **({"selection_scores": run.scores} if run.scores else {}),
            "deployed": phases[-1].monitor,
            "uses_bias_labels": getattr(model, "uses_bias_labels", False),
            "test": final,
            "train_fit": run.train_fit,
            "estimate": label_free_estimate(model, splits, phases[-1], cfg.estimate, self.device, cfg.seed),
            "warnings": run.warnings,
            **({"restarts": run.restarts} if run.restarts else {}),
            **({"candidates": run.candidates} if run.candidates else {}),
            "method": cfg.method.NAME,
            "preset": self.preset,
            "wall_time_s": round(self.elapsed(), 1),
            "machine": machine_info(self.device),
            "provenance": provenance(splits),
            **({"started_from": str(self.start_from)} if self.start_from is not None else {}),
        }
        shadow = self.shadow
        if run.shadowing and shadow is not None and shadow.best_metrics is not None:  # 0 epochs select nothing
            results["oracle_view"] = {
                "selection": "oracle", "selection_description": DESCRIPTIONS["oracle"],
                "selected_epochs": run.oracle_epochs, "test": shadow.best_metrics["test"],
            }
        return results


def load_run_model(path: Path, data_root: Optional[str] = None, device: str = "auto", quiet: bool = False):
    """A checkpoint's config, its data rebuilt as it was trained on, and its model on the device."""
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["config"])
    if data_root:
        cfg.data.root = data_root
    cfg.device = device
    dev = setup_runtime(cfg)
    splits = create_dataset(cfg.data, with_val=cfg.selection in HELD_OUT, progress=not quiet).to(dev)
    model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise RunFolderError(
            f"checkpoint {path} does not fit its data as it is now ({splits.train.num_classes} classes, inputs "
            f"{tuple(splits.train.input_shape)}): the data changed since training; evaluate it on the data it was trained on"
        ) from None
    return cfg, splits, model.to(dev), dev


def evaluate_checkpoint(path: Path, data_root: Optional[str] = None, device: str = "auto", quiet: bool = False,
                        split: str = "test"):
    """Rebuild a checkpoint's model and data and recompute its test table, how well each predictor fits
    the training labels (`split="train"`, label-free), or its label-free estimate (`split="estimate"`,
    with the estimator of this version: earlier runs' records keep theirs)."""
    if split not in ("test", "train", "estimate"):
        raise ConfigError(f"cannot evaluate on split {split!r}; use test, train or estimate")
    cfg, splits, model, dev = load_run_model(path, data_root, device, quiet)
    if split == "train":
        return cfg, evaluate(model, splits.train, model.predictors(), use_bias=False)
    if split == "estimate":
        return cfg, label_free_estimate(model, splits, model.phases()[-1], cfg.estimate, dev, cfg.seed)
    return cfg, evaluate(model, splits.test, model.predictors(), groups=True)
