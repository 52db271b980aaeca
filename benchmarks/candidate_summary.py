"""Per run of a benchmark folder whose DeNetDM runs trained stage 2 under several settings
(`method.distill_weight_candidates`): each setting's best label-free selection score, the test accuracy
of that setting's best-scoring epoch (read from the run's metrics.jsonl, where every epoch's test
numbers are logged for reporting), and whether the kept setting was the better one on the test split.
Reads run folders; trains nothing.

    python benchmarks/candidate_summary.py benchmarks/results/bias_suite_custom
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def summarize(run: Path, metric: str) -> dict:
    results = json.loads((run / "results.json").read_text())
    entry = results["candidates"]["stage2"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stage2 = [r for r in records if r["phase"] == "stage2"]
    attempt = max(r.get("attempt", 0) for r in stage2)
    proxy = results.get("selection") == "proxy"
    tests = []
    for k in range(len(entry["settings"])):
        epochs = [r for r in stage2 if r.get("candidate", 0) == k and r.get("attempt", 0) == attempt]
        key = (lambda r: r["val"]["stage2_target"]["pseudo_unbiased"]) if proxy else (lambda r: r["epoch"])
        tests.append(max(epochs, key=key)["test"]["stage2_target"][metric])
    chosen = entry["chosen"]
    return {"run": str(run), "settings": entry["settings"], "scores": entry["scores"], "chosen": chosen,
            f"test_{metric}": tests, "kept_the_better": tests[chosen] == max(tests)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--metric", default="conflicting")
    args = parser.parse_args()
    folder = Path(args.folder)
    runs = sorted(p.parent for p in folder.glob("**/runs/*/results.json"))
    rows = [summarize(run, args.metric) for run in runs if "candidates" in json.loads((run / "results.json").read_text())]
    for row in rows:
        row["run"] = str(Path(row["run"]).relative_to(folder))
    better = sum(r["kept_the_better"] for r in rows)
    out = {"what": __doc__.splitlines()[0], "kept_the_better": f"{better}/{len(rows)}", "runs": rows}
    (folder / "candidates.json").write_text(json.dumps(out, indent=1))
    print(f"{better}/{len(rows)} runs kept the setting that was better on the test split; {folder / 'candidates.json'}")


if __name__ == "__main__":
    main()
