"""The benchmark runner: grid, resume, consistency checks, reports."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import denetdm.benchmark as bench
from denetdm.cli import main
from denetdm.config import load_config
from denetdm.training import train
from denetdm.errors import ConfigError, RunFolderError
from denetdm.metrics import SUMMARY_KEYS
from denetdm.reports import write_ablation_report, write_reports

TINY = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=1", "method.stage2.epochs=1"]
TINY_ERM = ["data.name=synthetic", "device=cpu", "method.optim.epochs=1"]


def test_resume_skips_finished_runs_and_reports(tmp_path, monkeypatch):
    calls = []
    real = bench._run_one
    monkeypatch.setattr(bench, "_run_one", lambda spec, *a: calls.append(spec.key) or real(spec, *a))
    out = tmp_path / "bench"
    specs = bench.plan(["denetdm"], [0.05], [0], ["last", "oracle"], overrides=TINY)
    bench.run_benchmark(out, specs, TINY, quiet=True)
    # One epoch per stage: the oracle run would keep the same epochs, so it is read off the last run.
    assert calls == ["denetdm_r0.05_s0_last"]
    one_seed = next(csv.DictReader(open(out / "table.csv")))["ours_last"]
    assert one_seed.endswith(" (n=1)") and "±" not in one_seed  # no spread from one seed
    (out / "runs" / "denetdm_r0.05_s1_last").mkdir(parents=True)  # an interrupted run: restarted
    specs = bench.plan(["denetdm"], [0.05], [0, 1], ["last", "oracle"], overrides=TINY)
    records = bench.run_benchmark(out, specs, TINY, quiet=True)
    assert calls[1:] == ["denetdm_r0.05_s1_last"]
    assert len(records) == 4 == len((out / "results.jsonl").read_text().splitlines())
    record = records[0]
    assert record["deployed"] == "stage2_target" and record["test"] == record["branches"]["stage2_target"]
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert rows[0]["method"] == "denetdm" and rows[0]["ratio_pct"] == "5"
    assert "(n=2)" in rows[0]["ours_last"] and rows[0]["paper"] == "93.54 ± 0.22"
    text = (out / "table.md").read_text()
    assert "## `oracle` by ratio" in text and "| denetdm | 93.54" not in text and "[93.54]" in text
    assert (out / "accuracy_vs_ratio.png").stat().st_size > 1000
    # A method's warnings about its own run (DeNetDM's stage-1 split check) are listed under the tables.
    assert all(isinstance(r["warnings"], list) for r in records)
    write_reports(out, [{**records[0], "warnings": ["stage 1: split"]}, *records[1:]])
    assert f"## Runs with warnings\n\n- `{records[0]['key']}`: stage 1: split" in (out / "table.md").read_text()
    # A results folder from other overrides is refused, and nothing in it is touched.
    before = (out / "results.jsonl").read_text()
    with pytest.raises(RunFolderError, match="other overrides"):
        bench.run_benchmark(out, specs, [*TINY, "seed=3"], quiet=True)
    assert (out / "results.jsonl").read_text() == before


def test_parallel_workers_and_the_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["benchmark", "--methods", "erm", "--ratios", "0.02,0.05", "--seeds", "0", "--selections", "last",
            "--workers", "2", "--out", str(out), "-q", *TINY_ERM]
    assert main(args) == 0
    assert "erm" in capsys.readouterr().out
    keys = sorted(json.loads(l)["key"] for l in (out / "results.jsonl").read_text().splitlines())
    assert keys == ["erm_r0.02_s0_last", "erm_r0.05_s0_last"]


def test_one_phase_oracle_is_read_off_the_last_run(tmp_path, monkeypatch):
    """ERM has one phase, so its oracle numbers come from the `last` run and equal a real oracle run's."""
    calls = []
    real = bench._run_one
    monkeypatch.setattr(bench, "_run_one", lambda spec, *a: calls.append(spec.key) or real(spec, *a))
    tiny = ["data.name=synthetic", "device=cpu", "method.optim.epochs=4"]
    specs = bench.plan(["erm"], [0.05], [0], ["last", "oracle"], overrides=tiny)
    records = {r["key"]: r for r in bench.run_benchmark(tmp_path / "both", specs, tiny, quiet=True)}
    assert calls == ["erm_r0.05_s0_last"]
    derived = records["erm_r0.05_s0_oracle"]
    assert derived["derived_from"] == "erm_r0.05_s0_last" and derived["selection"] == "oracle"
    alone = bench.run_benchmark(tmp_path / "alone", specs[1:], tiny, quiet=True)[0]
    assert calls[1:] == ["erm_r0.05_s0_oracle"] and "derived_from" not in alone
    assert derived["selected_epochs"] == alone["selected_epochs"] and derived["config_hash"] == alone["config_hash"]
    for metric in SUMMARY_KEYS:
        assert derived["test"][metric] == alone["test"][metric]
    # Resuming with the oracle column already derived runs nothing.
    bench.run_benchmark(tmp_path / "both", specs, tiny, quiet=True)
    assert len(calls) == 2


