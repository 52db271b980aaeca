"""File-backed datasets (data/files.py, photos.py, user_data.py) on tiny fixtures written in each release's true format."""
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from denetdm.data.spec import DataConfig
from denetdm.data import create_dataset
from denetdm.data.files import ImageFileDataset, check_images
from denetdm.data.photos import BAR_CLASSES, attribute_group, celeba_paper_group
from denetdm.errors import DataError

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def image(path, value=0, size=8):
    """A solid image whose red channel encodes `value` (checked after decoding)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 128, 255 - value)).save(path)
    return path


def noisy_jpeg_bytes(size=64):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def cfg(name, **kw):
    return DataConfig(name=name, **kw)


def check_batches(split, batch_size=3, side=None):
    """`batches` yields (index, x, y, bias) in order, with labels matching the split's."""
    seen = 0
    for idx, x, y, bias in split.batches(torch.arange(len(split)), batch_size):
        assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[0] == len(idx) <= batch_size
        if side:
            assert tuple(x.shape[1:]) == (3, side, side)
        assert torch.equal(y, split.y[idx]) and torch.equal(bias, split.bias[idx])
        seen += len(idx)
    assert seen == len(split)


def red(x):
    return int(round(float(x[0].mean()) * 255))


# --------------------------------------------------------------------------- BFFHQ


def write_bffhq(root, pct="0.5pct"):
    """DFA layout: <pct>/{align,conflict}/<label>/<id>_<target>_<bias>.png, valid/*, test/*."""
    n = 0
    for folder, pairs in (("align", [(0, 0)] * 4 + [(1, 1)] * 4), ("conflict", [(0, 1), (1, 0)])):
        for t, b in pairs:
            image(root / pct / folder / str(t) / f"{10000 + n}_{t}_{b}.png", 40 * t + 10 * b)
            n += 1
    for split, pairs in (("valid", [(0, 0), (1, 0)]), ("test", [(0, 0), (0, 1), (1, 0), (1, 1), (1, 1)])):
        for t, b in pairs:
            image(root / split / f"{n}_{t}_{b}.png", 40 * t + 10 * b)
            n += 1


def test_bffhq_dfa_layout(tmp_path):
    write_bffhq(tmp_path / "bffhq")
    splits = create_dataset(cfg("bffhq", root=str(tmp_path), ratio=0.005, image_size=16), progress=False)
    train, test = splits.train, splits.test
    assert isinstance(train, ImageFileDataset) and len(train) == 10 and len(test) == 5
    assert train.num_classes == train.num_bias == 2 and train.input_shape == (3, 16, 16)
    assert int((train.y != train.bias).sum()) == 2 and train.has_bias
    assert sorted(zip(test.y.tolist(), test.bias.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 1)]
    i, x, y, b = test[2]
    assert int(i) == 2 and x.shape == (3, 16, 16) and red(x) == 40 * int(y) + 10 * int(b)
    check_batches(train, side=16)
    check_batches(test, side=16)


