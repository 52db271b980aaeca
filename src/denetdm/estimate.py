"""The label-free estimate: how well the deployed model debiased, told without bias labels.

The test split's class labels are grouped by a bias proxy's predictions, and the deployed model's
accuracy is averaged over those (class, proxy prediction) groups (`pseudo_group_summary`). The estimate
is only as good as the proxy reads the bias *and nothing else*. A proxy that has learned the class as
well (LfF's biased model late in training, JTT's ERM model) files the conflicting samples it
recognises under the aligned groups, and the estimate comes out pessimistic, by 10 to 20 points on the
MNIST suite (docs/label_free.md).

So beside the method's own proxy, a *bias reader* is trained for the estimate: a small classifier under
the generalised cross-entropy, which learns the easiest attribute first (LfF's premise), snapshotted as
it trains. Of these candidates the estimate reads the most bias-like: the one with the largest gap
between its fit of the held-out split's labels, which follow the training bias, and its agreement with
the labels of the split it groups, where a bias-only reader agrees only on the aligned samples. A reader
that has begun to learn the class closes that gap; one that has learned nothing fits nothing. Only class
labels are read, and the estimate is reported, never selected on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch

from .errors import ConfigError
from .metrics import pseudo_group_summary, split_predictions
from .models.spec import ModelSpec

# Below this gap (points) the chosen proxy agrees with the grouped split's labels about as often as with
# the held-out ones: the split carries the training bias, or no proxy reads a bias; the groups cannot be
# told from the classes.
MIN_GAP = 10.0


@dataclass
class EstimateConfig:
    """The bias reader beside the method's own proxy; `reader_steps: 0` leaves the method's proxy alone."""

    reader: ModelSpec = field(default_factory=lambda: ModelSpec(arch="mlp", depth=5, width=100))
    reader_steps: int = 2000  # at most, and at most reader_epochs passes over the training split
    reader_epochs: int = 10
    reader_snapshots: int = 40  # evenly spaced over the reader's steps, each a candidate proxy
    reader_lr: float = 1e-3  # Adam, as LfF's biased model
    reader_batch_size: int = 256
    reader_q: float = 0.7  # the GCE exponent of LfF

    def validate(self) -> None:
        if self.reader_steps < 0 or self.reader_epochs < 1 or self.reader_snapshots < 1 or self.reader_batch_size < 1:
            raise ConfigError("estimate.reader_steps must be >= 0 (0: no bias reader), and estimate.reader_epochs, "
                              "reader_snapshots and reader_batch_size >= 1")
        if self.reader_lr <= 0 or not 0.0 < self.reader_q <= 1.0:
            raise ConfigError(f"estimate.reader_lr={self.reader_lr} must be > 0 and estimate.reader_q={self.reader_q} "
                              "in (0, 1] (0.7 is LfF's)")


def predictions(logits_of, names, split) -> dict:
    """`split_predictions` on the CPU: a run's predictors and every reader snapshot are compared there."""
    return {name: p.cpu() for name, p in split_predictions(logits_of, names, split).items()}


def _percent(mask: torch.Tensor) -> float:
    return 100.0 * mask.double().mean().item() if len(mask) else float("nan")


