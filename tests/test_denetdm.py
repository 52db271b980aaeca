"""DeNetDM's losses and stages on tiny inputs."""
import math

import pytest
import torch
from torch import nn

from denetdm.config import load_config
from denetdm.data.base import TensorBiasDataset
from denetdm.methods import create_method
from denetdm.methods.denetdm import distillation_loss
from denetdm.models import MODELS


@MODELS.register("test_bn_mlp")
class BNMLP(nn.Module):
    """An MLP with BatchNorm, so that frozen buffers can be checked."""

    def __init__(self, input_shape, spec):
        super().__init__()
        width = spec.width
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.BatchNorm1d(width), nn.ReLU())
        self.out_dim, self.depth = width, spec.depth

    def forward(self, x):
        return self.body(x)


def tiny(overrides=()):
    cfg = load_config("colored_mnist", ["method.deep.width=8", "method.shallow.width=8", "method.target.width=8", *overrides])
    torch.manual_seed(0)
    return create_method(cfg, (3, 4, 4), 10, 32)


def images(n=16, seed=0, augment=False):
    """A training split of n random uint8 images of the shape `tiny` builds for."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    return TensorBiasDataset(x, torch.randint(0, 10, (n,), generator=g), -torch.ones(n, dtype=torch.long), 10, 10,
                             augment=augment)


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.arange(n), torch.rand(n, 3, 4, 4, generator=g), torch.randint(0, 10, (n,), generator=g), -torch.ones(n, dtype=torch.long)


def test_poe_is_the_shared_head_on_summed_features_and_a_product_of_experts():
    model = tiny()
    _, x, _, _ = batch()
    poe = model.predictors()["stage1_poe"](x)
    f = model.head
    assert torch.allclose(poe, (model.deep(x) + model.shallow(x)) @ f.weight.T + f.bias, atol=1e-6)
    # Without the head's bias term the product of the two softmax experts, renormalised,
    # is exactly the PoE softmax (paper App. 7.3).
    with torch.no_grad():
        f.bias.zero_()
    p = torch.softmax(model.predictors()["stage1_poe"](x), 1)
    product = torch.softmax(f(model.deep(x)), 1) * torch.softmax(f(model.shallow(x)), 1)
    assert torch.allclose(p, product / product.sum(1, keepdim=True), atol=1e-6)


def test_distillation_loss_on_a_hand_computed_case():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(9.0), 0.0]])
    # tau = 2: teacher softmax of [ln 3, 0] = [3/4, 1/4]; student is uniform, log(1/2) each.
    # Soft cross-entropy = ln 2, times tau^2 = 4.
    assert math.isclose(distillation_loss(student, teacher, 2.0).item(), 4 * math.log(2), rel_tol=1e-6)
    # At tau = 1 the factor is 1 and the teacher is [0.9, 0.1].
    student = torch.tensor([[math.log(0.5), math.log(0.5)], [math.log(0.25), math.log(0.75)]])
    expected = (math.log(2) + -(0.9 * math.log(0.25) + 0.1 * math.log(0.75))) / 2
    assert math.isclose(distillation_loss(student, teacher.repeat(2, 1), 1.0).item(), expected, rel_tol=1e-6)


def test_stage1_trains_all_branches_and_stage2_keeps_frozen_parts_frozen():
    model = tiny(["method.deep.arch=test_bn_mlp", "method.shallow.arch=test_bn_mlp", "method.shallow.depth=2",
                  "method.target.arch=test_bn_mlp"])
    stage1, stage2 = model.phases()
    model.start_phase(stage1, None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model.update(batch())
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("deep.") for k in changed) and any(k.startswith("shallow.") for k in changed)
    assert any(k.startswith("head.") for k in changed) and not any(k.startswith("target") for k in changed)

    model.start_phase(stage2, images())
    assert torch.equal(model.target_head.weight, model.head.weight)  # f_t starts from f
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[0] in ("deep", "shallow", "head")}
    assert any("running_mean" in k for k in frozen)
    model.train()
    for seed in range(3):
        stats = model.update(batch(seed=seed))
    assert set(stats) == {"loss", "loss_poe", "loss_dist"}
    for key, value in frozen.items():
        assert torch.equal(model.state_dict()[key], value), f"{key} changed in stage 2"
    assert not torch.equal(model.target_head.weight, model.head.weight)
    assert not model.deep.training and model.target.training


@pytest.mark.parametrize("distill_weight", [1.0, 0.0])
def test_stage2_reads_the_frozen_experts_computed_once_as_it_would_compute_them_per_batch(distill_weight):
    import copy

    model = tiny([f"method.distill_weight={distill_weight}"])
    stage1, stage2 = model.phases()
    model.start_phase(stage1, None)
    model.train()
    model.update(batch())  # stage-1 weights that are not the initial ones
    uncached = copy.deepcopy(model)
    split = images()
    model.start_phase(stage2, split)
    uncached.start_phase(stage2, split)
    assert model.frozen_outputs is not None and len(model.frozen_outputs[0]) == len(split)
    uncached.frozen_outputs = None  # the per-batch path
    for b in split.batches(torch.randperm(len(split), generator=torch.Generator().manual_seed(1)), 8):
        a, b_ = model.update(b), uncached.update(b)
        assert a.keys() == b_.keys() == {"loss", "loss_poe", "loss_dist"}
        for key in a:
            assert torch.allclose(a[key], b_[key], atol=1e-5), key
    for (name, p), q in zip(model.named_parameters(), uncached.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
    # An augmented split shows the experts other inputs every epoch: nothing is kept.
    model.start_phase(stage2, images(augment=True))
    assert model.frozen_outputs is None


def test_shallow_not_shallower_than_deep_warns():
    import pytest

    with pytest.warns(UserWarning, match="not shallower"):
        tiny(["method.shallow.depth=5"])


def test_official_bn_drift_option_updates_only_the_deep_branch_statistics():
    model = tiny(["method.deep.arch=test_bn_mlp", "method.shallow.arch=test_bn_mlp", "method.shallow.depth=2",
                  "method.target.arch=test_bn_mlp", "method.deep_bn_drift=true"])
    stage1, stage2 = model.phases()
    model.start_phase(stage1, None)
    model.start_phase(stage2, images())
    assert model.frozen_outputs is None  # a drifting deep branch gives other features every epoch
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model.update(batch())
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "deep.body.2.running_mean" in changed and "deep.body.1.weight" not in changed
    assert not any(k.startswith(("shallow.", "head.")) for k in changed)


def test_stage1_split_warning_only_when_the_deep_branch_leaves_the_training_labels_to_the_shallow_one():
    model = tiny()

    def fit(deep, poe=99.5, worst=0.0):
        return {"stage1_deep": {"accuracy": deep, "worst_class": worst}, "stage1_shallow": {"accuracy": 80.0},
                "stage1_poe": {"accuracy": poe}}

    # The measured cases (README): deep branches that took the colour fit 94-99%, failed ones 20-70%.
    assert model.phase_warnings("stage1", fit(98.97)) == [] and model.phase_warnings("stage1", fit(94.26)) == []
    (message,) = model.phase_warnings("stage1", fit(20.04, 99.42))
    assert "20.0%" in message and "99.4%" in message and "--seed" in message
    # A deep branch that fits fewer labels but every class evenly took a weaker bias: no warning.
    assert model.phase_warnings("stage1", fit(88.9, 99.5, worst=80.0)) == []
    (message,) = model.phase_warnings("stage1", fit(88.4, 99.4, worst=36.2))  # 5% seed 2: a class left over
    assert "36.2% fitted" in message
    assert model.phase_warnings("stage2", {"stage2_target": {"accuracy": 10.0}}) == []
    # A deep branch at chance (the MNIST background and stripe biases): the shallow one took the bias too.
    (message,) = model.phase_warnings("stage1", fit(9.8, 99.2))
    assert "about chance" in message and "9.8%" in message and "when DeNetDM helps" in message
    assert "chance_restart_shallow_lr_scale" in message
    # Once its restarts are used up, a run points to a method that needs no depth gap instead.
    retried = tiny(["method.stage1_restarts=1"])
    retried.phase_warnings("stage1", fit(9.8, 99.2))
    assert retried.restart_phase("stage1", 0)
    for deep in (9.8, 50.0):
        (message,) = retried.phase_warnings("stage1", fit(deep, 99.2))
        assert "after 1 restart(s)" in message and "LfF" in message and "stage1_restarts=1" not in message


def test_an_estimate_from_a_deep_branch_at_chance_is_marked_unreliable():
    from denetdm.estimate import format_estimate

    model = tiny([])
    fit = lambda deep: {"stage1_deep": {"accuracy": deep}, "stage1_poe": {"accuracy": 99.2}}
    model.phase_warnings("stage1", fit(98.9))
    assert model.proxy_caveat() is None
    model.phase_warnings("stage1", fit(9.8))
    caveat = model.proxy_caveat()
    assert "about chance" in caveat and "class-balanced" in caveat
    estimate = {"predictor": "stage2_target", "proxy": "stage1_deep", "unbiased": 50.0, "conflicting": 45.0}
    assert "UNRELIABLE" not in format_estimate(estimate)
    assert f"[UNRELIABLE: {caveat}]" in format_estimate({**estimate, "caveat": caveat})


def test_restart_rebuilds_stage1_only_and_only_within_its_budget():
    model = tiny(["method.stage1_restarts=1"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not model.restart_phase("stage2", 0) and not model.restart_phase("stage1", 1)
    assert model.restart_phase("stage1", 0)
    after = model.state_dict()
    assert list(after) == list(before)  # the same modules, so checkpoints keep their layout
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"deep", "shallow", "head"}
    assert not tiny().restart_phase("stage1", 0)  # the default is the paper: never


def test_shallow_lr_scale_slows_only_the_shallow_branch_in_stage1():
    from denetdm.config import load_config
    from denetdm.data import create_dataset
    from denetdm.methods import create_method

    cfg = load_config("colored_mnist", ["data.name=synthetic", "device=cpu", "method.shallow_lr_scale=0.1"])
    splits = create_dataset(cfg.data, progress=False)
    model = create_method(cfg, splits.train.input_shape, 10, len(splits.train))
    model.start_phase(model.phases()[0], splits.train)
    lrs = {id(p): g["lr"] for g in model.optimizer.param_groups for p in g["params"]}
    assert all(lrs[id(p)] == pytest.approx(1e-4) for p in model.shallow.parameters())
    assert all(lrs[id(p)] == pytest.approx(1e-3) for m in (model.deep, model.head) for p in m.parameters())
    assert len(lrs) == sum(p.numel() > 0 for m in (model.deep, model.shallow, model.head) for p in m.parameters())
    model.start_phase(model.phases()[1], splits.train)  # stage 2 is untouched
    assert {g["lr"] for g in model.optimizer.param_groups} == {1e-3}
    with pytest.raises(Exception, match="shallow_lr_scale"):
        load_config("colored_mnist", ["method.shallow_lr_scale=0"])


def test_a_stage1_candidate_rebuilds_the_branches_and_scales_the_shallow_rate_on_top_of_the_preset():
    import torch

    model = tiny(["method.shallow_lr_scale=0.5", "method.shallow_lr_scale_candidates=[1, 0.1]"])
    stage1 = model.phases()[0]
    assert model.candidates("stage1") == [{"shallow_lr_scale": 1.0}, {"shallow_lr_scale": 0.1}]
    assert tiny().candidates("stage1") == [{}]  # the paper: one stage 1

    def shallow_lr():
        (lr,) = {g["lr"] for g in model.optimizer.param_groups for p in g["params"]
                 if any(p is q for q in model.shallow.parameters())}
        return lr

    model.start_phase(stage1, None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert shallow_lr() == pytest.approx(5e-4)
    model.candidate = 1
    model.start_phase(stage1, None)
    assert shallow_lr() == pytest.approx(5e-5)
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"deep", "shallow", "head"}
    # Its epochs are eligible to win only where the deep branch explains the held-out labels.
    good = {"stage1_deep": {"accuracy": 97.0, "worst_class": 90.0}, "stage1_shallow": {"accuracy": 94.0}}
    failed = {"stage1_deep": {"accuracy": 70.0, "worst_class": 0.0}, "stage1_shallow": {"accuracy": 94.0}}
    even = {"stage1_deep": {"accuracy": 80.0, "worst_class": 78.0}, "stage1_shallow": {"accuracy": 98.9}}
    assert model.epoch_eligible("stage1", good) and not model.epoch_eligible("stage1", failed)
    assert model.epoch_eligible("stage1", even)  # a bias that explains fewer labels, evenly
    assert model.epoch_eligible("stage2", failed)
    with pytest.raises(Exception, match="shallow_lr_scale_candidates"):
        tiny(["method.shallow_lr_scale_candidates=[0]"])


def test_a_restart_after_a_deep_branch_at_chance_slows_the_shallow_branch_and_a_partial_one_does_not():
    model = tiny(["method.stage1_restarts=3", "method.chance_restart_shallow_lr_scale=0.1"])
    stage1 = model.phases()[0]

    def shallow_lr_after(deep_fit):
        fit = {"stage1_deep": {"accuracy": deep_fit, "worst_class": 0.0}, "stage1_poe": {"accuracy": 99.0}}
        assert model.phase_warnings("stage1", fit)  # the split check warns either way
        assert model.restart_phase("stage1", 0)
        model.start_phase(stage1, None)
        (lr,) = {g["lr"] for g in model.optimizer.param_groups for p in g["params"]
                 if any(p is q for q in model.shallow.parameters())}
        return lr

    assert shallow_lr_after(60.0) == pytest.approx(1e-3)  # a partial split: a plain restart
    assert shallow_lr_after(10.0) == pytest.approx(1e-4)  # at chance: ten times slower
    assert shallow_lr_after(10.0) == pytest.approx(1e-5)  # and again on the next one
    assert tiny(["method.stage1_restarts=1"]).cfg.chance_restart_shallow_lr_scale == 1.0  # the paper: off
