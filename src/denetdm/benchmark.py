"""Methods x conflicting ratios x seeds x selection protocols, run in worker processes, as submitit
jobs, or by the `denetdm train` commands it prints.

Every finished run appends one record to `results.jsonl` in the output folder; a run
whose record is there is never run again, so an interrupted benchmark continues where
it stopped. Tables (Markdown, CSV) and a plot (`reports`) put our mean +- std beside the paper's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from tqdm.auto import tqdm

from .checkpoints import read_status
from .config import config_from_dict, load_config
from .errors import ConfigError, RunFolderError, one_line
from .fileio import dumps, write_text_atomic
from .data.spec import dataset_keys
from .methods.base import OptimConfig
from .methods.registry import METHODS
from .reports import write_reports

# Datasets in the Colored MNIST format (3 x 28 x 28, ten classes and bias values) that run on its presets.
ON_COLORED_MNIST_PRESETS = ("mnist_background", "mnist_patch", "mnist_stripes", "mnist_corruption")


DEFAULT_RATIOS = (0.005, 0.01, 0.02, 0.05)


def preset_for(method: str, dataset: str) -> str:
    """DeNetDM's preset carries the dataset's name; every other method prefixes its own."""
    dataset = "colored_mnist" if dataset in ON_COLORED_MNIST_PRESETS else dataset
    return dataset if method == "denetdm" else f"{method}_{dataset}"


def headline_metric(dataset: str) -> str:
    """What the dataset's tables report: the test metric DeNetDM's preset selects stage 2 by under
    `oracle` (worst group on Waterbirds and CelebA, conflicting on BFFHQ, plain accuracy on BAR)."""
    return load_config(preset_for("denetdm", dataset)).method.stage2_oracle_metric


def preset_dataset(dataset: str) -> str:
    """The registered dataset that `--dataset` (a dataset or a preset name such as custom_arrays) trains on."""
    return dataset if dataset in ON_COLORED_MNIST_PRESETS else load_config(preset_for("denetdm", dataset)).data.name


@dataclass(frozen=True)
class RunSpec:
    method: str
    ratio: Optional[float]  # None: the dataset fixes its own (Waterbirds, CelebA, your own files)
    seed: int
    selection: str
    dataset: str = "colored_mnist"
    variant: str = ""  # an ablation's named setting, applied after the common overrides
    variant_overrides: tuple = ()
    epochs: int = 0  # > 0: every phase shortened to at most this many epochs (schedule_overrides)

    @property
    def key(self) -> str:
        name = f"{self.method}-{self.variant}" if self.variant else self.method
        ratio = "" if self.ratio is None else f"_r{self.ratio:g}"
        return f"{name}{ratio}_s{self.seed}_{self.selection}"

    def overrides(self, extra: Sequence[str]) -> List[str]:
        data = [f"data.name={self.dataset}"] if self.dataset in ON_COLORED_MNIST_PRESETS else []
        data += [] if self.ratio is None else [f"data.ratio={self.ratio}"]
        schedule = schedule_overrides(self.method, self.dataset, self.epochs) if self.epochs else []
        return [*data, f"seed={self.seed}", f"selection={self.selection}", *schedule, *extra, *self.variant_overrides]


def schedule_overrides(method: str, dataset: str, epochs: int) -> List[str]:
    """Every phase of the method's preset on `dataset` cut to at most `epochs` epochs (a phase already
    shorter, such as JTT's one identification epoch, is kept); step-counted settings (DFA's and LC's
    swap start and learning-rate decay) scaled with their phase, so they fall at the same share of it."""
    cfg = load_config(preset_for(method, dataset)).method
    out = []
    for f in dataclasses.fields(cfg):
        optim = getattr(cfg, f.name)
        if isinstance(optim, OptimConfig) and optim.epochs > epochs:
            out.append(f"method.{f.name}.epochs={epochs}")
            out += [f"method.{k}={max(1, round(getattr(cfg, k) * epochs / optim.epochs)) if getattr(cfg, k) else 0}"
                    for k in cfg.STEP_COUNTED]
    return out


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


def plan(methods, ratios, seeds, selections, dataset="colored_mnist", overrides=(), epochs=0) -> List[RunSpec]:
    """The grid, each config resolved up front so that bad input fails before any training. `ratios`
    None: the paper's four where the dataset has a conflicting ratio to set, else the dataset's own."""
    if "ratio" not in dataset_keys(preset_dataset(dataset)):
        if ratios is not None:
            raise ConfigError(f"dataset {dataset!r} fixes its own bias ratio; drop --ratios")
        ratios = [None]
    specs = []
    for method in methods:
        METHODS.get(method)
        for ratio in ratios or DEFAULT_RATIOS:
            for seed in seeds:
                for selection in selections:
                    spec = RunSpec(method, ratio, seed, selection, dataset, epochs=epochs)
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
        **({"candidates": results["candidates"]} if results.get("candidates") else {}),
        **({"continued_from": _twin(spec, "last").key} if "started_from" in results else {}),
        **({"headline": headline} if (headline := headline_metric(spec.dataset)) != "unbiased" else {}),
    }


def _same_config(run_dir: Path, cfg_hash: str) -> bool:
    """Whether the run folder's config.yaml is readable and is this config."""
    try:
        return config_hash(config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))) == cfg_hash
    except (OSError, ValueError, yaml.YAMLError, ConfigError):
        return False


