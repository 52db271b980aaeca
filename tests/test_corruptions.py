"""The CIFAR-10-C corruptions and the Corrupted CIFAR-10 generator (LfF protocol)."""
import dataclasses
import importlib.util
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from denetdm.data.spec import DataConfig
from denetdm.data import create_dataset
from denetdm.data import corruptions as C
from denetdm.data.corrupted_cifar10 import cache_path
from denetdm.errors import DataError
from protocol import expected_counts

HAS_FROST = importlib.util.find_spec("imagecorruptions") is not None
needs_frost = pytest.mark.skipif(not HAS_FROST, reason="frost textures need `pip install imagecorruptions`")
DETERMINISTIC = {
    "Brightness", "Contrast", "JPEG", "Pixelate", "Saturate",
    "Gaussian Blur", "Defocus Blur", "Zoom Blur", "Original",
}


def natural_image():
    """Smooth gradients, a disc, a bar and a shaded corner, edges off the 8-pixel grid."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    img = np.stack([40 + 5 * xx, 60 + 4 * yy, 150 - 2 * (xx + yy)], -1)
    img[(yy - 13) ** 2 + (xx - 19) ** 2 < 7.3**2] = [210, 90, 50]
    img[21:27, 3:29] = [30, 120, 200]
    img[xx + yy > 44] *= 0.6
    return np.clip(img, 0, 255).astype(np.uint8)


def names():
    return [pytest.param(n, marks=needs_frost) if n == "Frost" else n for n in C.TYPE0 + C.TYPE1]


def test_lists():
    assert C.TYPE0 == [
        "Snow", "Frost", "Fog", "Brightness", "Contrast", "Spatter", "Elastic", "JPEG", "Pixelate", "Saturate",
    ]
    assert C.TYPE1[-1] == "Original" and len(C.TYPE1) == 10
    assert set(C.CORRUPTIONS) == set(C.TYPE0 + C.TYPE1)


@pytest.mark.parametrize("name", names())
def test_contract_and_seeding(name):
    img = natural_image()
    f = C.CORRUPTIONS[name]
    state = np.random.get_state()
    for severity in (1, 3, 5):
        a = f(img, severity, np.random.default_rng(7))
        assert a.shape == img.shape and a.dtype == np.uint8 and a.flags.c_contiguous and a.flags.writeable
        assert np.array_equal(a, f(img, severity, np.random.default_rng(7)))
        other = f(img, severity, np.random.default_rng(8))
        if name in DETERMINISTIC:
            assert np.array_equal(a, other)
        else:
            assert not np.array_equal(a, other)
        if name != "Original":
            assert not np.array_equal(a, img)
    assert np.array_equal(f(img, 1, np.random.default_rng(0)), img) == (name == "Original")
    # No global numpy randomness.
    after = np.random.get_state()
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(state, after))


# Which severities CIFAR-10-C's own tables order, in mean |corrupted - clean|, where not
# all of 1 < 2 < ... < 5: frost trades image for texture from level 3 on, spatter switches
# from water (1-3) to mud (4-5), saturate desaturates at 1-2 and saturates at 3-5, and the
# elastic transform's affine part (8% of 32 px at level 1, 3% at 5) outweighs its growing
# displacement field.
CHAINS = {
    "Frost": [(1, 2, 3), (1, 5)],
    "Spatter": [(1, 2, 3), (4, 5), (1, 5)],
    "Saturate": [(1, 2), (3, 4, 5)],
    "Elastic": [(5, 1)],
}


@pytest.mark.parametrize("name", [n for n in names() if n != "Original"])
def test_severity_ordering(name):
    img = natural_image()
    f = C.CORRUPTIONS[name]
    diff = {
        s: np.mean([np.abs(f(img, s, np.random.default_rng(k)).astype(float) - img).mean() for k in range(4)])
        for s in range(1, 6)
    }
    for chain in CHAINS.get(name, [(1, 2, 3, 4, 5)]):
        for lo, hi in zip(chain, chain[1:]):
            assert diff[hi] >= diff[lo] - 0.05, (name, diff)  # non-strict where a level saturates
        assert diff[chain[-1]] > diff[chain[0]], (name, diff)


def test_motion_blur_is_a_one_sided_line():
    weights, rows, cols = C.motion_blur_kernel(6, 1.0, 0.0)
    assert len(weights) == 13 and np.isclose(weights.sum(), 1) and np.all(np.diff(weights) < 0)
    assert np.array_equal(rows, np.zeros(13)) and np.array_equal(cols, np.arange(13))
    _, rows, cols = C.motion_blur_kernel(8, 2.0, -90.0)  # straight up
    assert np.array_equal(rows, -np.arange(17)) and not cols.any()
    dot = np.zeros((32, 32, 3), np.uint8)
    dot[16, 16] = 255
    out = C._motion_blur(dot, 6, 1.0, 0.0)
    # Pixels at and left of the dot read it; nothing right of it does.
    assert out[16, 16, 0] > out[16, 15, 0] > out[16, 14, 0] > 0 and out[16, 17:].max() == 0 and out[15].max() == 0


def test_glass_blur_matches_the_reference_pixel_loop():
    """The vectorised pass equals the reference's sequential loop of numpy-view 'swaps'."""
    img = natural_image()
    out = C.CORRUPTIONS["Glass Blur"](img, 5, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    sigma, delta, iterations = 0.4, 1, 2
    blur = lambda a: ndimage.gaussian_filter(a, (sigma, sigma, 0), mode="nearest")  # noqa: E731
    x = (np.clip(blur(img / 255.0), 0, 1) * 255).astype(np.uint8)
    for _ in range(iterations):
        shift = rng.integers(-delta, delta, size=(30, 30, 2))
        for a, h in enumerate(range(32 - delta, delta, -1)):
            for b, w in enumerate(range(32 - delta, delta, -1)):
                dx, dy = shift[a, b]
                x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]
    expected = (np.clip(blur(x / 255.0), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(out, expected)


def test_corrupt_is_per_image_seeded():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(30) % 10
    whole = C.corrupt(images, labels, "type1", 5, seed=11)
    parts = [C.corrupt(images[s : s + 7], labels[s : s + 7], "type1", 5, seed=11, offset=s) for s in range(0, 30, 7)]
    assert np.array_equal(whole, np.concatenate(parts))
    assert not np.array_equal(whole, C.corrupt(images, labels, "type1", 5, seed=12))
    assert np.array_equal(whole[labels == 9], images[labels == 9])  # Original
    with pytest.raises(ValueError):
        C.corrupt(images, labels, "type2", 5, seed=0)


def test_frost_without_textures_names_the_package(monkeypatch):
    C.frost_texture.cache_clear()
    monkeypatch.setattr(C.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(DataError, match="pip install imagecorruptions") as info:
            C.CORRUPTIONS["Frost"](natural_image(), 5, np.random.default_rng(0))
        assert "\n" not in str(info.value)
    finally:
        monkeypatch.undo()
        C.frost_texture.cache_clear()


# ----------------------------------------------------------------------------- dataset


def counts(split, k):
    out = torch.zeros(k, k, dtype=torch.long)
    out.index_put_((split.y, split.bias), torch.ones_like(split.y), accumulate=True)
    return out


def write_cifar(folder, train_labels, test_labels, seed=0):
    """A tiny CIFAR-10 in the python-batch format (bytes keys, (N, 3072) uint8 rows)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    base = natural_image().transpose(2, 0, 1).reshape(-1).astype(np.int64)

    def rows(n):
        return np.clip(base[None] + rng.integers(-40, 40, (n, base.size)), 0, 255).astype(np.uint8)

    chunks = np.array_split(np.asarray(train_labels), 5)
    for i, labels in enumerate(chunks, 1):
        batch = {b"batch_label": b"training batch %d of 5" % i, b"labels": labels.tolist(),
                 b"data": rows(len(labels)), b"filenames": [b"x.png"] * len(labels)}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": list(test_labels),
            b"data": rows(len(test_labels)), b"filenames": [b"x.png"] * len(test_labels)}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))


@pytest.mark.parametrize("ctype", [pytest.param("type0", marks=needs_frost), "type1"])
def test_cifar_batches_follow_the_protocol(tmp_path, ctype):
    rng = np.random.default_rng(1)
    n_train = np.array([14, 16, 18, 20, 22, 24, 26, 18, 20, 22])  # 200 images, uneven classes
    train_labels = rng.permutation(np.repeat(np.arange(10), n_train))
    test_labels = rng.permutation(np.repeat(np.arange(10), 10))
    write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", train_labels, test_labels)
    cfg = DataConfig(name="corrupted_cifar10", root=str(tmp_path), ratio=0.05, severity=5, corruption_type=ctype)
    splits = create_dataset(cfg, progress=False)
    train, test = splits.train, splits.test
    assert len(train) == 200 and len(test) == 100
    assert train.x.shape == (200, 3, 32, 32) and train.x.dtype == torch.uint8
    assert train.num_classes == train.num_bias == 10
    assert torch.equal(train.y, torch.from_numpy(train_labels))
    assert torch.equal(counts(train, 10), expected_counts(n_train, 0.95, 10))
    assert torch.equal(counts(test, 10), torch.ones(10, 10, dtype=torch.long))
    assert int((test.bias == test.y).sum()) == 10  # 10% aligned
    # Blocks in dataset order: a class's aligned block comes before the corruptions after it.
    b = train.bias[train.y == 0]
    assert bool((b[1:] >= b[:-1]).all())
    # Each image carries the corruption its bias label names (train stream = [seed, 0]).
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    clean = np.concatenate([pickle.loads((folder / f"data_batch_{i}").read_bytes())[b"data"] for i in range(1, 6)])
    clean = clean.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    again = C.corrupt(clean, train.bias.numpy(), ctype, 5, seed=[0, 0])
    assert np.array_equal(train.x.numpy().transpose(0, 2, 3, 1), again)
    # Cached: the second call reads the file; another seed is another file.
    path = cache_path(cfg)
    stamp = path.stat().st_mtime_ns
    assert torch.equal(create_dataset(cfg, progress=False).train.x, train.x) and path.stat().st_mtime_ns == stamp
    other = dataclasses.replace(cfg, seed=1)
    assert cache_path(other) != path


def test_image_folder_follows_the_protocol(tmp_path):
    rng = np.random.default_rng(2)
    classes = ["cat", "dog", "emu"]
    for c in classes:
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(18):
            h, w = int(rng.integers(20, 64)), int(rng.integers(20, 64))
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / c / f"{i:02d}.png")
    cfg = DataConfig(name="corrupted_cifar10", path=str(tmp_path / "imgs"), ratio=0.05, severity=5,
                     corruption_type="type1")
    splits = create_dataset(cfg, progress=False)
    train, test = splits.train, splits.test
    assert train.num_classes == train.num_bias == 3
    assert len(train) == 45 and len(test) == 9 and test.x.shape == (9, 3, 32, 32)
    assert torch.equal(counts(train, 3), expected_counts([15, 15, 15], 0.95, 3))
    assert torch.equal(counts(test, 3), torch.ones(3, 3, dtype=torch.long))  # 1/3 aligned: uniform
    # train/ and test/ sub-folders are taken as the splits.
    for split, n in (("train", 20), ("test", 3)):
        for c in classes:
            (tmp_path / "split" / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "split" / split / c / f"{i}.jpg")
    cfg = DataConfig(name="corrupted_cifar10", path=str(tmp_path / "split"), ratio=0.05, severity=5,
                     corruption_type="type1")
    splits = create_dataset(cfg, progress=False)
    assert len(splits.train) == 60 and len(splits.test) == 9
    assert torch.equal(counts(splits.train, 3), expected_counts([20, 20, 20], 0.95, 3))


def test_missing_cifar_says_where_to_get_it(tmp_path):
    cfg = DataConfig(name="corrupted_cifar10", root=str(tmp_path))
    with pytest.raises(DataError) as info:
        create_dataset(cfg, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in message
    with pytest.raises(DataError, match="severity"):
        create_dataset(DataConfig(name="corrupted_cifar10", root=str(tmp_path), severity=6), progress=False)
