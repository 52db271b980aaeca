"""The suite of bias types on real MNIST: each bias is carried by its images, and every dataset is
generated reproducibly and verified by checksum."""
import pytest
import torch

from denetdm.data.spec import DataConfig
from denetdm.data import create_dataset, list_datasets
from denetdm.data.bias_suite import BIAS_TYPES, PATCH_CORNERS, PATCH_SIZE, suite_cache_path
from denetdm.data.colored_mnist import PALETTE, tensor_digest

DIGITS = (torch.rand(40, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.2).to(torch.uint8) * 255
BIAS = torch.arange(40) % 10


def test_every_bias_type_is_registered():
    assert {f"mnist_{k}" for k in BIAS_TYPES} <= set(list_datasets()) and len(BIAS_TYPES) >= 4


@pytest.mark.parametrize("kind", sorted(BIAS_TYPES))
def test_images_of_one_bias_value_share_a_feature_the_others_lack(kind):
    """A linear reader of the bias value (on the pixels and their phase-free Fourier magnitudes),
    fitted on 1500 images of random 'digits', reads it on 500 others: the bias is in the pixels."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    digits = (torch.rand(2000, 28, 28, generator=g) < 0.2).to(torch.uint8) * 255
    bias = torch.arange(2000) % 10
    x = BIAS_TYPES[kind](digits, bias, g).clamp(0, 1)
    assert x.shape == (2000, 3, 28, 28)
    grey = x.mean(1)
    features = torch.cat([x.flatten(1), torch.fft.rfft2(grey - grey.mean((1, 2), keepdim=True)).abs().flatten(1)], 1)
    features = (features - features[:1500].mean(0)) / (features[:1500].std(0) + 1e-6)
    probe = torch.nn.Linear(features.shape[1], 10)
    opt = torch.optim.Adam(probe.parameters(), lr=0.01, weight_decay=1e-3)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(probe(features[:1500]), bias[:1500]).backward()
        opt.step()
    assert (probe(features[1500:]).argmax(1) == bias[1500:]).float().mean() > 0.8  # chance: 0.1


def test_background_and_patch_carry_their_exact_values():
    g = torch.Generator().manual_seed(0)
    bg = BIAS_TYPES["background"](torch.zeros_like(DIGITS), BIAS, g)
    assert torch.allclose(bg[:, :, 0, 0], PALETTE[BIAS], atol=0.03)  # no stroke: the background colour
    pa = BIAS_TYPES["patch"](torch.zeros_like(DIGITS), BIAS, g)
    for img, b in zip(pa, BIAS.tolist()):
        r, c = PATCH_CORNERS[b]
        assert img[:, r : r + PATCH_SIZE, c : c + PATCH_SIZE].min() == 1 and img.sum() == 3 * PATCH_SIZE**2


@pytest.mark.parametrize("kind", sorted(BIAS_TYPES))
def test_suite_dataset_follows_the_protocol_and_is_reproducible(mnist_root, tmp_path, monkeypatch, kind):
    cfg = DataConfig(name=f"mnist_{kind}", root=mnist_root, ratio=0.01, download=False)
    splits = create_dataset(cfg, progress=False)
    assert splits.train.x.shape == (60000, 3, 28, 28) and len(splits.test) == 10000
    assert (splits.train.bias != splits.train.y).sum() == 598  # the Colored MNIST block counts at 1%
    assert abs((splits.test.bias == splits.test.y).float().mean().item() - 0.1) < 0.005
    stored = torch.load(suite_cache_path(kind, cfg), weights_only=True)
    assert stored["sha256"] == tensor_digest(stored)
    # Built again from scratch in another cache: the same arrays, the same checksum.
    monkeypatch.setenv("DENETDM_CACHE", str(tmp_path))
    again = create_dataset(cfg, progress=False)
    assert torch.equal(again.train.x, splits.train.x) and torch.equal(again.test.x, splits.test.x)
    assert torch.load(suite_cache_path(kind, cfg), weights_only=True)["sha256"] == stored["sha256"]


def test_a_tampered_cache_is_rebuilt(mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DENETDM_CACHE", str(tmp_path))
    cfg = DataConfig(name="mnist_patch", root=mnist_root, ratio=0.05, download=False)
    good = create_dataset(cfg, progress=False).train.x.clone()
    path = suite_cache_path("patch", cfg)
    stored = torch.load(path, weights_only=True)
    stored["train_x"][0] ^= 1  # one image altered, checksum left as it was
    torch.save(stored, path)
    assert torch.equal(create_dataset(cfg, progress=False).train.x, good)
    assert torch.load(path, weights_only=True)["sha256"] == tensor_digest(torch.load(path, weights_only=True))


def test_the_benchmark_runs_suite_datasets_on_the_colored_mnist_presets():
    from denetdm import benchmark as bench
    from denetdm.config import load_config

    for spec in bench.plan(["denetdm", "lff", "erm"], [0.01], [0], ["proxy"], dataset="mnist_stripes"):
        cfg = load_config(bench.preset_for(spec.method, spec.dataset), spec.overrides([]))
        assert cfg.data.name == "mnist_stripes" and cfg.method.NAME == spec.method and cfg.selection == "proxy"


def test_a_suite_dataset_without_bias_labels_trains_label_free_through_the_npz_preset(mnist_root, tmp_path, capsys):
    """As a user would: the arrays in an .npz, no bias key, the `custom_arrays` preset's defaults."""
    import numpy as np

    from denetdm.cli import main

    splits = create_dataset(DataConfig(name="mnist_background", root=mnist_root, ratio=0.05, download=False), progress=False)
    train_idx, test_idx = torch.arange(0, 60000, 30), torch.arange(0, 10000, 20)  # 2000 + 500 images
    np.savez(tmp_path / "mine.npz", x=torch.cat([splits.train.x[train_idx], splits.test.x[test_idx]]).numpy(),
             y=torch.cat([splits.train.y[train_idx], splits.test.y[test_idx]]).numpy(),
             split=np.array([0] * len(train_idx) + [2] * len(test_idx)))
    args = ["train", "--preset", "custom_arrays", f"data.path={tmp_path / 'mine.npz'}", "--out", str(tmp_path / "run"),
            "-q", "device=cpu", "method.stage1.epochs=2", "method.stage2.epochs=1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "selection: proxy" in printed and "label-free ESTIMATE for stage2_target" in printed
    assert "unbiased ~" in printed and "conflicting ~" in printed
