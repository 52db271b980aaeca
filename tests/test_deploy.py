"""Use what a run trained: load_run, predict on new inputs, export to ONNX / TorchScript / safetensors."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from denetdm import load_run
from denetdm.cli import main
from denetdm.config import load_config
from denetdm.training import evaluate_checkpoint, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny custom_arrays run on an npz: four classes, 3 x 8 x 8 images stored channels last."""
    tmp = tmp_path_factory.mktemp("deploy")
    rng = np.random.default_rng(0)
    y = np.arange(200) % 4
    x = rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8)  # channels last, as users often store them
    x[..., 0] = (y[:, None, None] * 60).astype(np.uint8)  # a learnable signal
    np.savez(tmp / "data.npz", x=x, y=y)
    cfg = load_config("custom_arrays", [f"data.path={tmp / 'data.npz'}", "device=cpu", "threads=1",
                                        "method.stage1.epochs=2", "method.stage2.epochs=2"])
    train(cfg, tmp / "run", quiet=True)
    return tmp


def test_load_run_is_the_deployed_model_with_its_preprocessing(run):
    model = load_run(run / "run")
    assert model.input_shape == (3, 8, 8) and model.class_names == ["0", "1", "2", "3"]
    _, table = evaluate_checkpoint(run / "run", device="cpu", quiet=True)
    # The loaded model on the test split's [0, 1] images gives the run's own test accuracy.
    from denetdm.data import create_dataset
    from denetdm.config import config_from_dict

    splits = create_dataset(config_from_dict(model.config).data, progress=False)
    with torch.no_grad():
        pred = model(splits.test.x.float() / 255).argmax(1)
    assert 100.0 * (pred == splits.test.y).float().mean().item() == pytest.approx(table["stage2_target"]["accuracy"])


def test_predict_cli_on_an_npz_a_folder_and_a_csv(run, capsys):
    assert main(["predict", str(run / "run"), str(run / "data.npz"), "--out", str(run / "p.csv")]) == 0
    rows = list(csv.DictReader(open(run / "p.csv")))
    assert len(rows) == 200 and set(rows[0]) == {"id", "prediction", "p_0", "p_1", "p_2", "p_3"}
    assert all(abs(sum(float(r[f"p_{k}"]) for k in "0123") - 1) < 1e-4 for r in rows)
    (run / "imgs").mkdir()
    x = np.load(run / "data.npz")["x"]
    for i in range(3):
        Image.fromarray(x[i]).save(run / "imgs" / f"{i}.png")
    (run / "imgs.csv").write_text("path\n" + "".join(f"imgs/{i}.png\n" for i in range(3)))
    assert main(["predict", str(run / "run"), str(run / "imgs"), "--out", str(run / "f.csv")]) == 0
    assert main(["predict", str(run / "run"), str(run / "imgs.csv"), "--out", str(run / "c.csv")]) == 0
    from_npz = [r["prediction"] for r in rows[:3]]
    assert [r["prediction"] for r in csv.DictReader(open(run / "f.csv"))] == from_npz  # same pixels, same answer
    assert [r["prediction"] for r in csv.DictReader(open(run / "c.csv"))] == from_npz
    assert main(["predict", str(run / "run"), str(run / "nothing.npz")]) == 2


def test_onnx_export_agrees_with_torch_under_onnxruntime(run):
    ort = pytest.importorskip("onnxruntime")
    assert main(["export", str(run / "run"), "--format", "onnx", "--out", str(run / "m.onnx")]) == 0
    model = load_run(run / "run")
    images = torch.from_numpy(np.load(run / "data.npz")["x"]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = model(images).softmax(1).numpy()
    session = ort.InferenceSession(str(run / "m.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": images.numpy()})[0]
    got = torch.from_numpy(logits).softmax(1).numpy()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999
    assert np.abs(got - expected).max() < 1e-4


def test_torchscript_and_safetensors_exports(run):
    assert main(["export", str(run / "run"), "--format", "torchscript", "--out", str(run / "m.pt")]) == 0
    model, images = load_run(run / "run"), torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(run / "m.pt"))(images), model(images), atol=1e-5)
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    assert main(["export", str(run / "run"), "--format", "safetensors", "--out", str(run / "m.safetensors")]) == 0
    with safe_open(str(run / "m.safetensors"), "pt") as f:
        assert f.metadata()["class_names"] == '["0", "1", "2", "3"]'
        assert torch.equal(f.get_tensor("mean"), model.mean)


def test_train_on_arrays_in_memory_and_a_bad_edited_config_fails_before_any_work(run, tmp_path):
    data = dict(np.load(run / "data.npz"))
    data["x"] = torch.from_numpy(data["x"])  # tensors and arrays alike
    cfg = load_config("custom_arrays", ["device=cpu", "threads=1", "method.stage1.epochs=1", "method.stage2.epochs=1"])
    results = train(cfg, tmp_path / "mem", quiet=True, data=data)
    assert results["test"]["stage2_target"]["accuracy"] > 0 and not list(tmp_path.glob("*.npz"))
    assert "name: in_memory" in (tmp_path / "mem" / "config.yaml").read_text()
    assert load_run(tmp_path / "mem").input_shape == (3, 8, 8)
    with pytest.raises(Exception, match="in-memory data"):
        evaluate_checkpoint(tmp_path / "mem", device="cpu", quiet=True)
    # The same arrays from the npz file give the same run.
    from_file = train(load_config("custom_arrays", ["device=cpu", "threads=1", "method.stage1.epochs=1",
                                                     "method.stage2.epochs=1", f"data.path={run / 'data.npz'}"]),
                      tmp_path / "file", quiet=True)
    assert from_file["test"] == results["test"]
    cfg.selection = "best"
    with pytest.raises(Exception, match="selection 'best' is unknown"):
        train(cfg, tmp_path / "bad", quiet=True, data=data)
    assert not (tmp_path / "bad").exists()
