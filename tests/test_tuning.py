"""`denetdm tune`: a grid ranked by the label-free proxy score, resumable, recorded."""
import json

import pytest

import denetdm.training as training
from denetdm import tuning
from denetdm.cli import main
from denetdm.errors import ConfigError

TINY = ["data.name=synthetic", "device=cpu", "method.stage1.epochs=2", "method.stage2.epochs=1"]


def test_grid_parsing_and_points():
    grid = tuning.parse_grid(["method.shallow.depth=2,3", "method.stage1.lr=0.001,0.01"])
    assert len(tuning.grid_points(grid)) == 4
    assert tuning.point_name({"method.shallow.depth": "2", "seed": "1"}) == "shallow.depth=2_seed=1"
    for bad in (["method.shallow.depth"], ["x="], ["a=1", "a=2"]):
        with pytest.raises(ConfigError):
            tuning.parse_grid(bad)


def test_tune_ranks_by_the_proxy_score_records_it_and_resumes(tmp_path, monkeypatch, capsys):
    args = ["tune", "--preset", "colored_mnist", "--grid", "method.shallow.depth=2,3", "--out", str(tmp_path / "t"), "-q", *TINY]
    assert main(args) == 0
    assert "chosen (label-free)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert len(summary["ranking"]) == 2
    for entry in summary["ranking"]:  # each score is the one its run selected its final phase by
        results = json.loads((tmp_path / "t" / "points" / tuning.point_name(entry["point"]) / "results.json").read_text())
        assert entry["score"] == results["selection_scores"]["stage2"]
    keys = [tuning.rank_key(e) for e in summary["ranking"]]
    assert keys == sorted(keys, reverse=True) and summary["chosen"] == summary["ranking"][0]["point"]
    # Rerunning the same grid trains nothing and gives the same ranking.
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("trained again"))
    assert main(args) == 0
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["ranking"] == summary["ranking"]
    # Another config in the same folder is refused, and the oracle protocol cannot rank a grid.
    assert main([*args, "seed=3"]) == 2
    assert main([*args[:-len(TINY)], *TINY, "--selection", "oracle"]) == 2
