"""Evaluate at MovieLens-20M size: the relevance index from raw ratings, cosine top-10 for
27,000 query items against 27,000 candidates on the device in blocks, and the full metric pass
(every accuracy metric at K = 1, 3, 5, 10 plus coverage, genre diversity and novelty), timed
together as one evaluation of one row costs from the ratings up.

    .venv/bin/python benchmarks/bench_eval.py [--repeats 3] [--big-repeats 1]

Synthetic data, seeded, MovieLens-like: L2-normalised random embeddings; ratings with a
heavy-tailed item popularity (Zipf-like, exponent 0.8) and heavy-tailed ratings per user
(log-normal around the mean asked), item ids as the object array of strings
``cinefuse.datasets.movielens.load_ratings`` returns; 20 genres. Headlines:
``seconds_27k`` = median of (index + ranking + metric pass) at 2M ratings (20,000 users x 100),
target < 5 s; ``seconds_27k_20m_ratings`` = the same at MovieLens-20M's 20M ratings (138,000
users x 145), target < 20 s, both on 2 CPU cores. Writes benchmarks/results/eval.json and eval.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from cinefuse.metrics.metrics import accuracy_metrics, beyond_accuracy_metrics, build_relevance
from cinefuse.metrics.ranking import top_k_cosine

RESULTS = Path(__file__).resolve().parent / "results"
KS = (1, 3, 5, 10)


def synthetic(n_items, n_users, per_user, dim, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([str(i + 1) for i in range(n_items)])
    emb = rng.standard_normal((n_items, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    # ratings per user: log-normal (sigma 1) scaled to the asked mean, at least 1 each
    counts = rng.lognormal(0.0, 1.0, n_users)
    counts = np.maximum(1, np.round(counts * per_user / counts.mean())).astype(np.int64)
    users = np.repeat(np.arange(n_users), counts)
    items = ids.astype(object)[rng.choice(n_items, users.size, p=popularity)]
    ratings = rng.choice(np.arange(1, 11) / 2, users.size).astype(np.float32)
    genres = (rng.random((n_items, 20)) < 0.12).astype(np.float32)
    return ids, emb, users, items, ratings, genres


def time_once(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def markdown(r: dict) -> str:
    small, big = r["at_2m"], r.get("at_20m")
    lines = [
        "## Evaluate: index + top-10 + metrics at MovieLens-20M size (bench_eval.py)",
        "",
        f"Machine: {r['machine']} (1-min load average {r['load_average_1min']:.1f} at the end of the run; "
        f"other sessions' jobs were running). Date {r['date']}. Command: `{r['command']}`.",
        "",
        f"27,000 x 27,000 items, dim {r['dim']}, blocks of {r['block']} (jax, CPU); metric pass = 6 accuracy "
        f"metrics at K = {', '.join(map(str, r['ks']))} + coverage, diversity, novelty. Medians.",
        "",
        "| ratings | (query, user) pairs | relevance index | cosine top-10 | metric pass | **total** | target |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {small['ratings']:,} | {small['query_user_pairs']:,} | {small['index_seconds']:.3f} | "
        f"{small['rank_seconds']:.3f} | {small['metric_seconds']:.3f} | **{r['seconds_27k']:.3f}** | < 5 s |",
    ]
    if big:
        lines.append(
            f"| {big['ratings']:,} | {big['query_user_pairs']:,} | {big['index_seconds']:.3f} | "
            f"{big['rank_seconds']:.3f} | {big['metric_seconds']:.3f} | **{r['seconds_27k_20m_ratings']:.3f}** | < 20 s |")
    return "\n".join(lines) + "\n"


def measure(ids, emb, users, items, ratings, genres, block, repeats, label):
    """index + ranking + metric pass, ``repeats`` times (the ranking compiled beforehand)."""
    n_items = len(ids)
    self_index = np.arange(n_items)
    n_users = int(np.unique(users).size)
    raters = np.bincount(np.searchsorted(ids[np.argsort(ids)], items.astype(str)), minlength=n_items)

    def rank():
        return top_k_cosine(emb, emb, max(KS), self_index=self_index, block_size=block)[0]

    rank()  # compile once, outside the timing
    runs = []
    for _ in range(repeats):
        index_s, rel = time_once(lambda: build_relevance(users, items, ratings, ids, ids, k_max=max(KS)))
        rank_s, topk = time_once(rank)

        def metric_pass():
            out = accuracy_metrics(topk, rel, KS)
            out.update(beyond_accuracy_metrics(topk, KS, n_items, genres, raters, n_users))
            return out

        metric_s, _ = time_once(metric_pass)
        runs.append({"index": index_s, "rank": rank_s, "metrics": metric_s, "total": index_s + rank_s + metric_s})
        print(f"{label}: index {index_s:.3f} s  rank {rank_s:.3f} s  metrics {metric_s:.3f} s  "
              f"total {runs[-1]['total']:.3f} s", flush=True)
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    return {"ratings": int(users.size), "users": n_users, "query_user_pairs": int(rel.pair_query.size),
            "index_seconds": med("index"), "rank_seconds": med("rank"), "metric_seconds": med("metrics"),
            "total_seconds": med("total"), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=27000)
    parser.add_argument("--dim", type=int, default=64, help="embedding size (fuse default embed_dim)")
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--ratings-per-user", type=int, default=100)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-users", type=int, default=138000, help="users of the 20M-ratings run (0: skip)")
    parser.add_argument("--big-per-user", type=int, default=145)
    parser.add_argument("--big-repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "eval.json",
                        help="the JSON to write (the Markdown goes beside it, same name, .md; default results/eval.json)")
    args = parser.parse_args()

    data = synthetic(args.items, args.users, args.ratings_per_user, args.dim)
    small = measure(*data, args.block, args.repeats, "2M")
    del data
    result = {
        "seconds_27k": small["total_seconds"],
        "target_seconds": 5.0,
        "at_2m": small,
        "items": args.items,
        "dim": args.dim,
        "k": max(KS),
        "ks": list(KS),
        "block": args.block,
        "machine": f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), shared and noisy",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_eval.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    if args.big_users:
        big = measure(*synthetic(args.items, args.big_users, args.big_per_user, args.dim, seed=1), args.block,
                      args.big_repeats, "20M")
        result["seconds_27k_20m_ratings"] = big["total_seconds"]
        result["target_seconds_20m_ratings"] = 20.0
        result["at_20m"] = big
    result["load_average_1min"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("at_2m", "at_20m")}, indent=2))


if __name__ == "__main__":
    main()
