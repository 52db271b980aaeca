"""The baselines (LfF, JTT, DisEnt/DFA, GroupDRO, LC) on tiny inputs, plus one end-to-end run each."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from denetdm import cli
from denetdm.config import load_config
from denetdm.data.base import TensorBiasDataset
from denetdm.errors import ConfigError
from denetdm.methods import create_method
from denetdm.methods.lc import GroupPrior, group_mixup_partners, logit_correction, sigmoid_rampup
from denetdm.methods.lff import SampleLossEMA, generalized_ce

BASELINES = ("lff", "jtt", "dfa", "groupdro", "lc")
SHAPE, CLASSES, N = (3, 4, 4), 10, 32


def tiny(method, overrides=(), num_classes=CLASSES, num_train=N, shape=SHAPE):
    extra = ["method.feature_dim=4"] if method in ("dfa", "lc") else []
    cfg = load_config(f"{method}_colored_mnist", ["method.model.width=8", *extra, *overrides])
    torch.manual_seed(0)
    return create_method(cfg, shape, num_classes, num_train)


def dataset(n=N, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *SHAPE), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % CLASSES
    b = torch.where(torch.rand(n, generator=g) < 0.8, y, torch.randint(0, CLASSES, (n,), generator=g))
    return TensorBiasDataset(x, y, b if bias else -torch.ones(n, dtype=torch.long), CLASSES, CLASSES)


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


class FixedLogits(nn.Module):
    """Logits looked up by sample: the input's first value holds the sample index."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float))

    def forward(self, x):
        return self.logits[x.reshape(len(x), -1)[:, 0].long()]


# ------------------------------------------------------------------ every method, one step


@pytest.mark.parametrize("method", BASELINES)
def test_one_training_step_of_every_phase(method):
    model = tiny(method)
    train = dataset()
    for phase in model.phases():
        pool = model.start_phase(phase, train)
        pool = torch.arange(N) if pool is None else pool
        before = params(model)
        batch = next(train.batches(pool[:16], 16))
        out = model.update(batch)
        assert out and all(math.isfinite(v) for v in out.values())
        assert changed(before, model)
    logits = {name: f(batch[1]) for name, f in model.predictors().items()}
    assert set(logits) >= set(p for ph in model.phases() for p in ph.predictors)
    assert all(v.shape == (16, CLASSES) for v in logits.values())
    assert torch.equal(model.predict(batch[1]), logits[model.phases()[-1].monitor])
    assert model.uses_bias_labels == (method == "groupdro")


# ------------------------------------------------------------------ LfF


def test_gce_is_the_official_gradient_equivalent_form():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0])
    p = torch.softmax(logits, 1)[:, 0].detach()
    expected = -torch.log(p) * p**0.7 * 0.7
    assert torch.allclose(generalized_ce(logits, y, 0.7), expected)
    # Its gradient is q times that of (1 - p_y^q) / q.
    generalized_ce(logits, y, 0.7).sum().backward()
    reference = logits.detach().clone().requires_grad_(True)
    ((1 - torch.softmax(reference, 1)[:, 0] ** 0.7) / 0.7).sum().backward()
    assert torch.allclose(logits.grad, 0.7 * reference.grad, atol=1e-6)


def test_sample_loss_ema_first_value_then_moving_average_and_class_max():
    ema = SampleLossEMA(4, alpha=0.7)
    ema.set_labels(torch.tensor([0, 0, 1, 1]))
    ema.update(torch.tensor([0, 1, 2]), torch.tensor([2.0, 0.5, 1.0]))
    assert torch.allclose(ema.value, torch.tensor([2.0, 0.5, 1.0, 0.0]))  # first visit: the loss itself
    ema.update(torch.tensor([0]), torch.tensor([1.0]))
    assert torch.allclose(ema.value[0], torch.tensor(0.7 * 2.0 + 0.3 * 1.0))
    assert torch.allclose(ema.class_max(2), torch.tensor([1.7, 1.0]))
    assert torch.allclose(ema.normalized(torch.tensor([1, 2]), torch.tensor([0, 1]), 2), torch.tensor([0.5 / 1.7, 1.0]))


