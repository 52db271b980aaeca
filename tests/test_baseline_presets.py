"""Every method has a preset on every dataset the project loads, and `denetdm benchmark --dataset D`
runs them all on a fixture in the dataset's true on-disk format."""
import json

import pytest
import torch
import torchvision

import denetdm.benchmark as bench
from denetdm.cli import main
from denetdm.config import load_config
from denetdm.data.spec import dataset_keys
from denetdm.errors import ConfigError
from denetdm.methods.registry import METHODS
from denetdm.models.torchvision_resnet import cached_weights_path
from test_datasets_files import image

DATASETS = ("colored_mnist", "mnist_patch", "corrupted_cifar10", "bffhq", "bar", "celeba", "waterbirds",
            "custom_arrays", "custom_images")


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_method_plans_on_every_dataset_with_only_that_datasets_keys(dataset):
    specs = bench.plan(METHODS.names(), None, [0], ["proxy"], dataset)
    assert {s.method for s in specs} == set(METHODS.names())
    data_sections = []
    for spec in specs:
        cfg = load_config(bench.preset_for(spec.method, dataset), spec.overrides([]))
        section = cfg.to_dict()["data"]
        assert tuple(section) == dataset_keys(cfg.data.name)  # the config shows this dataset's keys only
        data_sections.append({k: v for k, v in section.items() if k != "ratio"})
        if dataset not in ("colored_mnist", "mnist_patch", "custom_arrays"):  # photos get image backbones
            models = [getattr(cfg.method, f) for f in ("model", "target") if hasattr(cfg.method, f)]
            assert all(m.arch != "mlp" for m in models)
    assert all(s == data_sections[0] for s in data_sections)  # one data protocol for every method


def test_a_key_of_another_dataset_is_refused_and_ratios_only_where_they_exist():
    with pytest.raises(ConfigError, match="not a setting of dataset 'waterbirds'"):
        load_config("lff_waterbirds", ["data.target_attr=Smiling"])
    with pytest.raises(ConfigError, match="drop --ratios"):
        bench.plan(["erm"], [0.01], [0], ["proxy"], "waterbirds")
    assert [s.key for s in bench.plan(["erm"], None, [0], ["proxy"], "waterbirds")] == ["erm_s0_proxy"]
    assert len(bench.plan(["erm"], None, [0], ["proxy"], "bffhq")) == len(bench.DEFAULT_RATIOS)


def test_shortened_schedules_cut_every_phase_and_scale_step_counts():
    assert bench.schedule_overrides("jtt", "waterbirds", 2) == ["method.upweighted.epochs=2"]  # T = 1 stays
    assert bench.schedule_overrides("denetdm", "colored_mnist", 7) == ["method.stage1.epochs=7", "method.stage2.epochs=7"]
    dfa = load_config("dfa_colored_mnist", bench.schedule_overrides("dfa", "colored_mnist", 107)).method
    assert (dfa.optim.epochs, dfa.curr_step, dfa.lr_decay_step) == (107, 5000, 5000)  # half of 214 epochs


def write_waterbirds(root, n_train=80, n_test=16):
    """metadata.csv and images, 95% of training birds on their own background as in Waterbirds."""
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    for n in range(n_train + n_test):
        y, split = n % 2, (0 if n < n_train else 2)
        place = y if (n < n_train and n % 20 != 1) else (n // 2) % 2
        image(root / "images" / f"{n}.jpg", 120 * y + 60 * place + n % 7)
        lines.append(f"{n},images/{n}.jpg,{y},{split},{place},x.jpg")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")


def test_benchmark_runs_every_method_on_a_waterbirds_fixture(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # "ImageNet" weights, random, in the local cache
    weights = cached_weights_path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    weights.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    write_waterbirds(tmp_path / "waterbirds")
    out = tmp_path / "bench"
    methods = ["erm", "lff", "jtt", "groupdro", "dfa", "lc", "denetdm"]
    args = ["benchmark", "--dataset", "waterbirds", "--methods", ",".join(methods), "--seeds", "0",
            "--selections", "proxy", "--epochs", "1", "--out", str(out), "-q",
            f"data.path={tmp_path / 'waterbirds'}", "data.image_size=48", "data.num_workers=0", "device=cpu"]
    assert main(args) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in records) == sorted(f"{m}_s0_proxy" for m in methods)
    for r in records:
        assert r["dataset"] == "waterbirds" and r["ratio"] is None
        assert 0 <= r["test"]["worst_group"] <= r["test"]["unbiased"] <= 100
        assert r["uses_bias_labels"] == (r["method"] == "groupdro")
    cfg = json.loads(json.dumps(load_config("jtt_waterbirds", ["method.upweighted.epochs=1"]).to_dict()))
    assert "target_attr" not in cfg["data"]
    assert "waterbirds" in (out / "table.md").read_text()


def test_benchmark_on_your_own_arrays_without_bias_labels_reports_plain_accuracy(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    file = tmp_path / "mine.npz"
    np.savez(file, x=rng.integers(0, 256, (160, 12, 12, 3), dtype=np.uint8), y=np.arange(160) % 4,
             split=np.where(np.arange(160) < 120, 0, 2))
    out = tmp_path / "bench"
    args = ["benchmark", "--dataset", "custom_arrays", "--methods", "erm,denetdm", "--seeds", "0", "--selections",
            "proxy", "--epochs", "1", "--out", str(out), "-q", f"data.path={file}", "device=cpu"]
    assert main(args) == 0, capsys.readouterr().err
    table = (out / "table.md").read_text()
    assert table.startswith("# custom_arrays: plain test accuracy")
    assert "| erm |  | " in table and "(n=1)" in table
