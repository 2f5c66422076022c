"""Honest evaluation: the seeded random tie order every row ranks through, the bootstrap
intervals on every row, the paired verdict, the popularity strata, and baselines only for raw
feature sets with valid rows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cinefuse.evaluate.baselines import itemknn_cbf, popularity_baseline
from cinefuse.evaluate.evalset import build_eval_set
from cinefuse.evaluate.results import Results
from cinefuse.evaluate.rows import score_row
from cinefuse.evaluate.tasks.item_to_item import rank_embeddings
from cinefuse.evaluate.verdict import attach_verdict, popularity_strata
from cinefuse.metrics.ties import tie_order
from cinefuse.metrics.bootstrap import N_RESAMPLES, paired_bootstrap

KS = (1, 5, 10)


def popular_low_ids(n_items=150, n_users=120, seed=0):
    """Users like low ids far more often (as MovieLens's old, popular catalogue): a ranking that
    falls back on id order scores well without knowing anything about the items."""
    rng = np.random.default_rng(seed)
    ids = np.array([str(i + 1) for i in range(n_items)])
    p = 1.0 / np.arange(1, n_items + 1) ** 0.9
    users, items, values = [], [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=25, replace=False, p=p / p.sum())
        for i in chosen:
            users.append(u)
            items.append(ids[i])
            values.append(float(rng.choice([2.0, 4.0, 4.5, 5.0], p=[0.2, 0.3, 0.3, 0.2])))
    ratings = SimpleNamespace(user=np.array(users), item=np.array(items, dtype=object),
                              rating=np.array(values, np.float32))
    return ids, ratings


def year_like(ids, n_values=4, seed=1):
    """A feature with many ties: one of ``n_values`` one-hot vectors per item (like a release
    year), unrelated to the ratings."""
    value = np.random.default_rng(seed).integers(0, n_values, ids.size)
    return np.eye(n_values, dtype=np.float32)[value]


def test_tie_order_is_a_seeded_permutation_of_the_id_order():
    ids = np.array(["10", "2", "33", "4", "5", "61", "7"])
    by_id = ["2", "4", "5", "7", "10", "33", "61"]
    assert tie_order(ids, "id").tolist() == by_id
    a = tie_order(ids, "random", 3)
    assert sorted(a.tolist(), key=int) == by_id and a.tolist() != by_id
    # the same set in any input order gets the same order; another seed another one
    assert tie_order(ids[::-1], "random", 3).tolist() == a.tolist()
    assert tie_order(ids, "random", 4).tolist() != a.tolist()
    assert a.tolist() == np.array(by_id)[np.random.default_rng(3).permutation(7)].tolist()


def test_random_tie_break_is_stable_and_moves_only_tied_items():
    ids, ratings = popular_low_ids()
    feature = year_like(ids)
    lists = {}
    for seed in (0, 0, 1):
        es = build_eval_set(ratings, ids, ids, k_max=10, tie_seed=seed)
        topk = rank_embeddings(ids, feature, es, KS)
        lists.setdefault(seed, []).append(es.candidate_ids[topk])  # as ids
    assert np.array_equal(lists[0][0], lists[0][1])  # same seed, same lists
    a, b = lists[0][0], lists[1][0]
    assert not np.array_equal(a, b)
    row = {i: r for r, i in enumerate(ids.tolist())}
    query_rows = np.array([row[q] for q in sorted(ids.tolist(), key=int)])
    score = lambda lst: np.einsum("qd,qkd->qk", feature[query_rows], feature[np.vectorize(row.get)(lst)])  # noqa: E731
    # the score at every rank is the same under both seeds: only items with equal scores moved
    np.testing.assert_array_equal(score(a), score(b))
    for q in range(len(ids)):
        kth = score(a)[q, -1]
        above = lambda lst: {x for x, s in zip(lst[q], score(lst)[q]) if s > kth}  # noqa: E731
        assert above(a) == above(b)


def test_a_feature_with_many_ties_no_longer_gains_from_id_order():
    ids, ratings = popular_low_ids()
    feature = year_like(ids)

    def ndcg(tie_break, seed=0):
        es = build_eval_set(ratings, ids, ids, k_max=10, tie_break=tie_break, tie_seed=seed)
        return score_row("year", "itemknn-cbf", rank_embeddings(ids, feature, es, KS), es, KS, None, 0.0)

    by_id = ndcg("id").metrics["nDCG@10"]
    randoms = [ndcg("random", s).metrics["nDCG@10"] for s in range(5)]
    # id order lists the popular low ids first: the tie order alone lifts the row
    assert by_id > max(randoms) + 0.05, (by_id, randoms)
    # the same feature with a random tie order ranks like chance within its tie group: a
    # random ordering of the candidates scores alike
    es = build_eval_set(ratings, ids, ids, k_max=10)
    chance = [score_row("r", "random", rank_embeddings(ids, np.ones((len(ids), 1), np.float32), es_s, KS), es_s, KS,
                        None, 0.0).metrics["nDCG@10"]
              for es_s in (build_eval_set(ratings, ids, ids, k_max=10, tie_seed=s) for s in range(5))]
    assert abs(np.median(randoms) - np.median(chance)) < 0.04, (randoms, chance)
    assert es.tie_break == "random"


def test_popularity_baseline_ties_follow_the_tie_order():
    # every user rates every item: all candidates tie on rater counts
    ids = np.array([str(i + 1) for i in range(30)])
    users = np.repeat(np.arange(5), 30)
    ratings = SimpleNamespace(user=users, item=np.tile(ids, 5).astype(object), rating=np.full(150, 4.0, np.float32))
    lists = []
    for seed in (0, 1):
        es = build_eval_set(ratings, ids, ids, k_max=10, tie_seed=seed)
        assert (es.raters == 5).all()
        topk = popularity_baseline(es.raters, len(ids), 10, es.self_index)
        for q in range(len(ids)):  # the first candidates of the tie order, the query skipped
            assert topk[q].tolist() == [c for c in range(11) if c != es.self_index[q]][:10]
        lists.append(es.candidate_ids[topk[0]].tolist())
    assert lists[0] != lists[1] and lists[0] != sorted(lists[0], key=int)


def test_every_row_interval_equals_a_direct_numpy_bootstrap_of_its_per_query_values():
    from test_metrics_metrics import brute_force_per_query

    ids, ratings = popular_low_ids(seed=3)
    es = build_eval_set(ratings, ids, ids, k_max=10, tie_seed=0)
    feature = np.random.default_rng(5).standard_normal((len(ids), 8)).astype(np.float32)
    topk = rank_embeddings(ids, feature, es, KS)
    row = score_row("m", "model", topk, es, KS, None, 0.0)
    # per-query values from an independent per (query, user) loop
    bf = brute_force_per_query(topk, ratings.user, ratings.item, ratings.rating, es.query_ids.tolist(),
                               es.candidate_ids.tolist(), KS)
    scored = [q for q in es.query_ids.tolist() if q in bf]
    assert es.query_ids[row.per_query.scored].tolist() == scored
    for metric in ("nDCG@10", "HR@10"):
        values = np.array([bf[q][metric] for q in scored])
        np.testing.assert_allclose(row.per_query.of(metric), values, rtol=1e-12, atol=1e-15)
        assert row.metrics[metric] == pytest.approx(values.mean(), rel=1e-12)
        # percentile bootstrap by hand: resample the queries with replacement, seed 0
        rng = np.random.default_rng(0)
        n = values.size
        means = np.concatenate([values[rng.integers(0, n, (500, n))].mean(axis=1)
                                for _ in range(N_RESAMPLES // 500)])
        lo, hi = np.percentile(means, [2.5, 97.5])
        assert row.ci[metric] == pytest.approx([lo, hi], rel=1e-12)
        assert lo < values.mean() < hi


def rows_of(ids, ratings, es):
    rng = np.random.default_rng(7)
    rows = []
    for name, kind, emb in (("m-good", "model", None), ("m-noise", "model", rng.standard_normal((len(ids), 8))),
                            ("cosine year", "itemknn-cbf", year_like(ids)),
                            ("cosine noise", "itemknn-cbf", rng.standard_normal((len(ids), 8)))):
        if emb is None:  # a model that knows popularity a little: score = log of the like count
            counts = np.bincount(np.searchsorted(ids[np.argsort(ids)], ratings.item.astype(str)), minlength=len(ids))
            emb = np.stack([np.ones(len(ids)), 0.2 * np.log1p(counts[np.argsort(np.argsort(ids))])], axis=1)
        rows.append(score_row(name, kind, rank_embeddings(ids, np.asarray(emb, np.float32), es, KS), es, KS, None, 0.0))
    top = popularity_baseline(es.raters, len(ids), 10, es.self_index)
    rows.append(score_row("popularity (oracle)", "popularity", top, es, KS, None, 0.0))
    return rows


def test_verdict_is_the_paired_bootstrap_of_the_best_model_and_best_raw_row():
    ids, ratings = popular_low_ids(seed=4)
    es = build_eval_set(ratings, ids, ids, k_max=10)
    rows = rows_of(ids, ratings, es)
    results = Results("cold-item", KS, rows)
    attach_verdict(results)
    v = results.verdict
    by = {r.name: r for r in rows}
    best_model = max(("m-good", "m-noise"), key=lambda n: by[n].metrics["nDCG@10"])
    best_raw = max(("cosine year", "cosine noise"), key=lambda n: by[n].metrics["nDCG@10"])
    assert (v["best_model"], v["best_baseline"]) == (best_model, best_raw)
    assert by["popularity (oracle)"].metrics["nDCG@10"] > v["baseline_value"]  # the oracle is never the rival
    assert v["diff"] == pytest.approx(by[best_model].metrics["nDCG@10"] - by[best_raw].metrics["nDCG@10"], abs=1e-12)
    iv = paired_bootstrap(by[best_model].per_query.of("nDCG@10"), by[best_raw].per_query.of("nDCG@10"), seed=0)
    assert (v["ci_low"], v["ci_high"], v["p_better"]) == (iv.low, iv.high, iv.share_above_zero)
    assert v["beats"] == (iv.low > 0) and v["queries"] == int(es.relevance.queries_with_relevant.size)
    no_raw = Results("cold-item", KS, [r for r in rows if r.kind != "itemknn-cbf"])
    attach_verdict(no_raw)
    assert no_raw.verdict is None and no_raw.notes == [
        "no verdict: it needs a trained model, a raw-feature baseline and 2 scored queries"]


def test_strata_split_the_scored_queries_at_the_median_rating_count():
    ids, ratings = popular_low_ids(seed=5)
    es = build_eval_set(ratings, ids, ids, k_max=10)
    rows = rows_of(ids, ratings, es)
    strata, cut = popularity_strata(rows, es)
    # rating counts straight from the ratings: distinct users per item
    raters = {q: len({u for u, i in zip(ratings.user, ratings.item) if i == q}) for q in es.query_ids.tolist()}
    scored = es.query_ids[rows[0].per_query.scored].tolist()
    median = float(np.median([raters[q] for q in scored]))
    head = [q for q in scored if raters[q] > median]
    tail = [q for q in scored if raters[q] <= median]
    assert cut["median"] == median and (cut["head_queries"], cut["tail_queries"]) == (len(head), len(tail))
    assert cut["head"] == f"raters > {median:g}" and len(head) > 10 and len(tail) > 10
    where = {q: j for j, q in enumerate(scored)}
    for r in rows:
        values = r.per_query.of("nDCG@10")
        assert strata["head"][r.name]["nDCG@10"] == pytest.approx(np.mean([values[where[q]] for q in head]), rel=1e-12)
        assert strata["tail"][r.name]["nDCG@10"] == pytest.approx(np.mean([values[where[q]] for q in tail]), rel=1e-12)


def test_baseline_rows_only_for_raw_sets_with_valid_rows(tmp_path):
    from cinefuse.evaluate.baselines import baseline_rows
    from cinefuse.store import FeatureBlock, open_store
    from fixtures import ok_block, write_store

    ids, ratings = popular_low_ids(n_items=40, seed=6)
    n = len(ids)
    rng = np.random.default_rng(0)
    write_store(tmp_path / "store", {"test": "valid"}, [(ids.tolist(), {
        "text/minilm": ok_block(rng.standard_normal((n, 6)).astype(np.float32)),
        "meta/year": ok_block(year_like(ids)),
        "visual/effnet": FeatureBlock(np.zeros((n, 5), np.float32), np.zeros(n, bool), ["failed"] * n),
    })])
    es = build_eval_set(ratings, ids, ids, k_max=10)
    job = SimpleNamespace(ks=KS, protocol="cold-item", store=open_store(tmp_path / "store"), config=None)
    notes: list[str] = []
    rows = baseline_rows(job, es, 0, notes)
    assert [r.name for r in rows] == ["random", "popularity (oracle)", "cosine meta/year", "cosine text/minilm",
                                      "cosine all concatenated"]
    assert rows[-1].note == "meta/year + text/minilm"
    assert notes == [f"no raw-feature baseline for visual/effnet: none of the {n} candidates has a valid row there"]
    assert all(set(r.ci) == {"nDCG@10", "HR@10"} for r in rows)
    # the row of a valid set is cosine over its own vectors
    row = {i: j for j, i in enumerate(ids.tolist())}
    cand = year_like(ids)[[row[c] for c in es.candidate_ids.tolist()]]
    q = year_like(ids)[[row[c] for c in es.query_ids.tolist()]]
    want = score_row("x", "itemknn-cbf", itemknn_cbf(q, cand, 10, es.self_index), es, KS, None, 0.0)
    assert rows[2].metrics == pytest.approx(want.metrics, nan_ok=True)
