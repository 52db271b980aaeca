"""Inputs a new user gets wrong: each gives one line naming the problem and the fix, exit 2, no traceback."""
import numpy as np
import pytest
import torch

from denetdm.cli import main
from denetdm.training import train
from denetdm.config import load_config

TINY = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=1", "method.stage2.epochs=1"]


def arrays(path, n=40, classes=4, **extra):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    data = {"x": rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8), "y": y, "bias": y.copy(), **extra}
    np.savez(path, **data)
    return path


def one_line_error(capsys, argv, match):
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


@pytest.mark.parametrize("override, match", [
    ("method.stage1.lr=.nan", "lr"),
    ("method.stage1.lr=inf", "lr"),
    ("method=erm", "method.name"),
    ("threads=-1", "threads"),
    ("method.deep.depth=0", "depth"),
    ("method.temperature=nan", "temperature"),
    ("eval_every=0", "eval_every"),
])
def test_bad_config_values(tmp_path, capsys, override, match):
    one_line_error(capsys, ["train", "--preset", "synthetic_demo", "-q", override, "--out", str(tmp_path / "r")], match)
    assert not (tmp_path / "r").exists()


def test_unknown_device(tmp_path, capsys):
    one_line_error(capsys, ["train", "--preset", "synthetic_demo", "--device", "tpu", "--out", str(tmp_path / "r")],
                   "device")


@pytest.mark.parametrize("extra, match", [
    ({"y": np.array([0, 1, 2, 5000] * 10)}, "renumber"),
    ({"y": np.array([0, 1, 2, 10 ** 9] * 10)}, "renumber"),
    ({"bias": np.array([0, 1, 2, 10 ** 9] * 10)}, "bias value 1000000000"),
    ({"bias": np.array([0, 1, 2, -7] * 10)}, "bias value -7"),
])
def test_bad_labels_are_refused_before_anything_is_built(tmp_path, capsys, extra, match):
    path = arrays(tmp_path / "d.npz", **extra)
    one_line_error(capsys, ["train", "--preset", "custom_arrays", f"data.path={path}", "--out", str(tmp_path / "r")], match)


def test_a_truncated_npz(tmp_path, capsys):
    path = arrays(tmp_path / "d.npz")
    path.write_bytes(path.read_bytes()[:300])
    one_line_error(capsys, ["train", "--preset", "custom_arrays", f"data.path={path}", "--out", str(tmp_path / "r")],
                   "cannot read")


def test_evaluate_after_the_data_changed_class_count(tmp_path, capsys):
    path = arrays(tmp_path / "d.npz")
    overrides = [f"data.path={path}", "method.stage1.epochs=1", "method.stage2.epochs=1", "device=cpu"]
    train(load_config("custom_arrays", overrides), tmp_path / "r", quiet=True)
    arrays(tmp_path / "d.npz", classes=3)
    one_line_error(capsys, ["evaluate", str(tmp_path / "r")], "does not fit")


def test_a_checkpoint_without_weights(tmp_path, capsys):
    train(load_config("synthetic_demo", TINY), tmp_path / "r", quiet=True)
    ckpt = torch.load(tmp_path / "r" / "checkpoints" / "final.pt", weights_only=True)
    torch.save({**ckpt, "state_dict": {}}, tmp_path / "empty.pt")
    one_line_error(capsys, ["evaluate", str(tmp_path / "empty.pt")], "not a denetdm checkpoint")


def test_a_full_disk_is_a_clean_error_with_no_partial_file(tmp_path, capsys, monkeypatch):
    import errno

    real_save = torch.save

    def full(obj, f, *a, **k):
        if str(f).endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "r"
    one_line_error(capsys, ["train", "--preset", "synthetic_demo", *TINY, "-q", "--out", str(out)], "No space left")
    assert not list(out.rglob("*.tmp"))
