"""Colored MNIST without bias labels: the `proxy` runs next to the `last` and `oracle` runs of the
same seeds, the paper's Table 1, and each label-free estimate's error. Reads committed benchmark
folders only (trains nothing) and writes benchmarks/results/label_free_summary.md.

    python benchmarks/label_free_summary.py
"""
from __future__ import annotations

import statistics
from pathlib import Path

from denetdm.benchmark import read_records
from denetdm.reports import estimate_error, paper_reference

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COLUMNS = [  # (label, folder, selection)
    ("`proxy`, paper recipe", "cmnist_proxy", "proxy"),
    ("`proxy`, `method.shallow_lr_scale=0.1`", "cmnist_shallow_lr0.1", "proxy"),
    ("`last`, paper recipe", "cmnist_table1", "last"),
    ("`oracle`, paper recipe", "cmnist_table1", "oracle"),
]


def main() -> None:
    records = {folder: read_records(RESULTS / folder) for _, folder, _ in COLUMNS}
    cells_run = {(r["method"], r["ratio"]) for r in records["cmnist_proxy"]}  # the rows: what ran under proxy
    paper = paper_reference()["colored_mnist"]
    md = ["# Colored MNIST without bias labels: unbiased test accuracy (%)", "",
          "Per seed, then the mean over the seeds shown; the columns do not all hold the same seeds, so compare "
          "seed by seed. A star marks a run whose label-free split check warned. Regenerate with "
          "`python benchmarks/label_free_summary.py`; the runs: `denetdm benchmark --selections proxy --out "
          "benchmarks/results/cmnist_proxy -q threads=1 --methods denetdm,lff,jtt,erm,dfa --ratios R --seeds S` "
          "(and `method.shallow_lr_scale=0.1` with `--methods denetdm --out benchmarks/results/cmnist_shallow_lr0.1`).",
          "", "| method | ratio | " + " | ".join(label for label, _, _ in COLUMNS) + " | paper (oracle) |",
          "|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for method, ratio in sorted(cells_run, key=lambda mr: (mr[0] != "denetdm", mr)):
        cells = []
        for _, folder, selection in COLUMNS:
            runs = sorted((r for r in records[folder] if r["method"] == method and r["ratio"] == ratio
                           and r["selection"] == selection and not r.get("variant")), key=lambda r: r["seed"])
            if not runs:
                cells.append("–")
                continue
            values = [r["test"]["unbiased"] for r in runs]
            each = ", ".join(f"s{r['seed']} {r['test']['unbiased']:.2f}{'*' if r.get('warnings') else ''}" for r in runs)
            cells.append(f"{each} (mean {statistics.fmean(values):.2f})")
        ref = paper.get(method, {}).get(f"{ratio:g}")
        md.append(f"| {method} | {ratio * 100:g}% | " + " | ".join(cells) + f" | {'' if ref is None else f'{ref[0]:.2f}'} |")
    md += ["", "## Label-free estimate of unbiased accuracy minus the truth (proxy runs)", "",
           "| method | errors | mean absolute |", "|---|---|---|"]
    for method in sorted({m for m, _ in cells_run}):
        errors = [(r, estimate_error(r, "unbiased")) for folder in ("cmnist_proxy", "cmnist_shallow_lr0.1")
                  for r in records[folder] if r["method"] == method]
        errors = [(r, e) for r, e in errors if e is not None]
        if errors:
            text = ", ".join(f"{e:+.2f}{'*' if r.get('warnings') else ''}" for r, e in errors)
            md.append(f"| {method} | {text} | {statistics.fmean(abs(e) for _, e in errors):.2f} |")
    (RESULTS / "label_free_summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
