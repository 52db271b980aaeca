"""`denetdm report DIR`: one page of what a run folder or a benchmark folder holds, so that a run can be
judged without reading its JSON: how its checkpoints were selected (oracle said as such), the test table
with every number's protocol, the label-free estimate beside the truth, the method's label-free checks,
the training curves per phase and predictor, the deployed model's (class x bias) accuracies and the
config; for a benchmark, the tables beside the paper's and the plot of `reports`. Written as
report.html (self-contained) and report.md with its PNGs. Reads the folder; trains nothing."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import yaml

from .checkpoints import read_status
from .errors import RunFolderError
from .fileio import write_text_atomic
from .metrics import SUMMARY_KEYS
from .page import Page, pyplot
from .reports import ESTIMATE_TITLE, PROTOCOLS, BenchmarkSummary, estimate_error, estimate_rows, plot, run_notes

RUN_FILES = ("results.json", "metrics.jsonl", "config.yaml")
METRIC_KEYS = (*SUMMARY_KEYS, "worst_class")


def write_report(folder: Path, out: Optional[Path] = None) -> Path:
    """Write report.html and report.md (and their figures) of the run or benchmark `folder` into `out`
    (default: the folder itself); returns the HTML file's path."""
    folder = Path(folder)
    out = folder if out is None else Path(out)
    if not folder.is_dir():
        raise RunFolderError(f"{folder} is not a folder; give the --out folder of denetdm train or denetdm benchmark")
    if (folder / "results.jsonl").is_file():
        build = benchmark_page
    elif any((folder / name).is_file() for name in RUN_FILES):
        build = run_page
    else:
        raise RunFolderError(f"{folder} is neither a run folder (results.json, metrics.jsonl) nor a benchmark folder "
                             "(results.jsonl); give the --out folder of denetdm train or denetdm benchmark")
    out.mkdir(parents=True, exist_ok=True)
    page = build(folder, out)
    write_text_atomic(out / "report.md", page.markdown())
    write_text_atomic(out / "report.html", page.html())
    return out / "report.html"


def _cell(value) -> str:
    return "–" if value is None or value != value else f"{value:.2f}"


def _read_results(folder: Path) -> dict:
    path = folder / "results.json"
    if not path.is_file():
        status = read_status(folder) or {"status": "unknown (no status.json)", "message": ""}
        why = f"{status['status']}" + (f": {status['message']}" if status.get("message") else "")
        raise RunFolderError(f"run {folder} is not complete (no results.json; status {why}); finish it with "
                             f"denetdm train --resume {folder}, then report it")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise RunFolderError(f"{path} is not JSON ({exc}); restore it from the run's log or train again") from None


def _read_metrics(folder: Path) -> List[dict]:
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as exc:
        raise RunFolderError(f"{path} holds a line that is not JSON ({exc}); mend or delete that line") from None


def _last_attempts(records: List[dict]) -> Dict[str, int]:
    """Per phase, its last attempt: the one whose epoch was kept (earlier ones were trained again)."""
    return {r["phase"]: r.get("attempt", 0) for r in records}


def run_page(folder: Path, out: Path) -> Page:
    results = _read_results(folder)
    config_text = (folder / "config.yaml").read_text() if (folder / "config.yaml").is_file() else ""
    cfg = yaml.safe_load(config_text) or {}
    records = _read_metrics(folder)
    data, machine = cfg.get("data", {}), results.get("machine", {})
    page = Page(f"Run {folder.name}: {results['method']} on {data.get('name', 'unknown data')}")
    page.text(f"Preset `{results.get('preset') or 'none'}`, seed {cfg.get('seed', '?')}"
              + (f", {data['ratio'] * 100:g}% bias-conflicting training samples" if data.get("ratio") is not None else "")
              + f"; deployed predictor `{results['deployed']}`; {results.get('wall_time_s', float('nan')):.1f} s on "
              f"{machine.get('gpu', machine.get('device', '?'))}.")
    has_bias = any("unbiased" in m for m in results["test"].values())
    _selection_section(page, results, records, has_bias)
    _test_section(page, results, has_bias)
    _estimate_section(page, results, has_bias)
    page.heading("Training curves")
    if records:
        curves_figure(out / "report_curves.png", records, results, cfg.get("proxy_metric", "pseudo_unbiased"))
        page.figure(out / "report_curves.png", "Per phase (a row per attempt): training losses; each predictor's test "
                    "accuracy (bias labels, for reporting); its label-free score on the held-out split; the kept epoch.")
    else:
        page.text("No metrics.jsonl in this folder: no curves.")
    _groups_section(page, results, out, has_bias)
    _checks_section(page, results, folder.name)
    page.heading("Config")
    page.code(config_text or "(no config.yaml in this folder)", "yaml")
    page.heading("Provenance")
    facts = {**results.get("provenance", {}), **machine}
    page.table(["what", "value"], [[k, " ".join(v) if isinstance(v, list) else v] for k, v in facts.items()])
    return page


