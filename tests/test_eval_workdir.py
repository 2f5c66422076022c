"""evaluate and recommend on a real (tiny) fuse workdir: a store written with StoreWriter, a
MovieLens-format catalogue with planted structure, a model trained by run_fuse."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.errors import CinefuseError

N_ITEMS, N_USERS, N_GROUPS = 120, 90, 4
GENRES = [["Action", "Thriller"], ["Drama", "Romance"], ["Comedy", "Family"], ["Horror", "Mystery"]]


def write_catalogue(root):
    """Items in 4 genre groups; each user likes items of one group and dislikes others.
    text/minilm carries the group (planted), meta/year is noise."""
    from fixtures import ok_block, write_movielens_csv, write_store

    rng = np.random.default_rng(7)
    ids = [str(i * 3 + 1) for i in range(N_ITEMS)]  # non-contiguous, multi-digit ids
    group = np.arange(N_ITEMS) % N_GROUPS
    ml = root / "ml"
    ml.mkdir()
    rows = []
    for u in range(N_USERS):
        g = u % N_GROUPS
        mine = np.flatnonzero(group == g)
        rows += [(u + 1, ids[i], rng.choice([4.0, 4.5, 5.0]), 1000 + u)
                 for i in rng.choice(mine, size=14, replace=False)]
        rows += [(u + 1, ids[i], rng.choice([0.5, 1.0, 2.0]), 1000 + u)
                 for i in rng.choice(np.flatnonzero(group != g), size=6, replace=False)]
    write_movielens_csv(ml, [(i, f"Film {i} ({1950 + int(i) % 60})", GENRES[g]) for i, g in zip(ids, group)], rows)

    planted = np.eye(N_GROUPS, dtype=np.float32)[group] * 2.0 + 0.3 * rng.standard_normal((N_ITEMS, N_GROUPS))
    text = np.concatenate([planted, 0.3 * rng.standard_normal((N_ITEMS, 12))], axis=1).astype(np.float32)
    year = rng.standard_normal((N_ITEMS, 3)).astype(np.float32)
    write_store(root / "store", {"test": "eval"}, [(ids, {"text/minilm": ok_block(text), "meta/year": ok_block(year)})])
    return ids, group, ml


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("evalwd")
    ids, group, ml = write_catalogue(root)
    config = {
        "data": {"store": str(root / "store"), "ratings": str(ml), "movies": str(ml),
                 "modality_sets": {"text": ["text/minilm"], "meta": ["meta/year"]}},
        "model": {"modalities": "full", "token_dim": 16, "hidden": 32, "embed_dim": 8},
        "train": {"steps": 100, "steps_per_call": 50, "eval_every": 50, "checkpoint_every": 50,
                  "batch_size": 32, "patience": 0},
        "grid": {"modalities": ["full"]},
        "objective": {"kind": "thesis", "prior": False},
    }
    wd = root / "wd"
    run_fuse(config, wd, log=lambda msg: None)
    return wd


def test_cold_item_evaluation_end_to_end(workdir):
    from cinefuse.fuse.embed import list_models
    from cinefuse.evaluate.run import run_evaluate
    from cinefuse.store import open_store

    results = run_evaluate(workdir, ks=(1, 5, 10), progress=False)
    split = json.loads((workdir / "split.json").read_text())
    assert results.counts["candidates"] == results.counts["queries"] == len(split["test"])
    models = list_models(workdir)
    names = [r.name for r in results.rows]
    assert names == models + ["random", "popularity (oracle)", "cosine meta/year", "cosine text/minilm",
                              "cosine all concatenated"]
    planted = results.row("cosine text/minilm").metrics
    noise = results.row("cosine meta/year").metrics
    rand = results.row("random").metrics
    # the planted feature finds same-group items; noise does not
    assert planted["nDCG@10"] > noise["nDCG@10"] + 0.1 and planted["nDCG@10"] > rand["nDCG@10"] + 0.1
    for row in results.rows:
        assert set(row.metrics) >= {f"{m}@{k}" for m in ("P", "R", "HR", "nDCG", "MRR", "gnDCG", "Cov", "Div", "Nov") for k in (1, 5, 10)}
        assert set(row.ci) == {"nDCG@10", "HR@10"}
        assert row.ci["nDCG@10"][0] <= row.metrics["nDCG@10"] <= row.ci["nDCG@10"][1]
    assert (results.tie_break, results.tie_seed) == ("random", 0)
    v = results.verdict
    assert (v["best_model"], v["best_baseline"]) == (models[0], "cosine text/minilm")
    assert v["diff"] == pytest.approx(results.rows[0].metrics["nDCG@10"] - planted["nDCG@10"], abs=1e-12)
    assert set(results.strata) == {"head", "tail"} and set(results.strata["head"]) == set(names)
    # files: tables, plots, fused embeddings in the workdir's store
    out = workdir / "evaluation" / "cold-item"
    for name in ("results.md", "results.csv", "results.json", "metrics_at_k.png", "training_curves.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in data["rows"]] == names
    assert data["verdict"]["best_baseline"] == "cosine text/minilm" and data["tie_break"] == "random"
    store = open_store(workdir / "embeddings")
    for model in models:
        fa = store.load_feature_set(f"fused/{model}")
        assert fa.data.shape[1] == 8
        np.testing.assert_allclose(np.linalg.norm(fa.data, axis=1), 1.0, rtol=1e-5)
        assert set(split["test"]) <= set(fa.ids.tolist())
        # the model's row: numpy cosine top-10 over its stored embeddings, ties in the seeded
        # candidate order (the id order permuted by seed 0), scored by the per-(query, user) loop
        want = numpy_row(fa, split["test"], workdir)
        got = results.row(model).metrics
        assert len(want) == 18 and {m: got[m] for m in want} == pytest.approx(want, rel=1e-9)


def numpy_row(fa, test_ids, workdir, k=10):
    from test_metrics_metrics import brute_force

    cands = sorted(test_ids, key=int)
    cands = [cands[i] for i in np.random.default_rng(0).permutation(len(cands))]
    queries = sorted(test_ids, key=int)
    row = {i: r for r, i in enumerate(fa.ids.tolist())}
    emb = fa.data.astype(np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    c = emb[[row[i] for i in cands]]
    scores = emb[[row[i] for i in queries]] @ c.T
    scores[np.arange(len(queries)), [cands.index(q) for q in queries]] = -np.inf  # the query itself
    topk = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # equal scores: earlier candidate first
    with open(workdir.parent / "ml" / "ratings.csv") as handle:
        table = list(csv.DictReader(handle))
    users = [int(r["userId"]) for r in table]
    items = [r["movieId"] for r in table]
    values = [float(r["rating"]) for r in table]
    want, _ = brute_force(topk, users, items, values, queries, cands, (1, 5, 10))
    return want


def test_model_row_equals_ranking_its_stored_embeddings(workdir):
    """The model's metrics are exactly those of cosine over the fused embeddings it wrote."""
    from cinefuse.datasets.movielens import load_movies, load_ratings
    from cinefuse.evaluate.evalset import build_eval_set
    from cinefuse.evaluate.run import run_evaluate
    from cinefuse.evaluate.tasks.item_to_item import evaluate_embeddings
    from cinefuse.store import open_store

    results = run_evaluate(workdir, ks=(1, 3), protocol="thesis", progress=False)
    model = results.rows[0].name
    fa = open_store(workdir / "embeddings").load_feature_set(f"fused/{model}")
    cfg = json.loads((workdir / "config.json").read_text())
    ratings = load_ratings(cfg["data"]["ratings"])
    rated = sorted(set(np.asarray(ratings.item, dtype=str).tolist()))
    es = build_eval_set(ratings, rated, rated, k_max=3, movies=load_movies(cfg["data"]["movies"]))
    assert results.counts["candidates"] == len(rated) == N_ITEMS
    want = evaluate_embeddings(fa.ids, fa.data.astype(np.float32), es, (1, 3))
    assert results.rows[0].metrics == pytest.approx(want, nan_ok=True)


