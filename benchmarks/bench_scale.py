"""How cinefuse scales with the catalogue: synthetic catalogues of 10k, 100k and 1M items.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000,100000,1000000] [--skip-distributed]

Each size runs in a fresh process (so its peak RSS is its own) over a synthetic catalogue built
here: N items in 64 genre clusters, 64-d float16 features (the cluster centre plus noise as large
as the centre, standing in for fused embeddings), 20 ratings per item (200k ratings at 10k items,
20M at 1M: MovieLens-20M's size) by N / 5 users with long-tailed activity, who rate their
favourite cluster high and popular items of any cluster anywhere on the scale. Per size:

- ``store``: write the features as 50k-row shards with ``StoreWriter``, load them back with
  ``load_features`` (what ``fuse`` does);
- ``targets``: the co-like objective's targets as ``fuse`` builds them (``build_targets``: like
  matrix, co-like partners with the co-rated fallback, user histories, prior), with the heavy-user
  cap of ``cinefuse.fuse.cocounts`` where sum_u likes^2 is over 2e8 (``co_cap``); the partners
  from exact co-counts too (up to ``--exact-max-products``), for ``partner_recall_vs_exact``
  (the share of exact top-32 partners the capped ones find), and the PureSVD teacher of
  ``distill`` (``teacher_svd_seconds``) apart. The EASE teacher is left out: a dense (I, I)
  matrix, 4 TB at 1M items;
- ``pairs``: the thesis pairs and triplets (``build_pairs``, the same cap over likes + dislikes);
- ``fuse``: steps/s of the default tower over the whole table resident on the device
  (``GroupTrainer.multi_step``, 20 steps a call, batch 128), and at 1M also a 10k-row table in the
  same process, alternating, for ``fuse_steps_ratio_1m_vs_10k``;
- ``exact``: exact top-10 (``top_k_cosine``) for a sample of queries: queries/s, and the truth;
- ``index``: ``cinefuse.evaluate.index.build_index(kind="auto")`` (flat below 100k items, HNSW
  above): build seconds, median ms of a single-item query, queries/s in a batch, recall@10
  against the exact top-10 on the sample;
- ``peak_rss_mb`` after each stage (``ru_maxrss``: the process's peak so far).

``--validation-peak`` (alone, each size in a fresh process): the peak memory of one validation
pass in both tasks (``fuse.trainer.GroupTrainer.validate``'s calls to ``metrics.device_ranking``)
at a catalogue of 100k and 1M items split 70/15/15: the validation items (15%) as queries and
candidates, 64-d embeddings, N / 5 users with long-tailed activity and 10 likes per item, their
liked training items as history, the validation's seeded samples above 16384 queries / users.
The peak is the process's peak RSS after the pass less its RSS before it (so it also counts any
temporaries of building the inputs above the baseline: an upper bound). It writes
``validation_peak_gb_100k`` / ``validation_peak_gb_1m`` (target under 4 GB at 1M) and
``validation`` (per size: seconds, queries and users scored) into scale.json, keeping its other keys.

Writes benchmarks/results/scale.json and scale.png (seconds against items, log-log). Targets:
``ann_recall_at_10_1m`` >= 0.95, ``ann_query_ms_1m`` < 5, ``fuse_steps_ratio_1m_vs_10k`` >= 0.8,
``targets_seconds_20m_ratings`` < 60 on the 2-core machine; ``distributed_equal`` is the result of
tests/test_fuse_distributed.py (2 processes against 2 local devices, bit for bit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DIM, CLUSTERS, RATINGS_PER_ITEM, RATINGS_PER_USER = 64, 64, 20, 100
GENRES = ["Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
FEATURE_SET = "visual/synthetic"


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def catalogue(n_items: int, seed: int = 0):
    """(features (N, 64) float16, cluster (N,), genres, Ratings, Movies) of the synthetic catalogue."""
    from cinefuse.datasets.movielens import Movies, Ratings

    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, CLUSTERS, n_items)
    centres = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32)
    features = (centres[cluster] + rng.standard_normal((n_items, DIM), dtype=np.float32)).astype(np.float16)
    cluster_genres = [rng.choice(len(GENRES), 2, replace=False) for _ in range(CLUSTERS)]
    extra = rng.integers(0, len(GENRES), n_items)
    has_extra = rng.random(n_items) < 0.3
    genres = [[GENRES[g] for g in cluster_genres[c]] + ([GENRES[e]] if x and e not in cluster_genres[c] else [])
              for c, e, x in zip(cluster.tolist(), extra.tolist(), has_extra.tolist())]
    n_ratings = RATINGS_PER_ITEM * n_items
    n_users = max(50, n_ratings // RATINGS_PER_USER)
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.maximum(1, np.round(activity / activity.sum() * n_ratings)).astype(np.int64)
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    n = len(user)
    favourite = rng.integers(0, CLUSTERS, n_users)[user]
    by_cluster = np.argsort(cluster, kind="stable")
    start = np.searchsorted(cluster[by_cluster], np.arange(CLUSTERS))
    size = np.bincount(cluster, minlength=CLUSTERS)
    # popularity: a power of a uniform draw puts most ratings on a head of the items
    in_cluster = by_cluster[start[favourite] + (size[favourite] * rng.random(n) ** 2).astype(np.int64)]
    popular_order = rng.permutation(n_items)
    anywhere = popular_order[(n_items * rng.random(n) ** 3).astype(np.int64)]
    fav = rng.random(n) < 0.6
    item = np.where(fav, in_cluster, anywhere)
    liked = cluster[item] == favourite
    rating = np.where(liked, rng.choice([4.0, 4.5, 5.0], n), rng.choice([0.5, 1.0, 2.0, 3.0, 3.5, 4.0], n))
    pool = np.array([str(i + 1) for i in range(n_items)], dtype=object)
    ratings = Ratings(user + 1, pool[item], rating.astype(np.float32), np.zeros(n, np.int64))
    movies = Movies(pool, [f"Film {i + 1}" for i in range(n_items)], genres, np.full(n_items, np.nan))
    return features, cluster, genres, ratings, movies


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bench_store(features: np.ndarray, ids: np.ndarray, work: Path) -> dict:
    from cinefuse.fuse.features import load_features
    from cinefuse.store import FeatureBlock, StoreWriter

    store = work / "store"

    def write():
        writer = StoreWriter(store, config={"synthetic": "bench_scale"})
        for lo in range(0, len(ids), 50_000):
            hi = min(lo + 50_000, len(ids))
            writer.write_shard(ids[lo:hi].tolist(), {FEATURE_SET: FeatureBlock(
                features[lo:hi], np.ones(hi - lo, bool), ["ok"] * (hi - lo))})

    _, write_s = timed(write)
    table, load_s = timed(lambda: load_features(str(store), [FEATURE_SET]))
    assert table.data[FEATURE_SET].shape == features.shape
    size_mb = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 1e6
    return {"write_seconds": round(write_s, 3), "load_seconds": round(load_s, 3), "mb": round(size_mb, 1)}


def partner_recall(got, exact) -> float:
    """Mean over items with exact partners of |got's partners & exact's| / |exact's|."""
    total, n = 0.0, 0
    for gi, gm, ei, em in zip(got.idx, got.mask, exact.idx, exact.mask):
        if em.any():
            total += len(set(gi[gm].tolist()) & set(ei[em].tolist())) / int(em.sum())
            n += 1
    return total / max(n, 1)


