import math

import torch

from denetdm.metrics import group_counts, summarize


def test_group_accuracies_on_a_hand_computed_confusion():
    # 2 classes x 2 bias values. Cells (y, b): (0,0) aligned, (0,1) conflicting, ...
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    b = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    p = torch.tensor([0, 0, 0, 1, 0, 1, 1, 0, 1, 0])
    correct, total = group_counts(p, y, b, 2, 2)
    assert total.tolist() == [[4, 1], [2, 3]]
    assert correct.tolist() == [[3, 1], [1, 2]]
    s = summarize(p, y, b, 2, 2)
    cells = {"00": 3 / 4, "01": 1 / 1, "10": 1 / 2, "11": 2 / 3}
    assert math.isclose(s["aligned"], 100 * (cells["00"] + cells["11"]) / 2)
    assert math.isclose(s["conflicting"], 100 * (cells["01"] + cells["10"]) / 2)
    assert math.isclose(s["unbiased"], 100 * sum(cells.values()) / 4)
    assert math.isclose(s["worst_group"], 50.0)
    assert math.isclose(s["accuracy"], 70.0)
    assert math.isclose(s["worst_class"], 60.0)  # class 0: 4/5, class 1: 3/5


def test_empty_cells_are_ignored_and_unknown_bias_reports_label_free_metrics():
    y = torch.tensor([0, 1, 2])
    p = torch.tensor([0, 1, 0])
    s = summarize(p, y, torch.tensor([0, 1, 2]), 3, 3)  # only the diagonal exists
    assert math.isclose(s["aligned"], 200 / 3) and math.isnan(s["conflicting"])
    s = summarize(p, y, torch.tensor([-1, -1, -1]), 3, 3)
    assert set(s) == {"accuracy", "worst_class"} and s["worst_class"] == 0.0


def test_batched_crop_flip_moves_pixels_within_the_padding():
    from denetdm.data.base import random_crop_flip

    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8) + 1
    out = random_crop_flip(x, padding=2)
    assert out.shape == x.shape
    for i in range(2):  # every output is a shifted (maybe flipped) window of the zero-padded input
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        windows = [padded[:, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)
