"""A run survives being stopped: resume to the same numbers, a loud stop on divergence, run status."""
import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import denetdm.training as training
from denetdm.benchmark import plan, read_records, run_benchmark
from denetdm.checkpoints import read_status
from denetdm.cli import main
from denetdm.config import load_config
from denetdm.errors import RunFolderError
from denetdm.selection import Selector
from denetdm.training import TrainingDiverged, evaluate_checkpoint, train

TINY = ["data.name=synthetic", "device=cpu", "threads=1"]
METHOD_RUNS = {  # preset -> overrides: every method with a trainer of its own, several epochs per phase
    "colored_mnist": ["method.stage1.epochs=3", "method.stage2.epochs=3", "method.stage1_restarts=1",
                      "method.chance_restart_shallow_lr_scale=0.1"],
    "custom_arrays": ["method.stage1.epochs=2", "method.stage2.epochs=3"],  # stage 2 per distillation weight
    "lff_colored_mnist": ["method.optim.epochs=4"],
    "jtt_colored_mnist": ["method.identification.epochs=2", "method.upweighted.epochs=3"],
    "dfa_colored_mnist": ["method.optim.epochs=4", "method.curr_step=3", "method.lr_decay_step=5"],  # swap and decay inside
    "groupdro_colored_mnist": ["method.optim.epochs=3"],
}
SAME = ("test", "selected_epochs", "selection_scores", "train_fit", "estimate", "warnings", "restarts", "oracle_view",
        "candidates")


def same_run(a: dict, b: dict) -> None:
    for key in SAME:
        assert a.get(key) == b.get(key), key


def metrics_without_time(path):
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in path.read_text().splitlines()]


class Stop(Exception):
    pass


def stop_after(monkeypatch, calls: int) -> None:
    """Make the `calls`-th epoch evaluation raise, as if the process died right after that epoch ran."""
    seen = {"n": 0}
    observe = Selector.observe

    def dying(self, *args, **kwargs):
        if self.protocol != "oracle":  # count each epoch once, whether or not an oracle shadow watches
            seen["n"] += 1
            if seen["n"] == calls:
                raise Stop
        return observe(self, *args, **kwargs)

    monkeypatch.setattr(Selector, "observe", dying)


