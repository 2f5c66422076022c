"""Items that miss a modality (issue 21 item 2): every head honours the per-item mask (an absent
set's input changes nothing), ``[data] require`` keeps any / all, the modality dropout never
drops all of a row's sets, and a model trained with ``require = "any"`` embeds an item holding
only text, one holding only visual and one holding everything, finite and deterministic."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

from cinefuse.errors import CinefuseError  # noqa: E402
from cinefuse.fuse.features import FeatureTable, apply_standardization, clean_table, standardization  # noqa: E402

HEADS = ["concat-mlp", "ln-linear", "gated", "cross-attention"]
SETS = {"visual/a": (5,), "visual/seq": (6, 3), "audio/b": (4,), "text/c": (7,)}


def _tower(head: str, raw: bool = False):
    import jax
    import jax.numpy as jnp

    from cinefuse.fuse.models import FusionTower, set_specs

    specs = set_specs(list(SETS), SETS, ["visual/seq"])
    tower = FusionTower(sets=specs, head=head, hidden=16, token_dim=8, embed_dim=6, attention_heads=2, prior=True)
    rng = np.random.default_rng(0)
    n = 6
    feats = {k: rng.normal(size=(n,) + shape).astype(np.float32) for k, shape in SETS.items()}
    lens = {"visual/a": np.array([1, 0, 1, 1, 0, 1]), "visual/seq": np.array([6, 0, 3, 0, 2, 6]),
            "audio/b": np.array([1, 1, 0, 0, 0, 1]), "text/c": np.array([1, 1, 1, 0, 1, 1])}
    lens = {k: v.astype(np.int32) for k, v in lens.items()}
    mask = jnp.ones(len(SETS), jnp.float32)
    params = tower.init(jax.random.PRNGKey(0), feats, lens, mask)
    # the absent tokens start at zero: give them values so the test sees them used
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.3 if "absent" in jax.tree_util.keystr(path) else x, params)
    if raw:
        return tower, params, feats, lens, mask
    apply = jax.jit(lambda f, ln: tower.apply(params, f, ln, mask, with_prior=True))
    return apply, feats, lens


@pytest.mark.parametrize("head", HEADS)
def test_an_absent_sets_input_changes_no_output(head):
    apply, feats, lens = _tower(head)
    base = [np.asarray(x) for x in apply(feats, lens)]
    assert all(np.isfinite(x).all() for x in base)
    junk = {k: v.copy() for k, v in feats.items()}
    for k, length in lens.items():          # absent rows (length 0) get wild values
        junk[k][length == 0] = 1e4 * np.sign(junk[k][length == 0] + 0.5)
    for x, y in zip(base, apply(junk, lens)):
        np.testing.assert_array_equal(x, np.asarray(y))
    # and the inputs of present rows do reach the output (the check above is not vacuous)
    moved = {k: v.copy() for k, v in feats.items()}
    moved["text/c"][0] += 1.0
    assert not np.array_equal(base[0][0], np.asarray(apply(moved, lens)[0])[0])


@pytest.mark.parametrize("head", HEADS)
def test_a_nan_in_an_absent_row_reaches_neither_output_nor_gradient(head):
    """The absent rows' inputs are zeroed before the encoders: a NaN there would otherwise turn
    the weight gradient into NaN (0 * NaN) even though the output ignores it."""
    import jax
    import jax.numpy as jnp

    tower, params, feats, lens, mask = _tower(head, raw=True)
    for k, length in lens.items():
        feats[k][length == 0] = np.nan

    def loss(p):
        norm, raw_out, prior = tower.apply(p, feats, lens, mask, with_prior=True)
        return jnp.sum(norm * jnp.arange(norm.shape[1])) + jnp.sum(prior)

    value, grads = jax.value_and_grad(loss)(params)
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("head", HEADS)
def test_the_mask_decides_not_the_zeros(head):
    """An item whose set is marked absent embeds differently from one holding a zero row of it:
    absence is the mask, never a zero vector (concat heads take the learnt absent token)."""
    apply, feats, lens = _tower(head)
    zero = {k: v.copy() for k, v in feats.items()}
    zero["audio/b"][:] = 0.0
    held = dict(lens, **{"audio/b": np.ones(6, np.int32)})
    gone = dict(lens, **{"audio/b": np.zeros(6, np.int32)})
    a, b = np.asarray(apply(zero, held)[0]), np.asarray(apply(zero, gone)[0])
    assert not np.allclose(a, b)


def test_clean_table_keeps_any_or_all_and_counts_each_combination():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.ones((4, 2), np.float32)
    y[1] = np.inf
    valid = {"v/x": [True, False, True, True], "t/y": [True, True, True, False]}
    any_ = clean_table(["a", "b", "c", "d"], {"v/x": x, "t/y": y}, valid, {}, "any")
    assert any_.ids.tolist() == ["a", "c", "d"]        # b holds neither (invalid, Inf)
    assert any_.counts["combinations"] == {"v/x+t/y": 2, "v/x": 1}
    assert any_.lengths["t/y"].tolist() == [1, 1, 0] and any_.present("v/x").tolist() == [True] * 3
    assert (any_.data["t/y"][2] == 0).all()
    every = clean_table(["a", "b", "c", "d"], {"v/x": x, "t/y": y}, valid, {}, "all")
    assert every.ids.tolist() == ["a", "c"] and every.counts["excluded_missing_modality"] == 2
    seq = np.ones((4, 3, 2), np.float32)
    s = clean_table(["a", "b", "c", "d"], {"s/q": seq}, {"s/q": [True, False, True, True]},
                    {"s/q": np.array([3, 3, 0, 2])}, "any")
    assert s.ids.tolist() == ["a", "d"] and s.lengths["s/q"].tolist() == [3, 2]
    with pytest.raises(CinefuseError, match=r"^data.require must be one of any, all \(got 'some'\)$"):
        clean_table(["a"], {"v/x": x[:1]}, {"v/x": [True]}, {}, "some")


def test_standardisation_reads_only_the_items_holding_the_set():
    vec = np.arange(12, dtype=np.float32).reshape(6, 2)
    lens = np.array([1, 0, 1, 1, 0, 1], np.int32)
    table = FeatureTable(np.arange(6).astype(object), {"v/x": vec}, {"v/x": lens})
    stats = standardization(table, np.arange(4))
    held = vec[[0, 2, 3]]
    np.testing.assert_allclose(stats["v/x"][0], held.mean(axis=0))
    np.testing.assert_allclose(stats["v/x"][1], held.std(axis=0), rtol=1e-6)
    z = apply_standardization(table, stats)["v/x"]
    assert (z[lens == 0] == 0).all() and np.allclose(z[0], (vec[0] - held.mean(0)) / held.std(0))
    with pytest.raises(CinefuseError, match="no training rows hold feature set 'v/x'"):
        standardization(table, np.array([1, 4]))


def test_modality_dropout_never_drops_every_set_and_depends_on_names_not_order():
    import jax
    import jax.numpy as jnp

    from cinefuse.fuse.step import drop_modalities

    n = 4000
    rng = np.random.default_rng(1)
    held = rng.random((n, 3)) < 0.7
    held[np.arange(n), rng.integers(0, 3, n)] = True           # every row holds one set at least
    feats = {"a/x": jnp.zeros((n, 2)), "b/y": jnp.zeros((n, 5, 2)), "c/z": jnp.zeros((n, 3))}
    lens = {"a/x": jnp.asarray(held[:, 0].astype(np.int32)), "b/y": jnp.asarray(held[:, 1] * 5),
            "c/z": jnp.asarray(held[:, 2].astype(np.int32))}
    key = jax.random.PRNGKey(3)
    out = drop_modalities(key, feats, lens, 0.3)
    kept = np.stack([np.asarray(out[k]) > 0 for k in ("a/x", "b/y", "c/z")], axis=1)
    assert not (kept & ~held).any()                    # an absent set stays absent
    assert kept.any(axis=1).all()                      # never every set of a row
    assert set(np.unique(np.asarray(out["b/y"]))) <= {0, 5}
    rate = 1 - kept[held.sum(1) == 3].mean()
    assert 0.25 < rate < 0.32, rate                    # ~0.3 where three sets are held
    reordered = drop_modalities(key, dict(reversed(list(feats.items()))), dict(reversed(list(lens.items()))), 0.3)
    for k in out:
        np.testing.assert_array_equal(np.asarray(out[k]), np.asarray(reordered[k]))


def test_config_checks_require_and_the_dropout_rate():
    from cinefuse.fuse.config import as_config

    assert as_config({}).data.require == "any" and as_config({}).train.modality_dropout == 0.1
    with pytest.raises(CinefuseError, match=r"^data.require = 'most' is not one of 'any', 'all'$"):
        as_config({"data": {"require": "most"}})
    with pytest.raises(CinefuseError, match=r"^train.modality_dropout must be in \[0, 1\) \(got 1.0\)$"):
        as_config({"train": {"modality_dropout": 1.0}})


TEXT_ONLY = list(range(0, 30))           # rows whose visual row is invalid: they hold text only
VISUAL_ONLY = list(range(30, 60))        # rows whose text row is invalid: they hold visual only


@pytest.fixture(scope="module")
def trained_any(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("missing")
    env = write_synthetic_store(root, n_items=200, dims={"visual/effnet": 16, "text/minilm": 8},
                                bad_rows={"visual/effnet": {"invalid": TEXT_ONLY}, "text/minilm": {"invalid": VISUAL_ONLY}})
    logs = []
    cfg = small_config(env, train={"steps": 100, "steps_per_call": 50, "eval_every": 100, "checkpoint_every": 100})
    summary = run_fuse(cfg, root / "w", log=logs.append)
    return root / "w", summary, logs


def test_a_model_trained_with_require_any_embeds_items_from_what_they_hold(trained_any):
    from cinefuse.fuse.embed import list_models, load_embedded

    workdir, summary, logs = trained_any
    counts = summary["feature_counts"]
    assert counts["kept"] == 200 and counts["combinations"] == {"visual/effnet+text/minilm": 140,
                                                                "text/minilm": 30, "visual/effnet": 30}
    assert any("140 items hold visual/effnet+text/minilm" in line for line in logs), logs
    (model,) = list_models(workdir)
    first, again = load_embedded(workdir, model), load_embedded(workdir, model)
    assert first.counts == {"items": 200, "embedded": 200, "left_out": 0}
    assert first.record.feature_sets == ["visual/effnet", "text/minilm"]
    row = {i: r for r, i in enumerate(first.ids.tolist())}
    text_only, visual_only, both = row["1"], row["31"], row["100"]
    assert first.present[text_only].tolist() == [False, True]
    assert first.present[visual_only].tolist() == [True, False]
    assert first.present[both].tolist() == [True, True]
    for r in (text_only, visual_only, both):
        assert np.isfinite(first.emb[r]).all() and abs(np.linalg.norm(first.emb[r]) - 1) < 1e-5
    np.testing.assert_array_equal(first.emb, again.emb)
    # three different inputs, three different embeddings (nothing collapsed to one absent vector)
    assert len({first.emb[r].tobytes() for r in (text_only, visual_only, both)}) == 3


def test_a_model_trained_with_require_any_ignores_what_an_item_lacks(trained_any):
    """Overwriting the stored values of an item's invalid row changes none of its outputs."""
    from cinefuse.fuse.embed import list_models, load_embedded
    from cinefuse.store import open_store

    workdir, summary, _ = trained_any
    (model,) = list_models(workdir)
    store = open_store(load_embedded(workdir, model).record.config.data.store)
    table = store.load(["visual/effnet", "text/minilm"])
    base = load_embedded(workdir, model, table=table)
    rows = np.flatnonzero(~np.asarray(table.valid["visual/effnet"], bool))
    table.features["visual/effnet"] = np.array(table.features["visual/effnet"], copy=True)
    table.features["visual/effnet"][rows] = 123.0
    changed = load_embedded(workdir, model, table=table)
    np.testing.assert_array_equal(base.emb, changed.emb)


