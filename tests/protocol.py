"""The LfF bias-assignment protocol computed independently of the package, for tests."""
import torch


def expected_counts(n_per_class, aligned_ratio, k=10):
    """Per-(class, bias) counts from the protocol's rounded cumulative milestones."""
    rows = []
    for y, n in enumerate(n_per_class):
        shares = [aligned_ratio if c == y else (1 - aligned_ratio) / (k - 1) for c in range(k)]
        milestones, acc = [], 0.0
        for s in shares:
            acc += s
            milestones.append(round(n * acc))
        rows.append([m - p for m, p in zip(milestones, [0] + milestones[:-1])])
    return torch.tensor(rows)
