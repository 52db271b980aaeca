"""Checkpoints, the resume point and a run folder's status.

A run folder holds `config.yaml`, `metrics.jsonl`, `status.json` (running, failed or complete),
`checkpoints/<phase>.pt` (each phase's selected weights), `checkpoints/final.pt` and, while the run
is unfinished, `checkpoints/resume.pt`: everything the loop needs to go on after the last finished
epoch as if it had never stopped (weights, optimisers, selection, random state, the log's length).
Every file is written atomically, so a run killed at any moment leaves the previous resume point.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .errors import RunFolderError
from .fileio import dumps, save_atomic, write_text_atomic

CHECKPOINT_FORMAT = 1
STATUS = "status.json"
RESUME = "resume.pt"


def checkpoint_dict(cfg, model, phase: str, selected_epoch: Optional[int], state: Optional[dict] = None) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "config": cfg.to_dict(),
        "phase": phase,
        "selected_epoch": selected_epoch,
        "state_dict": model.state_dict() if state is None else state,
    }


def rng_state(shuffle: torch.Generator, device: torch.device) -> dict:
    """Every random stream a run draws from: the data order, torch (init, augmentation), numpy, Python."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"shuffle": shuffle.get_state(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, shuffle: torch.Generator) -> None:
    shuffle.set_state(state["shuffle"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "python" in state:
        random.setstate(_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    """random.setstate wants the tuples that a round trip through torch.load may have made lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def load_checkpoint(path: Path) -> dict:
    """A finished run's final checkpoint (from its folder) or any checkpoint file."""
    path = Path(path)
    if path.is_dir():
        status = read_status(path)
        if status is not None and status["status"] != "complete":
            raise RunFolderError(f"run {path} is not complete (status: {status['status']}); "
                                 f"finish it with: denetdm train --resume {path}")
        path = path / "checkpoints" / "final.pt"
    if not path.is_file():
        raise RunFolderError(f"checkpoint {path} does not exist; pass a .pt file or a run folder holding checkpoints/final.pt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunFolderError(f"checkpoint {path} cannot be read ({type(exc).__name__}); it is truncated or not a denetdm checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or not ckpt.get("state_dict"):
        raise RunFolderError(f"{path} is not a denetdm checkpoint (format {CHECKPOINT_FORMAT}, with weights)")
    return ckpt


def write_status(out: Path, status: str, message: str = "") -> None:
    write_text_atomic(out / STATUS, dumps({"status": status, "message": message,
                                           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def read_status(out: Path) -> Optional[dict]:
    """A run folder's status, or None for a folder written before runs recorded one."""
    try:
        return json.loads((Path(out) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def save_resume_point(out: Path, point: dict) -> None:
    save_atomic({"format": CHECKPOINT_FORMAT, **point}, out / "checkpoints" / RESUME)


def load_resume_point(out: Path) -> Optional[dict]:
    """The last finished epoch's state, or None when the run stopped before finishing one."""
    path = Path(out) / "checkpoints" / RESUME
    if not path.is_file():
        return None
    try:
        point = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RunFolderError(f"{path} cannot be read ({type(exc).__name__}); delete the run folder and train again") from None
    if not isinstance(point, dict) or point.get("format") != CHECKPOINT_FORMAT:
        raise RunFolderError(f"{path} is not a denetdm resume point; delete the run folder and train again")
    return point
