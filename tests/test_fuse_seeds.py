"""Issue 20 item 4 (fuse side): ``train.seeds`` / ``fuse --seeds`` trains every model once per
seed, named ``<model>@seed<N>``, each from its own seed; summaries carry ``seed`` and ``base_model``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

TRAIN = {"steps": 40, "eval_every": 20, "checkpoint_every": 20}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("seeds"), n_items=80, n_users=60)


def leaves(workdir, model):
    import jax

    from cinefuse.fuse.embed import load_model

    return jax.tree.leaves(load_model(workdir, model)[1])


def test_two_seeds_train_two_differently_initialised_models(env, tmp_path):
    from cinefuse.fuse.train import run_fuse
    from cinefuse.fuse.workdir import Workdir

    base = "triplet-cosine-full-concat-mlp"
    summary = run_fuse(small_config(env, train={**TRAIN, "seeds": [0, 1]}), tmp_path / "w", log=lambda m: None,
                       progress=False)
    assert summary["models"] == [f"{base}@seed0", f"{base}@seed1"]
    for run, seed in zip(summary["runs"], (0, 1)):
        assert (run["seed"], run["base_model"]) == (seed, base)
        assert Workdir(tmp_path / "w").summary(run["model"])["seed"] == seed
    a, b = leaves(tmp_path / "w", f"{base}@seed0"), leaves(tmp_path / "w", f"{base}@seed1")
    assert any(not np.array_equal(x, y) for x, y in zip(a, b))
    # seed 0 of the list is the model a plain run with train.seed = 0 trains, bit for bit
    plain = run_fuse(small_config(env, train=TRAIN), tmp_path / "p", log=lambda m: None, progress=False)
    assert plain["models"] == [base] and plain["runs"][0]["seed"] == 0 and plain["runs"][0]["base_model"] == base
    for x, y in zip(a, leaves(tmp_path / "p", base)):
        np.testing.assert_array_equal(x, y)
    # one seed in the list: the names stay, the model trains from that seed
    one = run_fuse(small_config(env, train={**TRAIN, "seeds": [1]}), tmp_path / "o", log=lambda m: None,
                   progress=False)
    assert one["models"] == [base] and one["runs"][0]["seed"] == 1
    for x, y in zip(b, leaves(tmp_path / "o", base)):
        np.testing.assert_array_equal(x, y)


def test_seeds_option_and_config_checks():
    import argparse

    from cinefuse.errors import CinefuseError
    from cinefuse.fuse.cli import seeds_option
    from cinefuse.fuse.config import load_config

    assert seeds_option("0,1,2") == [0, 1, 2]
    with pytest.raises(argparse.ArgumentTypeError, match="not a comma-separated list of integers"):
        seeds_option("0,x")
    with pytest.raises(CinefuseError, match=r"train.seeds \[1, 1\] must be a list of distinct integers >= 0"):
        load_config(None, {"train": {"seeds": [1, 1]}})
    with pytest.raises(CinefuseError, match="selection.task = 'users' is not one of 'item-to-item', 'user-to-item'"):
        load_config(None, {"selection": {"task": "users"}})
