"""Label-free `proxy` selection and its estimate: pseudo groups from a bias proxy, no bias labels."""
import json
import math

import pytest
import torch

import denetdm.training as training
from denetdm.config import load_config
from denetdm.data.base import Splits, TensorBiasDataset
from denetdm.estimate import EstimateConfig, format_estimate, label_free_estimate
from denetdm.methods import create_method
from denetdm.methods.base import OptimConfig, Phase
from denetdm.models.spec import ModelSpec
from denetdm.metrics import pseudo_group_summary, summarize
from denetdm.selection import Selector
from denetdm.training import train

TINY = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=3", "method.stage2.epochs=2"]


def test_pseudo_groups_on_a_hand_computed_example():
    # Two classes; the proxy agrees with the label on samples 0-5 and disagrees on 6-9.
    y = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    proxy = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 0, 0])
    pred = torch.tensor([0, 0, 1, 1, 1, 1, 0, 1, 1, 0])  # right on 0, 1, 3, 4, 5, 6, 8
    out = pseudo_group_summary(pred, y, 2, proxy)
    # groups (y, proxy): (0,0) 2/3, (1,1) 3/3, (0,1) 1/2, (1,0) 1/2
    assert out["pseudo_unbiased"] == pytest.approx(100 * (2 / 3 + 1 + 0.5 + 0.5) / 4)
    assert out["pseudo_worst"] == pytest.approx(50.0)
    assert out["pseudo_aligned"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert out["pseudo_conflicting"] == pytest.approx(50.0)
    assert out["pseudo_conflicting_share"] == pytest.approx(40.0)
    # With the true bias as the proxy, the pseudo groups are the true groups: `summarize`'s numbers.
    true = summarize(pred, y, proxy, 2, 2)
    for key in ("unbiased", "aligned", "conflicting"):
        assert out[f"pseudo_{key}"] == pytest.approx(true[key])
    assert out["pseudo_worst"] == pytest.approx(true["worst_group"])
    # Without a proxy a class is a group: the class-balanced accuracy.
    plain = pseudo_group_summary(pred, y, 2)
    assert plain == {"pseudo_unbiased": pytest.approx(100 * (3 / 5 + 4 / 5) / 2), "pseudo_worst": pytest.approx(60.0)}


def _held_out_case(seed: int, n: int = 4000, conflicting: float = 0.02):
    """Bias-aligned data with a perfect bias proxy, and the predictions of three 'epochs'."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    bias = torch.where(torch.rand(n, generator=g) < conflicting, (y + torch.randint(1, 4, (n,), generator=g)) % 4, y)

    def noisy(target, p):  # `target` with a fraction p of random mistakes
        flip = torch.rand(n, generator=g) < p
        return torch.where(flip, (target + 1) % 4, target)

    epochs = [noisy(bias, 0.02), noisy(y, 0.10), torch.where(bias == y, y, noisy(bias, 0.5))]
    return y, bias, epochs


def test_proxy_selection_picks_the_epoch_an_oracle_would():
    """Epoch 0 predicts the bias, epoch 1 the class (debiased), epoch 2 half-way: on a held-out split
    the pseudo-group score, and on an independent test split the oracle, both keep epoch 1."""
    phase = Phase("p", None, "model", "unbiased", ("model",), proxy="biased")
    proxy_sel, oracle_sel = Selector("proxy", phase, keep_weights=False), Selector("oracle", phase, keep_weights=False)
    (yv, bv, val_epochs), (yt, bt, test_epochs) = _held_out_case(0), _held_out_case(1, conflicting=0.9)
    for epoch, (pv, pt) in enumerate(zip(val_epochs, test_epochs)):
        metrics = {"val": {"model": pseudo_group_summary(pv, yv, 4, proxy=bv)},
                   "test": {"model": summarize(pt, yt, bt, 4, 4)}}
        proxy_sel.observe(epoch, metrics, None)
        oracle_sel.observe(epoch, metrics, None)
    proxy_sel.close(), oracle_sel.close()
    assert proxy_sel.best_epoch == oracle_sel.best_epoch == 1


def test_a_phase_that_trains_the_proxy_keeps_its_last_epoch():
    phase = Phase("identification", None, "erm", "accuracy", ("erm",), proxy="erm")
    selector = Selector("proxy", phase, keep_weights=False)
    for epoch in range(3):
        selector.observe(epoch, {"val": {"erm": {"pseudo_unbiased": 90.0 - epoch}}}, None)
    assert selector.best_epoch == 2


def _without_bias_labels(create):
    def wrapped(*args, **kwargs):
        splits = create(*args, **kwargs)
        for split in (splits.train, splits.val, splits.test):
            split.bias = torch.full_like(split.bias, -1)
        return splits
    return wrapped


@pytest.mark.parametrize("preset,overrides", [
    ("colored_mnist", TINY),
    ("lff_colored_mnist", ["data.name=synthetic", "device=cpu", "method.optim.epochs=3"]),
    ("colored_mnist", [*TINY, "method.distill_weight_candidates=[1, 0]", "method.shallow_lr_scale_candidates=[1, 0.1]"]),
], ids=["denetdm", "lff", "denetdm-candidates"])
def test_selection_never_reads_bias_labels(tmp_path, monkeypatch, preset, overrides):
    """Every bias label set to -1 (train, held-out and test): the same epochs, weights and estimate."""
    with_labels = train(load_config(preset, overrides), tmp_path / "a", quiet=True)
    monkeypatch.setattr(training, "create_dataset", _without_bias_labels(training.create_dataset))
    without = train(load_config(preset, overrides), tmp_path / "b", quiet=True)
    assert with_labels["selection"] == without["selection"] == "proxy"
    assert with_labels["selected_epochs"] == without["selected_epochs"]
    assert with_labels.get("candidates") == without.get("candidates")
    assert with_labels["estimate"] == without["estimate"]
    for name, metrics in without["test"].items():
        assert metrics["accuracy"] == with_labels["test"][name]["accuracy"] and "unbiased" not in metrics
    a = torch.load(tmp_path / "a" / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_estimate_is_recorded_and_matches_its_hand_computed_value(tmp_path):
    """The estimate is the pseudo-group summary of the deployed model on the test split, with the
    deep branch's predictions as groups (no bias reader): recomputed here by hand from the final checkpoint."""
    cfg = load_config("colored_mnist", [*TINY, "estimate.reader_steps=0"])
    results = train(cfg, tmp_path / "run", quiet=True)
    est = results["estimate"]
    assert est["split"] == "test" and est["proxy"] == "stage1_deep" and est["predictor"] == "stage2_target"
    splits = training.create_dataset(cfg.data, with_val=True, progress=False)
    model = training.create_method(cfg, splits.train.input_shape, 10, len(splits.train))
    model.load_state_dict(torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)["state_dict"])
    model.eval()
    x = torch.cat([b[1] for b in splits.test.batches(torch.arange(len(splits.test)), 500)])
    with torch.no_grad():
        pred, proxy = model.predict(x).argmax(1), model.head(model.deep(x)).argmax(1)
    y = splits.test.y
    cells = {}
    for yi, bi, ok in zip(y.tolist(), proxy.tolist(), (pred == y).tolist()):
        cells.setdefault((yi, bi), []).append(ok)
    means = {c: 100 * sum(v) / len(v) for c, v in cells.items()}
    assert est["unbiased"] == pytest.approx(sum(means.values()) / len(means))
    off = [m for (yi, bi), m in means.items() if yi != bi]
    assert est["conflicting"] == pytest.approx(sum(off) / len(off))
    assert not math.isnan(results["test"]["stage2_target"]["unbiased"])  # the truth it is judged against


