"""Hyperparameters without bias labels: a small grid ranked by the `proxy` selection score.

Every grid point trains under the label-free `proxy` protocol; it is scored by the pseudo-group
accuracy of its deployed predictor at its selected epoch on the held-out split (the score that chose
the epoch). Points whose run warned (e.g. DeNetDM's failed stage-1 split, which also spoils its own
bias proxy) rank after those that did not. `tune.json` keeps every point, its score and the chosen
one; rerunning the same grid into the same folder trains only the points that have no results yet.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Dict, List, Sequence

import yaml

from .config import config_from_dict, load_config
from .errors import ConfigError, RunFolderError
from .fileio import write_text_atomic


def parse_grid(items: Sequence[str]) -> Dict[str, List[str]]:
    """`key=v1,v2` strings into key -> values (kept as text, parsed as overrides later)."""
    grid: Dict[str, List[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError(f"--grid {item!r} is not KEY=V1,V2,... (e.g. method.shallow.depth=2,3)")
        if key in grid:
            raise ConfigError(f"--grid names {key} twice; give all its values in one --grid")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    if not grid:
        raise ConfigError("give at least one --grid KEY=V1,V2,...")
    return grid


def grid_points(grid: Dict[str, List[str]]) -> List[Dict[str, str]]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_name(point: Dict[str, str]) -> str:
    return "_".join(f"{k.split('.')[-2] + '.' if k.count('.') else ''}{k.split('.')[-1]}={v}" for k, v in point.items())


def rank_key(entry: dict):
    return (not entry["warnings"], entry["score"])


def tune(preset: str, grid: Dict[str, List[str]], overrides: Sequence[str], out: Path, quiet: bool = False) -> dict:
    from .benchmark import config_hash
    from .training import train

    out = Path(out)
    points = grid_points(grid)
    configs = []
    for point in points:
        cfg = load_config(preset, [*overrides, *(f"{k}={v}" for k, v in point.items())])
        if cfg.selection != "proxy":
            raise ConfigError(f"tuning ranks points by the label-free proxy score; drop selection={cfg.selection}")
        configs.append(cfg)
    entries = []
    for point, cfg in zip(points, configs):
        run_dir = out / "points" / point_name(point)
        results_path = run_dir / "results.json"
        if results_path.is_file():  # trained by an earlier call: reuse only if it is this very config
            saved = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
            if config_hash(saved) != config_hash(cfg):
                raise RunFolderError(f"{run_dir} holds another config; use another --out for another grid or overrides")
            results = json.loads(results_path.read_text())
        else:
            results = train(cfg, run_dir, quiet=quiet, preset=preset)
        final_phase = list(results["selected_epochs"])[-1]
        entries.append({"point": point, "score": results["selection_scores"][final_phase],
                        "warnings": results.get("warnings", []), "selected_epochs": results["selected_epochs"],
                        "estimate": results.get("estimate"), "run_dir": str(run_dir)})
    ranking = sorted(entries, key=rank_key, reverse=True)
    summary = {"preset": preset, "overrides": list(overrides), "grid": grid,
               "score": "pseudo-group accuracy of the deployed predictor on the held-out split (label-free); "
                        "runs with warnings rank last",
               "chosen": ranking[0]["point"], "ranking": ranking}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "tune.json", json.dumps(summary, indent=2))
    return summary


def format_ranking(summary: dict) -> str:
    lines = ["rank  score  warned  point"]
    for i, e in enumerate(summary["ranking"], 1):
        lines.append(f"{i:>4}  {e['score']:5.2f}  {'yes' if e['warnings'] else 'no':>6}  {point_name(e['point'])}")
    lines.append(f"chosen (label-free): {point_name(summary['chosen'])}")
    return "\n".join(lines)