def test_lff_weights_on_a_hand_computed_three_sample_case():
    # Samples 0 and 1 are class 0, sample 2 is class 1. The biased network gets sample 0
    # wrong (high loss) and samples 1, 2 right; the debiased one is unsure everywhere.
    model = tiny("lff", num_classes=2, num_train=3, shape=(1,))
    logits_b = [[-1.0, 1.0], [3.0, 0.0], [0.0, 1.0]]
    logits_d = [[0.5, 0.0], [0.0, 0.0], [0.0, -0.5]]
    model.biased, model.debiased = FixedLogits(logits_b), FixedLogits(logits_d)
    y = torch.tensor([0, 0, 1])
    train = TensorBiasDataset(torch.zeros(3, 1, dtype=torch.uint8), y, -torch.ones(3), 2, 2)
    model.start_phase(model.phases()[0], train)
    index = torch.arange(3)
    out = model.update((index, index.float().reshape(3, 1), y, -torch.ones(3)))

    ce = lambda logits: F.cross_entropy(torch.tensor(logits), y, reduction="none")  # noqa: E731
    ce_b, ce_d = ce(logits_b), ce(logits_d)
    # First visit: the EMAs are the losses. Normalise by the class-wise max over the split.
    nb = torch.stack([ce_b[0] / max(ce_b[0], ce_b[1]), ce_b[1] / max(ce_b[0], ce_b[1]), ce_b[2] / ce_b[2]])
    nd = torch.stack([ce_d[0] / max(ce_d[0], ce_d[1]), ce_d[1] / max(ce_d[0], ce_d[1]), ce_d[2] / ce_d[2]])
    w = nb / (nb + nd + 1e-8)
    assert torch.allclose(nb[[0, 2]], torch.ones(2)) and nb[1] < 0.1  # sample 0 holds class 0's max
    assert w[0] > 0.5 > w[1]  # the biased network's failure gets the larger debiased-side weight
    assert math.isclose(out["weight"], w.mean().item(), rel_tol=1e-5)
    assert math.isclose(out["loss_debiased"], (ce_d * w).mean().item(), rel_tol=1e-5)
    p = torch.softmax(torch.tensor(logits_b), 1).gather(1, y[:, None]).squeeze(1)
    assert math.isclose(out["loss_biased"], (ce_b * p**0.7 * 0.7).mean().item(), rel_tol=1e-5)
    # The weight is a constant: the debiased gradient is that of the w-weighted CE.
    model2 = tiny("lff", num_classes=2, num_train=3, shape=(1,))
    ref = torch.tensor(logits_d, requires_grad=True)
    (F.cross_entropy(ref, y, reduction="none") * w).mean().backward()
    model2.biased, model2.debiased = FixedLogits(logits_b), FixedLogits(logits_d)
    model2.start_phase(model2.phases()[0], train)
    model2.optimizer_d.step = lambda: None  # keep the gradient for inspection
    model2.optimizer_b.step = lambda: None
    model2.update((index, index.float().reshape(3, 1), y, -torch.ones(3)))
    assert torch.allclose(model2.debiased.logits.grad, ref.grad, atol=1e-6)
    assert torch.allclose(model.sample_weights(index, y), w)  # the buffers hold the same numbers


# ------------------------------------------------------------------ JTT


class PlantedPredictions(nn.Module):
    """Predicts the class written in the input's first pixel, in eval mode only; in train
    mode it predicts class 0 (so an error set taken in train mode would differ)."""

    def forward(self, x):
        planted = torch.round(x[:, 0, 0, 0] * 255).long() % CLASSES
        cls = planted if not self.training else torch.zeros_like(planted)
        return F.one_hot(cls, CLASSES).float()


def test_jtt_error_set_is_exactly_the_misclassified_samples_and_pool_multiplicities():
    model = tiny("jtt", ["method.lambda_up=5"])
    train = dataset()
    g = torch.Generator().manual_seed(1)
    planted = torch.where(torch.rand(N, generator=g) < 0.3, (train.y + 1) % CLASSES, train.y)
    train.x[:, 0, 0, 0] = planted.to(torch.uint8)
    wrong = torch.nonzero(planted != train.y).squeeze(1)
    assert 0 < len(wrong) < N

    identification, upweighted = model.phases()
    model.start_phase(identification, train)
    model.identifier = PlantedPredictions()
    fresh = params(model.model)
    pool = model.start_phase(upweighted, train)
    assert torch.equal(model.error_set, wrong)
    counts = torch.bincount(pool, minlength=N)
    expected = torch.ones(N, dtype=torch.long)
    expected[wrong] = 5
    assert torch.equal(counts, expected)
    assert not changed(fresh, model.model)  # phase 2 starts from a model phase 1 never trained
    out = model.update(next(train.batches(pool[:16], 16)))
    assert math.isfinite(out["loss"]) and changed(fresh, model.model)

    # The error set is a buffer: it survives a state_dict round trip into a new instance.
    other = tiny("jtt", ["method.lambda_up=5"])
    other.identifier = PlantedPredictions()
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.error_set, wrong)