def test_a_phase_without_a_proxy_scores_its_classes_whatever_the_proxy_metric():
    """ERM has no bias proxy, so `pseudo_conflicting` does not exist: class-balanced accuracy decides."""
    phase = Phase("erm", None, "erm", "unbiased", ("erm",))
    selector = Selector("proxy", phase, keep_weights=False, proxy_metric="pseudo_conflicting")
    for epoch, score in enumerate((60.0, 80.0, 70.0)):
        selector.observe(epoch, {"val": {"erm": {"pseudo_unbiased": score, "pseudo_worst": 50.0}}}, None)
    selector.close()
    assert selector.best_epoch == 1


def test_stage2_candidates_are_ranked_by_the_selection_score_and_last_trains_the_first_only(tmp_path):
    over = [*TINY, "method.distill_weight_candidates=[1, 0]"]
    ranked = train(load_config("colored_mnist", over), tmp_path / "proxy", quiet=True)
    entry = ranked["candidates"]["stage2"]
    assert entry["settings"] == [{"distill_weight": 1.0}, {"distill_weight": 0.0}]
    assert entry["chosen"] == max(range(2), key=lambda k: entry["scores"][k])
    assert ranked["selection_scores"]["stage2"] == max(entry["scores"])
    logged = [json.loads(line) for line in (tmp_path / "proxy" / "metrics.jsonl").read_text().splitlines()]
    stage2 = [(r.get("candidate", 0), r["epoch"]) for r in logged if r["phase"] == "stage2"]
    epochs = load_config("colored_mnist", over).method.stage2.epochs
    assert stage2 == [(k, e) for k in range(2) for e in range(epochs)]
    last = train(load_config("colored_mnist", [*over, "selection=last"]), tmp_path / "last", quiet=True)
    assert "candidates" not in last
    assert all("candidate" not in json.loads(line) for line in (tmp_path / "last" / "metrics.jsonl").read_text().splitlines())


