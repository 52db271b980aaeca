"""Property-based fuzzing of what a user types and feeds: config overrides and the npz, CSV and image
folder loaders either work or raise one of our errors (one line at the CLI), never anything else."""
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from denetdm.config import load_config
from denetdm.data import create_dataset
from denetdm.data.spec import DataConfig
from denetdm.errors import DenetdmError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ["seed", "threads", "device", "selection", "eval_every", "proxy_metric", "method", "method.name",
        "method.stage1.lr", "method.stage1.epochs", "method.stage1.optimizer", "method.deep.depth", "method.deep",
        "method.temperature", "method.stage1_restarts", "data", "data.ratio", "data.name", "data.val_fraction",
        "method.shallow_lr_scale", "nope", "data.nope", "method.stage1.nope", ""]
VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1e9", ".nan", "inf", "-inf", "null", "[]", "{}", "[1, 2]", "{a: 1}", "true", "erm",
                     "sgd", "tpu", "0.5", "1.5", "-0.5", "", "'", ": :", "{", "lff", "mlp"]),
    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True, allow_subnormal=False).map(repr), st.text(max_size=12))


def ends_cleanly(build) -> None:
    """Works, or raises one of our errors (which the CLI prints as one line); anything else fails."""
    try:
        build()
    except DenetdmError as exc:
        assert str(exc).strip()


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4),
       st.sampled_from(["colored_mnist", "lff_colored_mnist", "custom_arrays", "synthetic_demo"]))
def test_config_overrides(pairs, preset):
    ends_cleanly(lambda: load_config(preset, [f"{k}={v}" for k, v in pairs]))


@st.composite
def npz_contents(draw):
    n = draw(st.integers(0, 12))
    shape = draw(st.sampled_from([(n, 3, 4, 4), (n, 4, 4, 3), (n, 4, 4), (n, 1, 4, 4), (n, 2, 4, 4), (n,), (n, 5, 4, 4)]))
    dtype = draw(st.sampled_from([np.uint8, np.int64, np.float32, np.float64, np.bool_]))
    x = (np.random.default_rng(draw(st.integers(0, 9))).random(shape) * draw(st.sampled_from([1.0, 255.0, 1e6])))
    out = {"x": x.astype(dtype)}
    labels = st.lists(st.integers(-3, 12) | st.sampled_from([10**9, -7]), min_size=n, max_size=n)
    if draw(st.booleans()):
        out["y"] = np.array(draw(labels), dtype=np.int64).astype(draw(st.sampled_from([np.int64, np.int8, np.float64])))
    if draw(st.booleans()):
        out["bias"] = np.array(draw(labels), dtype=np.int64)
    if draw(st.booleans()):
        out["split"] = np.array(draw(st.lists(st.sampled_from([0, 1, 2, 3, -1]), min_size=n, max_size=n)))
    if draw(st.booleans()):
        out["split"] = np.array(draw(st.lists(st.sampled_from(["train", "val", "test", "x"]), min_size=n, max_size=n)))
    return out, draw(st.sampled_from([None, 40, 120]))


@SETTINGS
@given(npz_contents())
def test_npz_loader(contents):
    arrays, truncate = contents
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        np.savez(path, **arrays)
        if truncate:
            path.write_bytes(path.read_bytes()[:truncate])
        ends_cleanly(lambda: create_dataset(DataConfig(name="npz", path=str(path)), progress=False))


def write_image(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        Image.new("RGB", (6, 6), (10, 20, 30)).save(path, format="PNG")
    elif kind == "grey":
        Image.new("L", (5, 7), 100).save(path, format="PNG")
    elif kind == "junk":
        path.write_bytes(b"\x89PNG not really")
    elif kind == "empty":
        path.write_bytes(b"")


CELLS = st.sampled_from(["0", "1", "2", "-1", "cat", "dog", "", " ", "1e9", "train", "test", "val", "Test", "x", '"', ","])


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["png", "grey", "junk", "empty", "missing"]), CELLS, CELLS, CELLS),
                max_size=10),
       st.sampled_from(["path,label,bias,split", "path,label", "path,label,split", "label,path", "path", "", "a,b,c"]))
def test_csv_loader(rows, header):
    with tempfile.TemporaryDirectory() as tmp:
        lines = [header]
        for i, (kind, label, bias, split) in enumerate(rows):
            name = f"img/{i}.png"
            if kind != "missing":
                write_image(Path(tmp) / name, kind)
            lines.append(",".join([name, label, bias, split][: max(1, header.count(",") + 1)]))
        (Path(tmp) / "labels.csv").write_text("\n".join(lines) + "\n")
        ends_cleanly(lambda: create_dataset(DataConfig(name="csv", path=str(Path(tmp) / "labels.csv"), image_size=8),
                                            progress=False))


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["train", "test", "", "val"]), st.sampled_from(["a", "b", "c d", ".hidden"]),
                          st.sampled_from(["png", "grey", "junk", "empty"]), st.sampled_from([".png", ".jpg", ".txt", ""])),
                max_size=10))
def test_image_folder_loader(files):
    with tempfile.TemporaryDirectory() as tmp:
        for i, (split, cls, kind, ext) in enumerate(files):
            write_image(Path(tmp, split, cls, f"{i}{ext}"), kind)
        ends_cleanly(lambda: create_dataset(DataConfig(name="image_folder", path=tmp, image_size=8), progress=False))
