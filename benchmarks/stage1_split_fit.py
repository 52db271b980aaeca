"""Does a label-free number tell a failed DeNetDM stage 1 from a good one? (Colored MNIST grid.)

For every DeNetDM run of a `denetdm benchmark` folder, read its selected stage-1 state (the `last`
run's `stage1.pt`; for the oracle protocol the `oracle_start.pt` that the oracle twin continued from)
and measure how well the deep branch, the shallow branch and their product of experts fit the
training labels (no bias labels), next to the run's bias-labelled test numbers. DeNetDM warns when the
deep branch alone fits under `SPLIT_WARN_BELOW` percent. Writes benchmarks/results/stage1_split_fit.json.
The run folders are not committed, so this runs where the grid was trained.

    python benchmarks/stage1_split_fit.py [--grid benchmarks/results/cmnist_table1]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from denetdm.benchmark import read_records
from denetdm.methods.denetdm import SPLIT_WARN_BELOW
from denetdm.training import evaluate_checkpoint

HERE = Path(__file__).resolve().parent
STAGE1 = {"last": "stage1.pt", "oracle": "oracle_start.pt"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=str(HERE / "results" / "cmnist_table1"))
    parser.add_argument("--out", default=str(HERE / "results" / "stage1_split_fit.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = Path(args.grid)
    rows = []
    records = sorted((r for r in read_records(grid) if r["method"] == "denetdm" and not r.get("variant")),
                     key=lambda r: (r["ratio"], r["seed"], r["selection"]))
    for record in records:
        last_run = record["key"].rsplit("_", 1)[0] + "_last"
        ckpt = grid / "runs" / last_run / "checkpoints" / STAGE1[record["selection"]]
        if not ckpt.is_file():
            print(f"skipped {record['key']}: {ckpt} is not on this machine")
            continue
        _, fit = evaluate_checkpoint(ckpt, device="cpu", quiet=True, split="train")
        test = record["branches"]
        rows.append({
            "key": record["key"], "ratio": record["ratio"], "seed": record["seed"], "selection": record["selection"],
            "train_fit": {name: round(fit[name]["accuracy"], 2) for name in ("stage1_deep", "stage1_shallow", "stage1_poe")},
            "warns": fit["stage1_deep"]["accuracy"] < SPLIT_WARN_BELOW,
            "test_deep_aligned": round(test["stage1_deep"]["aligned"], 2),
            "test_shallow_conflicting": round(test["stage1_shallow"]["conflicting"], 2),
            "test_target_unbiased": round(record["test"]["unbiased"], 2),
        })
        print(rows[-1])
    Path(args.out).write_text(json.dumps({
        "what": "DeNetDM stage 1 on the Colored MNIST grid: label-free fit of the training labels by each branch "
                "(percent) against bias-labelled test numbers; `warns` = deep-branch fit under the warning threshold",
        "warn_below": SPLIT_WARN_BELOW,
        "rows": rows,
        "command": "python benchmarks/stage1_split_fit.py --grid benchmarks/results/cmnist_table1",
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