def _recover(spec: RunSpec, run_dir: Path, cfg_hash: str) -> Optional[dict]:
    """The record of a run that finished but was never appended (its parent was killed first)."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return _record(spec, results, cfg_hash, run_dir) if _same_config(run_dir, cfg_hash) else None


def _resumable(run_dir: Path, cfg_hash: str) -> bool:
    """An unfinished run of this config, which `train(..., resume=True)` goes on with."""
    status = read_status(run_dir)
    return status is not None and status["status"] != "complete" and _same_config(run_dir, cfg_hash)


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


LAUNCHERS = ("local", "submitit", "print")


def run_benchmark(out: Path, specs: List[RunSpec], overrides: Sequence[str] = (), workers: int = 1,
                  quiet: bool = False, launcher: str = "local", cluster: Optional[str] = None,
                  slurm: Optional[dict] = None) -> List[dict]:
    """Run what is missing from `out/results.jsonl`, then write the tables and plot.

    `launcher`: `local` trains here, `workers` processes at once; `submitit` submits a job per run
    (SLURM, or `cluster="local"`; `slurm`: submitit's parameters) and waits for them; `print` trains
    nothing and prints a `denetdm train` line per pending run. Either way only this process writes
    `results.jsonl`, landing each run from its folder, so the same command continues any of them.
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher {launcher!r}; choose one of: {', '.join(LAUNCHERS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        executor = _submitit_executor(out, cluster, slurm or {}) if launcher == "submitit" else None
        return _run_benchmark(out, specs, overrides, workers, quiet, launcher, executor)


def _run_benchmark(out: Path, specs: List[RunSpec], overrides, workers: int, quiet: bool, launcher: str,
                   executor) -> List[dict]:
    epochs = {s.epochs for s in specs} - {0}
    meta = {"overrides": list(overrides), **({"epochs": sorted(epochs)} if epochs else {})}
    meta_path = out / "benchmark.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()) != meta:
        raise RunFolderError(
            f"{out} holds a benchmark with other overrides or --epochs ({json.loads(meta_path.read_text())}); "
            "use another --out or the same settings"
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

    with open(out / "results.jsonl", "a") as log, tqdm(total=len(todo) + len(recovered), desc="runs", unit="run",
                                                     disable=quiet or launcher == "print") as bar:
        for record in recovered:
            land(record)
        for key in [k for k in waiting if k in done]:
            resolve(done[key])
        if launcher == "print":
            _print_commands(jobs, overrides, out, waiting)
        else:
            _execute(jobs, overrides, out, threads, workers, land, hashes, executor)
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


def _print_commands(jobs: deque, overrides, out: Path, waiting: Dict[str, RunSpec]) -> None:
    """The `print` launcher: one `denetdm train` line per pending run on stdout, for a scheduler of your
    own; rerunning the benchmark then lands them from their folders. An oracle twin of a `last` run not
    trained yet is left out: only that run's results tell whether it is derived (no training) or
    continued from its `oracle_start.pt`, which a rerun with `print` then prints with --start-from."""
    for spec, start in jobs:
        print(_train_command(spec, overrides, out, start), flush=True)
    if jobs or waiting:
        twins = f"; {len(waiting)} oracle runs wait for their last runs and are derived or printed then" if waiting else ""
        print(f"{len(jobs)} runs to train: run the lines above, then rerun this benchmark to collect them{twins}",
              file=sys.stderr)


def _train_command(spec: RunSpec, overrides, out: Path, start: Optional[str] = None) -> str:
    """The `denetdm train` line that trains `spec` into its run folder as `_run_one` does: the same
    preset and overrides, so the same config; a folder run_benchmark left is resumed."""
    run_dir = Path(out).resolve() / "runs" / spec.key
    args = (["--resume", str(run_dir)] if run_dir.is_dir() else
            ["--preset", preset_for(spec.method, spec.dataset), "--out", str(run_dir), *spec.overrides(overrides)])
    return shlex.join(["denetdm", "train", "-q", *(["--start-from", str(Path(start).resolve())] if start else []), *args])


def _submitit_executor(out: Path, cluster: Optional[str], params: dict):
    """submitit's executor, its job files and logs in `out/submitit`: SLURM where `sbatch` is found
    unless `cluster` says otherwise ("local": processes here, for tests); `params` such as timeout_min,
    slurm_partition, gpus_per_node, cpus_per_task, mem_gb."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher submitit needs submitit: pip install 'denetdm[cluster]'") from None
    try:
        executor = submitit.AutoExecutor(folder=out / "submitit", cluster=cluster)
        executor.update_parameters(**params)
    except (NameError, ValueError, TypeError, AssertionError, RuntimeError) as exc:  # submitit's own checks
        raise ConfigError(f"submitit refused cluster={cluster} {params}: {one_line(exc)}") from None
    return executor


def _execute(jobs: deque, overrides, out: Path, threads: int, workers: int, land, hashes: Dict[str, str],
             executor=None) -> None:
    """Run `jobs` ((spec, start_from) pairs, which `land` may extend) and land each record: in worker
    processes, or as jobs of a submitit `executor`."""
    running: Dict[object, tuple] = {}
    # SIGTERM (a scheduler, `kill`, `timeout`) takes Ctrl-C's path, so the workers are stopped too.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    try:
        if executor is not None:
            _run_in_submitit(jobs, overrides, out, running, land, hashes, executor)
        elif workers <= 1:
            while jobs:
                spec, start = jobs.popleft()
                land(_run_one(spec, list(overrides), str(out), threads, start))
        else:
            _run_in_processes(jobs, overrides, out, threads, workers, running, land, hashes)
    except BaseException:
        if executor is not None:
            for job, _ in running.values():
                job.cancel(check=False)
        else:
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
            _land_from_folder(spec, out, hashes, land, process.exitcode == 0,
                              f"exit code {process.exitcode}; its error is printed above")


def _run_in_submitit(jobs: deque, overrides, out: Path, running: Dict[object, tuple], land, hashes: Dict[str, str],
                     executor, poll_s: float = 1.0) -> None:
    """Every pending run submitted at once as a job of its own (the scheduler spreads them), and each
    oracle continuation as soon as its `last` run lands; the jobs write only their run folders."""
    here = str(Path(out).resolve())
    while jobs or running:
        while jobs:
            spec, start = jobs.popleft()
            executor.update_parameters(name=spec.key)
            job = executor.submit(_submitted, spec, list(overrides), here, str(Path(start).resolve()) if start else None)
            running[job.job_id] = (job, spec)
        finished = [job_id for job_id, (job, _) in running.items() if job.done()]
        for job_id in finished:
            job, spec = running.pop(job_id)
            _land_from_folder(spec, out, hashes, land, job.exception() is None,
                              f"submitit job {job.job_id}; its log is {job.paths.stderr}")
        if not finished:
            time.sleep(poll_s)


def _submitted(spec: RunSpec, overrides: List[str], out: str, start: Optional[str]) -> None:
    """A submitit job: one run into its folder, on the CPUs the scheduler gave it."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    _run_one(spec, overrides, out, cpus, start)


def _land_from_folder(spec: RunSpec, out: Path, hashes: Dict[str, str], land, ok: bool, where: str) -> None:
    """Land a run a worker or job finished from its folder; `where` says where a failure's error is."""
    run_dir = Path(out) / "runs" / spec.key
    record = _recover(spec, run_dir, hashes[spec.key]) if ok else None
    if record is None:
        raise RunFolderError(f"run {spec.key} failed ({where}); its folder is {run_dir}")
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
        test = record["test"]  # the headline where the test split has bias labels, else plain accuracy
        bar.set_postfix_str(f"{record['key']}: {test.get(record.get('headline', 'unbiased'), test['accuracy']):.2f}")
        bar.update()


def parse_params(items: Sequence[str], name: str) -> dict:
    """KEY=VALUE options, values read as YAML (60 a number, gpu a string)."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--{name} takes KEY=VALUE, got {item!r}")
        try:
            params[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--{name} {item!r}: the value is not valid YAML") from None
    return params


def parse_list(text: str, kind, name: str) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{name} must be a comma-separated list, got {text!r}") from None