def bench_targets(ratings, exact_max_products: float) -> dict:
    """The co-like objective's targets as ``fuse`` builds them (``build_targets``: one rating index,
    likes, co-like partners with the co-rated fallback, histories, prior), the PureSVD teacher of
    ``distill`` timed apart, and, when affordable, the partners from exact co-counts to measure what
    the heavy-user cap changes."""
    from cinefuse.fuse.targets import TargetConfig, build_targets, co_like_partners, teacher_vectors

    item_ids = np.unique(ratings.item.astype(str)).astype(object)
    cfg = TargetConfig()
    tg, seconds = timed(lambda: build_targets(ratings.user, ratings.item, ratings.rating, item_ids, cfg, seed=0,
                                              parts=("partners", "histories")))
    out = {"seconds": round(seconds, 3), "parts": {k: round(v, 3) for k, v in tg.seconds.items()},
           "items": int(len(item_ids)), "likes": int(tg.likes.X.nnz), "anchors": int(len(tg.partners.anchors)),
           "partner_source": tg.stats["partner_source"], "co_cap": tg.stats["co_cap"],
           "co_capped_users": tg.stats["co_capped_users"], "max_co_products": cfg.max_co_products}
    _, out["teacher_svd_seconds"] = timed(lambda: teacher_vectors(tg.likes.X, cfg.teacher_dim, 0))
    out["teacher_svd_seconds"] = round(out["teacher_svd_seconds"], 3)
    if tg.partners.co_cap is not None:
        lengths = np.diff(tg.likes.X.indptr)
        out["likes_counted_fraction"] = round(float(np.minimum(lengths, tg.partners.co_cap).sum() / lengths.sum()), 4)
        like_products = float((np.diff(tg.likes.X.indptr).astype(np.float64) ** 2).sum())
        if like_products <= exact_max_products:
            exact, exact_s = timed(lambda: co_like_partners(tg.likes.X, cfg.n_partners, cfg.association,
                                                            cfg.min_co_likes, 0, None, budget=np.inf))
            out["exact_partners_seconds"] = round(exact_s, 3)
            out["partner_recall_vs_exact"] = round(partner_recall(tg.partners, exact), 4)
    return out


