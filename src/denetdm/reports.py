"""Tables and plots of benchmark records: our mean ± std beside the paper's, the label-free estimates
beside the truth, and ablation tables. Reads records; trains nothing."""
from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from .config import SELECTIONS
from .fileio import dumps
from .page import md_table, pyplot


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
    md = [f"# Ablation {name} (Colored MNIST, {ab['ratios'][0] * 100:g}% conflicting, selection: last epoch)", "",
          *md_table(list(rows[0]), [list(r.values()) for r in rows]), ""]
    (out / f"{name}.md").write_text("\n".join(md))
    (out / f"{name}.json").write_text(dumps(rows, indent=1))


PROTOCOLS = (
    "Selection protocols: `proxy` = best mean accuracy over (class, bias-proxy prediction) groups on a "
    "held-out training split (label-free, the default); `last` = last epoch (label-free); "
    "`val` = plain accuracy on a held-out training split (label-free); "
    "`oracle` = best test-split metric using bias labels (the official code's protocol, which the paper's "
    "numbers used). The paper column is Table 1 of the paper.")


@dataclass
class BenchmarkSummary:
    """A benchmark's grid as its tables and plot show it: per (method, ratio), each selection's values over
    seeds, beside the paper's Table 1 (`paper`: this dataset's part of `paper_reference()`)."""

    dataset: str
    methods: List[str]
    ratios: List[Optional[float]]  # [None]: the dataset fixes its own
    selections: List[str]
    label_users: Set[str]
    table: Dict[tuple, Dict[str, List[float]]]
    paper: dict
    metric: str = "unbiased"  # the dataset's headline test metric (a record's `headline`)

    @classmethod
    def of(cls, records: List[dict]) -> "BenchmarkSummary":
        metric = records[0].get("headline", "unbiased")
        if not any(metric in r["test"] for r in records):  # a test split without bias labels
            metric = "accuracy"
        return cls(
            dataset=records[0]["dataset"],
            methods=list(dict.fromkeys(r["method"] for r in records)),
            ratios=sorted({r["ratio"] for r in records}),
            selections=[s for s in SELECTIONS if any(r["selection"] == s for r in records)],
            label_users={r["method"] for r in records if r["uses_bias_labels"]},
            table=summarize_records(records, metric),
            paper=paper_reference().get(records[0]["dataset"], {}),
            metric=metric,
        )

    @property
    def metric_label(self) -> str:
        return "plain" if self.metric == "accuracy" else self.metric.replace("_", "-")

    def label(self, method: str) -> str:
        return method + (" (bias labels)" if method in self.label_users else "")

    def reference(self, method: str, ratio: Optional[float]) -> Optional[list]:
        """The paper's [mean, std or None] for `method` at `ratio`, or None."""
        return None if ratio is None else self.paper.get(method, {}).get(f"{ratio:g}")

    @staticmethod
    def ratio_label(ratio: Optional[float]) -> str:
        return "the dataset's own" if ratio is None else f"{ratio * 100:g}%"

    def rows(self) -> List[dict]:
        """One row per (method, ratio): each selection's mean ± std, and the paper's (table.csv)."""
        rows = []
        for method in self.methods:
            for ratio in self.ratios:
                cells, ref = self.table.get((method, ratio), {}), self.reference(method, ratio)
                rows.append({
                    "method": self.label(method),
                    "ratio_pct": "" if ratio is None else f"{ratio * 100:g}",
                    **{f"ours_{s}": _mean_std(cells.get(s, [])) for s in self.selections},
                    "paper": "" if ref is None else (f"{ref[0]:.2f}" + ("" if ref[1] is None else f" ± {ref[1]:.2f}")),
                })
        return rows

    def by_ratio(self, selection: str) -> Tuple[List[str], List[List[str]]]:
        """The paper's layout for one selection: a row per method, a column per ratio, the paper in brackets."""
        header = ["method", *map(self.ratio_label, self.ratios)]
        rows = []
        for method in self.methods:
            cells = []
            for ratio in self.ratios:
                values, ref = self.table.get((method, ratio), {}).get(selection, []), self.reference(method, ratio)
                cells.append((_mean_std(values) if values else "–") + ("" if ref is None else f" [{ref[0]:.2f}]"))
            rows.append([self.label(method), *cells])
        return header, rows


def run_notes(records: List[dict]) -> Dict[str, List[str]]:
    """Per heading, one line per run: the label-free checks a method made of its own run (e.g. DeNetDM's
    stage-1 split) and the phases trained again from fresh weights after such a warning (opt-in)."""
    notes = {
        "Runs with warnings": [f"`{r['key']}`: {w}" for r in records for w in r.get("warnings") or []],
        "Runs with restarted phases": [f"`{r['key']}`: {phase} restarted {len(why)}x; {why[0]}"
                                       for r in records for phase, why in (r.get("restarts") or {}).items()],
    }
    return {heading: lines for heading, lines in notes.items() if lines}