def test_jtt_phase_one_trains_only_the_identification_model():
    model = tiny("jtt")
    train = dataset()
    model.start_phase(model.phases()[0], train)
    before_model, before_id = params(model.model), params(model.identifier)
    model.update(next(train.batches(torch.arange(N), 16)))
    assert changed(before_id, model.identifier) and not changed(before_model, model.model)


# ------------------------------------------------------------------ GroupDRO


def test_groupdro_weights_move_toward_the_worst_group():
    model = tiny("groupdro", ["method.step_size=1.0", "method.reweight_groups=false"])
    train = dataset()
    model.start_phase(model.phases()[0], train)
    groups = CLASSES * CLASSES
    assert model.group_weights.shape == (groups,) and torch.allclose(model.group_weights.sum(), torch.tensor(1.0))
    q0 = model.group_weights.clone()
    index, x, y, b = next(train.batches(torch.arange(N), N))
    with torch.no_grad():
        per_sample = F.cross_entropy(model.predict(x), y, reduction="none")
    g = y * CLASSES + b
    loss = torch.zeros(groups).index_add(0, g, per_sample) / torch.bincount(g, minlength=groups).clamp_min(1)
    model.update((index, x, y, b))
    q = model.group_weights
    expected = q0 * torch.exp(1.0 * loss)
    assert torch.allclose(q, expected / expected.sum(), atol=1e-6)
    assert torch.argmax(q - q0) == torch.argmax(loss)  # the highest-loss group gains the most
    present = torch.bincount(g, minlength=groups) > 0
    assert (q[~present] < q0[~present]).all()  # groups with zero loss in the batch lose weight


def test_groupdro_generalization_adjustment_favours_small_groups():
    model = tiny("groupdro", ["method.step_size=1.0", "method.generalization_adjustment=2.0", "method.reweight_groups=false"])
    train = dataset()
    model.start_phase(model.phases()[0], train)
    counts = torch.bincount(train.y * CLASSES + train.bias, minlength=CLASSES * CLASSES).float()
    assert torch.equal(model.group_counts, counts)
    index, x, y, b = next(train.batches(torch.arange(N), N))
    with torch.no_grad():
        per_sample = F.cross_entropy(model.predict(x), y, reduction="none")
    g = y * CLASSES + b
    loss = torch.zeros(len(counts)).index_add(0, g, per_sample) / torch.bincount(g, minlength=len(counts)).clamp_min(1)
    model.update((index, x, y, b))
    expected = torch.exp(loss + 2.0 / counts.clamp_min(1).sqrt())
    assert torch.allclose(model.group_weights, expected / expected.sum(), atol=1e-6)


def test_groupdro_draws_group_balanced_batches():
    model = tiny("groupdro")
    train = dataset(n=200)  # 80% of each class bias-aligned: groups of very different sizes
    model.start_phase(model.phases()[0], train)
    torch.manual_seed(0)
    draws = torch.cat([model.balanced_batch(256)[0] for _ in range(40)])
    groups = train.y * CLASSES + train.bias
    present = torch.unique(groups)
    freq = torch.bincount(groups[draws], minlength=CLASSES * CLASSES)[present].float() / len(draws)
    assert torch.allclose(freq, torch.full_like(freq, 1 / len(present)), atol=0.01)
    index, x, y, b = model.balanced_batch(8)
    assert torch.equal(y, train.y[index]) and torch.equal(b, train.bias[index])


def test_groupdro_refuses_data_without_bias_labels():
    model = tiny("groupdro")
    with pytest.raises(ConfigError, match="GroupDRO needs bias labels"):
        model.start_phase(model.phases()[0], dataset(bias=False))


# ------------------------------------------------------------------ DFA


def test_dfa_swap_and_lr_decay_start_only_after_curr_step():
    model = tiny("dfa", ["method.curr_step=2", "method.lr_decay_step=1", "method.lr_gamma=0.5"])
    train = dataset()
    model.start_phase(model.phases()[0], train)
    lr = model.cfg.optim.lr
    swaps, swap_losses, lrs = [], [], []
    for step in range(5):
        out = model.update(next(train.batches(torch.randperm(N)[:16], 16)))
        swaps.append(out["swapping"])
        swap_losses.append(out["loss_swap_intrinsic"] + out["loss_swap_bias"])
        lrs.append(model.optimizer_i.param_groups[0]["lr"])
    # As the official loop: swapping when step > curr_step; StepLR steps from step >= curr_step.
    assert swaps == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert swap_losses[:3] == [0.0, 0.0, 0.0] and all(v > 0 for v in swap_losses[3:])
    assert lrs == pytest.approx([lr, lr, lr / 2, lr / 4, lr / 8])
    assert model.optimizer_b.param_groups[0]["lr"] == pytest.approx(lr / 8)