def fuse_trainer(features: np.ndarray, genres, triplets: np.ndarray, work: Path):
    from cinefuse.fuse.config import as_config
    from cinefuse.fuse.features import FeatureTable, pack_genre_words
    from cinefuse.fuse.plan import plan_runs
    from cinefuse.fuse.prepare import Prepared
    from cinefuse.fuse.trainer import GroupTrainer

    n = len(features)
    config = as_config({"data": {"store": "unused", "modality_sets": {"visual": [FEATURE_SET]}},
                        "model": {"modalities": "visual"}, "grid": {"modalities": ["visual"]},
                        # the triplet step over the whole table (the co-preference samplers draw rows alike)
                        "objective": {"kind": "thesis", "prior": False},
                        "train": {"batch_size": 128, "steps_per_call": 20, "steps": 10_000}})
    ids = np.array([str(i + 1) for i in range(n)], dtype=object)
    table = FeatureTable(ids, {FEATURE_SET: features.astype(np.float32)}, {FEATURE_SET: None})
    # validation is not timed here; the trainer still keeps a (users, items) like slice resident
    val_rows = np.arange(min(n, 100))
    val_likes = np.random.default_rng(1).random((8, len(val_rows))) < 0.2
    data = Prepared(ids, table, pack_genre_words(genres), {"train_triplets": triplets}, {},
                    train_rows=np.arange(n), val_rows=val_rows, val_likes=val_likes)
    runs = plan_runs(config, grid=False)[0]
    return GroupTrainer(config, runs, data, work, log=lambda m: None)


def steps_per_second(trainer, state, calls: int):
    import jax

    t0 = time.perf_counter()
    for _ in range(calls):
        state, metrics = trainer.multi_step(state)
    jax.block_until_ready(state)
    return state, calls * trainer.config.train.steps_per_call / (time.perf_counter() - t0)


def bench_fuse(features, genres, triplets, work: Path, with_small: bool, rounds: int = 5, calls: int = 5) -> dict:
    trainers = {"full": fuse_trainer(features, genres, triplets, work)}
    if with_small:
        small = 10_000
        keep = (triplets < small).all(axis=1)
        sub = triplets[keep] if keep.sum() >= 1000 else np.random.default_rng(0).integers(0, small, (50_000, 3))
        trainers["10k"] = fuse_trainer(features[:small], genres[:small], sub.astype(np.int32), work)
    states = {k: t.init_state() for k, t in trainers.items()}
    rates = {k: [] for k in trainers}
    for k, t in trainers.items():  # compile and warm up
        states[k], _ = steps_per_second(t, states[k], 1)
    for _ in range(rounds):  # alternating, so the machine's load falls on both alike
        for k, t in trainers.items():
            states[k], rate = steps_per_second(t, states[k], calls)
            rates[k].append(rate)
    out = {"steps_per_second": round(statistics.median(rates["full"]), 2),
           "rounds": rounds, "steps_per_round": calls * 20, "triplets": int(len(triplets))}
    if with_small:
        out["steps_per_second_10k_same_process"] = round(statistics.median(rates["10k"]), 2)
        out["ratio_vs_10k_same_process"] = round(statistics.median(rates["full"]) / statistics.median(rates["10k"]), 3)
    return out