def test_two_phase_oracle_continues_from_the_last_run(tmp_path, monkeypatch):
    """DeNetDM's oracle run shares stage 1 with its `last` twin: it starts stage 2 from the saved
    oracle-selected stage-1 state, and ends exactly where a from-scratch oracle run ends."""
    starts = []
    real = bench._run_one
    monkeypatch.setattr(bench, "_run_one", lambda spec, *a: starts.append((spec.key, a[3])) or real(spec, *a))
    tiny = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=4", "method.stage2.epochs=2"]
    specs = bench.plan(["denetdm"], [0.05], [0], ["last", "oracle"], overrides=tiny)
    records = {r["key"]: r for r in bench.run_benchmark(tmp_path / "both", specs, tiny, quiet=True)}
    last_dir = tmp_path / "both" / "runs" / "denetdm_r0.05_s0_last"
    shared = records["denetdm_r0.05_s0_oracle"]
    if "derived_from" not in shared:  # stage-1 epochs differ: stage 2 was trained again
        assert starts[1] == ("denetdm_r0.05_s0_oracle", str(last_dir / "checkpoints" / "oracle_start.pt"))
        assert shared["continued_from"] == "denetdm_r0.05_s0_last"
    alone = bench.run_benchmark(tmp_path / "alone", specs[1:], tiny, quiet=True)[0]
    assert starts[-1] == ("denetdm_r0.05_s0_oracle", None)
    assert shared["selected_epochs"] == alone["selected_epochs"]
    for metric in SUMMARY_KEYS:
        assert shared["test"][metric] == alone["test"][metric]
    # Continuing from the checkpoint always reproduces the from-scratch oracle run, whichever path
    # the benchmark took above; the stage-1 records are taken over, not retrained.
    cfg = load_config("colored_mnist", specs[1].overrides(tiny))
    again = train(cfg, tmp_path / "again", quiet=True, start_from=last_dir / "checkpoints" / "oracle_start.pt")
    assert again["selected_epochs"] == alone["selected_epochs"]
    assert again["test"]["stage2_target"]["unbiased"] == alone["test"]["unbiased"]
    phases = [json.loads(line)["phase"] for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["stage1"] * 4 + ["stage2"] * 2
    with pytest.raises(RunFolderError, match="another config"):
        train(load_config("colored_mnist", [*specs[1].overrides(tiny), "seed=1"]), tmp_path / "bad", quiet=True,
              start_from=last_dir / "checkpoints" / "oracle_start.pt")


@pytest.mark.parametrize("shared_attempts", [0, 1])
def test_an_oracle_twin_restarts_stage1_as_a_from_scratch_oracle_run_would(tmp_path, monkeypatch, shared_attempts):
    """With stage-1 restarts, the oracle twin takes over the attempts its `last` run shares with it
    (none when their first attempts select other epochs, else the first), restarts where an oracle
    run would, and ends where a from-scratch oracle run ends."""
    import denetdm.methods.denetdm as dm
    from denetdm.selection import Selector

    monkeypatch.setattr(dm, "EVEN_FIT_ABOVE", 101.0)
    monkeypatch.setattr(dm, "SPLIT_WARN_BELOW", 101.0)  # every split "fails": both restart, once
    monkeypatch.setattr(bench, "_derive_oracle", lambda *a: None)  # force the continuation path
    # Which stage-1 epoch the oracle keeps must not hang on this CPU's float trajectory: its score is
    # made a function of the epoch, the last one (shared with `last`) or the first (not shared).
    observe = Selector.observe

    def by_epoch(self, epoch, metrics, model, *candidate):
        if self.protocol == "oracle" and self.phase.name == "stage1":
            self.score = lambda _: float(epoch if shared_attempts else -epoch)
        observe(self, epoch, metrics, model, *candidate)

    monkeypatch.setattr(Selector, "observe", by_epoch)
    seed = 0
    tiny = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=4", "method.stage1.lr=0.03",
            "method.stage2.epochs=2", "method.stage1_restarts=1"]
    specs = bench.plan(["denetdm"], [0.05], [seed], ["last", "oracle"], overrides=tiny)
    with pytest.warns(UserWarning, match="restart 1"):
        twin = bench.run_benchmark(tmp_path / "both", specs, tiny, quiet=True)[1]
        alone = bench.run_benchmark(tmp_path / "alone", specs[1:], tiny, quiet=True)[0]
    start = torch.load(tmp_path / "both" / "runs" / specs[0].key / "checkpoints" / "oracle_start.pt", weights_only=True)
    assert len(start["restarts"].get("stage1", [])) == shared_attempts
    assert twin["continued_from"] == specs[0].key and "continued_from" not in alone
    assert len(twin["restarts"]["stage1"]) == len(alone["restarts"]["stage1"]) == 1
    assert twin["selected_epochs"] == alone["selected_epochs"] and twin["branches"] == alone["branches"]
    assert "## Runs with restarted phases" in (tmp_path / "both" / "table.md").read_text()

    def records(folder):
        lines = (tmp_path / folder / "runs" / specs[1].key / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in lines]

    assert records("both") == records("alone")  # attempts included


