"""Pair builder timing on ml-latest-small (target: under 10 s on 2 cores).

    .venv/bin/python benchmarks/bench_pairs.py [--repeats 3]

Prints counts and the median build time; writes benchmarks/results/pairs.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from cinefuse.datasets.movielens import load_movies, load_ratings
    from cinefuse.fuse.pairs import PairConfig, build_pairs, make_split

    t = time.perf_counter()
    ratings, movies = load_ratings(args.data), load_movies(args.data)
    load_s = time.perf_counter() - t
    build, split = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ps = build_pairs(ratings, movies, None, PairConfig(), seed=0)
        build.append(time.perf_counter() - t)
        t = time.perf_counter()
        make_split(ratings, movies, None, PairConfig(), "cold-item", seed=0)
        split.append(time.perf_counter() - t)
    result = {"dataset": "ml-latest-small", "ratings": len(ratings), "load_seconds": round(load_s, 3),
              "build_pairs_seconds_median": round(statistics.median(build), 3),
              "cold_item_split_seconds_median": round(statistics.median(split), 3), "repeats": args.repeats,
              "stats": ps.stats, "target_seconds": 10.0}
    print(f"ml-latest-small: {ps.stats['pairs']} pairs ({ps.stats['positives']} positive), "
          f"{ps.stats['triplets']} triplets, {ps.stats['items']} items")
    print(f"build_pairs median {result['build_pairs_seconds_median']} s, cold-item split (3 builds) median "
          f"{result['cold_item_split_seconds_median']} s, loading {result['load_seconds']} s (target < 10 s)")
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "pairs.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