def bench_exact_and_index(emb: np.ndarray, n_queries: int, single: int = 200) -> dict:
    from cinefuse.evaluate.index import ItemIndex, build_index
    from cinefuse.metrics.ranking import top_k_cosine

    rng = np.random.default_rng(5)
    queries = np.sort(rng.choice(len(emb), n_queries, replace=False))
    (truth, _), exact_s = timed(lambda: top_k_cosine(emb[queries], emb, 10, self_index=queries))
    (index, record), _ = timed(lambda: build_index(emb, "auto"))
    item_index = ItemIndex(index, np.arange(len(emb)).astype(str), record)
    (rows, _), batch_s = timed(lambda: item_index.search(emb[queries], 10, self_rows=queries))
    recall = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(rows, truth)]))
    ms = []
    for q in queries[:single]:
        t0 = time.perf_counter()
        item_index.search(emb[q:q + 1], 10, self_rows=np.array([q]))
        ms.append((time.perf_counter() - t0) * 1000)
    return {"exact": {"queries": n_queries, "seconds": round(exact_s, 3), "queries_per_second": round(n_queries / exact_s, 1)},
            "index": {"kind": record["kind"], "params": record["params"], "build_seconds": record["build_seconds"],
                      "single_query_ms_median": round(statistics.median(ms), 3), "single_queries": len(ms),
                      "batch_queries_per_second": round(n_queries / batch_s, 1), "recall_at_10": round(recall, 4)}}