def test_bffhq_reorganised_layout_and_augment(tmp_path):
    root = tmp_path / "bFFHQ"
    for t, b, folder in ((0, 0, "align"), (1, 1, "align"), (1, 0, "conflict")):
        image(root / "train" / folder / str(t) / f"{t}{b}_{t}_{b}.png", 40 * t)
    image(root / "test" / "7_0_1.png")
    c = cfg("bffhq", root=str(tmp_path), ratio=0.005, image_size=8, augment=True, normalize="cifar")
    splits = create_dataset(c, progress=False)
    assert len(splits.train) == 3 and splits.test.y.tolist() == [0] and splits.test.bias.tolist() == [1]
    names = [type(t).__name__ for t in splits.train.transform.transforms]
    assert names == ["Resize", "RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert [type(t).__name__ for t in splits.test.transform.transforms] == ["Resize", "ToTensor", "Normalize"]
    # the evaluation view of training samples drops the augmentation
    view = splits.train.subset(torch.tensor([2, 0]), train=False)
    assert view.y.tolist() == [1, 0] and "RandomCrop" not in str(view.transform)


def test_bffhq_errors(tmp_path):
    with pytest.raises(DataError, match="Learning-Debiased-Disentangled") as err:
        create_dataset(cfg("bffhq", root=str(tmp_path)), progress=False)
    assert str(tmp_path / "bffhq") in str(err.value) and "\n" not in str(err.value)
    write_bffhq(tmp_path / "bffhq")
    with pytest.raises(DataError, match=r"1pct.*0\.5pct \(data.ratio=0.005\)"):
        create_dataset(cfg("bffhq", root=str(tmp_path), ratio=0.01), progress=False)
    bad = tmp_path / "bffhq" / "test" / "99_1_0.png"
    data = image(bad, size=32).read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"corrupt or truncated image .*99_1_0\.png"):
        create_dataset(cfg("bffhq", root=str(tmp_path), ratio=0.005), progress=False)
    bad.unlink()
    image(tmp_path / "bffhq" / "test" / "noname.png")
    with pytest.raises(DataError, match=r"noname\.png.*<id>_<target>_<bias>"):
        create_dataset(cfg("bffhq", root=str(tmp_path), ratio=0.005), progress=False)


# --------------------------------------------------------------------------- BAR


def write_bar(root):
    """alinlab/BAR: train/<class>_<n>.jpg, test/<class>_<n>.jpg, metadata.json keyed by stem."""
    meta = {}
    n = 0
    for split, per_class in (("train", 3), ("test", 1)):
        for c, name in enumerate(("climbing", "diving", "fishing", "racing", "throwing", "pole vaulting")):
            for _ in range(per_class):
                stem = f"{name}_{n}"
                image(root / split / f"{stem}.jpg", 40 * c)
                meta[stem] = {"cls": name, "source": "google", "train": split == "train"}
                n += 1
    (root / "metadata.json").write_text(json.dumps(meta, indent=4))


def test_bar_original_release_all_train_warns(tmp_path):
    write_bar(tmp_path / "bar")
    with pytest.warns(UserWarning, match="1pct.txt"):
        splits = create_dataset(cfg("bar", root=str(tmp_path), ratio=0.01, image_size=8), progress=False)
    train, test = splits.train, splits.test
    assert len(train) == 18 and len(test) == 6 and train.num_classes == train.num_bias == 6
    assert train.y.bincount().tolist() == [3] * 6 and test.y.tolist() == [0, 1, 2, 5, 3, 4]  # path order
    assert train.class_names == list(BAR_CLASSES) and BAR_CLASSES[-1] == "vaulting"
    assert bool((train.bias == -1).all()) and bool((test.bias == -1).all()) and not test.has_bias
    vault = next(i for i, p in enumerate(train.paths) if "pole vaulting" in p)
    assert int(train.y[vault]) == 5
    i, x, y, b = train[vault]
    assert abs(red(x) - 200) <= 3 and int(b) == -1  # JPEG is lossy
    check_batches(test, side=8)


def test_bar_split_list_picks_train_files(tmp_path):
    write_bar(tmp_path / "bar")
    lines = [
        "# BiasAdv 5% split", "climbing_0.jpg\taligned", "diving_3\t1", "fishing_6.jpg", "", "pole vaulting_15.jpg\t2"
    ]
    (tmp_path / "bar" / "5pct.txt").write_text("\n".join(lines) + "\n")
    splits = create_dataset(cfg("bar", root=str(tmp_path), ratio=0.05, image_size=8), progress=False)
    assert [p.rsplit("/", 1)[1] for p in splits.train.paths] == [
        "climbing_0.jpg", "diving_3.jpg", "fishing_6.jpg", "pole vaulting_15.jpg"
    ]
    assert splits.train.y.tolist() == [0, 1, 2, 5] and splits.train.bias.tolist() == [0, 1, -1, 2]
    (tmp_path / "bar" / "5pct.txt").write_text("climbing_0.jpg\nclimbing_999.jpg\n")
    with pytest.raises(DataError, match=r"1 names in .*5pct\.txt.*climbing_999"):
        create_dataset(cfg("bar", root=str(tmp_path), ratio=0.05), progress=False)
    (tmp_path / "bar" / "5pct.txt").unlink()
    (tmp_path / "bar" / "5pct.json").write_text(json.dumps({"climbing_0": None, "racing_9.jpg": 3}))
    splits = create_dataset(cfg("bar", root=str(tmp_path), ratio=0.05, image_size=8), progress=False)
    assert splits.train.y.tolist() == [0, 3] and splits.train.bias.tolist() == [-1, 3]


