"""The user-to-item task: its users, histories, rankings and metrics equal a numpy brute force on
a small store; the history holds no validation or test item; users without a training like or
without a liked candidate are left out and counted; the metrics equal ranx's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from cinefuse.evaluate.baselines import itemknn_cbf
from cinefuse.evaluate.tasks.user_to_item import USER_TO_ITEM, build_user_eval_set
from cinefuse.metrics.user_metrics import per_user_metrics

THRESHOLD = 4.0


def small_ratings(seed=0, n_users=40):
    """Training items 100.., validation 500.., test 800..; each user rates a random handful of
    each part; user 1000 likes only test items, user 1001 only training items, user 1002 only
    validation items, user 1003 likes test items and dislikes every training item it rated."""
    rng = np.random.default_rng(seed)
    train = [str(100 + i) for i in range(25)]
    val = [str(500 + i) for i in range(8)]
    test = [str(800 + i) for i in range(15)]
    users, items, ratings, stamps = [], [], [], []
    for u in range(n_users):
        for pool, n in ((train, 6), (val, 2), (test, 3)):
            for i in rng.choice(pool, size=n, replace=False):
                users.append(u)
                items.append(i)
                ratings.append(float(rng.choice([1.0, 2.5, 4.0, 4.5, 5.0])))
                stamps.append(int(rng.integers(0, 1000)))
    extra = [(1000, test[0], 5.0), (1000, test[3], 4.0), (1001, train[2], 5.0), (1002, val[1], 5.0),
             (1003, test[1], 5.0), (1003, train[4], 2.0)]
    for u, i, r in extra:
        users.append(u)
        items.append(i)
        ratings.append(r)
        stamps.append(10)
    r = SimpleNamespace(user=np.array(users), item=np.array(items, dtype=object), rating=np.array(ratings),
                        timestamp=np.array(stamps))
    return r, train, val, test


def likes_of(r, pool, cut=None):
    """user -> set of liked items in ``pool`` (the last rating of a repeated pair counting)."""
    last = {}
    for u, i, v, t in zip(r.user.tolist(), r.item.tolist(), r.rating.tolist(), r.timestamp.tolist()):
        if i in pool and (cut is None or t < cut):
            last[(u, i)] = v
    out: dict = {}
    for (u, i), v in last.items():
        if v >= THRESHOLD:
            out.setdefault(u, set()).add(i)
    return out


def brute_force_rank(es, ids, emb, k, prior=None, weight=0.0):
    """Mean cosine of each candidate to the user's history items (+ weight * prior), float64,
    best first, ties by the lower candidate position."""
    row = {i: n for n, i in enumerate(ids)}
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    out = []
    for u in range(len(es.query_ids)):
        hist = es.history_ids[es.history[[u]].indices]
        h = unit[[row[i] for i in hist]].astype(np.float64)
        scores = []
        for c in es.candidate_ids:
            s = float(np.mean(h @ unit[row[c]].astype(np.float64)))
            scores.append(s + (weight * float(prior[row[c]]) if prior is not None else 0.0))
        out.append(sorted(range(len(scores)), key=lambda c: (-scores[c], c))[:k])
    return np.array(out)


def brute_force_metrics(topk, relevant_sets, ks):
    """Every metric per user by loops over the lists."""
    out = {f"{m}@{k}": [] for m in ("P", "R", "cR", "HR", "nDCG", "MRR") for k in ks}
    for lst, rel in zip(topk.tolist(), relevant_sets):
        for k in ks:
            hit = [c in rel for c in lst[:k]]
            h = sum(hit)
            out[f"P@{k}"].append(h / k)
            out[f"R@{k}"].append(h / len(rel))
            out[f"cR@{k}"].append(h / min(k, len(rel)))
            out[f"HR@{k}"].append(float(h > 0))
            dcg = sum(1 / np.log2(j + 2) for j, x in enumerate(hit) if x)
            ideal = sum(1 / np.log2(j + 2) for j in range(min(k, len(rel))))
            out[f"nDCG@{k}"].append(dcg / ideal)
            out[f"MRR@{k}"].append(next((1 / (j + 1) for j, x in enumerate(hit) if x), 0.0))
    return {m: np.array(v) for m, v in out.items()}


def test_users_histories_and_counts_equal_a_brute_force():
    r, train, val, test = small_ratings()
    es = build_user_eval_set(r, train, test, THRESHOLD, tie_seed=3)
    hist, rel = likes_of(r, set(train)), likes_of(r, set(test))
    users = sorted(set(hist) & set(rel))
    assert es.query_ids.tolist() == [str(u) for u in users]
    assert 1000 not in users and 1001 not in users and 1002 not in users and 1003 not in users
    assert es.counts["users_without_history"] == len(set(rel) - set(hist))  # 1000, 1003 among them
    assert es.counts["users_without_relevant"] == len(set(hist) - set(rel))  # 1001 among them
    assert {1000, 1003} <= set(rel) - set(hist) and 1001 in set(hist) - set(rel)
    for n, u in enumerate(users):
        assert set(es.history_ids[es.history[[n]].indices].tolist()) == hist[u]
        assert set(es.candidate_ids[es.relevant[[n]].indices].tolist()) == rel[u]


def test_the_history_holds_no_validation_or_test_item():
    r, train, val, test = small_ratings(seed=1)
    es = build_user_eval_set(r, train, test, THRESHOLD)
    held = es.history_ids[np.unique(es.history.indices)]
    assert set(held.tolist()) <= set(train)
    assert not set(held.tolist()) & (set(val) | set(test))
    # under cold-item-time only the likes given before the cut count
    cut = 500
    es_cut = build_user_eval_set(r, train, test, THRESHOLD, cut=cut)
    hist = likes_of(r, set(train), cut=cut)
    for n, u in enumerate(es_cut.query_ids.tolist()):
        assert set(es_cut.history_ids[es_cut.history[[n]].indices].tolist()) == hist[int(u)]


def test_rank_with_and_without_prior_and_metrics_equal_brute_force():
    r, train, val, test = small_ratings(seed=2)
    es = build_user_eval_set(r, train, test, THRESHOLD, tie_seed=5)
    ids = train + val + test
    rng = np.random.default_rng(7)
    emb = rng.standard_normal((len(ids), 6)).astype(np.float32)
    prior = rng.standard_normal(len(ids)).astype(np.float32)
    k = 10
    got = USER_TO_ITEM.rank(es, np.array(ids), emb, k)
    assert np.array_equal(got, brute_force_rank(es, ids, emb, k))
    got_prior = USER_TO_ITEM.rank(es, np.array(ids), emb, k, prior=prior, weight=0.3)
    assert np.array_equal(got_prior, brute_force_rank(es, ids, emb, k, prior, 0.3))
    assert not np.array_equal(got, got_prior)

    ks = (1, 5, 10)
    metrics, per_user = USER_TO_ITEM.score(got, es, ks)
    rel_sets = [set(es.relevant[[n]].indices.tolist()) for n in range(len(es.query_ids))]
    want = brute_force_metrics(got, rel_sets, ks)
    for name, values in want.items():
        np.testing.assert_allclose(per_user.values[name], values, rtol=0, atol=1e-12)
        assert abs(metrics[name] - values.mean()) < 1e-12
    assert metrics["queries_scored"] == len(es.query_ids)


def test_rank_content_scores_standardised_raw_features_by_the_history():
    r, train, val, test = small_ratings(seed=3)
    es = build_user_eval_set(r, train, test, THRESHOLD)
    ids = train + val + test
    raw = np.random.default_rng(9).standard_normal((len(ids), 4)).astype(np.float32) + 3.0
    valid = np.ones(len(ids), bool)
    valid[1] = False  # an item without the set: a zero row, never standardised into a value
    std = USER_TO_ITEM.content_rows(np.where(valid[:, None], raw, 0.0), valid)
    mean, sd = raw[valid].mean(axis=0), raw[valid].std(axis=0)
    np.testing.assert_allclose(std[valid], (raw[valid] - mean) / sd, rtol=1e-5, atol=1e-5)
    assert not std[1].any()
    got = USER_TO_ITEM.rank_content(es, np.array(ids), std, 8, itemknn_cbf)
    features = np.where(valid[:, None], std, 0.0)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    row = {i: n for n, i in enumerate(ids)}
    want = []
    for u in range(len(es.query_ids)):
        hist = es.history_ids[es.history[[u]].indices]
        mean_h = unit[[row[i] for i in hist]].astype(np.float64).mean(axis=0)
        scores = [float(unit[row[c]] @ mean_h) for c in es.candidate_ids]
        want.append(sorted(range(len(scores)), key=lambda c: (-scores[c], c))[:8])
    assert np.array_equal(got, np.array(want))


def test_item_strata_recall_counts_only_the_stratums_relevant_items():
    topk = np.array([[0, 1, 2], [3, 0, -1]])
    relevant = sp.csr_array(np.array([[1, 0, 0, 1], [0, 1, 0, 1]], float))
    head = np.array([True, False, False, True])
    values, strata = per_user_metrics(topk, relevant, (1, 3), {"head": head, "tail": ~head}, (3,))
    assert values["R@3"].tolist() == [0.5, 0.5]
    assert strata["head"]["R@3"].tolist() == [0.5, 1.0]
    assert strata["tail"]["R@3"][0] != strata["tail"]["R@3"][0]  # NaN: user 0 has no tail item
    assert strata["tail"]["R@3"][1] == 0.0


def test_metrics_equal_ranx_on_random_rankings():
    """An independent implementation: ranx's precision, recall, hit rate, nDCG and MRR at K; the
    calibrated recall from ranx's hit count (precision x K) over min(K, |R|)."""
    ranx = pytest.importorskip("ranx", reason="ranx is in the dev extra; pip install ranx")
    rng = np.random.default_rng(11)
    n_users, n_cand, k_max = 60, 40, 25
    topk = np.stack([rng.permutation(n_cand)[:k_max] for _ in range(n_users)])
    dense = rng.random((n_users, n_cand)) < rng.uniform(0.02, 0.4, (n_users, 1))
    dense[np.arange(n_users), rng.integers(0, n_cand, n_users)] = True  # at least one relevant each
    ks = (1, 5, 10, 20)
    ours, _ = per_user_metrics(topk, sp.csr_array(dense.astype(float)), ks)
    qrels = ranx.Qrels({f"u{u:03d}": {f"c{c:03d}": 1 for c in np.flatnonzero(dense[u])} for u in range(n_users)})
    run = ranx.Run({f"u{u:03d}": {f"c{c:03d}": float(k_max - j) for j, c in enumerate(topk[u])} for u in range(n_users)})
    names = {"P": "precision", "R": "recall", "HR": "hit_rate", "nDCG": "ndcg", "MRR": "mrr"}
    n_rel = dense.sum(axis=1)
    for k in ks:
        theirs = ranx.evaluate(qrels, run, [f"{v}@{k}" for v in names.values()], return_mean=False)
        for ours_name, ranx_name in names.items():
            np.testing.assert_allclose(ours[f"{ours_name}@{k}"], theirs[f"{ranx_name}@{k}"], rtol=0, atol=1e-12)
        calibrated = theirs[f"precision@{k}"] * k / np.minimum(k, n_rel)
        np.testing.assert_allclose(ours[f"cR@{k}"], calibrated, rtol=0, atol=1e-12)