@pytest.mark.parametrize("head", HEADS)
def test_encoders_are_named_by_set_so_the_listed_order_changes_nothing(head):
    import jax
    import jax.numpy as jnp

    from cinefuse.fuse.models import FusionTower, set_specs

    rng = np.random.default_rng(2)
    feats = {k: rng.normal(size=(5,) + shape).astype(np.float32) for k, shape in SETS.items()}
    lens = {"visual/seq": np.array([6, 2, 3, 0, 1], np.int32), "audio/b": np.array([1, 0, 1, 1, 1], np.int32)}
    outs, trees = [], []
    for names in (list(SETS), list(reversed(SETS)), ["text/c", "visual/a", "audio/b", "visual/seq"]):
        tower = FusionTower(sets=set_specs(names, SETS, ["visual/seq"]), head=head, hidden=16, token_dim=8,
                            embed_dim=6, attention_heads=2, prior=True)
        mask = jnp.asarray([0.0 if n == "visual/a" else 1.0 for n in names])   # follows the listed order
        params = tower.init(jax.random.PRNGKey(7), feats, lens, mask)
        trees.append({jax.tree_util.keystr(k): np.asarray(v)
                      for k, v in jax.tree_util.tree_flatten_with_path(params)[0]})
        outs.append(np.asarray(tower.apply(params, feats, lens, mask)[0]))
    assert "['params']['enc_visual_seq']['hidden']['kernel']" in trees[0]
    for tree, out in zip(trees[1:], outs[1:]):
        assert tree.keys() == trees[0].keys()
        for k in tree:
            np.testing.assert_array_equal(tree[k], trees[0][k])
        np.testing.assert_array_equal(out, outs[0])


