"""Effective rank (Roy & Vetterli 2007) of inputs and features, and the Theorem 1 check.

rho(A) = exp(H(p)), p_k = sigma_k / sum_j sigma_j: the exponential of the entropy of the
normalised singular values. It is 1 for a rank-1 matrix and n for n equal singular values.
"""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn


def effective_rank(a: torch.Tensor, center: bool = False) -> float:
    """Effective rank of a 2-D matrix (rows are samples); `center` removes the column mean."""
    a = a.double()
    if center:
        a = a - a.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(a)
    s = s[s > s.max() * 1e-12] if s.numel() and s.max() > 0 else s[:0]
    if s.numel() == 0:
        return 0.0
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def layer_features(model: nn.Module, x: torch.Tensor) -> List[torch.Tensor]:
    """Flattened activations after every ReLU module, in forward order, then the output."""
    captured: List[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: captured.append(out.flatten(1)))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    if not captured or not torch.equal(captured[-1], out.flatten(1)):
        captured.append(out.flatten(1))
    return captured


def balanced_subsets(y: torch.Tensor, bias: torch.Tensor, generator: torch.Generator):
    """Equal-size, class-balanced index sets of bias-aligned and bias-conflicting samples:
    equal class proportions approximate Theorem 1's stability with respect to the core attribute."""
    aligned, conflicting = [], []
    for c in torch.unique(y):
        a = torch.nonzero((y == c) & (bias == c)).flatten()
        k = torch.nonzero((y == c) & (bias != c)).flatten()
        n = min(len(a), len(k))
        aligned.append(a[torch.randperm(len(a), generator=generator)[:n]])
        conflicting.append(k[torch.randperm(len(k), generator=generator)[:n]])
    return torch.cat(aligned), torch.cat(conflicting)


def theorem1_check(x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor, features=None,
                   draws: int = 5, seed: int = 0, center: bool = False) -> Dict[str, dict]:
    """Effective rank of aligned vs conflicting subsets, on inputs and optionally on features
    of `features(x)`; mean and std over `draws` random balanced subsets."""
    g = torch.Generator().manual_seed(seed)
    spaces = {"input": lambda idx: x[idx].flatten(1)}
    if features is not None:
        spaces["features"] = lambda idx: features(x[idx])
    out: Dict[str, dict] = {}
    for name, view in spaces.items():
        ranks = {"aligned": [], "conflicting": []}
        for _ in range(draws):
            ia, ic = balanced_subsets(y, bias, g)
            ranks["aligned"].append(effective_rank(view(ia), center))
            ranks["conflicting"].append(effective_rank(view(ic), center))
        out[name] = {
            "subset_size": int(len(ia)),
            **{k: {"mean": float(torch.tensor(v).mean()), "std": float(torch.tensor(v).std()) if draws > 1 else 0.0,
                   "values": v} for k, v in ranks.items()},
        }
    return out