def held_out_split(splits, seed: int):
    """Where a proxy's fit of labels that follow the training bias is read: the held-out split, or
    without one (`last`, `oracle`) a fixed tenth of the training split."""
    if splits.val is not None:
        return splits.val
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(splits.train), generator=generator)[: max(1, len(splits.train) // 10)]
    return splits.train.subset(rows.sort().values, train=False).to(splits.train.device)


def train_reader(cfg: EstimateConfig, splits, held_out, device, seed: int) -> List[dict]:
    """Snapshots of a GCE-trained classifier on the training split (class labels only): each one's
    test-split predictions, held-out fit and test agreement with the class labels."""
    from .methods.base import with_head
    from .methods.lff import generalized_ce
    from .models import create_model

    train, test = splits.train, splits.test
    per_epoch = len(train) // cfg.reader_batch_size
    total = min(cfg.reader_steps, cfg.reader_epochs * per_epoch)
    if total < 1:
        return []
    every = -(-total // cfg.reader_snapshots)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        reader = with_head(create_model(cfg.reader, train.input_shape), train.num_classes).to(device)
    optimizer = torch.optim.Adam(reader.parameters(), lr=cfg.reader_lr)
    order = torch.Generator().manual_seed(seed)
    test_y, held_y = test.y.cpu(), held_out.y.cpu()
    snapshots, step = [], 0
    while step < total:
        for _, x, y, _ in train.batches(torch.randperm(len(train), generator=order), cfg.reader_batch_size, True):
            loss = generalized_ce(reader(x), y, cfg.reader_q).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % every == 0 or step == total:
                reader.eval()
                read = lambda x: {"reader": reader(x)}  # noqa: E731
                test_pred = predictions(read, ["reader"], test)["reader"]
                snapshots.append({"proxy": f"bias_reader (step {step} of {total})", "test_pred": test_pred,
                                  "held_out_fit": _percent(predictions(read, ["reader"], held_out)["reader"] == held_y),
                                  "agreement": _percent(test_pred == test_y)})
                reader.train()
            if step >= total:
                break
    return snapshots


def label_free_estimate(model, splits, phase, cfg: EstimateConfig, device, seed: int) -> dict:
    """The deployed model's unbiased and conflicting accuracy on the test split, estimated with the
    class labels and the most bias-like candidate proxy's predictions as the groups."""
    deployed, test = phase.monitor, splits.test
    was_training = model.training
    model.eval()
    own = [phase.proxy] if phase.proxy else []
    on_test = predictions(lambda x: model.predict_many(x, [deployed, *own]), [deployed, *own], test)
    pred, held_out = on_test[deployed], held_out_split(splits, seed)
    candidates = []
    if own:  # the deployed predictor and the method's proxy read the test split in one pass
        held_pred = predictions(lambda x: model.predict_many(x, own), own, held_out)[phase.proxy]
        candidates.append({"proxy": phase.proxy, "test_pred": on_test[phase.proxy],
                           "held_out_fit": _percent(held_pred == held_out.y.cpu()),
                           "agreement": _percent(on_test[phase.proxy] == test.y.cpu())})
    model.train(was_training)
    candidates += train_reader(cfg, splits, held_out, device, seed) if cfg.reader_steps else []
    estimate = {"split": "test", "predictor": deployed}
    if not candidates:  # no groups to estimate with: what a class-balanced view says
        summary = pseudo_group_summary(pred, test.y, test.num_classes)
        return {**estimate, "proxy": "none (classes are the groups)", "class_balanced": summary["pseudo_unbiased"]}
    for c in candidates:
        c["gap"] = c["held_out_fit"] - c["agreement"]
    chosen = max(candidates, key=lambda c: c["gap"])
    summary = pseudo_group_summary(pred, test.y, test.num_classes, chosen["test_pred"])
    names = {"pseudo_unbiased": "unbiased", "pseudo_conflicting": "conflicting", "pseudo_aligned": "aligned",
             "pseudo_worst": "worst_group", "pseudo_conflicting_share": "proxy_disagrees_pct"}
    shown = [c for c in candidates if c is chosen or c["proxy"] == phase.proxy or c is candidates[-1]]
    caveat = model.proxy_caveat() if chosen["proxy"] == phase.proxy else None
    if caveat is None and chosen["gap"] < MIN_GAP:
        caveat = (f"the bias proxy agrees with the test labels about as often as with the held-out split's "
                  f"(gap {chosen['gap']:.1f} points): the test split carries the training bias, or no proxy "
                  "reads a bias, so its groups cannot be told from the classes")
    return {**estimate, "proxy": chosen["proxy"], **{name: summary[key] for key, name in names.items()},
            "proxy_candidates": [{k: round(c[k], 2) if isinstance(c[k], float) else c[k]
                                  for k in ("proxy", "held_out_fit", "agreement", "gap")} for c in shown],
            **({"caveat": caveat} if caveat else {})}


def format_estimate(estimate: dict) -> str:
    """One line a user without bias labels can read: how well the deployed model debiased, estimated."""
    values = [f"{k} ~ {estimate[k]:.2f}" for k in ("unbiased", "conflicting") if k in estimate]
    if not values:
        values = [f"class-balanced ~ {estimate['class_balanced']:.2f}"]
    return (f"label-free ESTIMATE for {estimate['predictor']} on the test split (no bias labels; groups from the "
            f"bias proxy {estimate['proxy']}): " + ", ".join(values)
            + (f" [UNRELIABLE: {estimate['caveat']}]" if estimate.get("caveat") else ""))

