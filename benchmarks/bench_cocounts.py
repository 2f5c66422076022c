"""What the heavy-user cap on co-counts costs in partner quality (cinefuse.fuse.cocounts).

    .venv/bin/python benchmarks/bench_cocounts.py [--items 100000] [--shrink 10]

On the synthetic catalogue of bench_scale.py (users like their favourite genre cluster), the
co-like partners (top-32 Jaccard) from exact co-counts against two caps with the same budget,
the exact products divided by ``--shrink`` (bench_scale's 1M-item catalogue is 11x over the
default budget of 2e8): each heavy user keeping a uniform random ``m`` of their likes, and
keeping their ``m`` rarest likes (what cinefuse does). Per variant: seconds, the share of the
exact top-32 partners found (mean over items), the share of partners from the anchor's own
cluster (what the users' tastes share; 1/64 by chance), and items left without a co-like
partner. Writes benchmarks/results/cocounts.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--shrink", type=float, default=10.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cocounts.json"))
    args = parser.parse_args()
    from bench_scale import catalogue, partner_recall

    from cinefuse.fuse.cocounts import co_count_cap, down_sample_rows, random_ranks
    from cinefuse.fuse.targets import Partners, top_associated
    from cinefuse.metrics.likes import like_matrix

    _, cluster, _, ratings, movies = catalogue(args.items)
    X = like_matrix(ratings.user, ratings.item, ratings.rating, movies.ids, 4.0).X  # columns: ids 1..N in order
    lengths = np.diff(X.indptr)
    exact_products = float((lengths.astype(np.float64) ** 2).sum())
    budget = exact_products / args.shrink
    cap = co_count_cap(lengths, budget)
    rows = np.arange(X.shape[1])

    def uniform(X):
        row = np.repeat(np.arange(X.shape[0]), lengths)
        keep = random_ranks(row, [0, 14]) < cap
        return sp.csr_matrix((X.data[keep], (row[keep], X.indices[keep])), shape=X.shape)

    variants = {"exact": lambda X: X, "uniform random cap": uniform,
                "rarest-first cap (cinefuse)": lambda X: down_sample_rows(X, cap, 0)}
    results, exact = {}, None
    for name, make in variants.items():
        t0 = time.perf_counter()
        Xv = make(X)
        idx, weight, mask = top_associated(Xv, rows, 32, "jaccard", 1, seed=0)
        seconds = time.perf_counter() - t0
        p = Partners(idx, weight, mask, np.zeros(len(rows), np.int8))
        exact = exact or p
        anchor = np.repeat(rows, idx.shape[1]).reshape(idx.shape)
        results[name] = {"seconds": round(seconds, 2), "likes_counted": int(Xv.nnz),
                         "recall_of_exact_top32": round(partner_recall(p, exact), 4),
                         "same_cluster_share": round(float((cluster[anchor] == cluster[idx])[mask].mean()), 4),
                         "items_without_partner": int((~mask.any(axis=1)).sum())}
        print(f"{name}: {results[name]}", flush=True)
    out = {"items": args.items, "ratings": len(ratings), "likes": int(X.nnz), "exact_products": exact_products,
           "budget": budget, "cap": cap, "chance_same_cluster": 1 / 64, "variants": results}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "variants"}))


if __name__ == "__main__":
    main()
