"""The training loop end to end on tiny data: run folders, checkpoints, seeds, selection."""
import json
import math

import pytest
import torch

import denetdm.training as training
from denetdm.cli import main
from denetdm.config import load_config
from denetdm.errors import ConfigError, RunFolderError
from denetdm.methods.base import Phase
from denetdm.selection import Selector
from denetdm.training import evaluate_checkpoint, train

FAST = ["method.stage1.epochs=2", "method.stage2.epochs=1", "device=cpu"]


def run(tmp_path, name, overrides=(), preset="synthetic_demo"):
    return train(load_config(preset, [*FAST, *overrides]), tmp_path / name, quiet=True)


def test_run_folder_contents_and_checkpoints(tmp_path):
    results = run(tmp_path, "a")
    out = tmp_path / "a"
    assert (out / "config.yaml").is_file() and (out / "results.json").is_file()
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(l["phase"], l["epoch"]) for l in lines] == [("stage1", 0), ("stage1", 1), ("stage2", 0)]
    assert "stage1_shallow" in lines[0]["test"] and "train_loss" in lines[0]
    for name in ("stage1", "final"):
        ckpt = torch.load(out / "checkpoints" / f"{name}.pt", weights_only=True)
        assert ckpt["config"]["method"]["name"] == "denetdm"
    assert not (out / "checkpoints" / "stage2.pt").exists()  # the final phase is final.pt, not a second copy
    assert set(results["test"]) == {"stage1_poe", "stage1_deep", "stage1_shallow", "stage2_target"}
    # The default protocol is label-free `proxy`: it keeps one of the logged epochs of each phase.
    assert results["selection"] == "proxy" and set(results["selected_epochs"]) == {"stage1", "stage2"}
    assert results["selected_epochs"]["stage1"] in (0, 1) and results["selected_epochs"]["stage2"] == 0
    assert "val" in lines[0] and "pseudo_unbiased" in lines[0]["val"]["stage1_shallow"]
    estimate = results["estimate"]  # read from the deep branch or the bias reader, whichever is more bias-like
    assert estimate["predictor"] == "stage2_target" and estimate["proxy_candidates"][0]["proxy"] == "stage1_deep"
    assert estimate["proxy"] in [c["proxy"] for c in estimate["proxy_candidates"]]
    # The checkpoint alone reproduces the table.
    _, again = evaluate_checkpoint(out, device="cpu", quiet=True)
    assert again == results["test"]
    # Each phase's fit of the training labels is recorded label-free, and the final checkpoint gives it again.
    fit = results["train_fit"]
    assert set(fit) == {"stage1", "stage2"} and set(fit["stage1"]) == {"stage1_poe", "stage1_deep", "stage1_shallow"}
    assert all(set(m) == {"accuracy", "worst_class"} for phase in fit.values() for m in phase.values())
    _, train_again = evaluate_checkpoint(out, device="cpu", quiet=True, split="train")
    assert {**fit["stage1"], **fit["stage2"]} == train_again
    assert isinstance(results["warnings"], list)


