"""Methods x conflicting ratios x seeds x selection protocols, run in worker processes.

Every finished run appends one record to `results.jsonl` in the output folder; a run
whose record is there is never run again, so an interrupted benchmark continues where
it stopped. Tables (Markdown, CSV) and a plot put our mean +- std beside the paper's.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import statistics
import sys
import threading
import warnings
from collections import deque
from dataclasses import dataclass
from importlib import resources
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from tqdm.auto import tqdm

from .checkpoints import read_status
from .config import SELECTIONS, config_from_dict, load_config
from .errors import ConfigError, RunFolderError
from .fileio import dumps, write_text_atomic
from .methods.registry import METHODS

METRICS = ("unbiased", "aligned", "conflicting", "worst_group", "accuracy")


def paper_reference() -> dict:
    return json.loads(resources.files("denetdm").joinpath("reference/paper.json").read_text())


# Datasets in the Colored MNIST format (3 x 28 x 28, ten classes and bias values) that run on its presets.
ON_COLORED_MNIST_PRESETS = ("mnist_background", "mnist_patch", "mnist_stripes", "mnist_corruption")


def preset_for(method: str, dataset: str) -> str:
    """DeNetDM's preset carries the dataset's name; every other method prefixes its own."""
    dataset = "colored_mnist" if dataset in ON_COLORED_MNIST_PRESETS else dataset
    return dataset if method == "denetdm" else f"{method}_{dataset}"


@dataclass(frozen=True)
class RunSpec:
    method: str
    ratio: float
    seed: int
    selection: str
    dataset: str = "colored_mnist"
    variant: str = ""  # an ablation's named setting, applied after the common overrides
    variant_overrides: tuple = ()

    @property
    def key(self) -> str:
        name = f"{self.method}-{self.variant}" if self.variant else self.method
        return f"{name}_r{self.ratio:g}_s{self.seed}_{self.selection}"

    def overrides(self, extra: Sequence[str]) -> List[str]:
        data = [f"data.name={self.dataset}"] if self.dataset in ON_COLORED_MNIST_PRESETS else []
        return [*data, f"data.ratio={self.ratio}", f"seed={self.seed}", f"selection={self.selection}", *extra,
                *self.variant_overrides]


# The paper's depth ablations on Colored MNIST at 1% (depths count linear layers incl. the head).
# Table 5 is stage 1 only: which branch takes the bias when the depths are equal or not.
# Table 9 trains the full method for (shallow, deep) pairs and reports the stage-2 model.
ABLATIONS = {
    "table5": {
        "variants": {f"deep{d}_shallow{s}": (f"method.deep.depth={d}", f"method.shallow.depth={s}",
                                             "method.stage2.epochs=0") for d, s in ((5, 5), (5, 3))},
        "seeds": [0, 1, 2, 3, 4], "ratios": [0.01], "predictors": ["stage1_deep", "stage1_shallow"],
    },
    "table9": {
        "variants": {f"shallow{s}_deep{d}": (f"method.deep.depth={d}", f"method.shallow.depth={s}")
                     for s, d in ((3, 4), (3, 5), (3, 7), (6, 7), (4, 8), (6, 8))},
        "seeds": [0], "ratios": [0.01], "predictors": ["stage2_target", "stage1_deep", "stage1_shallow"],
    },
}


def plan_ablation(name: str, seeds=None, selections=("last",), dataset="colored_mnist", overrides=()) -> List[RunSpec]:
    if name not in ABLATIONS:
        raise ConfigError(f"unknown ablation {name!r}; choose one of: {', '.join(ABLATIONS)}")
    ab = ABLATIONS[name]
    specs = []
    for seed in seeds or ab["seeds"]:  # seed-major, so that a partial run covers every variant
        for variant, extra in ab["variants"].items():
            for ratio in ab["ratios"]:
                for selection in selections:
                    spec = RunSpec("denetdm", ratio, seed, selection, dataset, variant, tuple(extra))
                    load_config(preset_for("denetdm", dataset), spec.overrides(overrides))
                    specs.append(spec)
    return specs


def _non_defaults(obj, prefix: str = "") -> dict:
    """Flattened config values that differ from their dataclass defaults."""
    out = {}
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(_non_defaults(value, key + "."))
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value != default:
            out[key] = value
    return out


def config_hash(cfg) -> str:
    """Identifies a run's config by what it sets away from the defaults, so that a new config field
    (added with a default that keeps the old behaviour) does not invalidate recorded results."""
    values = {"method.name": cfg.method.NAME, **_non_defaults(cfg)}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan(methods, ratios, seeds, selections, dataset="colored_mnist", overrides=()) -> List[RunSpec]:
    """The grid, each config resolved up front so that bad input fails before any training."""
    specs = []
    for method in methods:
        METHODS.get(method)
        for ratio in ratios:
            for seed in seeds:
                for selection in selections:
                    spec = RunSpec(method, ratio, seed, selection, dataset)
                    load_config(preset_for(method, dataset), spec.overrides(overrides))
                    specs.append(spec)
    return specs


def _run_one(spec: RunSpec, overrides: List[str], out: str, threads: int, start_from: Optional[str] = None) -> dict:
    """One run in a worker process; returns its record for the parent to append."""
    import torch

    from .training import train

    torch.set_num_threads(threads)
    cfg = load_config(preset_for(spec.method, spec.dataset), spec.overrides(overrides))
    run_dir = Path(out) / "runs" / spec.key
    # run_benchmark left this folder only if it is an unfinished run of this config: go on with it.
    results = train(cfg, run_dir, quiet=True, preset=preset_for(spec.method, spec.dataset), start_from=start_from,
                    resume=run_dir.is_dir())
    return _record(spec, results, config_hash(cfg), run_dir)


def _record(spec: RunSpec, results: dict, cfg_hash: str, run_dir: Path) -> dict:
    deployed = results["deployed"]
    return {
        "key": spec.key, "method": spec.method, "variant": spec.variant, "dataset": spec.dataset, "ratio": spec.ratio,
        "seed": spec.seed, "selection": spec.selection, "deployed": deployed,
        "uses_bias_labels": results["uses_bias_labels"], "test": results["test"][deployed],
        "branches": results["test"], "selected_epochs": results["selected_epochs"],
        "wall_time_s": results["wall_time_s"], "config_hash": cfg_hash, "run_dir": str(run_dir),
        "oracle_view": results.get("oracle_view"), "device": results["machine"].get("gpu", results["machine"]["device"]),
        "warnings": results.get("warnings", []),
        **({"estimate": results["estimate"]} if results.get("estimate") else {}),
        **({"restarts": results["restarts"]} if results.get("restarts") else {}),
        **({"continued_from": _twin(spec, "last").key} if "started_from" in results else {}),
    }


def _recover(spec: RunSpec, run_dir: Path, cfg_hash: str) -> Optional[dict]:
    """The record of a run that finished but was never appended (its parent was killed first)."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
        cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    except (OSError, ValueError, yaml.YAMLError, ConfigError):
        return None
    if config_hash(cfg) != cfg_hash:
        return None
    return _record(spec, results, cfg_hash, run_dir)


