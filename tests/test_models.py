"""Backbones: shapes, parameter counts, layouts and the `pretrained` option (CPU, small inputs)."""
import pytest
import torch
import torchvision

from denetdm.models.spec import ModelSpec
from denetdm.errors import ConfigError
from denetdm.models import create_model, list_models
from denetdm.models.resnet_cifar import ShortcutA

# Smallest convenient inputs: cnn4's unpadded convs and pools need >= 42 pixels
# (42 -conv7-> 36 -pool-> 18 -conv3-> 16 -pool-> 8 -conv3-> 6 -pool-> 3 -conv3-> 1).
SHAPES = {"mlp": (3, 28, 28), "cnn4": (3, 42, 42)}
BACKBONES = [n for n in list_models() if not n.startswith("test_")]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_forward_backward(name):
    torch.manual_seed(0)
    shape = SHAPES.get(name, (3, 32, 32))
    model = create_model(ModelSpec(arch=name), shape)
    assert isinstance(model.out_dim, int) and isinstance(model.depth, int) and model.depth > 0
    out = model(torch.rand(2, *shape))
    assert out.shape == (2, model.out_dim)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_registered_names_and_dims():
    expected = {"cnn3": (64, 3), "cnn4": (512, 4), "resnet8": (64, 8), "resnet20": (64, 20),
                "resnet32": (64, 32), "resnet56": (64, 56), "resnet18": (512, 18), "resnet50": (2048, 50)}
    assert set(expected) <= set(list_models())
    for name, (dim, depth) in expected.items():
        if name in ("resnet50",):
            continue  # built in the parametrized test already; skip a second 23M-parameter init
        m = create_model(ModelSpec(arch=name), SHAPES.get(name, (3, 32, 32)))
        assert (m.out_dim, m.depth) == (dim, depth), name


def test_cifar_resnet_parameter_counts():
    # The well-known totals with a 10-class fc (269,722 / 464,154 / 853,018) minus its 650.
    for name, count in (("resnet20", 269_072), ("resnet32", 463_504), ("resnet56", 852_368)):
        assert n_params(create_model(ModelSpec(arch=name), (3, 32, 32))) == count, name
    # ResNet-18's 11,689,512 minus its 512x1000 fc.
    assert n_params(create_model(ModelSpec(arch="resnet18"), (3, 32, 32))) == 11_176_512


def test_option_a_shortcut_is_parameter_free():
    model = create_model(ModelSpec(arch="resnet20"), (3, 32, 32))
    shortcuts = [m for m in model.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2  # the first block of stages 2 and 3
    assert all(n_params(s) == 0 for s in shortcuts)
    x = torch.randn(1, 16, 8, 8)
    y = ShortcutA(2, 16)(x)
    assert y.shape == (1, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and not y[:, :8].any() and not y[:, 24:].any()


def test_cnn3_is_64d_at_32_without_pooling_effect():
    model = create_model(ModelSpec(arch="cnn3"), (3, 32, 32)).eval()
    x = torch.rand(2, 3, 32, 32)
    fmap = model.features(x)
    assert fmap.shape == (2, 64, 1, 1)  # the adaptive pool is the identity here
    assert torch.equal(model(x), fmap.flatten(1))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 3
    with pytest.raises(ConfigError, match="32x32"):
        create_model(ModelSpec(arch="cnn3"), (3, 28, 28))


def test_cnn4_spatial_sizes_at_224():
    model = create_model(ModelSpec(arch="cnn4"), (3, 224, 224)).eval()
    sizes = []
    for m in model.features:
        if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            m.register_forward_hook(lambda mod, inp, out: sizes.append(out.shape[-1]))
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
    assert sizes == [218, 109, 107, 53, 51, 25, 23]
    assert out.shape == (1, 512)
    kinds = [type(m).__name__ for m in model.features[8:12]]
    assert kinds == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]  # pool before BN in layer 3
    with pytest.raises(ConfigError, match="42x42"):
        create_model(ModelSpec(arch="cnn4"), (3, 41, 41))


def test_proj_dim_on_resnet18():
    model = create_model(ModelSpec(arch="resnet18", proj_dim=64), (3, 32, 32))
    assert model.out_dim == 64 and model.depth == 18
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 64)


@pytest.mark.parametrize("keep_fc", [True, False])
def test_pretrained_state_dict_file_round_trips(tmp_path, keep_fc):
    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)
    state = source.state_dict()
    if not keep_fc:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    path = tmp_path / "r18.pt"
    torch.save(state, path)
    model = create_model(ModelSpec(arch="resnet18", pretrained=str(path)), (3, 32, 32))
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_pretrained_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        create_model(ModelSpec(arch="resnet18", pretrained=str(tmp_path / "none.pt")), (3, 32, 32))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read"):
        create_model(ModelSpec(arch="resnet18", pretrained=str(junk)), (3, 32, 32))
    wrong = tmp_path / "cnn3.pt"
    torch.save(create_model(ModelSpec(arch="cnn3"), (3, 32, 32)).state_dict(), wrong)
    with pytest.raises(ConfigError, match="does not match"):
        create_model(ModelSpec(arch="resnet18", pretrained=str(wrong)), (3, 32, 32))


def test_torchvision_weights_missing_names_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(ConfigError) as err:
        create_model(ModelSpec(arch="resnet18", pretrained="torchvision"), (3, 32, 32))
    msg = str(err.value)
    assert str(expected) in msg and "https://download.pytorch.org/" in msg and "\n" not in msg
    assert not any(tmp_path.rglob("*.pth"))  # nothing was downloaded


@pytest.mark.parametrize("name", ["cnn3", "cnn4", "resnet20"])
def test_pretrained_rejected_without_weights(name):
    with pytest.raises(ConfigError, match="no pretrained weights"):
        create_model(ModelSpec(arch=name, pretrained="torchvision"), SHAPES.get(name, (3, 32, 32)))


def test_torchvision_weights_loaded_from_local_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(2)
    source = torchvision.models.resnet18(weights=None)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(source.state_dict(), cache / "resnet18-f37072fd.pth")
    model = create_model(ModelSpec(arch="resnet18", pretrained="torchvision"), (3, 32, 32))
    assert torch.equal(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_mlp_input_scale_reproduces_the_lff_double_division():
    torch.manual_seed(0)
    plain = create_model(ModelSpec(arch="mlp", depth=3, width=5), (3, 2, 2))
    scaled = create_model(ModelSpec(arch="mlp", depth=3, width=5, input_scale=1 / 255), (3, 2, 2))
    scaled.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 2, 2)
    assert torch.allclose(scaled(x), plain(x / 255))


def test_in_memory_mlp_runs_never_import_torchvision():
    """torchvision costs a process about 160 MB; only the ResNet-18/50 backbones and image files need it."""
    import subprocess
    import sys

    code = ("import sys, torch; import denetdm.cli, denetdm.training, denetdm.benchmark; "
            "from denetdm.config import load_config; from denetdm.methods import create_method; "
            "create_method(load_config('colored_mnist', []), (3, 28, 28), 10, 100); "
            "assert 'torchvision' not in sys.modules; "
            "from denetdm.models import create_model, ModelSpec; create_model(ModelSpec(arch='resnet18'), (3, 32, 32)); "
            "assert 'torchvision' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
