"""The objectives wired into the trainer: on a store whose ratings follow a latent taste that the
genres do not carry, the co-preference objectives beat the thesis rule on held-out items;
every objective trains with every head; runs are deterministic for a seed; selection follows
validation nDCG@10; the prior head and its weight; ``cold-item-time`` trains on no rating after
the cut.

The planted store: items fall into ``N_TASTES`` taste clusters; users like (5 stars) items of one
taste and rate a few others 3 (seen, not liked, not disliked). ``text/minilm`` carries the taste
(its centroid plus noise); ``visual/effnet`` carries the item's genres (a projection of the
multi-hot, little noise); genres are random, independent of taste. The thesis rule pairs
co-liked items only when their genres agree, and draws its negatives among genre-dissimilar
items, so genre is its cleanest separator; the co-preference objectives see who liked what.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cinefuse.errors import CinefuseError

N_TASTES = 4
GENRES = ["Action", "Adventure", "Animation", "Comedy", "Crime", "Drama", "Fantasy", "Horror", "Musical",
          "Romance", "Sci-Fi", "Western"]


def write_taste_store(root: Path, n_items: int = 200, n_users: int = 160, seed: int = 0) -> dict:
    from fixtures import ok_block, write_movielens_csv, write_store

    rng = np.random.default_rng(seed)
    taste = np.arange(n_items) % N_TASTES
    rng.shuffle(taste)
    genres = [sorted(rng.choice(len(GENRES), size=2, replace=False).tolist()) for _ in range(n_items)]
    multi_hot = np.zeros((n_items, len(GENRES)), np.float32)
    for i, g in enumerate(genres):
        multi_hot[i, g] = 1.0
    taste_x = rng.normal(size=(N_TASTES, 16)).astype(np.float32)[taste] + rng.normal(scale=0.7, size=(n_items, 16))
    genre_x = 1.5 * multi_hot @ rng.normal(size=(len(GENRES), 16)) + rng.normal(scale=0.3, size=(n_items, 16))
    ids = [str(i + 1) for i in range(n_items)]
    blocks = {name: ok_block(x.astype(np.float32), attrs={"backbone": "synthetic"})
              for name, x in (("text/minilm", taste_x), ("visual/effnet", genre_x))}
    write_store(root / "store", {"synthetic": "taste", "seed": seed}, [(ids, blocks)])
    ml = root / "ml"
    movies = [(i + 1, f"Film {i + 1} (2000)", [GENRES[g] for g in genres[i]]) for i in range(n_items)]
    # every item is released at its own time; its ratings come after it
    release = rng.permutation(n_items) * 100
    rows = []
    for u in range(n_users):
        liked = rng.choice(np.flatnonzero(taste == u % N_TASTES), size=12, replace=False)
        seen = rng.choice(np.flatnonzero(taste != u % N_TASTES), size=4, replace=False)
        rows += [(u + 1, i + 1, r, release[i] + int(rng.integers(0, 3000)))
                 for i, r in [(i, 5.0) for i in liked] + [(i, 3.0) for i in seen]]
    write_movielens_csv(ml, movies, rows)
    return {"store": str(root / "store"), "ratings": str(ml / "ratings.csv"), "movies": str(ml / "movies.csv"),
            "taste": taste, "ids": ids}


def taste_config(env: dict, **sections) -> dict:
    config = {
        "data": {"store": env["store"], "ratings": env["ratings"], "movies": env["movies"],
                 "modality_sets": {"visual": ["visual/effnet"], "text": ["text/minilm"]}},
        "model": {"token_dim": 16, "hidden": 32, "embed_dim": 16},
        "objective": {"history_users": 16, "history_per_user": 8, "history_random": 32, "teacher_dim": 8},
        "train": {"batch_size": 32, "steps": 200, "steps_per_call": 20, "eval_every": 40, "checkpoint_every": 40,
                  "learning_rate": 3e-3, "warmup_steps": 20, "patience": 0},
        "grid": {"modalities": ["full"], "heads": []},
    }
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


def held_out_ndcg10(workdir: Path, model: str | None, part: str = "test") -> float:
    """The pinned nDCG@10 (``metrics.device_ranking``, random ties) of a trained model over the
    split's ``part`` items, relevance from all their ratings; ``model=None``: the mean over five
    seeds of random unit vectors (the chance level of the same items)."""
    import jax

    from cinefuse.datasets.movielens import load_ratings
    from cinefuse.fuse.embed import embed_items
    from cinefuse.metrics.device_ranking import ndcg_hr_at_k
    from cinefuse.metrics.likes import like_matrix

    split = json.loads((workdir / "split.json").read_text())
    r = load_ratings(json.loads((workdir / "config.json").read_text())["data"]["ratings"])
    if model is None:
        items = list(split[part])
        embs = [np.random.default_rng(s).normal(size=(len(items), 16)) for s in range(5)]
    else:
        ids, emb = embed_items(workdir, model)
        row = {i: k for k, i in enumerate(ids.tolist())}
        items = [i for i in split[part] if i in row]
        embs = [emb[[row[i] for i in items]]]
    likes = like_matrix(r.user, r.item, r.rating, np.array(items, dtype=object)).X.toarray() > 0
    return float(np.mean([ndcg_hr_at_k(e, likes, jax.random.PRNGKey(5), k=10)["nDCG"] for e in embs]))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return write_taste_store(tmp_path_factory.mktemp("taste"))


@pytest.fixture(scope="module")
def trained(env, tmp_path_factory):
    """One grid over the four objectives on the full feature set (thesis: triplet-cosine)."""
    from cinefuse.fuse.train import run_fuse

    workdir = tmp_path_factory.mktemp("objectives") / "w"
    cfg = taste_config(env, grid={"objectives": ["thesis", "co-like", "history", "distill"], "modalities": ["full"],
                                  "losses": ["triplet"], "distances": ["cosine"], "heads": []})
    summary = run_fuse(cfg, workdir, grid=True, log=lambda m: None)
    return workdir, summary


def test_co_preference_objectives_beat_the_thesis_on_held_out_items(trained):
    workdir, summary = trained
    assert sorted(summary["models"]) == ["co-like-full-concat-mlp", "distill-full-concat-mlp",
                                         "history-full-concat-mlp", "triplet-cosine-full-concat-mlp"]
    score = {m: held_out_ndcg10(workdir, m) for m in summary["models"]}
    thesis = score.pop("triplet-cosine-full-concat-mlp")
    for model, value in score.items():
        assert value > thesis + 0.1, (model, value, thesis, score)
    # the validation metric the trainer selected by is the same pinned metric over the val items
    for run in summary["runs"]:
        assert run["val_ndcg10"] == pytest.approx(
            json.loads((workdir / "runs" / run["model"] / "metrics.jsonl").read_text().splitlines()[-1])["val_ndcg10"])


@pytest.mark.slow  # 16 programs compiled (about 50-100 s); each head and objective is trained in faster tests too
def test_every_objective_trains_with_every_head(env, tmp_path):
    from cinefuse.fuse.train import run_fuse

    cfg = taste_config(env, train={"steps": 20, "steps_per_call": 10, "eval_every": 20, "checkpoint_every": 20},
                       grid={"objectives": ["thesis", "co-like", "history", "distill"], "modalities": ["full"],
                             "losses": ["triplet"], "distances": ["cosine"],
                             "heads": ["ln-linear", "cross-attention", "gated"]})
    summary = run_fuse(cfg, tmp_path / "w", grid=True, log=lambda m: None)
    heads = ["concat-mlp", "ln-linear", "cross-attention", "gated"]
    expected = {f"{o}-full-{h}" for o in ("co-like", "history", "distill") for h in heads}
    expected |= {f"triplet-cosine-full-{h}" for h in heads}
    assert set(summary["models"]) == expected
    for run in summary["runs"]:
        assert np.isfinite(run["val_ndcg10"]) and 0 <= run["val_ndcg10"] <= 1, run
        lines = [json.loads(x) for x in (tmp_path / "w" / "runs" / run["model"] / "metrics.jsonl").read_text().splitlines()]
        assert np.isfinite(lines[-1]["loss"]) and lines[-1]["grad_norm"] > 0, (run["model"], lines[-1])


def test_co_like_trains_with_the_pair_and_triplet_losses(env, tmp_path):
    from cinefuse.fuse.train import run_fuse

    cfg = taste_config(env, objective={"kind": "co-like", "co_like_loss": "loss"},
                       model={"modalities": ["text/minilm"]},
                       grid={"objectives": [], "modalities": ["text"], "losses": ["pair", "triplet"],
                             "distances": ["cosine"], "heads": []})
    summary = run_fuse(cfg, tmp_path / "w", grid=True, log=lambda m: None)
    assert sorted(summary["models"]) == ["co-like-pair-cosine-text-concat-mlp", "co-like-triplet-cosine-text-concat-mlp"]
    assert all(r["group_size"] == 2 for r in summary["runs"])
    # trained on who liked what, both learn the taste the text carries: far above chance
    chance = held_out_ndcg10(tmp_path / "w", None)
    for run in summary["runs"]:
        assert held_out_ndcg10(tmp_path / "w", run["model"]) > chance + 0.2, (run, chance)


@pytest.mark.slow  # ~40-50 s (three objectives compiled twice); make test-all runs it
def test_a_seed_fixes_the_run(env, tmp_path):
    import jax

    from cinefuse.fuse.embed import load_model
    from cinefuse.fuse.train import run_fuse

    short = {"steps": 20, "steps_per_call": 10, "eval_every": 20, "checkpoint_every": 20}
    leaves = {}
    kinds = ("co-like", "history", "distill")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = taste_config(env, train={**short, "seed": seed}, grid={"objectives": list(kinds)})
        summary = run_fuse(cfg, tmp_path / name, grid=True, log=lambda m: None)
        for kind in kinds:
            leaves[name, kind] = jax.tree.leaves(load_model(tmp_path / name, f"{kind}-full-concat-mlp")[1])
    for kind in kinds:
        for x, y in zip(leaves["a", kind], leaves["b", kind], strict=True):
            np.testing.assert_array_equal(x, y)
        assert any(not np.array_equal(x, y) for x, y in zip(leaves["a", kind], leaves["c", kind])), kind


def test_selection_keeps_the_best_validation_ndcg(env, tmp_path):
    """With patience, the kept parameters are those of the logged best nDCG@10, not the last."""
    from cinefuse.fuse.train import run_fuse

    cfg = taste_config(env, objective={"kind": "co-like", "prior": False},
                       train={"steps": 400, "eval_every": 20, "checkpoint_every": 20, "patience": 3,
                              "learning_rate": 3e-2})
    summary = run_fuse(cfg, tmp_path / "w", log=lambda m: None)
    run = summary["runs"][0]
    lines = [json.loads(x) for x in (tmp_path / "w" / "runs" / run["model"] / "metrics.jsonl").read_text().splitlines()]
    best = max(lines, key=lambda x: (x["val_ndcg10"], -x["step"]))
    assert run["best_step"] == best["step"] and run["val_ndcg10"] == pytest.approx(best["val_ndcg10"], abs=1e-6)
    # recomputed from the saved parameters with the same metric and tie key: the logged best value
    assert validation_ndcg10(tmp_path / "w", run["model"]) == pytest.approx(best["val_ndcg10"], abs=1e-5)
    assert "val_auc" in lines[0]  # the pair AUC stays a logged diagnostic where pairs exist


def test_prior_weight_is_chosen_on_validation_and_scored_by_evaluate(trained):
    from cinefuse.evaluate.run import run_evaluate
    from cinefuse.fuse.embed import embed_items, item_priors

    workdir, summary = trained
    for run in summary["runs"]:
        scan = {float(w): v for w, v in run["prior_weight_scan"].items()}
        assert run["prior_weight"] == max(scan, key=lambda w: (scan[w], -w))
        assert run["val_ndcg10_prior"] == scan[run["prior_weight"]]
        assert scan[0.0] == pytest.approx(run["val_ndcg10"], abs=1e-6)  # w = 0 is the plain cosine
    model = "distill-full-concat-mlp"
    ids, emb = embed_items(workdir, model)
    prior = item_priors(workdir, model)
    assert prior.shape == (len(ids),) and np.isfinite(prior).all() and prior.std() > 0
    results = run_evaluate(workdir, ks=(10,), write=False, progress=False)
    names = [r.name for r in results.rows]
    assert f"{model}+prior" in names and model in names


def test_item_prior_head_is_off_when_asked(env, tmp_path):
    from cinefuse.fuse.embed import item_priors
    from cinefuse.fuse.train import run_fuse

    cfg = taste_config(env, objective={"kind": "co-like", "prior": False},
                       train={"steps": 20, "steps_per_call": 10, "eval_every": 20, "checkpoint_every": 20})
    summary = run_fuse(cfg, tmp_path / "w", log=lambda m: None)
    assert item_priors(tmp_path / "w", summary["models"][0]) is None
    assert "prior_weight" not in summary["runs"][0]


def test_cold_item_time_trains_on_no_rating_after_the_cut(env, tmp_path):
    """The newest items are cold; changing every rating given at or after the cut changes
    nothing that training sees (pairs, triplets, targets)."""
    import pandas as pd

    from cinefuse.fuse.config import as_config
    from cinefuse.fuse.train import objective_arrays, prepare

    def prepared(ratings_csv: str, workdir: Path, kind: str):
        cfg = as_config(taste_config({**env, "ratings": ratings_csv}, split={"protocol": "cold-item-time"},
                                     objective={"kind": kind}))
        workdir.mkdir(parents=True)
        data = prepare(cfg, workdir, ["text/minilm"], log=lambda m: None)
        return data, objective_arrays(data, cfg, cfg.objective, log=lambda m: None)

    data, arrays = prepared(env["ratings"], tmp_path / "a", "co-like")
    split = json.loads((tmp_path / "a" / "split.json").read_text())
    cut = split["cut_timestamp"]
    r = pd.read_csv(env["ratings"])
    first = r.groupby(r.movieId.astype(str)).timestamp.min()
    assert first[split["train"]].max() <= cut and first[split["val"] + split["test"]].min() >= cut
    assert first[split["val"]].max() <= first[split["test"]].min()   # test items are the newest
    assert (data.seen.timestamp < cut).all() and set(data.seen.item.tolist()) <= set(split["train"])
    after = r.timestamp >= cut
    assert after.sum() > 100 and r[after].movieId.astype(str).isin(split["train"]).any()
    # every rating at or after the cut turned into a like, and more likes of training items added
    changed = r.copy()
    changed.loc[after, "rating"] = 5.0
    extra = r[after & r.movieId.astype(str).isin(split["train"])].copy()
    extra["userId"] = extra["userId"] + 10_000
    changed = pd.concat([changed, extra])
    path = tmp_path / "changed.csv"
    changed.to_csv(path, index=False)
    for kind in ("co-like", "history", "distill", "thesis"):
        base, base_arrays = prepared(env["ratings"], tmp_path / f"base-{kind}", kind)
        other, other_arrays = prepared(str(path), tmp_path / f"changed-{kind}", kind)
        np.testing.assert_array_equal(base.arrays["train_triplets"], other.arrays["train_triplets"])
        np.testing.assert_array_equal(base.arrays["train_pairs"], other.arrays["train_pairs"])
        assert sorted(base_arrays) == sorted(other_arrays)
        for name, value in base_arrays.items():
            np.testing.assert_array_equal(value, other_arrays[name], err_msg=f"{kind}: {name}")
        # the change did reach the data: the validation items' likes (all their ratings) differ
        assert base.val_likes.shape != other.val_likes.shape or (base.val_likes != other.val_likes).any()


def test_objective_config_errors(env, tmp_path):
    from cinefuse.fuse.config import load_config

    with pytest.raises(CinefuseError, match="objective.kind = 'bpr' is not one of 'thesis', 'co-like'"):
        load_config(None, {"objective": {"kind": "bpr"}})
    with pytest.raises(CinefuseError, match="grid.objectives = 'popularity' is not one of"):
        load_config(None, {"grid": {"objectives": ["popularity"]}})
    with pytest.raises(CinefuseError, match="objective.history_loss = 'bce' is not one of 'nmse', 'softmax'"):
        load_config(None, {"objective": {"history_loss": "bce"}})
    with pytest.raises(CinefuseError, match="feature set 'meta/genres' holds the genres the thesis objective"):
        load_config(None, {"objective": {"kind": "thesis"}, "model": {"modalities": ["text/minilm", "meta/genres"]}})
    # co-preference objectives may read the genres
    assert load_config(None, {"model": {"modalities": ["meta/genres"]}}).objective.kind == "distill"
    with pytest.raises(CinefuseError, match=r"objective.prior_weights \[\] must be a non-empty list"):
        load_config(None, {"objective": {"prior_weights": []}})


def validation_ndcg10(workdir: Path, model: str, weight: float | None = None) -> float:
    """The selection metric recomputed from a saved model: nDCG@10 over the split's validation
    items (queries and candidates), relevance their likes at the run's like threshold, users with
    two liked validation items, ties in the run's validation tie order; ``weight``: cos + weight x
    the model's item prior."""
    from cinefuse.datasets.movielens import load_ratings
    from cinefuse.fuse.embed import embed_items, item_priors
    from cinefuse.metrics.device_ranking import ndcg_hr_at_k
    from cinefuse.metrics.likes import like_matrix
    from cinefuse.metrics.ties import validation_tie_key

    split = json.loads((workdir / "split.json").read_text())
    config = json.loads((workdir / "config.json").read_text())
    r = load_ratings(config["data"]["ratings"])
    ids, emb = embed_items(workdir, model)
    row = {i: k for k, i in enumerate(ids.tolist())}
    items = [i for i in split["val"] if i in row]
    assert len(items) == len(split["val"]) > 10
    take = [row[i] for i in items]
    likes = like_matrix(r.user, r.item, r.rating, np.array(items, dtype=object),
                        float(config["pairs"]["like_threshold"])).X
    likes = likes[np.asarray(likes.sum(axis=1)).ravel() >= 2].toarray() > 0
    extra = {} if weight is None else {"prior": item_priors(workdir, model)[take], "weight": weight}
    return float(ndcg_hr_at_k(emb[take], likes, validation_tie_key(int(config["train"]["seed"])), k=10,
                              **extra)["nDCG"])