def test_bar_reorganised_layout(tmp_path):
    root = tmp_path / "bar"
    for c in range(6):
        image(root / "train" / "align" / BAR_CLASSES[c] / f"{c}a_{c}_{c}.jpg")
        image(root / "test" / BAR_CLASSES[c] / f"{c}t_{c}_{(c + 1) % 6}.jpg")
    image(root / "train" / "conflict" / "1pct" / "diving" / "x_1_2.jpg")
    image(root / "train" / "conflict" / "5pct" / "diving" / "y_1_3.jpg")
    splits = create_dataset(cfg("bar", root=str(tmp_path), ratio=0.01, image_size=8), progress=False)
    assert len(splits.train) == 7 and splits.train.bias.tolist() == [0, 1, 2, 3, 4, 5, -1]
    assert splits.train.y.tolist()[-1] == 1 and bool((splits.test.bias == -1).all())
    with pytest.raises(DataError, match=r"2pct.*1pct \(data.ratio=0.01\), 5pct"):
        create_dataset(cfg("bar", root=str(tmp_path), ratio=0.02), progress=False)


def test_bar_missing(tmp_path):
    with pytest.raises(DataError, match=r"alinlab/BAR.*train/ and test/") as err:
        create_dataset(cfg("bar", root=str(tmp_path)), progress=False)
    assert str(tmp_path / "bar") in str(err.value)


# --------------------------------------------------------------------------- CelebA

# (Blond_Hair, Male, partition): blond goes with women in train, so women align with blond.
CELEBA_ROWS = (
    [(1, 0, 0)] * 4 + [(1, 1, 0)] + [(0, 0, 0)] * 3 + [(0, 1, 0)] * 4
    + [(0, 0, 1), (1, 0, 1)]
    + [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2), (0, 0, 2)]
)