def run_one(n_items: int, exact_max_products: float) -> dict:
    from cinefuse.fuse.pairs import PairConfig, build_pairs

    work = Path(tempfile.mkdtemp(prefix=f"cinefuse-scale-{n_items}-"))
    out: dict = {"items": n_items, "load_average_start": [round(x, 1) for x in os.getloadavg()]}
    try:
        (features, cluster, genres, ratings, movies), gen_s = timed(lambda: catalogue(n_items))
        out.update({"ratings": len(ratings), "users": int(len(np.unique(ratings.user))),
                    "generate_seconds": round(gen_s, 3)})
        rss = {"catalogue": peak_rss_mb()}
        print(f"[{n_items}] catalogue: {len(ratings)} ratings in {gen_s:.1f} s", flush=True)
        out["store"] = bench_store(features, movies.ids, work)
        rss["store"] = peak_rss_mb()
        print(f"[{n_items}] store {out['store']}", flush=True)
        # the exact item x item co-like counts X^T X take sum over users of likes^2 products
        likes_per_user = np.bincount(ratings.user[ratings.rating >= 4.0]).astype(np.float64)
        out["co_like_products"] = float((likes_per_user ** 2).sum())
        out["targets"] = bench_targets(ratings, exact_max_products)
        rss["targets"] = peak_rss_mb()
        print(f"[{n_items}] targets {out['targets']}", flush=True)
        pairs, pairs_s = timed(lambda: build_pairs(ratings, movies, None, PairConfig(), seed=0))
        out["pairs"] = {"seconds": round(pairs_s, 3), "pairs": pairs.stats["pairs"],
                        "triplets": pairs.stats["triplets"], "co_cap": pairs.stats["co_cap"]}
        rss["pairs"] = peak_rss_mb()
        print(f"[{n_items}] pairs {out['pairs']}", flush=True)
        # pairs index the rated universe in id order; the catalogue's rows are ids 1..N in order
        rows = np.asarray([int(i) - 1 for i in pairs.ids.tolist()], dtype=np.int64)
        triplets = rows[pairs.triplets].astype(np.int32)
        del pairs
        del ratings
        out["fuse"] = bench_fuse(features, genres, triplets, work, with_small=n_items >= 1_000_000)
        rss["fuse"] = peak_rss_mb()
        print(f"[{n_items}] fuse {out['fuse']}", flush=True)
        res = bench_exact_and_index(features.astype(np.float32), n_queries=500 if n_items >= 1_000_000 else 1000)
        out.update(res)
        rss["index"] = peak_rss_mb()
        print(f"[{n_items}] exact {res['exact']} index {res['index']}", flush=True)
        out["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
        out["peak_rss_mb"] = rss
        out["peak_rss_mb_max"] = max(rss.values())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def current_rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def validation_inputs(n_items: int, seed: int = 0):
    """The arrays of one validation pass at a catalogue of ``n_items`` (see the docstring)."""
    import scipy.sparse as sp

    from cinefuse.fuse.validation import ValidationSet
    from cinefuse.metrics.device_ranking import Likes, sample_rows

    rng = np.random.default_rng(seed)
    n_val, n_train = int(0.15 * n_items), int(0.7 * n_items)
    n_users = max(50, n_items // 5)
    centres = rng.standard_normal((CLUSTERS, DIM), dtype=np.float32)
    emb = lambda n: centres[rng.integers(0, CLUSTERS, n)] + rng.standard_normal((n, DIM), dtype=np.float32)  # noqa: E731
    activity = rng.lognormal(0.0, 1.0, n_users)
    activity /= activity.sum()

    def likes(n_cols: int) -> sp.csr_matrix:
        n = 10 * n_cols
        m = sp.csr_matrix((np.ones(n, np.float32), (rng.choice(n_users, n, p=activity), rng.integers(0, n_cols, n))),
                          shape=(n_users, n_cols))
        m.data[:] = 1.0
        return m

    val, train = likes(n_val), likes(n_train)
    i2i = val[np.asarray(val.sum(axis=1)).ravel() >= 2]
    both = (np.diff(val.indptr) > 0) & (np.diff(train.indptr) > 0)
    his = train[both]
    used = np.unique(his.indices)
    vs = ValidationSet(Likes.of(i2i), sample_rows(n_val, seed), used, Likes.of(his[:, used]), Likes.of(val[both]),
                       sample_rows(int(both.sum()), seed + 1), seed)
    return emb(n_val), emb(len(used)), vs


def validation_peak(n_items: int) -> dict:
    """One validation pass at ``n_items`` (both tasks), in this process: peak memory and seconds."""
    import jax

    from cinefuse.metrics.device_ranking import ndcg_hr_at_k, u2i_at_k
    from cinefuse.metrics.ties import validation_tie_key

    val_emb, hist_emb, vs = validation_inputs(n_items)
    key = validation_tie_key(0)
    jax.block_until_ready(jax.numpy.zeros(1))
    before = current_rss_mb()
    t0 = time.perf_counter()
    i2i = ndcg_hr_at_k(val_emb, vs.likes, key, k=10, queries=vs.queries)
    u2i = u2i_at_k(val_emb, hist_emb, vs.histories, vs.relevant, key, users=vs.users)
    values = {"ndcg10": float(i2i["nDCG"]), "u2i_recall20": float(u2i["recall20"])}
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb() - before
    return {"items": n_items, "validation_items": len(val_emb), "history_items": len(hist_emb),
            "sampling": vs.sampling(), "queries_scored": int(i2i["queries_scored"]),
            "users_scored": int(u2i["users_scored"]), "seconds": round(seconds, 2), "values": values,
            "rss_before_mb": round(before, 1), "peak_gb": round(peak / 1024, 3)}


def run_validation_peaks(sizes: list[int], out_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    per_size = dict(result.get("validation", {}))
    for n in sizes:
        done = subprocess.run([sys.executable, __file__, "--validation-one", str(n)], env=env, capture_output=True,
                              text=True)
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"validation at {n} failed (exit {done.returncode}): {done.stderr[-2000:]}")
        per_size[str(n)] = json.loads(lines[-1][len("RESULT "):])
        print(per_size[str(n)], flush=True)
    label = {100_000: "100k", 1_000_000: "1m"}
    for n, name in label.items():
        if str(n) in per_size:
            result[f"validation_peak_gb_{name}"] = per_size[str(n)]["peak_gb"]
    result["validation"] = per_size
    result.setdefault("targets", {})["validation_peak_gb_1m"] = "< 4"
    out_path.write_text(json.dumps(result, indent=2))


def plot(sizes: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(sizes, key=int)
    x = [int(n) for n in ns]
    def at(get):
        def value(r):
            try:
                return get(r)
            except (KeyError, TypeError):
                return None
        return value

    series = {"store write": lambda r: r["store"]["write_seconds"], "store load": lambda r: r["store"]["load_seconds"],
              "targets (co-like)": lambda r: r["targets"]["seconds"], "thesis pairs": lambda r: r["pairs"]["seconds"],
              "index build": lambda r: r["index"]["build_seconds"],
              "exact top-10, sample": lambda r: r["exact"]["seconds"],
              "100 fuse steps": lambda r: 100.0 / r["fuse"]["steps_per_second"]}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, get in series.items():
        points = [(xi, at(get)(sizes[n])) for xi, n in zip(x, ns)]
        points = [(xi, y) for xi, y in points if y is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items in the catalogue (20 ratings per item)")
    ax.set_ylabel("seconds")
    ax.set_title("cinefuse at scale (2 shared CPU cores)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def distributed_equal() -> bool:
    test = ROOT / "tests" / "test_fuse_distributed.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", f"{test}::test_two_processes_equal_one_process_over_two_devices",
                           "-q", "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True)
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:], flush=True)
    return proc.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="catalogue sizes, comma-separated")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, in this process
    parser.add_argument("--skip-distributed", action="store_true", help="keep distributed_equal from the last run")
    parser.add_argument("--out", default=str(RESULTS / "scale.json"))
    parser.add_argument("--exact-max-products", type=float, default=3e9,
                        help="also build the partners from exact co-counts (to measure the heavy-user cap) up to "
                             "this many X^T X products")
    parser.add_argument("--validation-peak", action="store_true",
                        help="only the peak memory of one validation pass at 100k and 1M items (or --sizes), "
                             "merged into --out")
    parser.add_argument("--validation-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.validation_one:
        print("RESULT " + json.dumps(validation_peak(args.validation_one)), flush=True)
        return
    if args.validation_peak:
        sizes = [int(x) for x in args.sizes.split(",") if x] if args.sizes != parser.get_default("sizes") else [
            100_000, 1_000_000]
        run_validation_peaks(sizes, Path(args.out))
        return
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.exact_max_products)), flush=True)
        return
    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if out_path.is_file() else {}
    sizes = dict(previous.get("sizes", {}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for n in [int(s) for s in args.sizes.split(",") if s]:
        proc = subprocess.Popen([sys.executable, __file__, "--one", str(n), "--exact-max-products", str(args.exact_max_products)],
                                env=env, stdout=subprocess.PIPE, text=True)
        result = None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
            else:
                print(line, end="", flush=True)
        if proc.wait() != 0 or result is None:
            raise SystemExit(f"size {n} failed (exit {proc.returncode})")
        sizes[str(n)] = result
    big = sizes.get("1000000")
    result = {
        "ann_recall_at_10_1m": big["index"]["recall_at_10"] if big else None,
        "ann_query_ms_1m": big["index"]["single_query_ms_median"] if big else None,
        "fuse_steps_ratio_1m_vs_10k": big["fuse"]["ratio_vs_10k_same_process"] if big else None,
        "targets_seconds_20m_ratings": big["targets"]["seconds"] if big else None,
        "pairs_seconds_20m_ratings": big["pairs"]["seconds"] if big else None,
        "partner_recall_vs_exact_1m": big["targets"].get("partner_recall_vs_exact") if big else None,
        "co_cap_1m": big["targets"]["co_cap"] if big else None,
        "distributed_equal": previous.get("distributed_equal") if args.skip_distributed else distributed_equal(),
        "targets": {"ann_recall_at_10_1m": ">= 0.95", "ann_query_ms_1m": "< 5", "fuse_steps_ratio_1m_vs_10k": ">= 0.8",
                    "targets_seconds_20m_ratings": "< 60", "validation_peak_gb_1m": "< 4"},
        # the validation pass is measured on its own (--validation-peak): its keys are kept
        **{k: previous[k] for k in ("validation_peak_gb_100k", "validation_peak_gb_1m", "validation") if k in previous},
        "conditions": {"machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other sessions (loaded)",
                       "python": platform.python_version(), "dim": DIM, "dtype": "float16 features",
                       "ratings_per_item": RATINGS_PER_ITEM},
        "sizes": sizes,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2))
    plot(sizes, out_path.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k not in ("sizes", "conditions")}, indent=2))


if __name__ == "__main__":
    main()
