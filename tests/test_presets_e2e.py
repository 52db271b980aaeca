"""Every dataset's preset, shrunk, trains one epoch per stage end to end through the CLI,
on a tiny fixture written in the dataset's true on-disk format."""
import json

import numpy as np
import pytest

from denetdm.cli import main
from test_corruptions import needs_frost, write_cifar
from test_datasets_files import image, write_bar, write_bffhq, write_celeba, write_csv

SHRINK = ["method.stage1.epochs=1", "method.stage2.epochs=1", "method.stage1.batch_size=4",
          "method.stage2.batch_size=4", "method.target.pretrained=null", "data.num_workers=0", "device=cpu"]
PHOTO = ["data.image_size=48", "method.deep.pretrained=null"]  # the 4-layer CNN needs >= 42 px


def write_waterbirds(root):
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    rows = [(1, 1, 0)] * 4 + [(0, 0, 0)] * 4 + [(1, 0, 0), (0, 1, 0), (1, 0, 2), (0, 1, 2), (1, 1, 2), (0, 0, 2)]
    for n, (y, place, split) in enumerate(rows, 1):
        image(root / "images" / f"{n}.jpg", 100 * y + 50 * place)
        lines.append(f"{n},images/{n}.jpg,{y},{split},{place},x.jpg")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")


def write_image_folder(root):
    for split, n in (("train", 6), ("test", 2)):
        for c in ("cat", "dog"):
            for i in range(n):
                image(root / split / c / f"{i}.png", 200 * (c == "dog") + i)


def write_user_csv(root):
    rows = [f"img/{i}.png,{i % 2},{(i // 2) % 2},{'test' if i >= 8 else 'train'}" for i in range(12)]
    for i in range(12):
        image(root / "data" / "img" / f"{i}.png", 20 * i)
    return write_csv(root, rows)


def write_npz(root):
    rng = np.random.default_rng(0)
    file = root / "arrays.npz"
    np.savez(file, x=rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8), y=np.arange(40) % 4,
             bias=(np.arange(40) // 4) % 4, split=np.where(np.arange(40) < 30, 0, 2))
    return file


CASES = {
    "corrupted_cifar10": (lambda r: write_cifar(r / "cifar10" / "cifar-10-batches-py", np.arange(100) % 10, np.arange(50) % 10),
                          ["data.ratio=0.05"]),
    "bffhq": (lambda r: write_bffhq(r / "bffhq"), PHOTO),
    "bar": (lambda r: write_bar(r / "bar"), PHOTO),
    "celeba": (lambda r: write_celeba(r / "celeba"), PHOTO),
    "waterbirds": (lambda r: write_waterbirds(r / "waterbirds"), PHOTO),
    "custom_images": (write_image_folder, ["data.image_size=32"]),
    "custom_images_csv": (write_user_csv, ["data.name=csv", "data.image_size=32"]),
    "custom_arrays": (write_npz, []),
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=needs_frost) if c == "corrupted_cifar10" else c for c in CASES])
def test_preset_trains_end_to_end(tmp_path, case, capsys):
    write, extra = CASES[case]
    root = tmp_path / "data"
    root.mkdir()
    written = write(root)
    preset = "custom_images" if case == "custom_images_csv" else case
    path = [f"data.path={written}"] if case in ("custom_images_csv", "custom_arrays") else []
    path += [f"data.path={root}"] if case == "custom_images" else []
    out = tmp_path / "run"
    args = ["train", "--preset", preset, "--data-dir", str(root), "--out", str(out), "-q", *SHRINK, *extra, *path]
    assert main(args) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["deployed"] == "stage2_target"
    target = results["test"]["stage2_target"]
    assert 0 <= target["accuracy"] <= 100
    assert ("unbiased" in target) == (case not in ("bar", "custom_images"))  # those test splits have no bias labels