@pytest.mark.parametrize("preset", sorted(METHOD_RUNS))
def test_a_stopped_run_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch, preset):
    import denetdm.methods.denetdm as dm

    if preset == "colored_mnist":  # every stage 1 warns at chance: the resume crosses a restart at a slower rate
        monkeypatch.setattr(dm, "SPLIT_WARN_BELOW", 101.0)
        monkeypatch.setattr(dm, "EVEN_FIT_ABOVE", 101.0)
        check = dm.DeNetDM.phase_warnings

        def at_chance(self, phase, fit):
            messages = check(self, phase, fit)
            self.deep_at_chance = phase == "stage1"
            return messages

        monkeypatch.setattr(dm.DeNetDM, "phase_warnings", at_chance)
    cfg = load_config(preset, [*TINY, *METHOD_RUNS[preset]])
    whole = train(cfg, tmp_path / "whole", quiet=True)
    epochs = len((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines())
    out = tmp_path / "stopped"
    previous = 1
    for stop in sorted(random.Random(preset).sample(range(1, epochs + 1), 3)):  # the epochs (of all) it dies in
        with monkeypatch.context() as m:
            stop_after(m, stop - previous + 1)  # the epoch it died in last time is trained again first
            previous = stop
            with pytest.raises(Stop):
                train(cfg, out, quiet=True, resume=out.exists())
        assert read_status(out)["status"] == "failed"
    resumed = train(cfg, out, quiet=True, resume=True)
    same_run(whole, resumed)
    assert metrics_without_time(out / "metrics.jsonl") == metrics_without_time(tmp_path / "whole" / "metrics.jsonl")
    a = torch.load(out / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "whole" / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_status(out)["status"] == "complete" and not (out / "checkpoints" / "resume.pt").exists()


def _wait_for_lines(path, n, process, limit=120.0):
    start = time.time()
    while time.time() - start < limit and process.poll() is None:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_numbers(tmp_path):
    args = ["--preset", "synthetic_demo", "-q", *TINY, "method.stage1.epochs=4", "method.stage2.epochs=4"]
    cmd = [sys.executable, "-c", "import sys; from denetdm.cli import main; sys.exit(main())", "train"]
    subprocess.run([*cmd, *args, "--out", str(tmp_path / "whole")], check=True, capture_output=True)
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    out, log = tmp_path / "killed", tmp_path / "killed" / "metrics.jsonl"
    rng = random.Random(0)
    kills = 0
    for lines in (1, 3, 5, 7):  # in stage 1, at its end, in stage 2, at the last epoch
        resume = ["--resume", str(out)] if out.exists() else [*args, "--out", str(out)]
        process = subprocess.Popen([*cmd, *resume], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_lines(log, lines, process)
        time.sleep(rng.uniform(0.0, 0.05))  # mid-epoch or mid-write, wherever it falls
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2
    if read_status(out)["status"] != "complete":
        assert main(["train", "--resume", str(out), "-q"]) == 0
    same_run(whole, json.loads((out / "results.json").read_text()))
    assert metrics_without_time(log) == metrics_without_time(tmp_path / "whole" / "metrics.jsonl")


def test_resume_refuses_a_complete_run_another_config_and_a_non_run(tmp_path, capsys):
    cfg = load_config("synthetic_demo", [*TINY, "method.stage1.epochs=1", "method.stage2.epochs=1"])
    train(cfg, tmp_path / "done", quiet=True)
    with pytest.raises(RunFolderError, match="already complete"):
        train(cfg, tmp_path / "done", quiet=True, resume=True)
    (tmp_path / "done" / "status.json").write_text('{"status": "failed"}')
    with pytest.raises(RunFolderError, match="another config"):
        train(load_config("synthetic_demo", [*TINY, "seed=3"]), tmp_path / "done", quiet=True, resume=True)
    (tmp_path / "empty").mkdir()
    assert main(["train", "--resume", str(tmp_path / "empty")]) == 2
    assert main(["train", "--resume", str(tmp_path / "done"), "seed=2"]) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "drop --preset" in err
    # A finished run cannot be trained into again; the error says how to go on with an unfinished one.
    with pytest.raises(RunFolderError, match="--resume"):
        train(cfg, tmp_path / "done", quiet=True)


def test_evaluate_refuses_an_unfinished_run_in_one_line(tmp_path, monkeypatch, capsys):
    cfg = load_config("synthetic_demo", [*TINY, "method.stage1.epochs=2", "method.stage2.epochs=1"])
    stop_after(monkeypatch, 2)
    with pytest.raises(Stop):
        train(cfg, tmp_path / "run", quiet=True)
    # A final.pt copied in by hand does not make it complete: the status decides.
    with pytest.raises(RunFolderError, match="not complete .*--resume"):
        evaluate_checkpoint(tmp_path / "run", device="cpu", quiet=True)
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_failed_start_leaves_nothing_that_blocks_a_rerun(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--preset", "custom_arrays", f"data.path={tmp_path / 'missing.npz'}", "--out", str(out)]) == 2
    assert not out.exists()


def test_a_diverging_run_stops_with_one_line_naming_phase_epoch_and_last_good_state(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(["train", "--preset", "synthetic_demo", "-q", *TINY, "method.stage1.epochs=3",
                 "method.stage1.optimizer=sgd", "method.stage1.lr=1e12", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "stage1, epoch" in err[0] and "not finite" in err[0]
    assert "lower the learning rate" in err[0]
    assert read_status(out)["status"] == "failed" and not (out / "results.json").exists()
    for line in (out / "metrics.jsonl").read_text().splitlines():  # strict JSON: no bare NaN
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_strict_json_writes_null_for_nan():
    from denetdm.fileio import dumps

    assert json.loads(dumps({"a": float("nan"), "b": [1.0, float("inf")], "c": 2})) == {"a": None, "b": [1.0, None], "c": 2}


def test_benchmark_resumes_an_unfinished_run_folder(tmp_path, monkeypatch):
    overrides = [*TINY, "method.stage1.epochs=2", "method.stage2.epochs=2"]
    specs = plan(["denetdm"], [0.05], [0], ["last"], overrides=overrides)
    whole = run_benchmark(tmp_path / "whole", specs, overrides, quiet=True)
    with monkeypatch.context() as m:
        stop_after(m, 3)
        with pytest.raises(Stop):
            run_benchmark(tmp_path / "stopped", specs, overrides, quiet=True)
    run_dir = tmp_path / "stopped" / "runs" / specs[0].key
    assert (run_dir / "checkpoints" / "resume.pt").is_file()
    resumed = run_benchmark(tmp_path / "stopped", specs, overrides, quiet=True)
    assert [r["test"] for r in resumed] == [r["test"] for r in whole]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 4


def test_a_second_benchmark_on_a_busy_folder_is_refused(tmp_path):
    from denetdm.benchmark import folder_lock

    with folder_lock(tmp_path):
        with pytest.raises(RunFolderError, match="another benchmark is running"):
            run_benchmark(tmp_path, [], quiet=True)


def test_a_torn_last_line_is_skipped_with_a_warning_and_cut_before_appending(tmp_path):
    overrides = [*TINY, "method.optim.epochs=1"]
    specs = plan(["erm"], [0.05], [0], ["last"], overrides=overrides)
    run_benchmark(tmp_path, specs, overrides, quiet=True)
    whole = (tmp_path / "results.jsonl").read_text()
    (tmp_path / "results.jsonl").write_text(whole + '{"key": "erm_r0.05_s1", "te')  # killed mid-line
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_records(tmp_path)) == 1
    with pytest.warns(UserWarning, match="torn last line"):
        run_benchmark(tmp_path, specs, overrides, quiet=True)
    assert (tmp_path / "results.jsonl").read_text() == whole
    (tmp_path / "results.jsonl").write_text('{"torn\n' + whole)
    with pytest.raises(RunFolderError, match="line 1 is not JSON"):
        read_records(tmp_path)


def test_results_record_provenance_and_files_are_group_readable(tmp_path):
    import os
    import stat

    cfg = load_config("synthetic_demo", [*TINY, "method.stage1.epochs=1", "method.stage2.epochs=1"])
    a = train(cfg, tmp_path / "a", quiet=True)["provenance"]
    b = train(load_config("synthetic_demo", [*TINY, "method.stage1.epochs=1", "method.stage2.epochs=1",
                                             "data.seed=5"]), tmp_path / "b", quiet=True)["provenance"]
    assert a["denetdm"] and isinstance(a["command"], list) and len(a["data_sha256"]) == 64
    assert a["data_sha256"] != b["data_sha256"]  # other data, other hash
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "a" / "checkpoints" / "final.pt", tmp_path / "a" / "results.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