def test_two_sets_with_one_parameter_name_are_one_error():
    from cinefuse.fuse.models import param_names

    assert param_names(["visual/mmtf_aesthetic", "audio/x-1"]) == {
        "visual/mmtf_aesthetic": "enc_visual_mmtf_aesthetic", "audio/x-1": "enc_audio_x_1"}
    with pytest.raises(CinefuseError, match=r"^feature sets 'visual/a-b' and 'visual/a_b' have the same parameter "
                                            r"name 'enc_visual_a_b'; rename one of them$"):
        param_names(["visual/a-b", "visual/a_b"])


def test_a_seeded_run_trains_the_same_parameters_whatever_the_order_of_its_sets(tmp_path):
    """Initialisation, the modality dropout's draws and the training itself depend on the seed and
    the sets' names, not on the order a configuration lists them."""
    import jax

    from cinefuse.fuse.embed import load_model
    from cinefuse.fuse.train import run_fuse

    env = write_synthetic_store(tmp_path / "d", n_items=120, bad_rows={"visual/effnet": {"invalid": [1, 2, 3]}})
    trees = []
    for k, sets in enumerate((["visual/effnet", "text/minilm", "audio/logmel_stats"],
                              ["audio/logmel_stats", "visual/effnet", "text/minilm"])):
        cfg = small_config(env, model={"modalities": sets},
                           train={"steps": 40, "steps_per_call": 20, "eval_every": 40, "checkpoint_every": 40,
                                  "modality_dropout": 0.3})
        summary = run_fuse(cfg, tmp_path / f"w{k}", log=lambda m: None)
        (model,) = summary["models"]
        params = load_model(tmp_path / f"w{k}", model)[1]
        trees.append({jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]})
    assert trees[0].keys() == trees[1].keys()
    for key in trees[0]:
        np.testing.assert_array_equal(trees[0][key], trees[1][key], err_msg=key)