def test_dfa_classifiers_train_only_their_own_encoder():
    # With the bias-side loss off and no swapping, nothing reaches the bias encoder/classifier.
    model = tiny("dfa", ["method.lambda_dis_align=0"])
    train = dataset()
    model.start_phase(model.phases()[0], train)
    before_b, before_i = params(model.enc_b) + params(model.head_b), params(model.enc_i)
    model.update(next(train.batches(torch.arange(16), 16)))
    assert not changed(before_b, nn.ModuleList([model.enc_b, model.head_b]))
    assert changed(before_i, model.enc_i)


def test_dfa_default_architecture_is_the_official_cmnist_mlp():
    model = tiny("dfa", ["method.model.width=100", "method.feature_dim=16"], shape=(3, 28, 28))
    linears = [m for m in model.enc_i.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2352, 100), (100, 100), (100, 16)]
    assert (model.head_i.in_features, model.head_i.out_features) == (32, 10)


# ------------------------------------------------------------------ LC


def test_lc_correction_is_log_prior_and_penalises_the_rare_group():
    prior = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    assert torch.equal(logit_correction(prior, 1.0), torch.log(prior + 1e-4))
    assert torch.equal(logit_correction(prior, 2.0), torch.log(prior**2 + 1e-4))
    # Equal logits; the pseudo bias makes class 0 common (0.9) and class 1 rare (0.1).
    corrected = torch.zeros(2, 2) + logit_correction(prior[:1].expand(2, 2), 1.0)
    rare, common = F.cross_entropy(corrected, torch.tensor([1, 0]), reduction="none")
    assert rare > math.log(2) > common

    # Through one step (no MixUp): samples 0, 1 are (class 0, pseudo bias 0), sample 2 is
    # (class 1, pseudo bias 0), the rare group, and sample 3 is (class 1, pseudo bias 1).
    model = tiny("lc", ["method.group_mixup=false"], num_classes=2, num_train=4, shape=(1,))
    logits_b = [[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 2.0]]
    model.biased, model.main = FixedLogits(logits_b), FixedLogits(torch.zeros(4, 2))
    y = torch.tensor([0, 0, 1, 1])
    train = TensorBiasDataset(torch.zeros(4, 1, dtype=torch.uint8), y, -torch.ones(4), 2, 2)
    model.start_phase(model.phases()[0], train)
    index = torch.arange(4)
    out = model.update((index, index.float().reshape(4, 1), y, -torch.ones(4)))
    p = torch.softmax(torch.tensor(logits_b), 1).gather(1, y[:, None]).squeeze(1)
    alpha = model.cfg.ema_alpha
    table = torch.tensor([[alpha * p[0] + (1 - alpha) * p[1], 0.0], [p[2], p[3]]])  # P[y, a], first values as is
    assert torch.allclose(model.prior.value, table)
    a = torch.tensor([0, 0, 0, 1])
    assert torch.allclose(model.priors(a), table[:, a].t())
    per_sample = F.cross_entropy(torch.log(table[:, a].t() + 1e-4), y, reduction="none")  # main logits are 0
    assert math.isclose(out["loss_lc"], per_sample.mean().item(), rel_tol=1e-6)
    assert per_sample[2] > math.log(2) > per_sample[3]  # the rare group's loss is raised
    assert math.isclose(out["pseudo_minority"], 0.25) and out["lam"] == 1.0


def sequential_prior(value, seen, p, y, a, alpha, avg_type):
    """The official `EMA_squre.update`, one sample at a time."""
    value, seen = value.clone(), seen.clone()
    if avg_type == "mv":
        for pi, yi, ai in zip(p, y, a):
            value[yi, ai] = alpha * value[yi, ai] + (1 - alpha * seen[yi, ai].float()) * pi
            seen[yi, ai] = True
        return value
    total, count = torch.zeros_like(value), torch.zeros_like(value)
    for pi, yi, ai in zip(p, y, a):
        total[yi, ai] += pi
        count[yi, ai] += 1
    mean = total / (count + 1e-4)
    return alpha * value + (1 - alpha) * mean if avg_type == "mv_batch" else mean


