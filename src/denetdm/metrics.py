"""Group accuracies, computed once from predictions.

Groups are (target, bias) cells. A cell is bias-aligned when bias == target, the
convention every dataset in this package follows. Only non-empty cells count, so the
summaries stay defined on test sets that lack some cells.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch

from . import distributed
from .distributed import WORLD

SUMMARY_KEYS = ("unbiased", "aligned", "conflicting", "worst_group", "accuracy")


def group_counts(pred: torch.Tensor, y: torch.Tensor, bias: torch.Tensor, num_classes: int, num_bias: int):
    """(correct, total) count matrices of shape (num_classes, num_bias)."""
    cell = (y * num_bias + bias).long()
    size = num_classes * num_bias
    total = torch.bincount(cell, minlength=size)
    correct = torch.bincount(cell, weights=(pred == y).double(), minlength=size)
    return correct.view(num_classes, num_bias), total.view(num_classes, num_bias).double()


def summarize(
    pred: torch.Tensor,
    y: torch.Tensor,
    bias: Optional[torch.Tensor],
    num_classes: int,
    num_bias: int,
    groups: bool = False,
) -> Dict[str, float]:
    """Accuracies in percent. Without bias labels only label-free ones are reported.
    `groups` adds the per-class accuracies and, with bias labels, the (target x bias) accuracy matrix
    (None for empty classes and cells): what `denetdm report` draws of the deployed model."""
    pred, y = pred.cpu(), y.cpu()
    out: Dict[str, float] = {"accuracy": 100.0 * (pred == y).double().mean().item()}
    per_class_total = torch.bincount(y, minlength=num_classes).double()
    per_class_correct = torch.bincount(y, weights=(pred == y).double(), minlength=num_classes)
    seen = per_class_total > 0
    out["worst_class"] = 100.0 * (per_class_correct[seen] / per_class_total[seen]).min().item()
    if groups:
        out["per_class"] = [100.0 * c / t if t else None for c, t in zip(per_class_correct.tolist(), per_class_total.tolist())]
    if bias is None or (bias.cpu() < 0).any():
        return out
    correct, total = group_counts(pred, y, bias.cpu(), num_classes, num_bias)
    present = total > 0
    acc = torch.where(present, correct / total.clamp(min=1), torch.zeros_like(total))
    aligned = torch.zeros_like(present)
    k = min(num_classes, num_bias)
    aligned[torch.arange(k), torch.arange(k)] = True

    def mean(mask: torch.Tensor) -> float:
        mask = mask & present
        return 100.0 * acc[mask].mean().item() if mask.any() else float("nan")

    out.update(
        unbiased=mean(present),
        aligned=mean(aligned),
        conflicting=mean(~aligned),
        worst_group=100.0 * acc[present].min().item(),
    )
    if groups:
        out["groups"] = [[100.0 * a if p else None for a, p in zip(ra.tolist(), rp.tolist())] for ra, rp in zip(acc, present)]
    return out


def pseudo_group_summary(pred: torch.Tensor, y: torch.Tensor, num_classes: int,
                         proxy: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Label-free group accuracies in percent: groups are (class, proxy prediction) cells, the
    "bias-unsupervised validation" of uLA (NeurIPS 2023), with a bias proxy's prediction standing in
    for the unknown bias label; without a proxy, a class is a group. The keys mirror `summarize`:
    `pseudo_unbiased` (mean over the non-empty groups: the selection score), `pseudo_worst`, and
    `pseudo_aligned` / `pseudo_conflicting` (the groups where the proxy agrees / disagrees with the
    label), so on a split with bias labels each can be set against its true value."""
    pred, y = pred.cpu(), y.cpu()
    groups = torch.zeros_like(y) if proxy is None else proxy.cpu()
    correct, total = group_counts(pred, y, groups, num_classes, 1 if proxy is None else num_classes)
    acc, present = correct / total.clamp(min=1), total > 0
    out = {"pseudo_unbiased": 100.0 * acc[present].mean().item(), "pseudo_worst": 100.0 * acc[present].min().item()}
    if proxy is None:
        return out
    diag = torch.eye(num_classes, dtype=torch.bool)
    for key, mask in (("pseudo_aligned", present & diag), ("pseudo_conflicting", present & ~diag)):
        out[key] = 100.0 * acc[mask].mean().item() if mask.any() else float("nan")
    out["pseudo_conflicting_share"] = 100.0 * (proxy.cpu() != y).double().mean().item()
    return out


@torch.no_grad()
def split_predictions(logits_of: Callable[[torch.Tensor], Dict[str, torch.Tensor]], names: Sequence[str], split,
                      batch_size: int = 2048) -> Dict[str, torch.Tensor]:
    """Argmax predictions over a whole split, in its order, of each of `names` among the logits that
    `logits_of(x)` returns. Under torchrun each rank predicts every size-th sample, and the predictions
    are gathered (every rank takes part, even one left without samples)."""
    parts: Dict[str, list] = {name: [] for name in names}
    for _, x, _, _ in split.batches(torch.arange(len(split))[WORLD.rank::WORLD.size], batch_size):
        logits = logits_of(x)
        for name in names:
            parts[name].append(logits[name].argmax(dim=1))
    empty = torch.empty(0, dtype=torch.long, device=split.y.device)
    return {name: distributed.gather(torch.cat(p) if p else empty, len(split)) for name, p in parts.items()}