def test_an_epoch_that_fails_the_methods_check_wins_only_while_no_epoch_passes_it():
    phase = Phase("stage1", None, "shallow", "conflicting", ("shallow",), proxy="deep")
    selector = Selector("proxy", phase, keep_weights=False)
    seen = lambda score: {"val": {"shallow": {"pseudo_unbiased": score}}}
    selector.observe(0, seen(70.0), None, candidate=0, eligible=False)
    selector.observe(1, seen(60.0), None, candidate=0, eligible=True)  # a lower score that passes wins
    assert selector.close() and (selector.best_epoch, selector.best_score) == (1, 60.0)
    selector.observe(0, seen(95.0), None, candidate=1, eligible=False)  # a higher one that fails does not
    selector.observe(1, seen(61.0), None, candidate=1, eligible=True)
    restored = Selector("proxy", phase, keep_weights=False)
    restored.load(selector.state())  # the setting in training survives a resume
    assert restored.close() and (restored.best_candidate, restored.best_epoch) == (1, 1)


def test_a_setting_whose_check_fails_by_its_last_epoch_does_not_vouch_for_its_earlier_epochs():
    phase = Phase("stage1", None, "shallow", "conflicting", ("shallow",), proxy="deep")
    seen = lambda score: {"val": {"shallow": {"pseudo_unbiased": score}}}
    alone = Selector("proxy", phase, keep_weights=False)
    for epoch, (score, ok) in enumerate([(50.0, True), (80.0, False), (70.0, False)]):
        alone.observe(epoch, seen(score), None, eligible=ok)
    assert not alone.close() and (alone.best_epoch, alone.best_eligible) == (1, False)  # the best score, as if unchecked
    ranked = Selector("proxy", phase, keep_weights=False)
    for candidate, history in enumerate([[(99.0, True), (90.0, False)], [(60.0, False), (65.0, True)]]):
        for epoch, (score, ok) in enumerate(history):
            ranked.observe(epoch, seen(score), None, candidate, ok)
        ranked.close()
    assert (ranked.best_candidate, ranked.best_epoch, ranked.best_eligible) == (1, 1, True)


