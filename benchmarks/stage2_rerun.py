"""Train DeNetDM's stage 2 again, under new settings, from the stage 1 of finished benchmark runs.

Stage 1 is two thirds of a Colored MNIST run's time and a stage-2 setting does not change it, so a
stage-2 recipe can be measured on the very stage 1s a committed folder already holds: each run's
`checkpoints/stage1.pt` (its selected stage-1 weights), stage-1 metric records, restarts, split
check and selection are carried over, and only stage 2 trains, with the source config plus the
overrides given here, which may touch stage-2 settings only. The new folder has the layout of a
`denetdm benchmark` folder (runs/, results.jsonl, table.md); each record names its source run. Run
again with the same arguments, it goes on: finished runs are kept, unfinished ones trained again.
Stage 2 draws its data order afresh, so the numbers match a full run of the new recipe in
distribution, not bit for bit.

    python benchmarks/stage2_rerun.py SOURCE_FOLDER --out NEW_FOLDER --workers 2 method.stage2.ema=0.999

It needs the source runs' checkpoints, which are not in git.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
from pathlib import Path

import torch
import yaml

from denetdm.benchmark import RunSpec, _record, config_hash, read_records
from denetdm.checkpoints import load_checkpoint
from denetdm.config import config_from_dict, parse_overrides, to_yaml
from denetdm.config import _merge  # one merge rule for presets, overrides and this script
from denetdm.data import create_dataset
from denetdm.errors import ConfigError
from denetdm.fileio import write_text_atomic
from denetdm.methods import create_method
from denetdm.reports import write_reports
from denetdm.training import RunState, Trainer, run_in_folder, seed_everything, setup_runtime

# The only keys an override may set: stage 1 never reads them.
STAGE2_KEYS = ("method.stage2.", "method.target.", "method.distill_weight", "method.distill_weight_candidates",
               "method.temperature", "method.poe_weight", "method.stage2_oracle_metric", "method.deep_bn_drift",
               "estimate.", "threads")


def check_overrides(items):
    for item in items:
        key = item.split("=", 1)[0]
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in STAGE2_KEYS):
            raise ConfigError(f"{key} is read by stage 1 (or is not a stage-2 key); this script retrains stage 2 only: "
                              f"override one of {', '.join(STAGE2_KEYS)}")


def rerun(source: Path, out: Path, overrides):
    """Stage 2 of `overrides` on the stage 1 of the finished run in `source`; returns its config and results."""
    raw = _merge(yaml.safe_load((source / "config.yaml").read_text()), parse_overrides(overrides))
    cfg = config_from_dict(raw)
    if cfg.method.NAME != "denetdm":
        raise ConfigError(f"{source} is a {cfg.method.NAME} run; only DeNetDM has a stage 1 to reuse")
    torch.set_num_threads(cfg.threads or 1)
    device = setup_runtime(cfg)
    seed_everything(cfg.seed)
    splits = create_dataset(cfg.data, with_val=True, progress=False).to(device)
    model = create_method(cfg, splits.train.input_shape, splits.train.num_classes, len(splits.train)).to(device)
    stage1 = load_checkpoint(source / "checkpoints" / "stage1.pt")
    model.load_state_dict(stage1["state_dict"])
    before = json.loads((source / "results.json").read_text())
    (out / "checkpoints").mkdir(parents=True)
    write_text_atomic(out / "config.yaml", to_yaml(cfg))
    kept = [line for line in (source / "metrics.jsonl").read_text().splitlines(True)
            if json.loads(line)["phase"] == "stage1"]
    model.phase_warnings("stage1", before["train_fit"]["stage1"])  # the method's view of its split, as it ended
    run = RunState(selected={"stage1": stage1["selected_epoch"]}, finished=["stage1"],
                   scores={k: v for k, v in before.get("selection_scores", {}).items() if k == "stage1"},
                   train_fit={"stage1": before["train_fit"]["stage1"]},
                   warnings=[w for w in before["warnings"] if w.startswith("stage 1")],
                   restarts={k: v for k, v in before.get("restarts", {}).items() if k == "stage1"},
                   candidates={k: v for k, v in before.get("candidates", {}).items() if k == "stage1"},
                   elapsed_s=float(json.loads(kept[-1])["time_s"]))
    trainer = Trainer(cfg, out, True, before["preset"], splits, model, device, None, None)
    trainer.run_state = run
    results = run_in_folder(trainer, {"stage1_from": str(source)})
    # The trainer starts a log of its own: the stage-1 records go first. The run counts as finished only
    # once its record is in results.jsonl (after this), so a kill here means it is trained again.
    log = out / "metrics.jsonl"
    write_text_atomic(log, "".join(kept) + log.read_text())
    return cfg, results


def job(args):
    record, source, out, overrides = args
    spec = RunSpec(record["method"], record["ratio"], record["seed"], record["selection"], record["dataset"])
    run_dir, source_run = out / "runs" / spec.key, source / "runs" / record["key"]
    cfg, results = rerun(source_run, run_dir, overrides)
    return {**_record(spec, results, config_hash(cfg), run_dir), "stage1_from": str(source_run)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a benchmark folder whose DeNetDM runs kept their checkpoints")
    parser.add_argument("--out", required=True, help="a new folder")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keys", default="", help="comma-separated run keys to take (default: every DeNetDM run)")
    parser.add_argument("overrides", nargs="*", help="stage-2 settings, key=value")
    args = parser.parse_intermixed_args()
    try:
        check_overrides(args.overrides)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    source, out = Path(args.source), Path(args.out)
    plan = {"stage1_from": str(source), "overrides": args.overrides}
    if out.exists():  # go on with a folder of this script, source and overrides; anything else is left alone
        try:
            same = json.loads((out / "benchmark.json").read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            sys.exit(f"error: {out} exists and is not a stage-2 rerun of {source} with these overrides; "
                     "choose a new --out (nothing is overwritten)")
    keys = [k for k in args.keys.split(",") if k]
    records = [r for r in read_records(source) if r["method"] == "denetdm" and (not keys or r["key"] in keys)]
    records.sort(key=lambda r: keys.index(r["key"]) if keys else 0)  # in the order asked for
    if not records:
        sys.exit(f"error: no DeNetDM run{' of ' + args.keys if keys else ''} in {source}/results.jsonl")
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(plan, indent=2))
    finished = {r["key"] for r in read_records(out)} if (out / "results.jsonl").exists() else set()
    todo = [r for r in records if r["key"] not in finished]
    for record in todo:  # an interrupted rerun of this folder starts again
        if (out / "runs" / record["key"]).exists():
            shutil.rmtree(out / "runs" / record["key"])
            print(f"{record['key']}: unfinished, trained again", flush=True)
    with mp.get_context("spawn").Pool(args.workers) as pool, open(out / "results.jsonl", "a") as log:
        for record in pool.imap_unordered(job, [(r, source, out, args.overrides) for r in todo]):
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(f"{record['key']}: {record['test']['unbiased']:.2f} unbiased", flush=True)
    write_reports(out, read_records(out))


if __name__ == "__main__":
    main()
