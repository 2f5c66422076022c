"""fuse/workdir.py: the records a run writes read back as written, a workdir made by another
config refused, metrics lines after a checkpoint left out, and a failed start leaving nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cinefuse.errors import CinefuseError
from cinefuse.fuse.config import FuseConfig, LossConfig
from cinefuse.fuse.plan import RunSpec
from cinefuse.fuse.workdir import Workdir


def test_run_record_round_trip_and_a_different_record_refused(tmp_path):
    wd, config = Workdir(tmp_path / "w"), FuseConfig()
    run = RunSpec("pair-cosine-full-concat-mlp", LossConfig(kind="pair"), config.model, ["visual/x", "text/y"], [1, 0],
                  config.objective)
    wd.save_run_record(run.name, run.record(config))
    back = wd.run_record(run.name)
    assert (back.name, back.feature_sets, back.token_mask) == (run.name, ["visual/x", "text/y"], [1, 0])
    assert back.config.loss == run.loss and back.config.objective == config.objective
    assert not wd.is_trained(run.name) and wd.models() == []
    other = RunSpec(run.name, LossConfig(kind="triplet"), config.model, run.feature_sets, run.token_mask,
                    config.objective)
    with pytest.raises(CinefuseError, match="holds a run with a different configuration; use a new --workdir"):
        wd.save_run_record(run.name, other.record(config))


def test_metrics_lines_upto_a_step_and_cut_lines_skipped(tmp_path):
    wd = Workdir(tmp_path)
    wd.run_dir("m").mkdir(parents=True)
    wd.metrics_path("m").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (40, 80, 120))
                                    + '{"step": 160, "lo')
    assert [x["step"] for x in wd.metrics_lines("m")] == [40, 80, 120]
    assert [x["step"] for x in wd.metrics_lines("m", 80)] == [40, 80]


def test_summary_stats_and_trained_models(tmp_path):
    wd = Workdir(tmp_path)
    wd.run_dir("m").mkdir(parents=True)
    wd.save_run_record("m", RunSpec("m", LossConfig(), FuseConfig().model, ["v/x"], [1]).record(FuseConfig()))
    stats = {"v/x": (np.array([1, 2], np.float32), np.array([3, 4], np.float32))}
    wd.save_feature_stats("m", stats)
    back = wd.feature_stats("m", ["v/x"])
    assert [a.tolist() for a in back["v/x"]] == [[1, 2], [3, 4]]
    wd.save_summary("m", {"model": "m", "train_seconds": 1.5})
    assert wd.summary("m") == {"model": "m", "train_seconds": 1.5} and wd.train_seconds("m") == 1.5
    assert wd.models() == []                     # no params/ yet
    wd.params_dir("m").mkdir()
    assert wd.models() == ["m"] and wd.is_trained("m")


def test_a_failed_start_leaves_no_workdir_and_another_config_is_refused(tmp_path):
    root = tmp_path / "w"
    with pytest.raises(RuntimeError):
        with Workdir(root).recording(FuseConfig(), grid=False):
            raise RuntimeError("failed before training")
    assert not root.exists()
    root.mkdir()
    Workdir(root).save_config(FuseConfig(), grid=False)
    other = FuseConfig(loss=LossConfig(kind="pair"))
    with pytest.raises(CinefuseError, match="was made by a different fuse config"):
        Workdir(root).save_config(other, grid=False)


def test_the_run_records_absolute_data_paths(tmp_path, monkeypatch):
    """A workdir names its store, ratings and movies absolutely: evaluate or recommend run from
    another folder must not read another store of the same relative name (issue 24, point 11)."""
    from cinefuse.fuse.config import as_config
    from cinefuse.fuse.plan import absolute_data_paths

    monkeypatch.chdir(tmp_path)
    config = as_config({"data": {"store": "store", "ratings": "ml/ratings.csv", "movies": "ml",
                                 "endpoint_url": None}})
    d = absolute_data_paths(config).data
    assert (d.store, d.ratings, d.movies) == (str(tmp_path / "store"), str(tmp_path / "ml" / "ratings.csv"),
                                              str(tmp_path / "ml"))
    s3 = absolute_data_paths(as_config({"data": {"store": "s3://bucket/store", "ratings": "r.csv",
                                                 "movies": "m.csv"}})).data
    assert s3.store == "s3://bucket/store"