def test_a_phase_that_does_not_need_the_last_epoch_keeps_its_best_passing_epoch_after_a_collapse():
    """`method.stage1_early_split_epochs`: a split that held early and collapsed by the last epoch still
    vouches for the epochs where it held; the DeNetDM flag sets the phase's rule."""
    phase = Phase("stage1", None, "shallow", "conflicting", ("shallow",), proxy="deep", eligible_needs_last=False)
    seen = lambda score: {"val": {"shallow": {"pseudo_unbiased": score}}}
    early = Selector("proxy", phase, keep_weights=False)
    for epoch, (score, ok) in enumerate([(50.0, True), (60.0, True), (99.0, False), (98.0, False)]):
        early.observe(epoch, seen(score), None, eligible=ok)
    assert early.close() and (early.best_epoch, early.best_eligible) == (1, True)
    never = Selector("proxy", phase, keep_weights=False)
    for epoch, score in enumerate([50.0, 70.0]):
        never.observe(epoch, seen(score), None, eligible=False)
    assert not never.close() and never.best_epoch == 1
    cfg = load_config("colored_mnist", [*TINY, "method.stage1_early_split_epochs=true"])
    model = create_method(cfg, (3, 28, 28), 10, 100)
    assert [p.eligible_needs_last for p in model.phases()] == [False, True]
    assert create_method(load_config("colored_mnist", TINY), (3, 28, 28), 10, 100).phases()[0].eligible_needs_last


def test_stage1_candidates_train_from_fresh_weights_and_the_kept_one_passes_the_held_out_split_check(tmp_path):
    over = [*TINY, "method.shallow_lr_scale_candidates=[1, 0.1]"]
    results = train(load_config("colored_mnist", over), tmp_path / "run", quiet=True)
    entry = results["candidates"]["stage1"]
    assert entry["settings"] == [{"shallow_lr_scale": 1.0}, {"shallow_lr_scale": 0.1}]
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    stage1 = [r for r in logged if r["phase"] == "stage1"]
    assert [(r.get("candidate", 0), r["epoch"]) for r in stage1] == [(k, e) for k in range(2) for e in range(3)]
    # The kept (candidate, epoch) is the best-scored among the epochs whose held-out split check passed,
    # of the candidates whose check passed at their last epoch.
    from denetdm.methods.denetdm import DeNetDM
    ok = [not DeNetDM.split_failed(r["val"]) for r in stage1]
    last_ok = {r.get("candidate", 0): good for r, good in zip(stage1, ok)}
    rank = [(good and last_ok[r.get("candidate", 0)], r["val"]["stage1_shallow"]["pseudo_unbiased"]) for r, good in zip(stage1, ok)]
    best = max(range(len(stage1)), key=lambda i: rank[i])
    assert entry["chosen"] == stage1[best].get("candidate", 0) and results["selected_epochs"]["stage1"] == stage1[best]["epoch"]
    assert entry["eligible"] == [last_ok[k] for k in range(2)]


def test_train_prints_the_stage1_ranking_and_names_a_setting_whose_split_never_passed(tmp_path, capsys):
    from denetdm.cli import main

    assert main(["train", "--preset", "colored_mnist", "--out", str(tmp_path / "run"), "-q", *TINY,
                 "method.shallow_lr_scale_candidates=[1, 0.1]"]) == 0
    (line,) = [l for l in capsys.readouterr().out.splitlines() if l.startswith("stage1: kept")]
    assert "{'shallow_lr_scale': 1.0}" in line and "{'shallow_lr_scale': 0.1}" in line
    ranked = json.loads((tmp_path / "run" / "results.json").read_text())["candidates"]["stage1"]
    assert line.count("ranked last") == ranked["eligible"].count(False)


def test_estimate_rows_mark_a_flagged_proxy_and_give_the_error_without_it():
    from denetdm.reports import estimate_rows

    def record(key, est, true, caveat=None):
        estimate = {"proxy": "stage1_deep", "unbiased": est, **({"caveat": caveat} if caveat else {})}
        return {"key": key, "estimate": estimate, "test": {"unbiased": true}}

    records = [record("a", 80.0, 81.0), record("b", 70.0, 72.0), record("c", 40.0, 50.0, caveat="at chance")]
    _, rows, notes = estimate_rows(records)
    assert [r[1] for r in rows] == ["stage1_deep", "stage1_deep", "stage1_deep (unreliable)"]
    everything, trusted = notes  # the conflicting estimate is absent from these records
    assert "over 3 runs:" in everything and "within 3 points: 2/3" in everything
    assert "over 2 runs whose proxy no label-free check flagged" in trusted and "within 3 points: 2/2" in trusted
    assert "range -2.00 to -1.00" in trusted
    _, _, notes = estimate_rows(records[:2])  # nothing flagged: one sentence
    assert len(notes) == 1