@pytest.mark.parametrize("avg_type", ["mv", "mv_batch", "batch"])
def test_lc_prior_table_matches_the_official_sample_by_sample_update(avg_type):
    g = torch.Generator().manual_seed(0)
    table = GroupPrior(3, alpha=0.9, avg_type=avg_type)
    for _ in range(3):
        y, a = torch.randint(0, 3, (20,), generator=g), torch.randint(0, 2, (20,), generator=g)
        p = torch.rand(20, generator=g)
        expected = sequential_prior(table.value, table.seen, p, y, a, 0.9, avg_type)
        table.update(p, y, a)
        assert torch.allclose(table.value, expected, atol=1e-6)
    assert (table.value[:, 2] == 0).all()  # pseudo bias 2 never occurred


def test_lc_group_mixup_partners_are_same_class_pseudo_minority_samples():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])
    a = torch.tensor([0, 0, 3, 4, 1, 1, 1, 2])  # class 0 has minority samples 2 and 3; 1, 2 have none
    torch.manual_seed(0)
    for _ in range(20):
        partner = group_mixup_partners(y, a, 5)
        assert torch.equal(y[partner], y)
        assert set(partner[:4].tolist()) <= {2, 3}
        assert sorted(partner[4:7].tolist()) == [4, 5, 6] and partner[7] == 7  # a permutation within the class


def test_lc_never_reads_the_bias_column():
    train = dataset()
    index, x, y, b = next(train.batches(torch.arange(16), 16))
    states = []
    for bias in (b, -torch.ones_like(b)):
        model = tiny("lc")
        model.start_phase(model.phases()[0], train)
        torch.manual_seed(1)
        for _ in range(2):
            model.update((index, x, y, bias))
        states.append(params(model))
    assert all(torch.equal(u, v) for u, v in zip(*states))


def test_lc_lr_decay_is_one_step_ahead_and_mixup_ramps_up():
    decay = ["method.use_lr_decay=true", "method.lr_decay_step=2", "method.lr_gamma=0.5"]
    model = tiny("lc", [*decay, "method.curr_step=4"])
    train = dataset()
    model.start_phase(model.phases()[0], train)
    lr = model.cfg.optim.lr
    lrs, lams = [], []
    for _ in range(5):
        lrs.append(model.optimizer_main.param_groups[0]["lr"])
        assert model.optimizer_b.param_groups[0]["lr"] == pytest.approx(0.1 * lrs[-1])
        lams.append(model.update(next(train.batches(torch.randperm(N)[:16], 16)))["lam"].item())
    # As the official loop (StepLR stepped before the optimiser): iteration s at gamma^((s + 1) // 2).
    assert lrs == pytest.approx([lr, lr / 2, lr / 2, lr / 4, lr / 4])
    # lam ~ U(1 - 2s, 1 - s) with s = 0.5 exp(-5 (1 - step / 4)^2): near 1 at first, U(0, 0.5) from step 4.
    assert lams[0] > 0.99 and 0.0 <= lams[4] <= 0.5
    assert sigmoid_rampup(0, 0) == 1.0 and sigmoid_rampup(2, 4) == pytest.approx(math.exp(-1.25))


def test_lc_default_architecture_is_the_official_cmnist_mlp():
    model = tiny("lc", ["method.model.width=100", "method.feature_dim=16"], shape=(3, 28, 28))
    linears = [(m.in_features, m.out_features) for m in model.main.modules() if isinstance(m, nn.Linear)]
    assert linears == [(2352, 100), (100, 100), (100, 16), (16, 10)]


# ------------------------------------------------------------------ end to end through the CLI

EPOCHS = {
    "lff": ["method.optim.epochs=1"],
    "jtt": ["method.identification.epochs=1", "method.upweighted.epochs=1", "method.lambda_up=3"],
    "dfa": ["method.optim.epochs=1", "method.curr_step=2"],  # 7 steps: swapping is exercised
    "groupdro": ["method.optim.epochs=1"],
    "lc": ["method.optim.epochs=1"],
}


@pytest.mark.parametrize("method", BASELINES)
def test_cli_train_and_evaluate_end_to_end_on_synthetic(method, tmp_path, capsys):
    out = tmp_path / method
    argv = ["train", "--preset", f"{method}_colored_mnist", "data.name=synthetic", *EPOCHS[method], "device=cpu", "threads=1"]
    assert cli.main([*argv, "--out", str(out), "-q"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == method and results["uses_bias_labels"] == (method == "groupdro")
    assert 0.0 <= results["test"][results["deployed"]]["unbiased"] <= 100.0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--device", "cpu", "--json", "-q"]) == 0  # reloads the checkpoint
    assert results["deployed"] in json.loads(capsys.readouterr().out)