def _resumable(run_dir: Path, cfg_hash: str) -> bool:
    """An unfinished run of this config, which `train(..., resume=True)` goes on with."""
    status = read_status(run_dir)
    try:
        cfg = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    except (OSError, ValueError, yaml.YAMLError, ConfigError):
        return False
    return status is not None and status["status"] != "complete" and config_hash(cfg) == cfg_hash


def read_records(out: Path) -> List[dict]:
    """The records of `out/results.jsonl`. A torn last line (the writer was killed mid-line) is dropped
    with a warning, and its run is recovered from its folder or run again; a torn line elsewhere is an error."""
    path = Path(out) / "results.jsonl"
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except ValueError:
            if i < len(lines) - 1:
                raise RunFolderError(f"{path} line {i + 1} is not JSON; mend or delete that line and rerun") from None
            warnings.warn(f"{path}: skipped a torn last line (a run was killed while writing it)", stacklevel=2)
    return records


def _drop_torn_tail(path: Path) -> None:
    """Cut a torn last line off results.jsonl before appending to it (under the folder's lock)."""
    if not path.is_file():
        return
    text = path.read_text()
    lines = text.splitlines(True)
    if lines and not _is_json(lines[-1]):
        warnings.warn(f"{path}: dropped a torn last line (a run was killed while writing it); "
                      "that run is recovered from its folder or run again", stacklevel=2)
        write_text_atomic(path, "".join(lines[:-1]))


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return not line.strip()
    return True


