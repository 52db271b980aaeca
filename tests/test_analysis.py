"""Effective rank, linear probes and the analyze command."""
import json
import math

import pytest
import torch

from denetdm.analysis import effective_rank, linear_probe
from denetdm.analysis.rank import balanced_subsets, layer_features
from denetdm.cli import main
from denetdm.models.spec import ModelSpec
from denetdm.models import create_model


def with_spectrum(singular_values, n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = len(singular_values)
    u, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.double))
    v, _ = torch.linalg.qr(torch.randn(k + 3, k, generator=g, dtype=torch.double))
    return u @ torch.diag(torch.tensor(singular_values, dtype=torch.double)) @ v.T


def test_effective_rank_of_known_spectra():
    assert math.isclose(effective_rank(with_spectrum([1.0] * 7)), 7.0, rel_tol=1e-9)
    assert math.isclose(effective_rank(with_spectrum([5.0])), 1.0, rel_tol=1e-9)
    # sigma = (3, 1): p = (3/4, 1/4), exp(H) = exp(-(0.75 ln 0.75 + 0.25 ln 0.25)).
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert math.isclose(effective_rank(with_spectrum([3.0, 1.0])), expected, rel_tol=1e-9)
    assert effective_rank(torch.zeros(4, 4)) == 0.0


def test_probe_recovers_a_planted_attribute_and_stays_at_chance_on_noise():
    g = torch.Generator().manual_seed(0)
    n, d, k = 2000, 20, 4
    x = torch.randn(n, d, generator=g)
    planted = (x @ torch.randn(d, k, generator=g)).argmax(1)  # linear in x
    noise = torch.randint(0, k, (n,), generator=g)  # independent of x
    half = n // 2
    assert linear_probe(x[:half], planted[:half], x[half:], planted[half:], k) > 90
    assert abs(linear_probe(x[:half], noise[:half], x[half:], noise[half:], k) - 100 / k) < 6


def test_layer_features_and_balanced_subsets():
    mlp = create_model(ModelSpec(arch="mlp", depth=4, width=6), (3, 2, 2))
    feats = layer_features(mlp, torch.rand(5, 3, 2, 2))
    assert [f.shape for f in feats] == [(5, 6)] * 3
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    bias = torch.tensor([0, 0, 1, 1, 1, 1, 0])
    a, c = balanced_subsets(y, bias, torch.Generator().manual_seed(0))
    assert len(a) == len(c) == 2 and bool((bias[a] == y[a]).all()) and bool((bias[c] != y[c]).all())
    assert sorted(y[a].tolist()) == sorted(y[c].tolist()) == [0, 1]


@pytest.mark.parametrize("args", [
    ["decodability", "--mode", "init", "--models", "mlp:3,mlp:4", "--seeds", "0"],
    ["decodability", "--mode", "erm", "--models", "mlp:3", "--iterations", "0,5"],
    ["decodability", "--mode", "denetdm", "--iterations", "0,3"],
    ["rank", "--models", "mlp:3", "--iterations", "0,5"],
])
def test_analyze_command_runs_end_to_end_on_tiny_data(tmp_path, args, capsys):
    out = tmp_path / "analysis"
    assert main(["analyze", *args, "--preset", "synthetic_demo", "--out", str(out), "device=cpu"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert any(n.endswith(".json") for n in written) and any(n.endswith(".png") for n in written)
    assert any(n.endswith(".svg") for n in written)
    result = json.loads(next(out.glob("*.json")).read_text())
    if args[0] == "rank":
        t1 = result["theorem1"]["input"]
        assert t1["aligned"]["mean"] > 0 and t1["conflicting"]["mean"] > 0
    else:
        curve = next(iter(result["curves"].values()))
        assert all(0 <= v <= 100 for v in curve["core"] + curve["bias"]) and result["chance_core"] == 10.0