def test_validation_runs_on_the_validation_items(trained):
    """Every run's logged validation nDCG@10 (and +prior value) is the metric recomputed from its
    saved parameters over ``split.json``'s validation items, not another part's."""
    workdir, summary = trained
    split = json.loads((workdir / "split.json").read_text())
    assert not set(split["val"]) & set(split["test"])
    for run in summary["runs"]:
        assert validation_ndcg10(workdir, run["model"]) == pytest.approx(run["val_ndcg10"], abs=1e-5), run["model"]
        assert validation_ndcg10(workdir, run["model"], run["prior_weight"]) == pytest.approx(
            run["val_ndcg10_prior"], abs=1e-5), run["model"]


def test_evaluate_scores_the_prior_row_with_the_weight_validation_chose(trained, tmp_path):
    """The ``+prior`` row ranks by cos + w x prior with the run's recorded weight: with w = 0 it is
    the plain row query for query; with w = 50 the prior dominates and the row differs."""
    import shutil

    from cinefuse.evaluate.run import run_evaluate

    workdir, _ = trained
    model = "co-like-full-concat-mlp"
    values = {}
    for weight in (0.0, 50.0):
        copy = tmp_path / f"w{weight:g}"
        shutil.copytree(workdir, copy)
        path = copy / "runs" / model / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "prior_weight": weight}))
        rows = {r.name: r for r in run_evaluate(copy, ks=(10,), write=False, progress=False).rows}
        plain, prior = rows[model], rows[f"{model}+prior"]
        assert prior.note.startswith(f"cosine + {weight:g} x item prior"), prior.note
        values[weight] = (plain.per_query.of("nDCG@10"), prior.per_query.of("nDCG@10"))
    np.testing.assert_array_equal(values[0.0][1], values[0.0][0])
    np.testing.assert_array_equal(values[50.0][0], values[0.0][0])
    assert np.abs(values[50.0][1] - values[50.0][0]).max() > 0.05