def _selection_section(page: Page, results: dict, records: List[dict], has_bias: bool) -> None:
    """The protocol, what it read (ORACLE said so), and each phase's kept epoch (and an oracle's)."""
    selection, oracle = results["selection"], results.get("oracle_view")
    page.heading("Selection protocol")
    page.text(f"`{selection}`: {results['selection_description']}.")
    if selection == "oracle":
        page.text("ORACLE selection: each phase kept the epoch with the best metric on the test split, read with its "
                  "bias labels (the official code's protocol, which the paper's numbers used). These numbers are "
                  "comparable with the paper's, not label-free: without bias labels these epochs could not be chosen.",
                  warn=True)
    else:
        page.text("Label-free: no bias labels were read to choose the checkpoints"
                  + ("; the test split's bias labels are read only to report the numbers below." if has_bias
                     else "; the test split has no bias labels."))
    if results.get("uses_bias_labels"):
        page.text(f"The method itself ({results['method']}) trains with bias labels.", warn=True)
    last = _last_attempts(records)
    logged = Counter(r["phase"] for r in records if r.get("attempt", 0) == last[r["phase"]] and not r.get("candidate"))
    scores = results.get("selection_scores")  # none under `last`, nor in runs older than the record
    rows = [[phase, f"{epoch + 1} of {logged.get(phase, '?')}", *([_cell(scores.get(phase))] if scores else []),
             *([oracle["selected_epochs"].get(phase, 0) + 1] if oracle else [])]
            for phase, epoch in results["selected_epochs"].items()]
    page.table(["phase", f"kept epoch [{selection}]", *(["selection score"] if scores else []),
                *(["epoch an oracle would keep [oracle, test bias labels]"] if oracle else [])], rows)


def _test_section(page: Page, results: dict, has_bias: bool) -> None:
    """Each predictor's test metrics, a row per selection protocol the run recorded."""
    test, oracle, deployed = results["test"], results.get("oracle_view"), results["deployed"]
    keys = [k for k in METRIC_KEYS if any(k in m for m in test.values())]
    views = [(results["selection"], test)] + ([("oracle", oracle["test"])] if oracle else [])
    page.heading("Test results")
    page.table(["predictor", "selection", *keys],
               [[name + (" (deployed)" if name == deployed else ""), f"`{protocol}`", *(_cell(m.get(k)) for k in keys)]
                for protocol, table in views for name, m in table.items()],
               caption="Test split, accuracy in %; each row from the epochs its selection protocol kept"
               + ("" if has_bias else " (no bias labels: only label-free metrics)") + ".")


def _estimate_section(page: Page, results: dict, has_bias: bool) -> None:
    """The label-free estimate of the deployed model beside its true value, where bias labels give one."""
    estimate = results.get("estimate")
    if not estimate:
        return
    page.heading("Label-free estimate of the deployed model")
    page.text(f"Estimated for `{estimate['predictor']}` on the test split from its class labels alone: the groups "
              f"are the predictions of the bias proxy `{estimate['proxy']}`"
              + (f" (it disagrees with the label on {estimate['proxy_disagrees_pct']:.1f}% of the test samples)"
                 if "proxy_disagrees_pct" in estimate else "")
              + (". The truth reads the test bias labels." if has_bias else
                 ". The test split has no bias labels, so there is no truth to set it against.")
              + (f" Unreliable: {estimate['caveat']}." if estimate.get("caveat") else ""))
    record = {"estimate": estimate, "test": results["test"][estimate["predictor"]]}
    metrics = [k for k in ("unbiased", "conflicting", "aligned", "worst_group", "class_balanced") if k in estimate]
    page.table(["metric", "label-free estimate", f"truth [{results['selection']}]", "estimate - truth"],
               [[k, _cell(estimate[k]), _cell(record["test"].get(k)), _cell(estimate_error(record, k))]
                for k in metrics])


def _groups_section(page: Page, results: dict, out: Path, has_bias: bool) -> None:
    """The deployed model's (class x bias) heatmap; per-class bars where the test split has no bias labels."""
    selection, deployed = results["selection"], results["deployed"]
    final = results["test"][deployed]
    page.heading("Accuracy per group of the deployed model")
    if "groups" in final:
        groups_figure(out / "report_groups.png", final["groups"], f"{deployed} [{selection}]")
        page.figure(out / "report_groups.png", f"Test accuracy (%) of `{deployed}` per (class, bias) group, selection "
                    f"`{selection}`; aligned cells (bias = class) outlined, empty cells grey.")
        return
    why = "the test split has no bias labels (bias = -1)" if not has_bias else "this run did not record its group matrix"
    page.text(f"No (class x bias) heatmap: {why}, so there are no groups to draw. Per-class accuracy instead.")
    if final.get("per_class"):
        per_class_figure(out / "report_groups.png", final["per_class"], f"{deployed} [{selection}]")
        page.figure(out / "report_groups.png", f"Test accuracy (%) of `{deployed}` per class, selection `{selection}`.")
    else:
        page.text(f"This run did not record per-class accuracies; worst class {_cell(final.get('worst_class'))}%, "
                  f"accuracy {_cell(final.get('accuracy'))}%.")