def test_same_seed_same_numbers_and_other_seed_differs(tmp_path):
    a, b = run(tmp_path, "a"), run(tmp_path, "b")
    assert a["test"] == b["test"]
    sa = torch.load(tmp_path / "a" / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b" / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = torch.load(run(tmp_path, "c", ["seed=1"]) and tmp_path / "c" / "checkpoints" / "final.pt", weights_only=True)
    assert not torch.equal(c["state_dict"]["deep.body.1.weight"], sa["deep.body.1.weight"])


def test_existing_run_folder_is_never_overwritten(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "results.json").write_text("keep me")
    with pytest.raises(RunFolderError, match="already exists"):
        run(tmp_path, "taken")
    assert (out / "results.json").read_text() == "keep me"


def test_erm_trains_in_the_same_contract(tmp_path):
    results = train(load_config("erm_colored_mnist", ["data.name=synthetic", "method.optim.epochs=2", "device=cpu"]),
                    tmp_path / "erm", quiet=True)
    assert set(results["test"]) == {"erm"} and results["test"]["erm"]["accuracy"] > 20


def test_selector_keeps_the_best_epoch_and_restores_it():
    phase = Phase("p", None, monitor="m", oracle_metric="conflicting", predictors=("m",))
    model = torch.nn.Linear(1, 1)
    oracle, val, last = Selector("oracle", phase), Selector("val", phase), Selector("last", phase)
    for epoch, (conf, acc) in enumerate([(10, 50), (30, 40), (20, 60)]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        metrics = {"test": {"m": {"conflicting": conf, "accuracy": 0}}, "val": {"m": {"accuracy": acc}}}
        for s in (oracle, val, last):
            s.observe(epoch, metrics, model)
    for s in (oracle, val, last):
        s.close()
    assert (oracle.best_epoch, val.best_epoch, last.best_epoch) == (1, 2, 2)
    oracle.restore(model)
    assert model.weight.item() == 1.0


def test_val_and_oracle_selection_run_and_are_recorded(tmp_path):
    val = run(tmp_path, "val", ["selection=val"])
    assert val["selection"] == "val"
    oracle = run(tmp_path, "oracle", ["selection=oracle"])
    assert "ORACLE" in oracle["selection_description"]


def test_cli_train_and_evaluate_on_real_colored_mnist(tmp_path, mnist_root, capsys):
    out = tmp_path / "cli"
    args = ["train", "--preset", "colored_mnist_demo", "--data-dir", mnist_root, "--out", str(out), "-q",
            "method.stage1.epochs=1", "method.stage2.epochs=1", "method.stage1.batch_size=256",
            "method.stage2.batch_size=256", "estimate.reader_steps=200"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "selection: proxy" in printed and "stage2_target" in printed and "conflicting" in printed
    assert "label-free ESTIMATE for stage2_target" in printed and "unbiased ~" in printed
    assert "fit of the training labels (label-free" in printed
    results = json.loads((out / "results.json").read_text())
    # One short epoch already learns the colour: the deep branch is far better on aligned samples.
    deep = results["test"]["stage1_deep"]
    assert deep["aligned"] > deep["conflicting"] + 30
    assert main(["evaluate", str(out / "checkpoints" / "final.pt"), "--data-dir", mnist_root, "-q", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == results["test"]
    # The estimate recomputed from the run folder: the same estimator on the same weights and data.
    assert main(["evaluate", str(out), "--data-dir", mnist_root, "-q", "--split", "estimate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(results["estimate"]))
    assert main(["train", "--preset", "colored_mnist_demo", "--out", str(out), "-q"]) == 2  # folder taken


RESTART_TINY = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=3", "method.stage2.epochs=2"]


def test_stage1_restarts_only_when_the_split_check_warns(tmp_path, monkeypatch):
    import denetdm.methods.denetdm as dm

    plain = train(load_config("colored_mnist", RESTART_TINY), tmp_path / "plain", quiet=True)
    cfg = load_config("colored_mnist", [*RESTART_TINY, "method.stage1_restarts=2"])
    # A split that passes its check: the option changes nothing, to the last digit.
    monkeypatch.setattr(dm, "SPLIT_WARN_BELOW", 0.0)
    passed = train(cfg, tmp_path / "passed", quiet=True)
    assert passed["test"] == plain["test"] and "restarts" not in passed and passed["warnings"] == []
    # A split that always fails: stage 1 is trained 1 + 2 times, then the warning stands.
    monkeypatch.setattr(dm, "EVEN_FIT_ABOVE", 101.0)
    monkeypatch.setattr(dm, "SPLIT_WARN_BELOW", 101.0)
    with pytest.warns(UserWarning, match="restart 2: training stage1 again"):
        failed = train(cfg, tmp_path / "failed", quiet=True)
    assert len(failed["restarts"]["stage1"]) == 2 and len(failed["warnings"]) == 1
    assert "fits" in failed["restarts"]["stage1"][0]
    lines = [json.loads(line) for line in (tmp_path / "failed" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["phase"], r.get("attempt", 0)) for r in lines] == [
        *[("stage1", a) for a in (0, 0, 0, 1, 1, 1, 2, 2, 2)], ("stage2", 0), ("stage2", 0)]
    assert failed["test"]["stage1_deep"] != plain["test"]["stage1_deep"]  # other weights


def test_output_piped_to_a_file_has_one_line_per_epoch_and_the_run_folder_keeps_a_log(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from denetdm.cli import main; sys.exit(main())", "train",
           "--preset", "synthetic_demo", *FAST, "threads=1", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)  # pipes, not a terminal
    assert "\r" not in done.stderr and "\r" not in done.stdout  # no progress bars
    epochs = [line for line in done.stderr.splitlines() if " epoch " in line]
    assert [line.split(":")[0] for line in epochs] == ["stage1 epoch 1/2", "stage1 epoch 2/2", "stage2 epoch 1/1"]
    assert all("loss" in line and "selection score" in line for line in epochs)
    log = (out / "log.txt").read_text()
    assert all(line in log for line in epochs) and "label-free ESTIMATE" in log and "selected epochs" in log


def test_csv_and_tensorboard_loggers_hold_every_logged_value(tmp_path):
    pytest.importorskip("tensorboard")
    import csv as csv_module

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config("synthetic_demo", ["device=cpu", "loggers=csv,tensorboard"])
    train(cfg, tmp_path / "run", quiet=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = list(csv_module.DictReader(open(tmp_path / "run" / "metrics.csv")))
    last = records[-1]
    mine = {r["name"]: float(r["value"]) for r in rows if (r["phase"], int(r["epoch"])) == (last["phase"], last["epoch"])}
    assert mine["train_loss"] == pytest.approx(last["train_loss"])
    assert mine["test.stage2_target.accuracy"] == pytest.approx(last["test"]["stage2_target"]["accuracy"])
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    steps = [e.step for e in events.Scalars("stage1/train_loss")]
    assert steps == [r["epoch"] for r in records if r["phase"] == "stage1"]
    with pytest.raises(ConfigError, match="unknown wandb"):
        load_config("synthetic_demo", ["loggers=csv,wandb"])


def test_bf16_autocasts_the_training_steps_only(tmp_path, monkeypatch):
    """amp=bf16: the branches run in bf16 while training and in fp32 in evaluation; weights stay fp32.
    (The target is in train mode only while it trains; the frozen deep branch runs in eval mode in
    stage 2's steps, so it is watched in stage 1.)"""
    seen = {True: set(), False: set()}
    build = training.create_method

    def watched(*args, **kwargs):
        model = build(*args, **kwargs)
        for branch in (model.deep, model.target):
            branch.register_forward_hook(lambda m, i, out: seen[m.training].add((m is model.target, out.dtype)))
        return model

    monkeypatch.setattr(training, "create_method", watched)
    results = train(load_config("colored_mnist", [*RESTART_TINY, "amp=bf16"]), tmp_path / "bf16", quiet=True)
    assert seen[True] == {(False, torch.bfloat16), (True, torch.bfloat16)}
    assert (True, torch.float32) in seen[False] and (True, torch.bfloat16) not in seen[False]
    assert math.isfinite(results["test"]["stage2_target"]["accuracy"])
    weights = torch.load(tmp_path / "bf16" / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())
    with pytest.raises(ConfigError, match="amp='fp8' is unknown"):
        load_config("colored_mnist", ["amp=fp8"])
