"""The label-free estimate with and without the bias reader, on finished benchmark runs.

For every run folder under the given benchmark folders that has its `checkpoints/final.pt` (the runs of
the committed tables; the checkpoints stay on the machine that trained them), the estimate is recomputed
with this version's estimator (`denetdm evaluate RUN --split estimate`: the method's own proxy and the
bias reader's snapshots, the most bias-like of them read) and set beside the one the run recorded (the
method's own proxy only) and the truth from the test split's bias labels. Appends to
<out>/estimates.jsonl (resumable: a run already there is skipped) and writes <out>/table.md.

    python benchmarks/estimate_reader.py benchmarks/results/bias_suite benchmarks/results/cmnist_proxy --workers 2
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_folders(folders):
    for folder in folders:
        for results in sorted(Path(folder).glob("**/runs/*/results.json")):
            if (results.parent / "checkpoints" / "final.pt").is_file():
                yield results.parent


def reestimate(run: Path) -> dict:
    import torch

    from denetdm.training import evaluate_checkpoint

    torch.set_num_threads(1)
    recorded = json.loads((run / "results.json").read_text())
    _, estimate = evaluate_checkpoint(run, device="cpu", quiet=True, split="estimate")
    truth = recorded["test"][recorded["deployed"]]
    old = recorded.get("estimate") or {}
    return {"run": str(run.relative_to(HERE.parent)), "method": recorded["method"],
            "truth": {k: truth.get(k) for k in ("unbiased", "conflicting")},
            "recorded": {k: old.get(k) for k in ("proxy", "unbiased", "conflicting", "caveat")},
            "reader": {k: estimate.get(k) for k in ("proxy", "unbiased", "conflicting", "caveat", "proxy_candidates")}}


def error(row: dict, which: str, metric: str = "unbiased"):
    """The `which` estimate ("recorded" or "reader") minus the truth, as the benchmark tables read it."""
    from denetdm.reports import estimate_error

    return estimate_error({"estimate": row[which], "test": row["truth"]}, metric)


def summary(errors) -> str:
    errors = [e for e in errors if e is not None]
    if not errors:
        return "–"
    return (f"{sum(abs(e) <= 3 for e in errors)}/{len(errors)} within 3; mean abs {statistics.fmean(map(abs, errors)):.2f}; "
            f"worst {max(errors, key=abs):+.2f}")


def report(out: Path) -> None:
    rows = [json.loads(line) for line in (out / "estimates.jsonl").read_text().splitlines() if line.strip()]
    groups = defaultdict(list)
    for row in rows:
        folder = row["run"].split("/runs/")[0].replace("benchmarks/results/", "")
        groups[(folder.split("/")[0], row["method"])].append(row)
    md = ["# The label-free estimate of unbiased test accuracy, with and without the bias reader", "",
          "Estimate minus truth (points). `recorded`: the run's own estimate (the method's bias proxy); `with reader`: "
          "this version's (the most bias-like of the method's proxy and the reader's snapshots). Regenerate: "
          "`python benchmarks/estimate_reader.py` with the folders in `command.txt` (needs the runs' checkpoints).", "",
          "| benchmark | method | runs | recorded | with reader | reader chosen |", "|---|---|---|---|---|---|"]
    for (folder, method), group in sorted(groups.items()):
        chosen = sum(r["reader"]["proxy"].startswith("bias_reader") for r in group)
        md.append(f"| {folder} | {method} | {len(group)} | {summary(error(r, 'recorded') for r in group)} | "
                  f"{summary(error(r, 'reader') for r in group)} | {chosen}/{len(group)} |")
    md += ["", "Per run (unbiased; estimate minus truth):", "", "| run | truth | recorded | with reader | proxy read |",
           "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: r["run"]):
        rec, new = error(row, "recorded"), error(row, "reader")
        md.append(f"| `{row['run'].split('results/')[-1]}` | {row['truth']['unbiased']:.2f} | "
                  f"{'–' if rec is None else f'{rec:+.2f}'} | {new:+.2f} | {row['reader']['proxy']}"
                  + (" (unreliable)" if row["reader"].get("caveat") else "") + " |")
    (out / "table.md").write_text("\n".join(md) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results" / "estimate_reader"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(" ".join(args.folders) + "\n")
    done = set()
    if (out / "estimates.jsonl").is_file():
        done = {json.loads(line)["run"] for line in (out / "estimates.jsonl").read_text().splitlines() if line.strip()}
    todo = [r for r in run_folders(args.folders) if str(r.resolve().relative_to(HERE.parent)) not in done]
    with ProcessPoolExecutor(args.workers) as pool, open(out / "estimates.jsonl", "a") as log:
        for row in pool.map(reestimate, [r.resolve() for r in todo]):
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(row["run"], f"recorded {error(row, 'recorded')}", f"reader {error(row, 'reader'):+.2f}", flush=True)
    report(out)


if __name__ == "__main__":
    main()