def _checks_section(page: Page, results: dict, name: str) -> None:
    """The fit of the training labels per phase, and the warnings and restarts the method's checks gave."""
    page.heading("Label-free checks (the split check)")
    page.text("After each phase the trainer measures how well its predictors fit the training labels (no bias labels "
              "involved) and the method may warn about what it sees: DeNetDM, when its stage-1 deep branch fits too "
              "few labels to have taken up the bias, so that the shallow branch is not debiased.")
    page.table(["phase", "predictor", "train accuracy", "worst class"],
               [[phase, predictor, _cell(m.get("accuracy")), _cell(m.get("worst_class"))]
                for phase, fits in results.get("train_fit", {}).items() for predictor, m in fits.items()],
               caption="Fit of the training labels at each phase's kept epoch (label-free).")
    notes = run_notes([{**results, "key": name}])
    for heading, lines in notes.items():
        page.items([f"{heading}: {line}" for line in lines], warn=True)
    if not notes:
        page.text("No warnings: the method's checks passed.")


def curves_figure(path: Path, records: List[dict], results: dict, score: str) -> None:
    """A row per (phase, attempt, candidate setting): training losses, test accuracy per predictor (unbiased where bias labels
    exist), the label-free held-out score `score` per predictor; the kept epoch (and an oracle's) marked."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    attempts: Dict[tuple, List[dict]] = {}
    for r in records:  # a row per attempt, and per candidate setting where a phase had several
        attempts.setdefault((r["phase"], r.get("attempt", 0), r.get("candidate", 0)), []).append(r)
    ranked = results.get("candidates", {})
    last = _last_attempts(records)
    names = list(dict.fromkeys(n for r in records for split in ("test", "val") for n in r.get(split, {})))
    colour = {n: f"C{i}" for i, n in enumerate(names)}
    metric = "unbiased" if any("unbiased" in m for r in records for m in r.get("test", {}).values()) else "accuracy"
    has_val = any("val" in r for r in records)
    cols = 3 if has_val else 2
    fig, axes = plt.subplots(len(attempts), cols, figsize=(12, 2.7 * len(attempts) + 0.7), squeeze=False)
    oracle = (results.get("oracle_view") or {}).get("selected_epochs", {})
    for row, ((phase, attempt, candidate), recs) in zip(axes, attempts.items()):
        label = phase if last[phase] == 0 else f"{phase}, attempt {attempt + 1}" + (
            "" if attempt == last[phase] else " (discarded)")
        if phase in ranked:
            setting = ", ".join(f"{k}={v}" for k, v in ranked[phase]["settings"][candidate].items())
            label += f"\n{setting}" + (" (kept)" if candidate == ranked[phase]["chosen"] else "")
        kept_row = attempt == last[phase] and candidate == ranked.get(phase, {}).get("chosen", 0)
        losses = sorted({k for r in recs for k in r if k.startswith("train_")})
        marker = "o" if len(recs) <= 30 else None  # a point per epoch where lines are short
        for i, key in enumerate(losses):
            row[0].plot([r["epoch"] + 1 for r in recs if key in r], [r[key] for r in recs if key in r],
                        color=f"C{i}", lw=1.2, marker=marker, ms=3, label=key[len("train_"):])
        values = [r[k] for r in recs for k in losses if k in r]
        if values and min(values) > 0 and max(values) > 10 * min(values):  # losses that fall by decades
            row[0].set_yscale("log")
        if losses:
            row[0].legend(fontsize=7, loc="best")
        row[0].set_title("training losses", fontsize=9.5)
        row[0].set_ylabel(label, fontsize=10, fontweight="bold")
        panels = [(row[1], "test", metric, f"test {metric} (%)")]
        if has_val:
            panels.append((row[2], "val", score, f"held-out {score} (%), label-free"))
        for ax, split, key, title in panels:
            for name in names:
                points = [(r["epoch"] + 1, r[split][name][key]) for r in recs
                          if name in r.get(split, {}) and r[split][name].get(key) is not None]
                if points:
                    ax.plot(*zip(*points), color=colour[name], lw=1.2, marker=marker, ms=3, label=name)
            ax.set_title(title, fontsize=9.5)
        for ax in row:
            ax.set_xlabel("epoch", fontsize=8.5)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if kept_row and phase in results["selected_epochs"]:
                ax.axvline(results["selected_epochs"][phase] + 1, color="black", ls="--", lw=1,
                           label=f"kept epoch [{results['selection']}]")
            if kept_row and phase in oracle:
                ax.axvline(oracle[phase] + 1, color="crimson", ls=":", lw=1.3, label="an oracle's epoch [oracle]")
    handles = {lab: h for ax in axes[:, 1:].flat for h, lab in zip(*ax.get_legend_handles_labels())}
    handles = {lab: handles[lab] for lab in sorted(handles, key=lambda lab: lab not in names)}  # predictors first
    top = fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / top))
    fig.legend(handles.values(), handles.keys(), loc="upper center", bbox_to_anchor=(0.5, 1), ncol=min(len(handles), 6),
               fontsize=8.5, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def groups_figure(path: Path, groups: List[list], title: str) -> None:
    """The (class x bias) test-accuracy matrix as a heatmap, values written in, aligned cells outlined."""
    plt = pyplot()
    acc = np.array([[np.nan if v is None else v for v in row] for row in groups], dtype=float)
    n_class, n_bias = acc.shape
    side = min(max(2.4, 0.42 * max(n_class, n_bias) + 1.0), 7.0)
    fig, ax = plt.subplots(figsize=(side + 1.4, side))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")  # empty cells grey
    image = ax.imshow(np.ma.masked_invalid(acc), cmap=cmap, vmin=0, vmax=100)
    if max(n_class, n_bias) <= 16:  # room to write each cell's value
        for (i, j), v in np.ndenumerate(acc):
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.0f}", ha="center", va="center", fontsize=8,
                    color="black" if np.isnan(v) or v > 60 else "white")
    for k in range(min(n_class, n_bias)):
        ax.add_patch(plt.Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=1.6))
    ax.set_xticks(range(n_bias))
    ax.set_yticks(range(n_class))
    ax.tick_params(labelsize=8)
    ax.set_xlabel("bias attribute value")
    ax.set_ylabel("class")
    ax.set_title(f"{title}: test accuracy (%) per group", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="accuracy (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_class_figure(path: Path, per_class: List[Optional[float]], title: str) -> None:
    """Per-class test accuracy as bars: what a test split without bias labels can show."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(per_class) + 1.5), 3.2))
    values = [0.0 if v is None else v for v in per_class]
    ax.bar(range(len(values)), values, color="C0")
    ax.set_xticks(range(len(values)))
    ax.set_ylim(0, 100)
    ax.set_xlabel("class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title}: test accuracy per class", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def benchmark_page(folder: Path, out: Path) -> Page:
    from .benchmark import read_records

    records = [r for r in read_records(folder) if not r.get("variant")]
    if not records:
        raise RunFolderError(f"{folder}/results.jsonl holds no runs of a method grid (none, or only an ablation's, "
                             "whose table is the ablation's .md file); report a grid's folder or a run folder")
    s = BenchmarkSummary.of(records)
    meta = json.loads((folder / "benchmark.json").read_text()) if (folder / "benchmark.json").is_file() else {}
    page = Page(f"Benchmark {folder.name}: {s.dataset}")
    page.text(f"{len(records)} runs: methods {', '.join(s.methods)}; bias-conflicting ratios "
              f"{', '.join(map(s.ratio_label, s.ratios))}; selections {', '.join(f'`{x}`' for x in s.selections)}; "
              f"overrides applied to every run: `{' '.join(meta.get('overrides', [])) or 'none'}`.")
    page.heading("Selection protocols")
    page.text(PROTOCOLS)
    if "oracle" in s.selections:
        page.text("Numbers under `oracle` selected each checkpoint with the test split's bias labels: comparable with "
                  "the paper's, not label-free.", warn=True)
    plot(out / "report_accuracy.png", s)
    page.figure(out / "report_accuracy.png", "Unbiased test accuracy per method: mean ± std over seeds per selection "
                "protocol, the paper's Table 1 as black crosses.")
    page.heading("Unbiased test accuracy (%), mean ± std over seeds, beside the paper")
    rows = s.rows()
    page.table(list(rows[0]), [list(r.values()) for r in rows], caption="`ours_<selection>`: this benchmark under "
               "that selection protocol; `paper`: Table 1 of the paper (oracle-selected).")
    for selection in s.selections:
        page.table(*s.by_ratio(selection), caption=f"`{selection}` by ratio, the paper's Table 1 in brackets")
    header, rows, notes = estimate_rows(records)
    if rows:
        page.heading(ESTIMATE_TITLE)
        page.table(header, rows)
        for note in notes:
            page.text(note)
    for heading, lines in run_notes(records).items():
        page.heading(heading)
        page.items(lines, warn=True)
    return page
