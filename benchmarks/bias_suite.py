"""DeNetDM and the label-free baselines on the MNIST bias suite, under the default `proxy` protocol.

Each (dataset, method) pair is one `denetdm benchmark` folder under --out (their schedule overrides
differ, and a benchmark folder holds one set of overrides), so a rerun continues where it stopped.
`--epochs N` shortens every method's schedule to at most N epochs per phase (`schedule_overrides`);
0 keeps the presets' paper schedules. Writes <out>/table.md and <out>/table.json: conflicting and
unbiased test accuracy, the label-free estimates and their errors.

    python benchmarks/bias_suite.py --ratios 0.01 --seeds 0 --epochs 30 --workers 2
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from denetdm.benchmark import ON_COLORED_MNIST_PRESETS, plan, read_records, run_benchmark, schedule_overrides
from denetdm.reports import estimate_error

HERE = Path(__file__).resolve().parent
def report(out: Path, datasets, methods) -> None:
    rows = []
    for dataset in datasets:
        for method in methods:
            for r in read_records(out / f"{dataset}_{method}"):
                rows.append({"dataset": dataset, "method": method, "ratio": r["ratio"], "seed": r["seed"],
                             "selection": r["selection"], "conflicting": r["test"].get("conflicting"),
                             "unbiased": r["test"].get("unbiased"), "est_conflicting": r["estimate"].get("conflicting"),
                             "est_unbiased": r["estimate"].get("unbiased"), "proxy": r["estimate"]["proxy"],
                             "proxy_caveat": bool(r["estimate"].get("caveat")),
                             "err_unbiased": estimate_error(r, "unbiased"), "selected_epochs": r["selected_epochs"],
                             "warnings": len(r.get("warnings", [])), "restarts": bool(r.get("restarts"))})
    (out / "table.json").write_text(json.dumps(rows, indent=1))

    def cell(vals):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "–"
        return f"{statistics.fmean(vals):.2f}" + (f" ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else "") + f" (n={len(vals)})"

    ratios = sorted({r["ratio"] for r in rows})
    md = ["# MNIST bias suite: conflicting test accuracy (%) under the label-free `proxy` protocol", "",
          "Regenerate: `python benchmarks/bias_suite.py` with the arguments in `command.txt`. "
          "Estimated = the label-free estimate (test class labels, bias-proxy groups; no bias labels).", ""]
    for ratio in ratios:
        md += [f"## {ratio * 100:g}% conflicting", "", "| dataset | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for dataset in datasets:
            cells = [cell([r["conflicting"] for r in rows if r["dataset"] == dataset and r["method"] == m and r["ratio"] == ratio])
                     for m in methods]
            md.append(f"| {dataset} | " + " | ".join(cells) + " |")
        md += ["", "Estimated conflicting accuracy (label-free):", "", "| dataset | " + " | ".join(methods) + " |",
               "|---|" + "---|" * len(methods)]
        for dataset in datasets:
            cells = [cell([r["est_conflicting"] for r in rows if r["dataset"] == dataset and r["method"] == m and r["ratio"] == ratio])
                     for m in methods]
            md.append(f"| {dataset} | " + " | ".join(cells) + " |")
        md.append("")
    errors = [r["err_unbiased"] for r in rows if r["err_unbiased"] is not None]
    if errors:
        md.append(f"Error of the unbiased estimate over {len(errors)} runs: mean {statistics.fmean(errors):+.2f}, "
                  f"range {min(errors):+.2f} to {max(errors):+.2f}, within 3 points: {sum(abs(e) <= 3 for e in errors)}.")
    flagged = [f"- {r['dataset']} {r['method']} seed {r['seed']}: {r['warnings']} warning(s)" for r in rows if r["warnings"]]
    md += ["", "Runs with label-free warnings:" if flagged else "No run warned.", *flagged, ""]
    (out / "table.md").write_text("\n".join(md))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(ON_COLORED_MNIST_PRESETS))
    parser.add_argument("--methods", default="denetdm,erm,lff,jtt")
    parser.add_argument("--ratios", default="0.01")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override for every run (e.g. method.shallow_lr_scale=0.1 with --methods denetdm)")
    parser.add_argument("--out", default=str(HERE / "results" / "bias_suite"))
    args = parser.parse_args()
    out = Path(args.out)
    datasets, methods = args.datasets.split(","), args.methods.split(",")
    ratios, seeds = [float(r) for r in args.ratios.split(",")], [int(s) for s in args.seeds.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    (out / "command.txt").write_text(f"--datasets {args.datasets} --methods {args.methods} --ratios {args.ratios} "
                                     f"--seeds {args.seeds} --epochs {args.epochs}"
                                     + "".join(f" --set {kv}" for kv in args.set) + "\n")
    for method in methods:
        for dataset in datasets:
            # The shortened schedule is passed as plain overrides (not plan's epochs=), as when these
            # folders were first written: each folder's benchmark.json holds them.
            schedule = schedule_overrides(method, dataset, args.epochs) if args.epochs else []
            overrides = ["threads=1", *schedule, *args.set]
            specs = plan([method], ratios, seeds, ["proxy"], dataset, overrides)
            run_benchmark(out / f"{dataset}_{method}", specs, overrides, args.workers, quiet=True)
            report(out, datasets, methods)


if __name__ == "__main__":
    main()