def test_an_oracle_twin_runs_as_soon_as_its_last_run_lands(tmp_path, monkeypatch):
    """Not after the whole grid: an interrupted benchmark then holds both columns of what it finished."""
    calls = []
    real = bench._run_one
    monkeypatch.setattr(bench, "_run_one", lambda spec, *a: calls.append((spec.key, a[3] is not None)) or real(spec, *a))
    monkeypatch.setattr(bench, "_derive_oracle", lambda *a: None)  # force the continuation path
    specs = bench.plan(["denetdm"], [0.05], [0, 1], ["last", "oracle"], overrides=TINY)
    records = bench.run_benchmark(tmp_path, specs, TINY, quiet=True)
    assert calls == [("denetdm_r0.05_s0_last", False), ("denetdm_r0.05_s0_oracle", True),
                     ("denetdm_r0.05_s1_last", False), ("denetdm_r0.05_s1_oracle", True)]
    assert [r.get("continued_from") for r in records] == [None, "denetdm_r0.05_s0_last", None, "denetdm_r0.05_s1_last"]


def test_a_finished_run_whose_record_was_lost_is_recovered(tmp_path, monkeypatch):
    """A parent killed between a worker's finish and its append leaves results.json behind: the
    next call appends that run's record instead of training it again, and still checks its config."""
    calls = []
    real = bench._run_one
    monkeypatch.setattr(bench, "_run_one", lambda spec, *a: calls.append(spec.key) or real(spec, *a))
    specs = bench.plan(["erm"], [0.05], [0], ["last", "oracle"], overrides=TINY_ERM)
    first = {r["key"]: r for r in bench.run_benchmark(tmp_path, specs, TINY_ERM, quiet=True)}
    (tmp_path / "results.jsonl").write_text("")
    again = {r["key"]: r for r in bench.run_benchmark(tmp_path, specs, TINY_ERM, quiet=True)}
    assert calls == ["erm_r0.05_s0_last"] and set(again) == set(first)
    assert again["erm_r0.05_s0_last"]["test"] == first["erm_r0.05_s0_last"]["test"]
    assert again["erm_r0.05_s0_last"]["device"] == "cpu"
    # A leftover folder from another config is not taken: it is trained afresh.
    (tmp_path / "results.jsonl").write_text("")
    config = tmp_path / "runs" / "erm_r0.05_s0_last" / "config.yaml"
    config.write_text(config.read_text().replace("seed: 0", "seed: 7", 1))
    bench.run_benchmark(tmp_path, specs, TINY_ERM, quiet=True)
    assert calls == ["erm_r0.05_s0_last"] * 2


