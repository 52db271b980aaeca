"""Replay DeNetDM's stage-1 selection on committed runs' logged held-out metrics, under three rules.

Selection never changes how a phase trains, so the epoch a rule would keep can be read off
`metrics.jsonl` (the held-out split's metrics of every epoch of every attempt). Rules:
- `any`: the best score over all epochs (the rule before `Algorithm.epoch_eligible`);
- `each`: the best score over the epochs whose held-out split check passes, if any;
- `last` (the rule in use): as `each`, but only where the attempt's last epoch passes too;
- `last+deep>shallow`: as `last`, with the earlier candidate rule's extra condition that the shallow
  branch fits the held-out labels worse than the deep one.
For each run and attempt the kept epoch and the shallow branch's unbiased test accuracy there.

    python benchmarks/stage1_eligibility_replay.py benchmarks/results/cmnist_* benchmarks/results/bias_suite* \
        --out benchmarks/results/stage1_eligibility_replay.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from denetdm.methods.denetdm import DeNetDM


def passes(held_out, strict: bool) -> bool:
    return not DeNetDM.split_failed(held_out) and (
        not strict or held_out["stage1_deep"]["accuracy"] > held_out["stage1_shallow"]["accuracy"])


def kept(epochs, rule: str) -> dict:
    score = lambda r: r["val"]["stage1_shallow"]["pseudo_unbiased"]
    strict = rule == "last+deep>shallow"
    pool = [r for r in epochs if passes(r["val"], strict)]
    if rule != "each" and not (rule != "any" and passes(epochs[-1]["val"], strict)):
        pool = []
    best = max(pool or epochs, key=score)
    return {"epoch": best["epoch"], "shallow_unbiased": round(best["test"]["stage1_shallow"]["unbiased"], 2)}


RULES = ("any", "each", "last", "last+deep>shallow")


def single_setting(run: Path) -> bool:
    """Stage-1 candidate settings are ranked across settings too; this replay reads one setting per attempt."""
    return "stage1" not in json.loads((run / "results.json").read_text()).get("candidates", {})


def replay(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stage1 = [r for r in records if r["phase"] == "stage1" and "val" in r]
    attempts = sorted({r.get("attempt", 0) for r in stage1})
    results = json.loads((run / "results.json").read_text())
    return {"run": str(run), "warned": bool(results.get("warnings")),
            "test_unbiased": round(results["test"]["stage2_target"]["unbiased"], 2),
            "attempts": [{rule: kept([r for r in stage1 if r.get("attempt", 0) == a], rule) for rule in RULES}
                         for a in attempts]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    runs = [run for folder in args.folders for run in sorted(Path(folder).glob("**/runs/denetdm*_proxy"))
            if (run / "results.json").is_file() and single_setting(run)]
    rows = [replay(run) for run in runs]
    changed = {rule: [r["run"] for r in rows if any(a[rule]["epoch"] != a["any"]["epoch"] for a in r["attempts"])]
               for rule in RULES[1:]}
    Path(args.out).write_text(json.dumps({"runs": len(rows), "changed": changed, "replays": rows}, indent=1) + "\n")
    for rule, names in changed.items():
        print(f"{rule}: {len(names)} of {len(rows)} runs keep another stage-1 epoch than `any`")
        for name in names:
            print("   ", name)


if __name__ == "__main__":
    main()