def write_reports(out: Path, records: List[dict]) -> None:
    records = [r for r in records if not r.get("variant")]
    if not records:
        return
    summary = BenchmarkSummary.of(records)
    rows = summary.rows()
    with open(out / "table.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    md = [f"# {summary.dataset}: {summary.metric_label} test accuracy (%), mean ± std over seeds", "", PROTOCOLS, "",
          *md_table(list(rows[0]), [list(row.values()) for row in rows]), ""]
    for selection in summary.selections:
        md += [f"## `{selection}` by ratio, the paper's Table 1 in brackets", "", *md_table(*summary.by_ratio(selection)), ""]
    md += estimate_report(records)
    for heading, lines in run_notes(records).items():
        md += [f"## {heading}", "", *(f"- {line}" for line in lines), ""]
    (out / "table.md").write_text("\n".join(md))
    plot(out / "accuracy_vs_ratio.png", summary)


def estimate_error(record: dict, metric: str) -> Optional[float]:
    """Label-free estimate minus the true test value of `metric` (None without both)."""
    est, true = (record.get("estimate") or {}).get(metric), record["test"].get(metric)
    if est is None or true is None or math.isnan(est) or math.isnan(true):
        return None
    return est - true


ESTIMATE_TITLE = ("Label-free estimates against the truth (test split: class labels, groups from the bias proxy, "
                  "no bias labels)")


def estimate_rows(records: List[dict]) -> Tuple[List[str], List[List[str]], List[str]]:
    """Each run's label-free estimate beside the true test value (header, rows), and the error
    distribution (one sentence per metric); no rows when no run has an estimate."""
    header = ["run", "proxy", "est. unbiased", "test unbiased", "error", "est. conflicting", "test conflicting", "error"]
    runs = [r for r in records if r.get("estimate")]

    def cell(value):
        return "–" if value is None or math.isnan(value) else f"{value:.2f}"

    rows = [[f"`{r['key']}`", r["estimate"]["proxy"] + (" (unreliable)" if r["estimate"].get("caveat") else ""),
             *(cell(v) for metric in ("unbiased", "conflicting")
               for v in (r["estimate"].get(metric), r["test"].get(metric), estimate_error(r, metric)))]
            for r in runs]
    trusted = [r for r in runs if not r["estimate"].get("caveat")]
    groups = [("", runs)] + ([(" whose proxy no label-free check flagged", trusted)] if len(trusted) < len(runs) else [])
    notes = []
    for metric in ("unbiased", "conflicting"):
        for label, group in groups:
            errors = [e for e in (estimate_error(r, metric) for r in group) if e is not None]
            if errors:
                notes.append(f"Error of the {metric} estimate over {len(errors)} runs{label}: mean "
                             f"{statistics.fmean(errors):+.2f}, mean absolute {statistics.fmean(abs(e) for e in errors):.2f}, "
                             f"range {min(errors):+.2f} to {max(errors):+.2f}; within 3 points: "
                             f"{sum(abs(e) <= 3 for e in errors)}/{len(errors)}.")
    return header, rows, notes


def estimate_report(records: List[dict]) -> List[str]:
    """`estimate_rows` as Markdown lines."""
    header, rows, notes = estimate_rows(records)
    if not rows:
        return []
    return [f"## {ESTIMATE_TITLE}", "", *md_table(header, rows), *(f"\n{note}" for note in notes), ""]


def plot(path: Path, summary: BenchmarkSummary) -> None:
    """One panel per method: each selection's mean ± std over seeds per ratio (error bars; one seed has
    none), the paper's value (and std) as a black cross, one legend above the panels."""
    plt = pyplot()
    s = summary
    cols = min(len(s.methods), 4)
    rows = -(-len(s.methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.3 * cols + 0.6, 6.0), 2.9 * rows + 0.9), sharey=True, squeeze=False)
    width = 0.6 / max(len(s.selections), 1)  # the selections of one ratio side by side, not on top of each other
    for ax, method in zip(axes.flat, s.methods):
        for j, selection in enumerate(s.selections):
            points = [(i, s.table[(method, r)][selection]) for i, r in enumerate(s.ratios)
                      if s.table.get((method, r), {}).get(selection)]
            if points:
                xs = [i + (j - (len(s.selections) - 1) / 2) * width for i, _ in points]
                ax.errorbar(xs, [statistics.fmean(v) for _, v in points],
                            yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points],
                            fmt="o-", ms=4, lw=1, capsize=3, color=f"C{j}", label=f"ours, {selection}")
        ref = [(i, s.reference(method, r)) for i, r in enumerate(s.ratios) if s.reference(method, r)]
        if ref:
            ax.errorbar([i for i, _ in ref], [v[0] for _, v in ref], yerr=[v[1] or 0.0 for _, v in ref], fmt="x",
                        ms=7, mew=1.8, capsize=3, color="black", label="paper, Table 1 (oracle-selected)")
        ax.set_title(s.label(method), fontsize=10)
        ax.set_xticks(range(len(s.ratios)), [s.ratio_label(r) for r in s.ratios])
        ax.set_xlim(-0.5, len(s.ratios) - 0.5)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.flat[len(s.methods):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{s.metric_label} test acc. (%)")
    for ax in axes[-1]:
        ax.set_xlabel("bias-conflicting in train")
    handles = {label: h for ax in axes.flat for h, label in zip(*ax.get_legend_handles_labels())}
    top = fig.get_figheight()  # inches: the title and the legend take fixed room above the panels
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / top))
    fig.text(0.5, 1 - 0.1 / top, f"{s.dataset}: {s.metric_label} test accuracy, mean ± std over seeds", ha="center", va="top",
             fontsize=11)
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 1 - 0.38 / top),
               ncol=len(handles), fontsize=8.5, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