def write_celeba(root, rows=CELEBA_ROWS):
    """list_attr_celeba.txt (count, names + trailing space, `<file> ±1` width-2 columns),
    list_eval_partition.txt (`<file> 0|1|2`), img_align_celeba/<6 digits>.jpg."""
    blond, male = CELEBA_ATTRS.index("Blond_Hair"), CELEBA_ATTRS.index("Male")
    attr_lines = [str(len(rows)), " ".join(CELEBA_ATTRS) + " "]
    part_lines = []
    for n, (b, m, part) in enumerate(rows, 1):
        values = [-1] * len(CELEBA_ATTRS)
        values[blond], values[male] = 2 * b - 1, 2 * m - 1
        name = f"{n:06d}.jpg"
        attr_lines.append(name + " " + " ".join(f"{v:2d}" for v in values))
        part_lines.append(f"{name} {part}")
        image(root / "img_align_celeba" / name, 120 * b)
    (root / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")


def test_celeba_blond_male(tmp_path):
    write_celeba(tmp_path / "celeba")
    splits = create_dataset(cfg("celeba", root=str(tmp_path), image_size=8), progress=False)
    train, test = splits.train, splits.test
    assert len(train) == 12 and len(test) == 5 and train.num_classes == train.num_bias == 2
    assert train.y.tolist() == [1] * 5 + [0] * 7
    # bias = 1 - Male: women (bias 1) align with blond (y 1)
    assert train.bias.tolist() == [1] * 4 + [0] + [1] * 3 + [0] * 4
    assert int((train.y == train.bias).sum()) == 8
    assert list(zip(test.y.tolist(), test.bias.tolist())) == [(0, 1), (0, 0), (1, 1), (1, 0), (0, 1)]
    assert celeba_paper_group(test) == (0, 1) and attribute_group(test, 1, 1) == (1, 0)
    assert train.meta["attr_to_bias"] == (1, 0) and test.paths[0].endswith("img_align_celeba/000015.jpg")
    i, x, y, b = test[2]
    assert abs(red(x) - 120) <= 3 and (int(y), int(b)) == (1, 1)
    check_batches(test, side=8)


def test_celeba_other_attributes_and_errors(tmp_path):
    write_celeba(tmp_path / "celeba")
    splits = create_dataset(cfg("celeba", root=str(tmp_path), target_attr="Male", bias_attr="Blond_Hair", image_size=8),
                            progress=False)
    assert splits.train.y.tolist() == [0] * 4 + [1] + [0] * 3 + [1] * 4
    assert splits.train.meta["attr_to_bias"] == (1, 0)  # men go with not-blond
    with pytest.raises(DataError, match=r"data.bias_attr='Gender' is not a CelebA attribute.*5_o_Clock_Shadow.*Young"):
        create_dataset(cfg("celeba", root=str(tmp_path), bias_attr="Gender"), progress=False)
    (tmp_path / "celeba" / "img_align_celeba" / "000016.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of 5 image files do not exist.*000016\.jpg"):
        create_dataset(cfg("celeba", root=str(tmp_path)), progress=False)
    with pytest.raises(DataError, match=r"CelebA not found .*list_attr_celeba.txt.*mmlab") as err:
        create_dataset(cfg("celeba", root=str(tmp_path / "nowhere")), progress=False)
    assert str(tmp_path / "nowhere" / "celeba") in str(err.value)


# --------------------------------------------------------------------------- Waterbirds


def test_waterbirds(tmp_path):
    root = tmp_path / "waterbirds_v1.0"
    lines = ["img_id,img_filename,y,split,place,place_filename"]
    rows = [(1, 1, 0), (1, 1, 0), (0, 0, 0), (0, 0, 0), (1, 0, 0), (0, 1, 1), (1, 0, 2), (0, 1, 2), (1, 1, 2)]
    for n, (y, place, split) in enumerate(rows, 1):
        folder = "001.Black_footed_Albatross" if y else "030.Fish_Crow"
        name = f"{folder}/{folder[4:]}_{n:04d}_{n}.jpg"
        image(root / name, 100 * y + 50 * place)
        lines.append(f"{n},{name},{y},{split},{place},/b/bamboo_forest/{n:08d}.jpg")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    splits = create_dataset(cfg("waterbirds", root=str(tmp_path), image_size=8, normalize="imagenet"), progress=False)
    assert len(splits.train) == 5 and len(splits.test) == 3
    assert splits.train.y.tolist() == [1, 1, 0, 0, 1] and splits.train.bias.tolist() == [1, 1, 0, 0, 0]
    assert splits.test.class_names == ["landbird", "waterbird"]
    check_batches(splits.train, side=8)
    with pytest.raises(DataError, match=r"Waterbirds not found .*metadata.csv.*wilds"):
        create_dataset(cfg("waterbirds", root=str(tmp_path / "none")), progress=False)


# --------------------------------------------------------------------------- CSV


def write_csv(tmp_path, rows, header="path,label,bias,split"):
    file = tmp_path / "data" / "labels.csv"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(header + "\n" + "\n".join(rows) + "\n")
    return file


def test_csv_named_labels_bias_and_splits(tmp_path):
    for n in range(8):
        image(tmp_path / "data" / "img" / f"{n}.png", 30 * n)
    absolute = image(tmp_path / "elsewhere" / "abs.png", 250)
    rows = [
        "img/0.png,cat,cat,train", "img/1.png,cat,cat,train", "img/2.png,dog,dog,train", "img/3.png,dog,cat,train",
        f"{absolute},dog,dog,train", "img/4.png,cat,dog,val", "img/5.png,cat,cat,test", "img/6.png,dog,cat,Test",
        "img/7.png,bird,0,test",
    ]
    splits = create_dataset(cfg("csv", path=str(write_csv(tmp_path, rows)), image_size=8), progress=False)
    train, val, test = splits.train, splits.val, splits.test
    assert train.class_names == ["bird", "cat", "dog"] and train.num_classes == 3 and train.num_bias == 3
    assert train.y.tolist() == [1, 1, 2, 2, 2] and train.bias.tolist() == [1, 1, 2, 1, 2]
    assert len(val) == 1 and test.y.tolist() == [1, 2, 0] and test.bias.tolist() == [1, 1, 0]
    i, x, y, b = train[4]
    assert red(x) == 250
    check_batches(train, batch_size=2, side=8)


def test_csv_integer_labels_holdout_and_default_size(tmp_path):
    rows = []
    for n in range(20):
        image(tmp_path / "data" / f"{n}.png", n, size=12)
        rows.append(f"{n}.png,{n % 2}")
    file = write_csv(tmp_path, rows, header="path,label")
    a = create_dataset(cfg("csv", path=str(file), seed=3), progress=False)
    b = create_dataset(cfg("csv", path=str(file), seed=3), progress=False)
    assert len(a.train) == 16 and len(a.test) == 4 and a.val is None
    assert a.test.y.bincount().tolist() == [2, 2] and a.test.paths == b.test.paths
    assert a.train.class_names is None and bool((a.train.bias == -1).all())
    assert a.train.input_shape == (3, 12, 12)  # the first image's size by default


@pytest.mark.parametrize(
    "header,rows,message",
    [
        ("file,class", ["0.png,1"], r"lacks the column\(s\) path, label \(its header is: file,class\)"),
        ("path,label", ["0.png,0", "1.png,1", "1.png,5"], r"row 4: label 5 is out of range.*here 3, so 0\.\.2"),
        ("path,label", ["0.png,0", "1.png,-1"], r"row 3: label -1 is out of range"),
        ("path,label", ["0.png,0", "1.png,"], r"the label column is empty on rows 3"),
        ("path,label,bias", ["0.png,0,0", "1.png,1,", "0.png,1,"],
         r"bias column is empty on rows 3, 4 \(2 of 3\); fill it in, or drop the column"),
        ("path,label,split", ["0.png,0,train", "1.png,1,holdout"], r"row 3: split 'holdout'"),
        ("path,label,split", ["0.png,0,train", "1.png,1,train"], r"no rows with split=test"),
    ],
)
def test_csv_bad_tables(tmp_path, header, rows, message):
    image(tmp_path / "data" / "0.png")
    image(tmp_path / "data" / "1.png")
    with pytest.raises(DataError, match=message):
        create_dataset(cfg("csv", path=str(write_csv(tmp_path, rows, header))), progress=False)


def test_csv_missing_files_and_corrupt_images(tmp_path):
    image(tmp_path / "data" / "0.png")
    rows = ["0.png,0", "gone1.png,1", "gone2.png,0", "sub/gone3.png,1"]
    missing = r"3 of 4 paths in .*labels.csv do not exist, e\.g\. .*gone1\.png.*CSV's folder"
    with pytest.raises(DataError, match=missing):
        create_dataset(cfg("csv", path=str(write_csv(tmp_path, rows, "path,label"))), progress=False)
    (tmp_path / "data" / "empty.png").write_bytes(b"")
    (tmp_path / "data" / "cut.jpg").write_bytes(noisy_jpeg_bytes()[:1500])
    for name, reason in (("empty.png", "empty file"), ("cut.jpg", "truncated")):
        rows = ["0.png,0,train", "0.png,1,test", f"{name},1,train"]
        with pytest.raises(DataError, match=rf"corrupt or truncated image \S*{name} \(.*{reason}"):
            create_dataset(cfg("csv", path=str(write_csv(tmp_path, rows, "path,label,split"))), progress=False)
    with pytest.raises(DataError, match="needs data.path"):
        create_dataset(cfg("csv"), progress=False)


def test_check_images_accepts_whole_files(tmp_path):
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(noisy_jpeg_bytes())
    check_images([str(whole), str(image(tmp_path / "a.png"))], progress=False)
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"junk\.png"):
        check_images([str(whole), str(tmp_path / "junk.png")], progress=False)


