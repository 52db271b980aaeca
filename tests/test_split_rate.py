"""The many-seed stage-1 benchmark must train each seed exactly as the package's DeNetDM would."""
import importlib.util
from pathlib import Path

import torch

import denetdm
from denetdm.data.base import TensorBiasDataset
from denetdm.training import seed_everything

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stage1_split_rate.py"


def load_script():
    spec = importlib.util.spec_from_file_location("stage1_split_rate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stacked_stage1_matches_the_package_per_seed():
    script = load_script()
    cfg = denetdm.load_config("colored_mnist", ["method.deep.width=8", "method.shallow.width=8", "method.target.width=8"])
    gen = torch.Generator().manual_seed(0)
    train = TensorBiasDataset(torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8, generator=gen),
                              torch.randint(0, 10, (40,), generator=gen), torch.randint(0, 10, (40,), generator=gen), 10, 10)
    seeds = [3, 7]
    stacked = script.build(cfg, seeds, train)
    optimizer = denetdm.methods.base.make_optimizer(stacked.parameters(), cfg.method.stage1)
    batches = torch.randperm(40, generator=gen).view(2, 4, 5)  # seed, step, batch
    for step in range(4):
        _, x, y, _ = next(train.batches(batches[:, step].flatten(), 10))
        stacked.update(optimizer, x.view(2, 5, -1), y.view(2, 5))
    _, every, _, _ = next(train.batches(torch.arange(len(train)), len(train)))
    logits = stacked.logits(every.flatten(1))
    for s, seed in enumerate(seeds):
        seed_everything(seed)
        method = denetdm.create_method(cfg, train.input_shape, 10, len(train))
        stage1 = method.phases()[0]
        method.start_phase(stage1, train)
        for step in range(4):
            method.update(next(train.batches(batches[s, step], 5)))
        # Same weights after four Adam steps: same initialisation, same gradients, same update.
        ours = [w[s] for w in stacked.deep.weights] + [stacked.head.weights[0][s]]
        theirs = [l.weight.t() for l in method.deep.modules() if isinstance(l, torch.nn.Linear)] + [method.head.weight.t()]
        assert len(ours) == len(theirs) == 5
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(stacked.shallow.biases[-1][s, 0], method.shallow.body[-2].bias, rtol=1e-4, atol=1e-6)
        # The stacked predictions are that seed's predictors.
        predictors = method.predictors()
        for name in ("deep", "shallow", "poe"):
            torch.testing.assert_close(logits[name][s], predictors[f"stage1_{name}"](every), rtol=1e-4, atol=1e-5)


def test_wilson_interval_brackets_the_rate():
    script = load_script()
    low, high = script.wilson(3, 24)
    assert low < 100 * 3 / 24 < high
    assert script.wilson(0, 10)[0] == 0.0
    assert script.parse_seeds("0-2,5") == [0, 1, 2, 5]
