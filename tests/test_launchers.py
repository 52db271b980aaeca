"""`denetdm benchmark --launcher submitit|print`: the runs are trained elsewhere (submitit jobs, printed
`denetdm train` lines) and the benchmark lands them from their folders, as the local launcher does."""
import os
import shlex
import subprocess
import sys
from pathlib import Path

import denetdm.benchmark as bench
from denetdm.cli import _load, build_parser, main

TINY = ["data.name=synthetic", "device=cpu", "threads=1", "method.stage1.epochs=1", "method.stage2.epochs=1"]
GRID = ["--methods", "denetdm", "--ratios", "0.05", "--selections", "last,oracle"]


def _no_derived_oracles(monkeypatch):
    """Every oracle twin continues from its `last` run (what a longer stage 1 gives): a run of its own."""
    monkeypatch.setattr(bench, "_derive_oracle", lambda *a: None)


def _summary(records):
    return {r["key"]: (r["config_hash"], r["test"], r["selected_epochs"], r.get("continued_from")) for r in records}


def test_submitit_jobs_land_the_records_a_local_run_lands(tmp_path, monkeypatch):
    _no_derived_oracles(monkeypatch)
    specs = bench.plan(["denetdm"], [0.05], [0, 1], ["last", "oracle"], overrides=TINY)
    local = bench.run_benchmark(tmp_path / "local", specs, TINY, quiet=True)
    jobs = bench.run_benchmark(tmp_path / "jobs", specs, TINY, quiet=True, launcher="submitit", cluster="local",
                               slurm={"timeout_min": 5})
    assert _summary(jobs) == _summary(local) == _summary(bench.read_records(tmp_path / "jobs"))
    assert {r["continued_from"] for r in jobs if r["selection"] == "oracle"} == {s.key for s in specs[::2]}
    assert len(list((tmp_path / "jobs" / "submitit").glob("*_result.pkl"))) == 4
    bench.run_benchmark(tmp_path / "jobs", specs, TINY, quiet=True, launcher="submitit", cluster="local")
    assert len(list((tmp_path / "jobs" / "submitit").glob("*_result.pkl"))) == 4  # all recorded: nothing submitted


def test_printed_commands_train_the_runs_and_a_rerun_collects_them(tmp_path, monkeypatch, capsys):
    _no_derived_oracles(monkeypatch)
    out = tmp_path / "bench"
    specs = {s.key: s for s in bench.plan(["denetdm"], [0.05], [0, 1], ["last", "oracle"], overrides=TINY)}
    args = ["benchmark", "--launcher", "print", *GRID, "--seeds", "0,1", "--out", str(out), *TINY]

    def printed():
        assert main(args) == 0
        lines = capsys.readouterr().out.splitlines()
        for line in lines:  # each line is the config the benchmark would train, into that run's folder
            words = shlex.split(line)
            parsed = build_parser().parse_args(words[1:])
            key = Path(parsed.out).name
            cfg = bench.load_config(bench.preset_for("denetdm", "colored_mnist"), specs[key].overrides(TINY))
            assert bench.config_hash(_load(parsed)) == bench.config_hash(cfg)
        return lines

    lasts = printed()  # the oracle twins wait: only their last runs tell whether they are derived
    assert len(lasts) == 2 and all("_last" in line for line in lasts)
    assert not (out / "runs").exists() and not bench.read_records(out)
    _run(lasts)
    twins = printed()  # the last runs are collected; their twins continue from them
    assert [len(bench.read_records(out)), len(twins)] == [2, 2] and all("--start-from" in line for line in twins)
    _run(twins)
    monkeypatch.setattr(bench, "_run_one", lambda *a: (_ for _ in ()).throw(AssertionError("trained again")))
    assert main([*args[:2], "local", *args[3:], "-q"]) == 0
    records = bench.read_records(out)
    assert sorted(r["key"] for r in records) == sorted(specs)
    assert {r["key"]: r.get("continued_from") for r in records if r["selection"] == "oracle"} == {
        "denetdm_r0.05_s0_oracle": "denetdm_r0.05_s0_last", "denetdm_r0.05_s1_oracle": "denetdm_r0.05_s1_last"}


def _run(lines):
    """The printed lines as a scheduler of your own would run them (here: at once, in the background)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    script = "\n".join(f"{line} >/dev/null 2>&1 &" for line in lines) + "\nwait"
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=300)


def test_a_failed_job_is_one_line_and_finished_runs_stay_recorded(tmp_path, monkeypatch, capsys):
    out = tmp_path / "bench"
    real = bench._derive_oracle

    def broken_start(last, spec, cfg_hash):  # the twin's job then fails to read the state it continues from
        (out / "runs" / last["key"] / "checkpoints" / "oracle_start.pt").write_bytes(b"not a checkpoint")

    monkeypatch.setattr(bench, "_derive_oracle", broken_start)
    args = ["benchmark", "--launcher", "submitit", "--cluster", "local", *GRID, "--seeds", "0", "--out", str(out),
            "-q", *TINY]
    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    twin = out / "runs" / "denetdm_r0.05_s0_oracle"
    assert "run denetdm_r0.05_s0_oracle failed (submitit job" in errors[0] and f"its folder is {twin}" in errors[0]
    log = Path(errors[0].split("its log is ")[1].split(")")[0])
    assert log.parent == out / "submitit" and "oracle_start.pt" in log.read_text()
    assert [r["key"] for r in bench.read_records(out)] == ["denetdm_r0.05_s0_last"]
    monkeypatch.setattr(bench, "_derive_oracle", real)
    assert main(args) == 0  # rerunning continues: the twin is read off its recorded last run
    assert [r["key"] for r in bench.read_records(out)] == ["denetdm_r0.05_s0_last", "denetdm_r0.05_s0_oracle"]


def test_the_submitit_launcher_without_submitit_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    args = ["benchmark", "--launcher", "submitit", *GRID, "--seeds", "0", "--out", str(tmp_path), *TINY]
    assert main(args) == 2
    assert "pip install 'denetdm[cluster]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