def _reader_case(seed: int, aligned: float, n: int = 3000):
    """Images whose channel 0 shows the bias (all on or off) and whose channel 1 shows the class faintly
    (one pixel): a bias any reader takes at once, a class it is slow to."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    b = torch.where(torch.rand(n, generator=g) < aligned, y, 1 - y)
    x = torch.zeros(n, 2, 4, 4, dtype=torch.uint8)
    x[:, 0] = (b * 255).to(torch.uint8)[:, None, None]
    x[:, 1, 0, 0] = (y * 20).to(torch.uint8)
    return TensorBiasDataset(x, y, b, 2, 2)


class _Stub(torch.nn.Module):
    """A run's model reduced to what the estimate reads: a deployed predictor that follows the bias
    channel (right on aligned samples only) and an own proxy that reads the class exactly (a proxy that
    has learned the core, as LfF's biased model does late in training)."""

    phase = Phase("only", OptimConfig(), monitor="deployed", oracle_metric="unbiased", predictors=("deployed",),
                  proxy="own")

    def predict_many(self, x, names):
        channel = {"deployed": 0, "own": 1}
        return {n: torch.stack([-x[:, channel[n]].mean((1, 2)), x[:, channel[n]].mean((1, 2))], 1) for n in names}

    def proxy_caveat(self):
        return None


def _estimate(splits, steps=2000):
    cfg = EstimateConfig(reader=ModelSpec(arch="mlp", depth=3, width=16), reader_steps=steps, reader_snapshots=10)
    return label_free_estimate(_Stub(), splits, _Stub.phase, cfg, torch.device("cpu"), seed=0)


def test_the_estimate_reads_the_bias_reader_where_the_methods_proxy_knows_the_class():
    splits = Splits(train=_reader_case(0, 0.98), val=_reader_case(1, 0.98, 600), test=_reader_case(2, 0.5, 1000))
    est = _estimate(splits)
    own, *_ = est["proxy_candidates"]
    assert own["proxy"] == "own" and own["agreement"] == 100.0 and own["gap"] == pytest.approx(0.0)
    assert est["proxy"].startswith("bias_reader") and "caveat" not in est
    # The deployed model follows the bias: right on aligned test samples, wrong on conflicting ones. With
    # the bias reader's groups the estimate is the truth; the class-reading proxy would not tell them apart.
    truth = summarize(_Stub().predict_many(splits.test.x.float(), ["deployed"])["deployed"].argmax(1),
                      splits.test.y, splits.test.bias, 2, 2)
    assert est["unbiased"] == pytest.approx(truth["unbiased"], abs=3.0)
    assert est["conflicting"] == pytest.approx(truth["conflicting"], abs=3.0)
    # Only class labels are read: without bias labels the same estimate.
    for split in (splits.train, splits.val, splits.test):
        split.bias = torch.full_like(split.bias, -1)
    assert _estimate(splits) == est
    # No reader: the method's proxy, however poor.
    assert _estimate(splits, steps=0)["proxy"] == "own"


def test_an_estimate_whose_proxy_reads_no_bias_is_marked_unreliable():
    # The test split carries the training bias: every proxy agrees with its labels as with the held-out ones.
    splits = Splits(train=_reader_case(0, 0.98), val=_reader_case(1, 0.98, 600), test=_reader_case(2, 0.98, 1000))
    est = _estimate(splits)
    assert "caveat" in est and "cannot be told from the classes" in est["caveat"]
    assert "UNRELIABLE" in format_estimate(est)
