"""Per run of a benchmark folder whose DeNetDM runs trained a phase under several settings
(`method.distill_weight_candidates` for stage 2, `method.shallow_lr_scale_candidates` for stage 1): each
setting's best label-free selection score, the test accuracy of that setting's best-ranked epoch (read
from the run's metrics.jsonl, where every epoch's test numbers are logged for reporting; in stage 1 an
epoch whose held-out split check fails ranks last, as in training), and whether the kept setting was the
better one on the test split. For stage 1 that is the shallow branch's accuracy: only the kept setting
goes on to a stage 2. Reads run folders; trains nothing.

    python benchmarks/candidate_summary.py benchmarks/results/bias_suite_custom [--phase stage1]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from denetdm.methods.denetdm import DeNetDM

PREDICTOR = {"stage1": "stage1_shallow", "stage2": "stage2_target"}


def summarize(run: Path, metric: str, phase: str) -> dict:
    results = json.loads((run / "results.json").read_text())
    entry, name = results["candidates"][phase], PREDICTOR[phase]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["phase"] == phase]
    attempt = max(r.get("attempt", 0) for r in epochs)
    proxy = results.get("selection") == "proxy"
    tests = []
    for k in range(len(entry["settings"])):
        mine = [r for r in epochs if r.get("candidate", 0) == k and r.get("attempt", 0) == attempt]
        passed = phase != "stage1" or not DeNetDM.split_failed(mine[-1]["val"])  # its last epoch vouches for the rest
        key = ((lambda r: (passed and (phase != "stage1" or not DeNetDM.split_failed(r["val"])), r["val"][name]["pseudo_unbiased"]))
               if proxy else (lambda r: r["epoch"]))
        tests.append(max(mine, key=key)["test"][name][metric])
    chosen = entry["chosen"]
    return {"run": str(run), "settings": entry["settings"], "scores": entry["scores"], "chosen": chosen,
            **({"eligible": entry["eligible"]} if "eligible" in entry else {}),
            f"test_{metric}": tests, "kept_the_better": tests[chosen] == max(tests)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--metric", default="conflicting")
    parser.add_argument("--phase", default="stage2", choices=sorted(PREDICTOR))
    args = parser.parse_args()
    folder = Path(args.folder)
    runs = sorted(p.parent for p in folder.glob("**/runs/*/results.json"))
    rows = [summarize(run, args.metric, args.phase) for run in runs
            if args.phase in json.loads((run / "results.json").read_text()).get("candidates", {})]
    for row in rows:
        row["run"] = str(Path(row["run"]).relative_to(folder))
    better = sum(r["kept_the_better"] for r in rows)
    out = {"what": __doc__.splitlines()[0], "kept_the_better": f"{better}/{len(rows)}", "runs": rows}
    path = folder / ("candidates.json" if args.phase == "stage2" else f"candidates_{args.phase}.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"{args.phase}: {better}/{len(rows)} runs kept the setting that was better on the test split; {path}")


if __name__ == "__main__":
    main()
