import subprocess
import sys

import pytest

from denetdm.cli import main
from denetdm.config import load_config
from denetdm.errors import ConfigError


def test_preset_and_overrides_resolve_to_typed_values():
    cfg = load_config("colored_mnist", ["data.ratio=0.05", "method.stage1.lr=1e-4", "seed=3"])
    assert cfg.data.ratio == 0.05 and cfg.method.stage1.lr == 1e-4 and cfg.seed == 3
    # The paper's Colored MNIST setting is the default preset.
    cfg = load_config()
    assert (cfg.method.deep.depth, cfg.method.shallow.depth, cfg.method.target.depth) == (5, 3, 5)
    s1, s2 = cfg.method.stage1, cfg.method.stage2
    assert (s1.optimizer, s1.lr, s1.batch_size, s1.epochs, s1.weight_decay) == ("adam", 1e-3, 64, 100, 1e-3)
    assert (s2.lr, s2.epochs, s2.weight_decay, cfg.method.temperature) == (1e-3, 100, 0.0, 2.0)
    demo = load_config("colored_mnist_demo")
    assert demo.method.stage1.epochs < 100 and demo.method.stage1.lr == 1e-3  # inherits its base


@pytest.mark.parametrize(
    "preset,overrides,message",
    [
        ("colored_mnist", ["data.ratoi=0.1"], "unknown config key 'data.ratoi'"),
        ("colored_mnist", ["method.stage3.lr=1"], "unknown config key 'method.stage3'"),
        ("colored_mnist", ["data.ratio=1.5"], "outside (0, 1)"),
        ("colored_mnist", ["data.ratio=0"], "outside (0, 1)"),
        ("colored_mnist", ["seed=abc"], "seed must be int"),
        ("colored_mnist", ["method.name=lff2"], "unknown method 'lff2'"),
        ("colored_mnist", ["selection=best"], "selection 'best' is unknown"),
        ("colored_mnist", ["data"], "not KEY=VALUE"),
        ("nope", [], "unknown preset 'nope'"),
    ],
)
def test_config_errors_name_the_problem(preset, overrides, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_config(preset, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_reports_one_line_errors_with_nonzero_exit(capsys):
    assert main(["train", "--preset", "colored_mnist", "data.ratio=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: data.ratio=2") and len(err.splitlines()) == 1
    assert main(["train", "--preset", "nope"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "denetdm.cli", "list"], capture_output=True, text=True, check=True).stdout
    assert "denetdm" in out and "colored_mnist" in out and "erm" in out


def test_overrides_may_come_before_and_after_options(capsys):
    assert main(["config", "--preset", "colored_mnist", "data.ratio=0.02", "--seed", "3", "method.temperature=4"]) == 0
    printed = capsys.readouterr().out
    assert "ratio: 0.02" in printed and "temperature: 4" in printed and "seed: 3" in printed
    with pytest.raises(SystemExit):  # a stray option is still refused
        main(["config", "--preset", "colored_mnist", "--nope"])