def test_recommend_lists_neighbours_with_titles(workdir):
    from cinefuse.evaluate.recommend import recommend

    rec = recommend(workdir, "4", k=5)
    assert rec.item == "4" and rec.title == "Film 4 (1954)"
    assert [r["rank"] for r in rec.results] == [1, 2, 3, 4, 5]
    # numpy cosine top-5 over the stored embeddings of the recommended model, the item left out
    from cinefuse.store import open_store

    fa = open_store(workdir / "embeddings").load_feature_set(f"fused/{rec.model}")
    emb = fa.data.astype(np.float64) / np.linalg.norm(fa.data.astype(np.float64), axis=1, keepdims=True)
    ids = fa.ids.tolist()
    scores = emb @ emb[ids.index("4")]
    order = [i for i in sorted(range(len(ids)), key=lambda j: (-scores[j], int(ids[j]))) if ids[i] != "4"][:5]
    assert [r["id"] for r in rec.results] == [ids[i] for i in order]
    np.testing.assert_allclose([r["score"] for r in rec.results], scores[order], rtol=1e-5)
    assert [r["title"] for r in rec.results] == [f"Film {ids[i]} ({1950 + int(ids[i]) % 60})" for i in order]


def test_recommend_unknown_id_names_close_matches(workdir):
    from cinefuse.evaluate.recommend import recommend

    with pytest.raises(CinefuseError) as err:
        recommend(workdir, "4000", k=3)
    assert str(err.value) == (
        "item '4000' is not among the 120 items model triplet-cosine-full-concat-mlp embeds; close matches: "
        "40 (Film 40 (1990)). Pass an item id (MovieLens movieId) with --item"
    )
    with pytest.raises(CinefuseError, match=r"close matches: .*100 \(Film 100 \(1990\)\)"):
        recommend(workdir, "film 100", k=3)


