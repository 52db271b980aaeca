"""The weight average of a phase (`method.<phase>.ema`): what evaluation, selection and the next phase read."""
import json

import pytest
import torch
from torch import nn

from denetdm.averaging import WeightAverage
from denetdm.config import load_config
from denetdm.errors import ConfigError
from denetdm.training import evaluate_checkpoint, train

TINY = ["data.name=synthetic", "device=cpu", "threads=1", "method.optim.epochs=3"]


def test_the_average_follows_the_steps_and_swaps_in_only_inside_its_block():
    class Holder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 1, bias=False)

    model = Holder()
    with torch.no_grad():
        model.layer.weight.fill_(1.0)
    average = WeightAverage(model, decay=0.75)
    average.update()  # the first update copies
    with torch.no_grad():
        model.layer.weight.fill_(5.0)
    average.update()  # 0.75 * 1 + 0.25 * 5
    with average.swapped_in():
        assert torch.allclose(model.layer.weight, torch.full((1, 2), 2.0))
    assert torch.allclose(model.layer.weight, torch.full((1, 2), 5.0))  # training goes on with the live weights
    restored = WeightAverage(model, decay=0.75)
    restored.load_state_dict(average.state_dict())
    restored.load_into_model()
    assert torch.allclose(model.layer.weight, torch.full((1, 2), 2.0))


def test_training_is_unchanged_and_what_is_evaluated_and_kept_is_the_average(tmp_path):
    runs = {}
    for name, ema in (("live", "0"), ("averaged", "0.9")):
        cfg = load_config("erm_colored_mnist", [*TINY, "selection=last", f"method.optim.ema={ema}"])
        runs[name] = train(cfg, tmp_path / name, quiet=True)
    logs = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in runs}
    # The average never feeds back into training: the same losses, step for step.
    assert [r["train_loss"] for r in logs["live"]] == [r["train_loss"] for r in logs["averaged"]]
    assert [r["test"] for r in logs["live"]] != [r["test"] for r in logs["averaged"]]
    # The kept (final) weights are the ones the last evaluation read: the average.
    _, final = evaluate_checkpoint(tmp_path / "averaged" / "checkpoints" / "final.pt", quiet=True)
    assert final["erm"]["accuracy"] == pytest.approx(logs["averaged"][-1]["test"]["erm"]["accuracy"])


def test_an_average_outside_zero_to_one_is_a_one_line_error():
    with pytest.raises(ConfigError, match="ema=1.0 must be in"):
        load_config("erm_colored_mnist", ["method.optim.ema=1.0"])
