"""Modality sets follow the store: defaults from the sets with valid rows, user entries merged over
them, a default grid a text-only store can train, clear errors, and a failed start leaving no
workdir behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

from cinefuse.errors import CinefuseError  # noqa: E402
from cinefuse.fuse.config import load_config  # noqa: E402
from cinefuse.fuse.plan import (  # noqa: E402
    default_grid_modalities,
    resolve_feature_sets,
    resolve_modalities,
    store_modality_sets,
)

FULL_STORE = {"visual/effnet": True, "visual/effnet_frames": False, "visual/lowlevel": True,
              "audio/logmel_seq": False, "audio/logmel_stats": True, "text/minilm": True, "meta/year": True}
TEXT_STORE = {"text/minilm": True, "text/tfidf": True, "meta/year": True, "meta/language": True}
FAST = {"train": {"steps": 40, "steps_per_call": 20, "eval_every": 40, "checkpoint_every": 40}}


def test_defaults_are_the_store_modalities_in_order_vectors_before_sequences():
    assert store_modality_sets(FULL_STORE) == {
        "visual": ["visual/effnet", "visual/lowlevel"], "audio": ["audio/logmel_stats"],
        "text": ["text/minilm"], "meta": ["meta/year"]}
    # a modality holding only sequences stands for them; unknown prefixes come last, by name
    assert store_modality_sets({"zz/a": True, "audio/logmel_seq": False, "custom/b": True}) == {
        "audio": ["audio/logmel_seq"], "custom": ["custom/b"], "zz": ["zz/a"]}


def test_default_grid_adds_one_modality_at_a_time():
    assert default_grid_modalities(store_modality_sets(FULL_STORE)) == [
        "visual", "visual+audio", "visual+audio+text", "full"]
    assert default_grid_modalities(store_modality_sets(TEXT_STORE)) == ["text", "full"]
    assert default_grid_modalities({"text": ["text/minilm"]}) == ["full"]


def test_user_entry_replaces_one_modality_and_keeps_the_others():
    # the README's example: naming the visual sets must not drop audio or text
    config = load_config(None, {"data": {"modality_sets": {"visual": ["visual/openclip_ViT-B-32", "visual/lowlevel"]}}})
    resolved = resolve_modalities(config, FULL_STORE)
    assert resolved.data.modality_sets == {
        "visual": ["visual/openclip_ViT-B-32", "visual/lowlevel"], "audio": ["audio/logmel_stats"],
        "text": ["text/minilm"], "meta": ["meta/year"]}
    assert resolve_feature_sets("full", resolved.data.modality_sets) == [
        "visual/openclip_ViT-B-32", "visual/lowlevel", "audio/logmel_stats", "text/minilm", "meta/year"]
    assert resolve_feature_sets("visual+audio", resolved.data.modality_sets) == [
        "visual/openclip_ViT-B-32", "visual/lowlevel", "audio/logmel_stats"]


def test_a_modality_the_store_lacks_is_named_in_the_error():
    config = load_config(None, {"model": {"modalities": "visual+text"}})
    with pytest.raises(CinefuseError) as exc:
        resolve_modalities(config, TEXT_STORE)
    assert str(exc.value) == (
        "modality 'visual' (in 'visual+text') is not in the store nor in [data.modality_sets]; known: text, meta "
        "and 'full'; choose one of them or add visual = [feature sets] under [data.modality_sets]")
    grid = load_config(None, {"grid": {"modalities": ["text", "audio"]}})
    with pytest.raises(CinefuseError, match=r"^modality 'audio' \(in 'audio'\) is not in the store"):
        resolve_modalities(grid, TEXT_STORE)


@pytest.fixture(scope="module")
def text_only(tmp_path_factory):
    """A store with text and metadata features only; visual/effnet is there but has no valid row."""
    root = tmp_path_factory.mktemp("textonly")
    n = 120
    env = write_synthetic_store(root, n_items=n, dims={"text/minilm": 12, "meta/year": 3, "visual/effnet": 4},
                                bad_rows={"visual/effnet": {"invalid": list(range(n))}})
    return env


def test_text_only_store_trains_the_default_grid_and_says_what_it_chose(text_only, tmp_path, capsys):
    from cinefuse.cli import main

    cfg = tmp_path / "fuse.toml"
    cfg.write_text("[train]\nsteps = 40\nsteps_per_call = 20\neval_every = 40\ncheckpoint_every = 40\n"
                   "batch_size = 32\n[model]\ntoken_dim = 16\nhidden = 32\nembed_dim = 16\n"
                   "[pairs]\nmin_pairs_per_item = 2\n[objective]\nkind = \"thesis\"\n"
                   '[grid]\nlosses = ["triplet"]\ndistances = ["cosine"]\nheads = []\n')
    w = tmp_path / "w"
    code = main(["fuse", "--store", text_only["store"], "--ratings", text_only["ratings"], "--movies",
                 text_only["movies"], "--workdir", str(w), "--config", str(cfg), "--grid", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    chosen = [line for line in captured.err.splitlines() if line.startswith("modalities:")]
    assert chosen == ["modalities: text = text/minilm; meta = meta/year; full = text+meta; "
                      "grid modalities: text, full"]
    assert sorted(p.name for p in (w / "runs").iterdir()) == ["triplet-cosine-full-concat-mlp",
                                                               "triplet-cosine-text-concat-mlp"]
    record = json.loads((w / "config.json").read_text())
    assert record["data"]["modality_sets"] == {"text": ["text/minilm"], "meta": ["meta/year"]}
    run = json.loads((w / "runs" / "triplet-cosine-full-concat-mlp" / "config.json").read_text())
    assert run["feature_sets"] == ["text/minilm", "meta/year"]


def test_too_few_items_says_the_minimum_and_leaves_no_workdir(tmp_path, capsys):
    from cinefuse.cli import main

    env = write_synthetic_store(tmp_path, n_items=8, n_users=20, dims={"text/minilm": 6})
    w = tmp_path / "w"
    code = main(["fuse", "--store", env["store"], "--ratings", env["ratings"], "--movies", env["movies"],
                 "--workdir", str(w), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[-1] == (
        f"cinefuse fuse: error: only 8 items of store {env['store']} have features, ratings and a movie entry "
        "(8 hold features, 8 of them are in the movies file); fuse needs at least 10: check that the store ids "
        "are the movie ids of the ratings file")
    assert not w.exists()
    # so evaluate says there is nothing trained yet, not that the workdir holds no model
    code = main(["evaluate", "--workdir", str(w)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"cinefuse evaluate: error: workdir {w} does not exist; train first with `cinefuse fuse --workdir {w} ...`")


def test_failed_start_in_an_existing_folder_removes_only_what_it_wrote(tmp_path):
    from cinefuse.fuse.train import run_fuse

    env = write_synthetic_store(tmp_path, n_items=60, n_users=30, dims={"text/minilm": 6})
    w = tmp_path / "w"
    w.mkdir()
    (w / "notes.txt").write_text("mine")
    # nobody rates 6 stars: no positive pair, so the split has no pairs (found after split.json is written)
    bad = small_config(env, pairs={"min_pairs_per_item": 0, "like_threshold": 6.0, "negative_ratio": 0.0}, **FAST)
    with pytest.raises(CinefuseError, match="split has no pairs"):
        run_fuse(bad, w, log=lambda m: None, progress=False)
    assert sorted(p.name for p in w.iterdir()) == ["notes.txt"]


def test_the_config_docstring_example_loads_and_merges(tmp_path):
    import cinefuse.fuse.config as config_module

    doc = config_module.__doc__.split("::", 1)[1].split("``cinefuse fuse", 1)[0]
    path = tmp_path / "fuse.toml"
    path.write_text("\n".join(line[4:] for line in doc.splitlines()))
    resolved = resolve_modalities(load_config(path), FULL_STORE)
    assert resolved.data.modality_sets["visual"] == ["visual/openclip_ViT-B-32", "visual/lowlevel"]
    assert resolved.data.modality_sets["audio"] == ["audio/logmel_stats"]


def test_a_feature_set_without_a_valid_row_is_named_not_the_ids(tmp_path, capsys):
    from cinefuse.cli import main

    env = write_synthetic_store(tmp_path, n_items=40, n_users=30, dims={"text/minilm": 6, "visual/lowlevel": 4},
                                bad_rows={"visual/lowlevel": {"invalid": list(range(40)), "nan": []}})
    fuse = ["fuse", "--store", env["store"], "--ratings", env["ratings"], "--movies", env["movies"], "--no-progress"]
    config = tmp_path / "all.toml"
    config.write_text('[data]\nrequire = "all"\n')
    assert main([*fuse, "--workdir", str(tmp_path / "w"), "--config", str(config),
                 "--modalities", "text/minilm,visual/lowlevel"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"cinefuse fuse: error: no item of store {env['store']} holds a valid row of every one of text/minilm, "
        f"visual/lowlevel (data.require = 'all'; `cinefuse store info {env['store']}` shows each set's coverage): "
        're-extract those sets, train on others (--modalities) or set data.require = "any"')