def test_bad_grids_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        bench.plan(["nope"], [0.01], [0], ["last"])
    with pytest.raises(ConfigError, match="outside"):
        bench.plan(["erm"], [1.5], [0], ["last"])
    assert main(["benchmark", "--ratios", "a,b", "--out", str(tmp_path / "x")]) == 2


def test_ablation_grid_runs_variants_and_reports(tmp_path):
    specs = bench.plan_ablation("table5", seeds=[0], overrides=TINY)
    assert [s.key for s in specs] == ["denetdm-deep5_shallow5_r0.01_s0_last", "denetdm-deep5_shallow3_r0.01_s0_last"]
    assert "method.shallow.depth=5" in specs[0].overrides(TINY)
    records = bench.run_benchmark(tmp_path, specs, TINY, quiet=True)
    write_ablation_report(tmp_path, "table5", bench.ABLATIONS["table5"], records)
    text = (tmp_path / "table5.md").read_text()
    assert "deep5_shallow3" in text and "stage1_shallow conflicting" in text and "83.17" in text
    with pytest.raises(ConfigError, match="unknown ablation"):
        bench.plan_ablation("table99")


def test_config_hash_ignores_defaults_but_not_settings():
    from denetdm.config import load_config

    base = bench.config_hash(load_config("erm_colored_mnist"))
    assert base == bench.config_hash(load_config("erm_colored_mnist", ["method.model.input_scale=1.0"]))
    assert base != bench.config_hash(load_config("erm_colored_mnist", ["method.model.input_scale=0.5"]))
    assert base != bench.config_hash(load_config("colored_mnist"))


@pytest.mark.parametrize("to_group, sig", [(True, "SIGINT"), (False, "SIGTERM"), (True, "SIGTERM")])
def test_ctrl_c_stops_parallel_runs_at_once(tmp_path, to_group, sig):
    """Ctrl-C reaches the whole process group, `kill` the parent only, `timeout` and schedulers send
    SIGTERM to the group; each way the runner must stop its workers at once, not wait for them or
    leave them running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "stopped"
    cmd = [sys.executable, "-c", "import sys; from denetdm.cli import main; sys.exit(main())", "benchmark",
           "--methods", "erm", "--ratios", "0.02,0.05", "--seeds", "0,1", "--selections", "last",
           "--workers", "2", "--out", str(out), "-q", "data.name=synthetic", "device=cpu", "method.optim.epochs=100000"]
    # As from a terminal: a shell's background job (nohup ... &) ignores SIGINT, and the child would inherit that.
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not any(p.glob("metrics.jsonl") for p in (out / "runs").glob("*")) and time.time() < deadline:
            time.sleep(0.5)
        (os.killpg if to_group else os.kill)(proc.pid, getattr(signal, sig))
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "the same command continues" in proc.stderr.read()
    for _ in range(40):  # no worker left behind (the pool's helpers may take a moment to exit)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.25)
    else:
        pytest.fail("processes of the stopped benchmark are still running")
    assert (out / "results.jsonl").read_text() == ""


def test_workers_die_with_a_parent_killed_outright_and_their_runs_resume(tmp_path):
    """SIGKILL (or the OOM killer) gives the parent no chance to stop its workers: the kernel must."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    args = ["benchmark", "--methods", "erm", "--ratios", "0.02,0.05", "--seeds", "0", "--selections", "last",
            "--workers", "2", "--out", str(out), "-q", "data.name=synthetic", "device=cpu", "threads=1"]
    cmd = [sys.executable, "-c", "import sys; from denetdm.cli import main; sys.exit(main())", *args]
    proc = subprocess.Popen([*cmd, "method.optim.epochs=100000"], start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(list((out / "runs").glob("*/checkpoints/resume.pt"))) < 2 and time.time() < deadline:
            time.sleep(0.2)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == proc.pid]
        assert len(children) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for _ in range(80):
            alive = [c for c in children if Path(f"/proc/{c}").exists() and _state(c) != "Z"]
            if not alive:
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"workers {alive} outlived their killed parent")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # The killed runs are left as they were, to resume: a running status and their resume points.
    assert {json.loads(p.read_text())["status"] for p in (out / "runs").glob("*/status.json")} == {"running"}


