"""cinefuse/tomlconfig.py: the one TOML loader of extract and fuse, its type rules and their one
wording, seen through both configs; and what the fuse config refuses rather than train as
something else."""

from __future__ import annotations

import pytest

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.fuse.config import config_from_dict, load_config


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(CinefuseError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def test_missing_and_broken_files_read_the_same_for_both_stages(tmp_path):
    absent = tmp_path / "absent.toml"
    assert message(load_config, absent) == f"fuse config file {absent} not found: pass an existing TOML file to --config"
    assert message(ExtractConfig.from_toml, absent) == (
        f"extract config file {absent} not found: pass an existing TOML file to --config")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nsteps = 1\n")
    for fn, what in ((load_config, "fuse"), (ExtractConfig.from_toml, "extract")):
        assert message(fn, broken).startswith(f"{what} config file {broken} is not valid TOML: ")


@pytest.mark.parametrize("key, value, expected", [
    ("steps", "many", "an integer"), ("steps", True, "an integer"), ("steps", 2.0, "an integer"),
    ("learning_rate", "fast", "a number"), ("learning_rate", False, "a number"),
    ("data_parallel", 1, "true or false"), ("grid_program", 3, "a string"),
])
def test_fuse_type_rules(key, value, expected):
    assert message(config_from_dict, {"train": {key: value}}) == (
        f"fuse config key 'train.{key}' has the wrong type: {value!r} (expected {expected})")


def test_extract_type_rules_and_the_same_wording(tmp_path):
    assert message(ExtractConfig.from_dict, {"frames": "many"}) == (
        "config: extract config key 'frames' has the wrong type: 'many' (expected an integer)")
    assert message(ExtractConfig.from_dict, {"strict": "yes"}, where="x.toml") == (
        "x.toml: extract config key 'strict' has the wrong type: 'yes' (expected true or false)")
    assert message(ExtractConfig.from_dict, {"store": 5}) == (
        "config: extract config key 'store' has the wrong type: 5 (expected a string or nothing)")
    # a list of strings may be one comma-separated string; an int in a float key becomes a float
    cfg = ExtractConfig.from_dict({"visual": "lowlevel, effnet-lite0", "audio_max_seconds": 30})
    assert cfg.visual == ["lowlevel", "effnet-lite0"] and cfg.audio_max_seconds == 30.0
    assert isinstance(cfg.audio_max_seconds, float)


def test_fuse_values_pass_through_the_rules(tmp_path):
    path = tmp_path / "fuse.toml"
    path.write_text('[loss]\nmargin = 1\nkind = "pair"\n[train]\nlearning_rate = 1\n[data]\nendpoint_url = "http://x"\n')
    cfg = load_config(path)
    assert cfg.loss.margin == 1.0 and isinstance(cfg.loss.margin, float)
    assert cfg.train.learning_rate == 1.0 and isinstance(cfg.train.learning_rate, float)
    assert cfg.data.endpoint_url == "http://x" and cfg.loss.resolved_margin() == 1.0


def test_infonce_refuses_what_it_would_train_as_something_else():
    assert message(config_from_dict, {"loss": {"kind": "infonce", "distance": "euclidean"}}) == (
        "loss.distance = 'euclidean' does not apply to loss.kind = 'infonce' (its logits are cosines, so it would "
        "train cosine); set loss.distance = \"cosine\"")
    assert message(config_from_dict, {"loss": {"kind": "infonce", "margin": 0.3}}) == (
        "loss.margin does not apply to loss.kind = 'infonce' (it has no margin; loss.temperature sets its scale); "
        "drop loss.margin")
    assert config_from_dict({"loss": {"kind": "infonce"}}).loss.distance == "cosine"