# --------------------------------------------------------------------------- image folders


def test_image_folder_train_test(tmp_path):
    for split, count in (("train", 3), ("test", 1)):
        for c, name in enumerate(("ants", "bees")):
            for n in range(count):
                image(tmp_path / split / name / f"{n}.png", 100 * c)
    (tmp_path / "train" / "ants" / "notes.txt").write_text("not an image")
    splits = create_dataset(cfg("image_folder", path=str(tmp_path), num_workers=2), progress=False)
    assert splits.train.class_names == ["ants", "bees"] and len(splits.train) == 6 and len(splits.test) == 2
    assert splits.test.y.tolist() == [0, 1] and not splits.train.has_bias
    check_batches(splits.train, batch_size=4, side=8)  # decoded in 2 worker processes


def test_image_folder_classes_only_holdout(tmp_path):
    for c in ("a", "b", "c"):
        for n in range(5):
            image(tmp_path / c / f"{n}.jpg")
    splits = create_dataset(cfg("image_folder", path=str(tmp_path)), progress=False)
    assert len(splits.test) == 3 and len(splits.train) == 12 and splits.test.y.tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="no class folders with images"):
        create_dataset(cfg("image_folder", path=str(tmp_path / "a")), progress=False)


# --------------------------------------------------------------------------- npz


