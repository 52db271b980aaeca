"""Linear decodability (Hermann & Lampinen 2020), the paper's probe of what a network keeps.

Freeze a network, take its penultimate features, fit one linear softmax layer per attribute
on an unbiased probe-training split and report its accuracy on a disjoint unbiased split.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int, l2: float = 1e-4, max_iter: int = 200) -> float:
    """Test accuracy (%) of multinomial logistic regression, fit full-batch with L-BFGS on
    standardised features (deterministic; the paper leaves the optimiser open)."""
    train_x, test_x = train_x.double(), test_x.double()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    w = torch.zeros(train_x.shape[1], num_classes, dtype=torch.double, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(train_x @ w + b, train_y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return 100.0 * ((test_x @ w + b).argmax(1) == test_y).double().mean().item()


def probe_split(n: int, seed: int = 0):
    """Halves of an unbiased split: the probe is fit on one and scored on the other."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2], perm[n // 2 :]


@torch.no_grad()
def features_of(backbone, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    was_training = backbone.training
    backbone.eval()
    out = torch.cat([backbone(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    backbone.train(was_training)
    return out.flatten(1)


def decodability(backbone, x, y, bias, num_classes: int, num_bias: int, seed: int = 0) -> dict:
    """Core (y) and bias decodability (%) of the backbone's features on an unbiased split."""
    feats = features_of(backbone, x).cpu()
    fit, score = probe_split(len(x), seed)
    y, bias = y.cpu(), bias.cpu()
    return {
        "core": linear_probe(feats[fit], y[fit], feats[score], y[score], num_classes),
        "bias": linear_probe(feats[fit], bias[fit], feats[score], bias[score], num_bias),
    }
