"""`denetdm report`: a self-contained page of a run or benchmark folder, and its errors."""
import base64
import html
import json
import re
import shutil

import numpy as np
import pytest

import denetdm.benchmark as bench
from denetdm.cli import main
from denetdm.config import load_config
from denetdm.reports import ESTIMATE_TITLE
from denetdm.run_report import write_report
from denetdm.training import train

TINY = ["data.name=synthetic", "device=cpu", "threads=1", "method.stage1.epochs=1", "method.stage2.epochs=1"]
RUN = "denetdm_r0.05_s0_last"


@pytest.fixture(scope="module")
def benchmark_dir(tmp_path_factory):
    """A one-run benchmark (its oracle record read off the `last` run), whose run folder is a run too."""
    out = tmp_path_factory.mktemp("report") / "bench"
    bench.run_benchmark(out, bench.plan(["denetdm"], [0.05], [0], ["last", "oracle"], overrides=TINY), TINY, quiet=True)
    return out


def images(page: str) -> list:
    """The page's images, after checking that it loads nothing from outside itself."""
    assert not re.search(r"https?://|<link|<script|href=", page)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_run_page_is_self_contained_with_curves_heatmap_config_and_protocols(benchmark_dir, tmp_path, capsys):
    run = benchmark_dir / "runs" / RUN
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    path = tmp_path / "out" / "report.html"
    assert capsys.readouterr().out.strip() == str(path)
    page = path.read_text()
    embedded = images(page)
    # The training curves and the (class x bias) heatmap, the same PNGs as beside report.md.
    for name in ("report_curves.png", "report_groups.png"):
        assert (tmp_path / "out" / name).read_bytes() in embedded
    assert all(png.startswith(b"\x89PNG") for png in embedded)
    assert html.escape((run / "config.yaml").read_text()) in page
    # Every number is labelled with its protocol: the run's own (`last`) and the oracle view it recorded.
    assert "<code>last</code>" in page and "<code>oracle</code>" in page and "Label-free: no bias labels" in page
    assert "label-free estimate" in page and "Label-free checks" in page and "stage1_deep" in page
    md = (tmp_path / "out" / "report.md").read_text()
    assert "](report_curves.png)" in md and "](report_groups.png)" in md and "```yaml\nmethod:" in md
    # An oracle-selected run says so where its protocol is named.
    oracle = tmp_path / "oracle"
    shutil.copytree(run, oracle)
    results = json.loads((oracle / "results.json").read_text())
    (oracle / "results.json").write_text(json.dumps({**results, "selection": "oracle"}))
    assert "ORACLE selection" in write_report(oracle).read_text()


def test_run_without_bias_labels_shows_per_class_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(160) % 4
    x = rng.integers(0, 256, (160, 3, 8, 8), dtype=np.uint8)
    x[:, 0] = y[:, None, None] * 60
    cfg = load_config("custom_arrays", ["device=cpu", "threads=1", "method.stage1.epochs=1", "method.stage2.epochs=1"])
    train(cfg, tmp_path / "run", quiet=True, data={"x": x, "y": y})  # no bias key: bias = -1 everywhere
    page = write_report(tmp_path / "run").read_text()
    embedded = images(page)
    assert (tmp_path / "run" / "report_curves.png").read_bytes() in embedded
    assert "No (class x bias) heatmap: the test split has no bias labels" in page
    assert (tmp_path / "run" / "report_groups.png").read_bytes() in embedded  # the per-class bars instead
    assert "no truth to set it against" in page and "unbiased" not in page.split("Test results")[1].split("</table>")[0]


def test_benchmark_page_has_the_tables_beside_the_paper_and_the_plot(benchmark_dir, tmp_path):
    page = write_report(benchmark_dir, tmp_path).read_text()
    assert (tmp_path / "report_accuracy.png").read_bytes() in images(page)
    assert (benchmark_dir / "accuracy_vs_ratio.png").stat().st_size > 1000  # write_reports draws the same plot
    assert "[93.54]" in page  # the paper's DeNetDM at 5%, beside ours
    assert "<code>last</code> by ratio" in page and "<code>oracle</code> by ratio" in page
    assert html.escape(ESTIMATE_TITLE) in page and f"<code>{RUN}</code>" in page
    md = (tmp_path / "report.md").read_text()
    assert "| method | 5% |" in md and "](report_accuracy.png)" in md


def test_a_folder_that_is_no_run_or_an_unfinished_run_is_one_line_and_exit_2(benchmark_dir, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(benchmark_dir / "runs" / RUN, unfinished)
    (unfinished / "results.json").unlink()
    (unfinished / "status.json").write_text(json.dumps({"status": "running", "message": "", "time": ""}))
    (tmp_path / "empty").mkdir()
    for folder, expected in ((tmp_path / "empty", "neither a run folder"), (tmp_path / "missing", "is not a folder"),
                             (unfinished, "denetdm train --resume")):
        assert main(["report", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and expected in err and str(folder) in err
    assert not (tmp_path / "empty" / "report.html").exists()