@contextlib.contextmanager
def folder_lock(out: Path):
    """One benchmark per folder: a second one on the same --out would run and record the same runs twice."""
    handle = open(out / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunFolderError(f"another benchmark is running in {out}; wait for it to finish or use another --out") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def run_benchmark(out: Path, specs: List[RunSpec], overrides: Sequence[str] = (), workers: int = 1,
                  quiet: bool = False) -> List[dict]:
    """Run what is missing from `out/results.jsonl`, then write the tables and plot."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        return _run_benchmark(out, specs, overrides, workers, quiet)


def _run_benchmark(out: Path, specs: List[RunSpec], overrides, workers: int, quiet: bool) -> List[dict]:
    meta = {"overrides": list(overrides)}
    meta_path = out / "benchmark.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()) != meta:
        raise RunFolderError(
            f"{out} holds a benchmark with other overrides ({json.loads(meta_path.read_text())['overrides']}); "
            "use another --out or the same overrides"
        )
    meta_path.write_text(dumps(meta))
    _drop_torn_tail(out / "results.jsonl")
    records = read_records(out)
    done = {r["key"]: r for r in records}
    todo, hashes, recovered = [], {}, []
    for spec in specs:
        hashes[spec.key] = config_hash(load_config(preset_for(spec.method, spec.dataset), spec.overrides(overrides)))
        if spec.key in done:
            if done[spec.key]["config_hash"] != hashes[spec.key]:
                raise RunFolderError(
                    f"{out}/results.jsonl holds {spec.key} from a different config; use another --out"
                )
            continue
        partial = out / "runs" / spec.key
        found = _recover(spec, partial, hashes[spec.key]) if partial.is_dir() else None
        if found is not None:
            recovered.append(found)
            continue
        todo.append(spec)
        if partial.exists() and not _resumable(partial, hashes[spec.key]):  # nothing it holds can be used
            shutil.rmtree(partial)
    # An oracle run whose `last` twin is planned or done waits for it: training does not depend on
    # selection, so the last run either holds the oracle numbers (`oracle_view`: every phase before the
    # last one would have kept the same epoch) or the state from which the oracle run goes on.
    planned = {s.key for s in todo} | set(done) | {r["key"] for r in recovered}
    waiting = {_twin(s, "last").key: s for s in todo if s.selection == "oracle" and _twin(s, "last").key in planned}
    jobs = deque((s, None) for s in todo if s not in waiting.values())
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))

    def resolve(last: dict) -> None:
        """The oracle twin of a finished `last` run: read off it, or queued first to continue from it."""
        spec = waiting.pop(last["key"], None)
        if spec is None:
            return
        derived = _derive_oracle(last, spec, hashes[spec.key])
        if derived is not None:
            _collect([derived], log, records, bar)
            return
        start = out / "runs" / last["key"] / "checkpoints" / "oracle_start.pt"
        jobs.appendleft((spec, str(start) if start.is_file() else None))

    def land(record: dict) -> None:
        _collect([record], log, records, bar)
        resolve(record)

    with open(out / "results.jsonl", "a") as log, tqdm(total=len(todo) + len(recovered), desc="runs", unit="run", disable=quiet) as bar:
        for record in recovered:
            land(record)
        for key in [k for k in waiting if k in done]:
            resolve(done[key])
        _execute(jobs, overrides, out, threads, workers, land, hashes)
    write_reports(out, records)
    return records


def _twin(spec: RunSpec, selection: str) -> RunSpec:
    return dataclasses.replace(spec, selection=selection)


def _derive_oracle(last: dict, spec: RunSpec, cfg_hash: str):
    """The oracle record read off a finished `last` run, or None where that run cannot give it."""
    view = last.get("oracle_view")
    if view is None:
        return None
    return {**{k: v for k, v in last.items() if k != "oracle_view"}, "key": spec.key, "selection": "oracle",
            "test": view["test"][last["deployed"]], "branches": view["test"], "selected_epochs": view["selected_epochs"],
            "config_hash": cfg_hash, "derived_from": last["key"], "wall_time_s": 0.0}


def _execute(jobs: deque, overrides, out: Path, threads: int, workers: int, land, hashes: Dict[str, str]) -> None:
    """Run `jobs` ((spec, start_from) pairs, which `land` may extend) and land each record."""
    running: Dict[int, tuple] = {}
    # SIGTERM (a scheduler, `kill`, `timeout`) takes Ctrl-C's path, so the workers are stopped too.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    try:
        if workers <= 1:
            while jobs:
                spec, start = jobs.popleft()
                land(_run_one(spec, list(overrides), str(out), threads, start))
        else:
            _run_in_processes(jobs, overrides, out, threads, workers, running, land, hashes)
    except BaseException:
        for process, _ in running.values():
            process.kill()
        for process, _ in running.values():
            process.join()
        print(f"stopped: finished runs are recorded in {out / 'results.jsonl'}; "
              "the same command continues from there", file=sys.stderr)
        raise
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


def _run_in_processes(jobs: deque, overrides, out: Path, threads: int, workers: int, running: Dict[int, tuple],
                      land, hashes: Dict[str, str]) -> None:
    """One process per run, `workers` at a time; each leaves its results in its run folder.

    No queue or pool is shared with the workers, so killing them (Ctrl-C, a failed run, a scheduler's
    SIGTERM to the whole process group) can never leave a lock held that the parent then waits on:
    that is how a multiprocessing Pool hung when a signal killed one of its idle workers.
    """
    context = get_context("spawn")
    while jobs or running:
        while jobs and len(running) < workers:
            spec, start = jobs.popleft()
            process = context.Process(target=_worker, args=(spec, list(overrides), str(out), threads, start), daemon=True)
            process.start()
            running[process.sentinel] = (process, spec)
        for sentinel in wait(list(running)):
            process, spec = running.pop(sentinel)
            process.join()
            run_dir = Path(out) / "runs" / spec.key
            record = _recover(spec, run_dir, hashes[spec.key]) if process.exitcode == 0 else None
            if record is None:
                raise RunFolderError(f"run {spec.key} failed (exit code {process.exitcode}); its error is printed above, "
                                     f"its folder is {run_dir}")
            land(record)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _worker(*job) -> None:
    """Ctrl-C and SIGTERM are the parent's to handle: it stops every worker at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    _run_one(*job)


def _die_with_parent() -> None:
    """A parent killed outright (SIGKILL, out of memory) cannot stop its workers: on Linux the kernel
    does it (PR_SET_PDEATHSIG); their runs resume with the next benchmark."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent was gone before the call
        os._exit(1)


def _collect(finished, log, records, bar) -> None:
    for record in finished:
        log.write(dumps(record) + "\n")
        log.flush()
        records.append(record)
        bar.set_postfix_str(f"{record['key']}: {record['test']['unbiased']:.2f}")
        bar.update()


def _mean_std(values: List[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:  # one seed has no spread to report
        return f"{values[0]:.2f} (n=1)"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} (n={len(values)})"


def summarize_records(records: List[dict], metric: str = "unbiased") -> Dict[tuple, Dict[str, List[float]]]:
    """(method, ratio) -> selection -> values over seeds."""
    table: Dict[tuple, Dict[str, List[float]]] = {}
    for r in records:
        value = r["test"].get(metric)
        if value is not None and not math.isnan(value):
            table.setdefault((r["method"], r["ratio"]), {}).setdefault(r["selection"], []).append(value)
    return table


def write_ablation_report(out: Path, name: str, records: List[dict]) -> None:
    """Conflicting / aligned accuracy per variant and branch, mean ± std over seeds, beside the paper."""
    ab, paper = ABLATIONS[name], paper_reference().get(name, {})
    rows = []
    for variant in ab["variants"]:
        runs = [r for r in records if r.get("variant") == variant]
        row = {"variant": variant, "seeds": len(runs)}
        for pred in ab["predictors"]:
            for metric in ("conflicting", "aligned"):
                row[f"{pred} {metric}"] = _mean_std([r["branches"][pred][metric] for r in runs]).split(" (")[0]
        row["paper"] = paper.get(variant, "")
        rows.append(row)
    header = list(rows[0])
    md = [f"# Ablation {name} (Colored MNIST, {ab['ratios'][0] * 100:g}% conflicting, selection: last epoch)", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
          *("| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows), ""]
    (out / f"{name}.md").write_text("\n".join(md))
    (out / f"{name}.json").write_text(dumps(rows, indent=1))


def write_reports(out: Path, records: List[dict]) -> None:
    records = [r for r in records if not r.get("variant")]
    if not records:
        return
    paper = paper_reference()
    dataset = records[0]["dataset"]
    methods = list(dict.fromkeys(r["method"] for r in records))
    ratios = sorted({r["ratio"] for r in records})
    selections = [s for s in SELECTIONS if any(r["selection"] == s for r in records)]
    label_users = {r["method"] for r in records if r["uses_bias_labels"]}
    table = summarize_records(records)
    rows = []
    for method in methods:
        for ratio in ratios:
            cells = table.get((method, ratio), {})
            ref = paper.get(dataset, {}).get(method, {}).get(f"{ratio:g}")
            rows.append({
                "method": method + (" (bias labels)" if method in label_users else ""),
                "ratio_pct": f"{ratio * 100:g}",
                **{f"ours_{s}": _mean_std(cells.get(s, [])) for s in selections},
                "paper": "" if ref is None else (f"{ref[0]:.2f}" + ("" if ref[1] is None else f" ± {ref[1]:.2f}")),
            })
    with open(out / "table.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = list(rows[0])
    md = [
        f"# {dataset}: unbiased test accuracy (%), mean ± std over seeds",
        "",
        "Selection protocols: `proxy` = best mean accuracy over (class, bias-proxy prediction) groups on a "
        "held-out training split (label-free, the default); `last` = last epoch (label-free); "
        "`val` = plain accuracy on a held-out training split (label-free); "
        "`oracle` = best test-split metric using bias labels (the official code's protocol, which the paper's "
        "numbers used). The paper column is Table 1 of the paper.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows),
        "",
    ]
    for selection in selections:  # the paper's layout: a row per method, a column per ratio
        md += [f"## `{selection}` by ratio, the paper's Table 1 in brackets", "",
               "| method | " + " | ".join(f"{r * 100:g}%" for r in ratios) + " |", "|---|" + "---|" * len(ratios)]
        for method in methods:
            cells = []
            for ratio in ratios:
                values = table.get((method, ratio), {}).get(selection, [])
                ref = paper.get(dataset, {}).get(method, {}).get(f"{ratio:g}")
                cell = _mean_std(values) if values else "–"
                cells.append(cell + ("" if ref is None else f" [{ref[0]:.2f}]"))
            md.append(f"| {method}{' (bias labels)' if method in label_users else ''} | " + " | ".join(cells) + " |")
        md.append("")
    md += estimate_report(records)
    warned = [r for r in records if r.get("warnings")]
    if warned:  # label-free checks a method made of its own run (e.g. DeNetDM's stage-1 split)
        md += ["## Runs with warnings", "", *(f"- `{r['key']}`: {w}" for r in warned for w in r["warnings"]), ""]
    restarted = [r for r in records if r.get("restarts")]
    if restarted:  # phases trained again from fresh weights after such a warning (opt-in)
        md += ["## Runs with restarted phases", "",
               *(f"- `{r['key']}`: {phase} restarted {len(why)}x; {why[0]}" for r in restarted
                 for phase, why in r["restarts"].items()), ""]
    (out / "table.md").write_text("\n".join(md))
    plot(out / "accuracy_vs_ratio.png", table, methods, ratios, selections, paper.get(dataset, {}))


def estimate_error(record: dict, metric: str) -> Optional[float]:
    """Label-free estimate minus the true test value of `metric` (None without both)."""
    est, true = (record.get("estimate") or {}).get(metric), record["test"].get(metric)
    if est is None or true is None or math.isnan(est) or math.isnan(true):
        return None
    return est - true


def estimate_report(records: List[dict]) -> List[str]:
    """Each run's label-free estimate beside the true test value, and the error distribution."""
    rows = [r for r in records if r.get("estimate")]
    if not rows:
        return []
    md = ["## Label-free estimates against the truth (test split: class labels, groups from the bias proxy, "
          "no bias labels)", "",
          "| run | proxy | est. unbiased | test unbiased | error | est. conflicting | test conflicting | error |",
          "|---|---|---|---|---|---|---|---|"]

    def cell(value):
        return "–" if value is None or math.isnan(value) else f"{value:.2f}"

    for r in rows:
        est, test = r["estimate"], r["test"]
        md.append(f"| `{r['key']}` | {est['proxy']} | {cell(est.get('unbiased'))} | {cell(test.get('unbiased'))} | "
                  f"{cell(estimate_error(r, 'unbiased'))} | {cell(est.get('conflicting'))} | "
                  f"{cell(test.get('conflicting'))} | {cell(estimate_error(r, 'conflicting'))} |")
    for metric in ("unbiased", "conflicting"):
        errors = [e for e in (estimate_error(r, metric) for r in rows) if e is not None]
        if errors:
            md.append(f"\nError of the {metric} estimate over {len(errors)} runs: mean {statistics.fmean(errors):+.2f}, "
                      f"mean absolute {statistics.fmean(abs(e) for e in errors):.2f}, range {min(errors):+.2f} to "
                      f"{max(errors):+.2f}; within 3 points: {sum(abs(e) <= 3 for e in errors)}/{len(errors)}.")
    return md + [""]


def plot(path: Path, table, methods, ratios, selections, paper) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"proxy": "-", "last": (0, (1, 1)), "val": "-.", "oracle": "--"}
    for i, method in enumerate(methods):
        colour = f"C{i}"
        for s in selections:
            xs = [r * 100 for r in ratios if table.get((method, r), {}).get(s)]
            ys = [statistics.fmean(table[(method, r)][s]) for r in ratios if table.get((method, r), {}).get(s)]
            if xs:
                ax.plot(xs, ys, linestyle=styles[s], color=colour, marker="o", label=f"{method} ({s})")
        ref = [(float(k) * 100, v[0]) for k, v in sorted(paper.get(method, {}).items(), key=lambda kv: float(kv[0]))]
        if ref:
            ax.plot(*zip(*ref), ":", color=colour, marker="x", alpha=0.6, label=f"{method} (paper)")
    ax.set_xscale("log")
    ax.set_xticks([r * 100 for r in ratios], [f"{r * 100:g}" for r in ratios])
    ax.set_xticks([], minor=True)  # only the ratios run, no log-scale minor labels between them
    ax.set_xlabel("bias-conflicting training samples (%)")
    ax.set_ylabel("unbiased test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_list(text: str, kind, name: str) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{name} must be a comma-separated list, got {text!r}") from None