def test_npz_channels_last_uint8_and_string_splits(tmp_path):
    x = np.arange(6 * 5 * 5 * 3, dtype=np.int64).reshape(6, 5, 5, 3).astype(np.uint8)
    file = tmp_path / "d.npz"
    np.savez(file, x=x, y=np.array([0, 1, 0, 1, 2, 2]), bias=np.array([0, 1, 1, 0, 2, -1]),
             split=np.array(["train", "train", "train", "val", "test", "test"]))
    splits = create_dataset(cfg("npz", path=str(file)), progress=False)
    assert len(splits.train) == 3 and len(splits.val) == 1 and len(splits.test) == 2
    assert splits.train.input_shape == (3, 5, 5) and splits.train.num_classes == 3
    idx, xb, yb, bb = next(splits.test.batches(torch.arange(2), 2))
    assert torch.allclose(xb[0], torch.from_numpy(x[4]).permute(2, 0, 1).float() / 255)
    assert bb.tolist() == [2, -1] and not splits.test.has_bias
    splits = create_dataset(cfg("npz", path=str(file), normalize="cifar", augment=True), progress=False)
    assert [(s.normalize, s.augment) for s in (splits.train, splits.val, splits.test)] == [
        ("cifar", True), ("cifar", False), ("cifar", False)
    ]


def test_npz_channels_first_float_holdout_and_errors(tmp_path):
    x = np.random.default_rng(0).random((10, 3, 4, 4)).astype(np.float32)
    file = tmp_path / "f.npz"
    np.savez(file, x=x, y=np.arange(10) % 2)
    splits = create_dataset(cfg("npz", path=str(file)), progress=False)
    assert len(splits.test) == 2 and splits.val is None and bool((splits.train.bias == -1).all())
    expected = torch.from_numpy(np.round(x * 255).astype(np.uint8))
    _, xt, _, _ = splits.train[0]
    assert any(torch.equal(splits.train.x[0], e) for e in expected)  # rounded, channels kept first
    assert float((xt - splits.train.x[0].float() / 255).abs().max()) == 0.0
    np.savez(file, x=x * 2, y=np.arange(10) % 2)
    with pytest.raises(DataError, match=r"float x must lie in \[0, 1\]"):
        create_dataset(cfg("npz", path=str(file)), progress=False)
    np.savez(file, x=x[:2], y=np.array([0, 1]))
    with pytest.raises(DataError, match="too few to hold out 20% of each class"):
        create_dataset(cfg("npz", path=str(file)), progress=False)
    np.savez(file, images=x)
    with pytest.raises(DataError, match=r"lacks the array\(s\) x, y \(has: images\)"):
        create_dataset(cfg("npz", path=str(file)), progress=False)
