"""The Colored MNIST generator against the LfF protocol, on real MNIST."""
import torch
import pytest

from denetdm.data.spec import DataConfig
from denetdm.data import create_dataset
from denetdm.data.colored_mnist import PALETTE, assign_bias, cache_path, colorize
from denetdm.data.mnist import load_mnist
from protocol import expected_counts


@pytest.mark.parametrize("ratio,conflicting", [(0.01, 598), (0.05, 3000)])
def test_train_counts_per_digit_and_colour(mnist_root, ratio, conflicting):
    _, labels = load_mnist(mnist_root, "train", download=False, progress=False)
    bias = assign_bias(labels, 1.0 - ratio)
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts.index_put_((labels, bias), torch.ones_like(labels), accumulate=True)
    n_per_class = torch.bincount(labels).tolist()
    assert torch.equal(counts, expected_counts(n_per_class, 1.0 - ratio))
    # Totals measured on the official generator's output (shared/docs/official-baseline.md).
    assert int((bias != labels).sum()) == conflicting
    # Blocks follow dataset order: within class 0 the aligned block comes first, colour 9 last.
    zeros = bias[labels == 0]
    assert zeros[0] == 0 and zeros[-1] == 9 and bool((zeros[1:] >= zeros[:-1]).all())


def test_test_split_is_ten_percent_aligned(mnist_root):
    _, labels = load_mnist(mnist_root, "test", download=False, progress=False)
    bias = assign_bias(labels, 0.1)
    assert int((bias == labels).sum()) == 1000
    counts = torch.zeros(10, 10, dtype=torch.long)
    counts.index_put_((labels, bias), torch.ones_like(labels), accumulate=True)
    assert torch.equal(counts, expected_counts(torch.bincount(labels).tolist(), 0.1))


def test_colorize_keeps_background_black_and_is_seeded():
    digits = torch.zeros(4, 28, 28, dtype=torch.uint8)
    digits[:, 10:18, 10:18] = 255
    bias = torch.tensor([0, 3, 6, 9])
    a = colorize(digits, bias, 4, torch.Generator().manual_seed(1))
    b = colorize(digits, bias, 4, torch.Generator().manual_seed(1))
    c = colorize(digits, bias, 4, torch.Generator().manual_seed(2))
    assert a.shape == (4, 3, 28, 28) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(a[:, :, :10].max()) == 0
    colour = a[:, :, 12, 12].float() / 255
    assert torch.allclose(colour, PALETTE[bias], atol=0.03)  # sigma = 0.005 at severity 4


def test_dataset_is_cached_and_rebuilt_when_parameters_change(mnist_root):
    cfg = DataConfig(root=mnist_root, ratio=0.02, download=False)
    splits = create_dataset(cfg, progress=False)
    path = cache_path(cfg)
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    again = create_dataset(cfg, progress=False)
    assert path.stat().st_mtime_ns == stamp and torch.equal(again.train.x, splits.train.x)
    other = DataConfig(root=mnist_root, ratio=0.02, seed=1, download=False)
    assert cache_path(other) != path
    assert not torch.equal(create_dataset(other, progress=False).train.x, splits.train.x)
    assert len(splits.train) == 60000 and len(splits.test) == 10000
    assert splits.train.x.shape[1:] == (3, 28, 28)
    # A sample is (index, x, y, bias), x scaled to [0, 1].
    i, x, y, b = splits.train[7]
    assert int(i) == 7 and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert int(y) == int(splits.train.y[7]) and int(b) == int(splits.train.bias[7])


def test_val_split_is_held_out_from_train(mnist_root):
    cfg = DataConfig(root=mnist_root, ratio=0.02, download=False, val_fraction=0.1)
    splits = create_dataset(cfg, with_val=True, progress=False)
    assert len(splits.train) == 54000 and len(splits.val) == 6000
    # Held out without copying the images: both splits read their parent's, at disjoint rows.
    assert splits.train.x is splits.val.x and len(splits.train.x) == 60000
    rows = torch.cat([splits.train.rows, splits.val.rows])
    assert torch.equal(rows.sort().values, torch.arange(60000))
    full = create_dataset(cfg, progress=False).train
    order = torch.tensor([5, 0, 53999, 17])
    for split in (splits.train, splits.val):
        (idx, x, y, b), = split.batches(order[order < len(split)], 64)
        (_, x_full, y_full, b_full), = full.batches(split.rows[idx], 64)
        assert torch.equal(x, x_full) and torch.equal(y, y_full) and torch.equal(b, b_full)
        assert torch.equal(split[3][1], full[int(split.rows[3])][1])
    # A subset of a subset reads the right rows; on a device, shared images are moved once.
    inner = splits.train.subset(torch.tensor([2, 9]))
    assert torch.equal(inner.rows, splits.train.rows[torch.tensor([2, 9])]) and torch.equal(inner.y, splits.train.y[[2, 9]])
    splits.to("meta")
    assert splits.train.x is splits.val.x and splits.train.x.device.type == "meta"
