"""One run over two torchrun processes (gloo on CPU) trains and reports what one process does."""
import json
import os
import subprocess
import sys

import pytest

from denetdm import distributed
from denetdm.cli import main

RUN = ["train", "--preset", "synthetic_demo", "-q", "device=cpu"]


def torchrun(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "denetdm.cli", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_give_the_metrics_of_one(tmp_path):
    assert main([*RUN, "--out", str(tmp_path / "one")]) == 0
    done = torchrun([*RUN, "--out", str(tmp_path / "two")], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("selected epochs") == 1  # rank 0 reports, once
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert [(r["phase"], r["epoch"]) for r in one] == [(r["phase"], r["epoch"]) for r in two]
    for a, b in zip(one, two):  # the same steps, up to float summation order
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4, abs=1e-6)
        for split in ("test", "val"):
            for name, metrics in a[split].items():
                assert abs(b[split][name]["accuracy"] - metrics["accuracy"]) <= 1.0
    r1, r2 = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert r2["machine"]["processes"] == 2 and "processes" not in r1["machine"]
    assert abs(r2["test"]["stage2_target"]["unbiased"] - r1["test"]["stage2_target"]["unbiased"]) <= 1.0
    assert json.loads((tmp_path / "two" / "status.json").read_text())["status"] == "complete"


def test_methods_with_per_sample_state_and_uneven_batches_are_refused(tmp_path):
    done = torchrun(["train", "--preset", "lff_colored_mnist", "-q", "data.name=synthetic", "device=cpu",
                     "--out", str(tmp_path / "lff")], tmp_path)
    assert done.returncode != 0 and "runs in one process only" in done.stderr
    done = torchrun(["train", "--preset", "erm_colored_mnist", "-q", "data.name=synthetic", "device=cpu",
                     "method.optim.batch_size=255", "--out", str(tmp_path / "erm")], tmp_path)
    assert done.returncode != 0 and "does not split evenly over 2 processes" in done.stderr
    assert not (tmp_path / "lff").exists() and not (tmp_path / "erm").exists()


def test_shards_cover_each_batch_once_with_weights_that_average_to_the_batch_mean(monkeypatch):
    import torch

    order = torch.randperm(23)
    parts = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "WORLD", distributed.World(rank=rank, size=3))
        parts.append(distributed.shard(order, 6, drop_last=False))
    for b, batches in enumerate(zip(*parts)):  # 23 = 3 full batches of 6 and one of 5
        together = torch.cat([idx for idx, _ in batches])
        assert sorted(together.tolist()) == sorted(order[6 * b: 6 * b + 6].tolist())
        assert sum(len(idx) * 1.0 for idx, _ in batches) == pytest.approx(sum(w for _, w in batches) * len(together) / 3)
    assert len(parts[0]) == 4
