"""The oracle twin: a run that does not select by `oracle` also tracks what an oracle run would keep.

Selection never changes how a phase trains, only where the next phase starts. So while every earlier
phase would have kept the same epoch under both protocols, the oracle run *is* this run, and its
numbers are read off it (`oracle_view` in results.json). After each phase but the last, the state an
oracle run would start the next phase from is saved (`checkpoints/oracle_start.pt`); an oracle twin
(`train(..., start_from=that file)`) takes it over and trains only the phases after it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .checkpoints import checkpoint_dict, load_checkpoint, rng_state, set_rng_state
from .errors import RunFolderError
from .fileio import save_atomic

START = "oracle_start.pt"


def save_start(out: Path, cfg, model, phase: str, shadow, run, shuffle, device) -> None:
    """After `phase`: the weights the oracle protocol kept, the epochs it kept so far, and the random
    state and restarts from which an oracle run would go on."""
    save_atomic({**checkpoint_dict(cfg, model, phase, shadow.best_epoch, shadow.best_state),
                 "selected_epochs": dict(run.oracle_epochs), "rng": rng_state(shuffle, device),
                 "restarts": {k: list(v) for k, v in run.restarts.items()}},
                out / "checkpoints" / START)


def take_over(path: Path, cfg, model, shuffle, run, log) -> None:
    """Start this oracle run from another run's `oracle_start.pt`: its weights, random state, restarts,
    selected epochs, and the metric records of the phases it trained."""
    start = load_checkpoint(path)
    if cfg.selection != "oracle" or {**start["config"], "selection": "oracle"} != cfg.to_dict():
        raise RunFolderError(f"{path} was saved for another config; an oracle run can only continue a run of its own config")
    taken = start["selected_epochs"]
    run.restarts.update(start.get("restarts", {}))
    for line in (Path(path).parent.parent / "metrics.jsonl").read_text().splitlines(True):
        record = json.loads(line)
        if record["phase"] in taken and record.get("attempt", 0) <= len(run.restarts.get(record["phase"], [])):
            log.write(line)
    model.load_state_dict(start["state_dict"])
    set_rng_state(start["rng"], shuffle)
    run.selected.update(taken)
