"""Tables and plots of benchmark records: our mean ± std beside the paper's, the label-free estimates
beside the truth, and ablation tables. Reads records; trains nothing."""
from __future__ import annotations

import csv
import json
import math
import statistics
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional

from .config import SELECTIONS
from .fileio import dumps


def paper_reference() -> dict:
    return json.loads(resources.files("denetdm").joinpath("reference/paper.json").read_text())


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


def write_ablation_report(out: Path, name: str, ab: dict, records: List[dict]) -> None:
    """Conflicting / aligned accuracy per variant and branch of ablation `name` (its spec `ab`, from
    `benchmark.ABLATIONS`), mean ± std over seeds, beside the paper."""
    paper = paper_reference().get(name, {})
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