def _parent(proc_dir) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def benchmark_script(name):
    """A script of benchmarks/ imported as a module (they are not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage2_rerun_keeps_the_source_stage1_and_trains_stage2_under_the_new_settings(tmp_path):
    """benchmarks/stage2_rerun.py: the source run's stage-1 records, selection and split check carry
    over; only stage 2 trains, under the new setting; a stage-1 key is refused."""
    import subprocess
    import sys

    rerun = benchmark_script("stage2_rerun")
    tiny = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=2", "method.stage2.epochs=2"]
    source = tmp_path / "source"
    bench.run_benchmark(source, bench.plan(["denetdm"], [0.05], [0], ["proxy"], overrides=tiny), tiny, quiet=True)
    (record,) = bench.read_records(source)
    rerun.job((record, source, tmp_path / "new", ["method.stage2.ema=0.5"]))
    old_run, new_run = source / "runs" / record["key"], tmp_path / "new" / "runs" / record["key"]
    lines = lambda run, phase: [l for l in (run / "metrics.jsonl").read_text().splitlines() if json.loads(l)["phase"] == phase]
    assert lines(new_run, "stage1") == lines(old_run, "stage1")
    assert len(lines(new_run, "stage2")) == 2
    before, after = (json.loads((run / "results.json").read_text()) for run in (old_run, new_run))
    assert after["selected_epochs"]["stage1"] == before["selected_epochs"]["stage1"]
    assert after["train_fit"]["stage1"] == before["train_fit"]["stage1"]
    assert after["stage1_from"] == str(old_run)
    assert "ema: 0.5" in (new_run / "config.yaml").read_text()
    assert "meta" in torch.load(new_run / "checkpoints" / "final.pt", weights_only=False)  # as train() writes it
    assert not (new_run / "checkpoints" / "resume.pt").exists()
    refused = subprocess.run([sys.executable, rerun.__file__, str(source), "--out", str(tmp_path / "x"), "method.stage1.lr=1"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "method.stage1.lr is read by stage 1" in refused.stderr
    assert not (tmp_path / "x").exists()


def test_unseen_data_builders_make_the_documented_bias_and_load_as_a_users_npz(tmp_path):
    """benchmarks/unseen_data.py: each dataset ties its bias to the class at the stated share, and its
    .npz reads through the `npz` loader a user's data goes through."""
    from denetdm.data import create_dataset

    unseen = benchmark_script("unseen_data")
    rng = np.random.default_rng(0)
    digits, labels = rng.integers(0, 256, (4000, 28, 28)), np.arange(4000) % 10
    for name, (build, conflicting, _) in unseen.DATASETS.items():
        x, y, bias = build(digits, labels, 0.2, rng)
        assert x.min() >= 0 and x.max() <= 1 and len(x) == len(y) == len(bias)
        assert abs((bias != y).mean() - 0.2) < 0.03 and set(np.unique(bias)) == set(np.unique(y))
        split = np.r_[np.zeros(len(y) - 500, int), np.full(500, 2)]
        np.savez(tmp_path / f"{name}.npz", x=(x * 255).round().astype(np.uint8), y=y, bias=bias, split=split)
        cfg = load_config("custom_arrays", [f"data.path={tmp_path / name}.npz"])
        splits = create_dataset(cfg.data, with_val=True, progress=False)
        assert splits.train.input_shape == tuple(x.shape[1:]) and splits.train.num_classes == len(np.unique(y))
        assert len(splits.test) == 500 and splits.val is not None  # proxy holds out a part of train