from test_eval_workdir import workdir  # noqa: E402,F401  (a real workdir: a model trained by run_fuse)


def test_user_to_item_on_a_trained_workdir_equals_brute_force(workdir, capsys):  # noqa: F811
    import json

    from cinefuse.cli import main as cli_main
    from cinefuse.evaluate.run import evaluate_run, run_evaluate
    from cinefuse.fuse.embed import load_embedded

    ev = evaluate_run(workdir, progress=False, task="user-to-item")
    es, results = ev.es, ev.results
    split = json.loads((workdir / "split.json").read_text())
    held = set(es.history_ids[np.unique(es.history.indices)].tolist())
    assert held <= set(split["train"]) and not held & (set(split["val"]) | set(split["test"]))
    assert set(es.candidate_ids.tolist()) == set(split["test"])
    assert results.ks == (1, 3, 5, 10, 20, 50, 100) and results.task == "user-to-item"
    for model in ev.job.models:
        m = load_embedded(workdir, model)
        topk = brute_force_rank(es, np.asarray(m.ids, dtype=str).tolist(), m.emb, 100)
        rel_sets = [set(es.relevant[[n]].indices.tolist()) for n in range(len(es.query_ids))]
        want = brute_force_metrics(topk, rel_sets, (20,))
        assert results.row(model).metrics["R@20"] == pytest.approx(want["R@20"].mean(), abs=1e-12)
    assert results.verdict["metric"] == "R@20" and results.verdict["chosen_on"] == "validation"
    # fuse wrote the user-to-item validation values: evaluate reads them and computes none
    assert all("val_u2i_recall20" in json.loads((workdir / "runs" / m / "summary.json").read_text())
               for m in ev.job.models)
    assert not any("computed by evaluate on the validation items" in n for n in results.notes)
    assert any(n.startswith("user-to-item: ") and "users scored" in n for n in results.notes)

    both = run_evaluate(workdir, progress=False, task="both")
    assert set(both) == {"item-to-item", "user-to-item"}
    out = workdir / "evaluation" / "cold-item"
    record = json.loads((out / "results.json").read_text())
    assert record["protocol"] == "cold-item" and "rows" in record and "task" not in record  # item-to-item as before
    assert record["user-to-item"]["task"] == "user-to-item"
    assert (out / "user-to-item" / "results.md").is_file()
    assert cli_main(["evaluate", "--workdir", str(workdir), "--task", "user-to-item", "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "user-to-item" and "R@20" in printed["rows"][0]["metrics"]


def test_user_to_item_under_the_thesis_protocol_is_a_one_line_error(workdir, capsys):  # noqa: F811
    from cinefuse.cli import main as cli_main
    from cinefuse.evaluate.run import run_evaluate

    assert cli_main(["evaluate", "--workdir", str(workdir), "--task", "user-to-item", "--protocol", "thesis",
                     "--no-progress"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cinefuse evaluate: error: the user-to-item task needs the cold-item protocol, not 'thesis'"]
    both = run_evaluate(workdir, protocol="thesis", task="both", write=False, progress=False)
    assert list(both) == ["item-to-item"]  # both: item-to-item alone where no cold split exists


def test_user_to_item_validation_is_computed_when_the_summaries_lack_it(workdir, tmp_path):  # noqa: F811
    """A workdir trained before fuse validated user-to-item: evaluate chooses the weights and the
    headline on the validation items itself, and says so."""
    import json
    import shutil

    from cinefuse.evaluate.run import evaluate_run

    old = tmp_path / "old"
    shutil.copytree(workdir, old, ignore=shutil.ignore_patterns("evaluation", "index"))
    for summary in old.glob("runs/*/summary.json"):
        s = json.loads(summary.read_text())
        for key in ("val_u2i_recall20", "val_u2i_ndcg10", "val_u2i_recall20_prior", "prior_weight_u2i"):
            s.pop(key, None)
        summary.write_text(json.dumps(s))
    results = evaluate_run(old, progress=False, task="user-to-item").results
    assert any("computed by evaluate on the validation items" in n for n in results.notes)
    assert results.verdict["chosen_on"] == "validation"