def test_cli_evaluate_and_recommend(workdir, capsys):
    assert cli_main(["evaluate", "--workdir", str(workdir), "--k", "1,10", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ACCURACY" in out and "cosine all concatenated" in out and "nDCG@10" in out
    assert cli_main(["evaluate", "--workdir", str(workdir), "--k", "5", "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ks"] == [5] and data["protocol"] == "cold-item"
    assert (data["tie_break"], data["tie_seed"]) == ("random", 0) and set(data["rows"][0]["ci"]) == {"nDCG@5", "HR@5"}
    assert cli_main(["evaluate", "--workdir", str(workdir), "--k", "5", "--json", "--quiet", "--tie-break", "id",
                     "--tie-seed", "3"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert (by_id["tie_break"], by_id["tie_seed"]) == ("id", 3)
    assert cli_main(["evaluate", "--workdir", str(workdir), "--k", "10", "--quiet", "--tie-seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "ties: broken by a seeded random candidate order (seed 4)" in out and "\nverdict: model chosen on validation " in out
    assert cli_main(["recommend", "--workdir", str(workdir), "--item", "7", "-k", "3", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert len(rec["results"]) == 3 and rec["item"] == "7"
    assert cli_main(["recommend", "--workdir", str(workdir), "--item", "nope"]) == 2
    assert "cinefuse recommend: error: item 'nope' is not among" in capsys.readouterr().err


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli_main(["evaluate", "--workdir", str(tmp_path / "absent")]) == 2
    assert f"workdir {tmp_path / 'absent'} does not exist" in capsys.readouterr().err
    assert cli_main(["evaluate", "--workdir", str(tmp_path), "--k", "a"]) == 2
    assert capsys.readouterr().err == (
        "cinefuse evaluate: error: --k 'a' must be comma-separated positive integers, e.g. 1,3,5,10\n")
    assert cli_main(["evaluate", "--workdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"cinefuse evaluate: error: {tmp_path} is not a fuse workdir (no config.json); train first with "
        f"`cinefuse fuse --workdir {tmp_path} ...`\n")
    assert cli_main(["recommend", "--workdir", str(tmp_path), "--item", "1"]) == 2
    assert "is not a fuse workdir" in capsys.readouterr().err


def test_model_rows_carry_the_run_records_modalities_and_objective(workdir):
    from cinefuse.evaluate.run import run_evaluate

    results = run_evaluate(workdir, ks=(1, 10), write=False, progress=False)
    models = [r for r in results.rows if r.kind == "model"]
    assert models and all((r.modalities, r.objective) == ("full", "thesis") for r in models)
    assert all((r.modalities, r.objective) == (None, None) for r in results.rows if r.kind != "model")
    assert "modalities" not in results.to_json()["rows"][0]  # in memory only: results.json unchanged
