"""Probe: do the co-preference objectives teach a content map that beats raw cosine on cold items?

    PYTHONPATH=. .venv/bin/python benchmarks/probe_objectives.py [--features meta,minilm] [--steps 600] [--objectives ...]

ml-latest-small, items split 70/15/15 (``split_items``, seed 0). Targets come from the ratings of
the training items only (``fuse.targets``). Content per item: ``meta`` = editorial genres
(multi-hot) + release decade (one-hot) from movies.csv; ``minilm`` = all-MiniLM-L6-v2 of the title
(``extract.backbones.minilm``, cached under --cache). A small MLP (content -> 128 -> 64, unit
output) is trained on the training items with each objective of ``fuse.objectives`` (co-like
multi-positive InfoNCE, history nmse / softmax, distill InfoNCE + similarity KL); raw cosine of
the standardised content is the baseline. Scored by the on-device nDCG@10 / HR@10 over the
validation and the test cold items (queries and candidates in the same part, random ties), with
a 95% bootstrap interval over queries and the paired bootstrap against raw cosine. A linear
prior head (MSE on standardised log like counts) is added with the weight chosen on validation.
Writes benchmarks/results/probe_objectives.json. Not a speed benchmark.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "movielens" / "ml-latest-small"


def content_features(movies, ids, kinds, cache: Path):
    pos = {m: k for k, m in enumerate(movies.ids.tolist())}
    rows = [pos[i] for i in ids]
    blocks = {}
    if "meta" in kinds:
        vocab = sorted({g for gs in movies.genres for g in gs})
        g = np.zeros((len(ids), len(vocab)), np.float32)
        for r, k in enumerate(rows):
            for name in movies.genres[k]:
                g[r, vocab.index(name)] = 1.0
        years = movies.years[rows]
        edges = np.array([1950, 1960, 1970, 1980, 1990, 1995, 2000, 2005, 2010, 2015])
        decade = np.where(np.isnan(years), len(edges) + 1, np.searchsorted(edges, np.nan_to_num(years), side="right"))
        blocks["meta"] = np.concatenate([g, np.eye(len(edges) + 2, dtype=np.float32)[decade]], axis=1)
    if "minilm" in kinds:
        path = cache / "minilm_titles.npy"
        if path.is_file():
            all_emb = np.load(path)
        else:
            from cinefuse.extract.backbones.minilm import MiniLM

            all_emb = MiniLM("cpu", 64, 128).embed(list(movies.titles))
            cache.mkdir(parents=True, exist_ok=True)
            np.save(path, all_emb)
        blocks["minilm"] = all_emb[rows]
    return blocks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", default="meta,minilm")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--objectives", default="co-like,history-nmse,history-softmax,distill")
    ap.add_argument("--history-temperature", type=float, default=1.0)
    ap.add_argument("--slice", default="32,32,512", help="history batch: users, liked items per user, random items")
    ap.add_argument("--cache", default="/tmp/cinefuse-probe")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "probe_objectives.json"))
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import optax

    from cinefuse.datasets.movielens import load_movies, load_ratings
    from cinefuse.fuse import copref as ob
    from cinefuse.fuse.pairs import split_items
    from cinefuse.fuse.targets import TargetConfig, build_targets
    from cinefuse.metrics.bootstrap import bootstrap_interval, paired_bootstrap
    from cinefuse.metrics.device_ranking import per_query_ndcg_hr
    from cinefuse.metrics.likes import like_matrix

    ratings, movies = load_ratings(DATA), load_movies(DATA)
    known = set(movies.ids.tolist())
    ids = np.array(sorted({i for i in ratings.item.tolist() if i in known}, key=int), dtype=object)
    parts = split_items(ids, (0.7, 0.15, 0.15), 0)
    train_ids = parts["train"]
    in_train = np.isin(ratings.item, train_ids)
    t0 = time.perf_counter()
    tg = build_targets(ratings.user[in_train], ratings.item[in_train], ratings.rating[in_train], train_ids,
                       TargetConfig(), seed=0)
    print(f"targets {time.perf_counter() - t0:.1f} s", {k: round(v, 2) for k, v in tg.seconds.items()}, tg.stats)

    kinds = args.features.split(",")
    feats = {part: content_features(movies, parts[part].tolist(), kinds, Path(args.cache)) for part in parts}
    x = {part: np.concatenate([feats[part][k] for k in kinds], axis=1) for part in parts}
    mean, std = x["train"].mean(0), x["train"].std(0) + 1e-6
    x = {part: ((v - mean) / std).astype(np.float32) for part, v in x.items()}
    likes = {part: like_matrix(ratings.user, ratings.item, ratings.rating, parts[part]).X.toarray() > 0
             for part in ("val", "test")}

    def evaluate(emb, part, prior=None, weight=0.0):
        nd, hr, scored = per_query_ndcg_hr(jnp.asarray(emb), jnp.asarray(likes[part]), jax.random.PRNGKey(123),
                                           k=10, prior=None if prior is None else jnp.asarray(prior), weight=weight)
        scored = np.asarray(scored)
        return np.asarray(nd)[scored], np.asarray(hr)[scored]

    d_in, hidden, dim = x["train"].shape[1], 128, 64
    key = jax.random.PRNGKey(0)

    def init(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        return {"w1": jax.random.normal(k1, (d_in, hidden)) / np.sqrt(d_in), "b1": jnp.zeros(hidden),
                "w2": jax.random.normal(k2, (hidden, dim)) / np.sqrt(hidden),
                "kernel": jax.random.normal(k3, (tg.teacher.shape[1], dim)) / np.sqrt(dim),
                "prior": jax.random.normal(k4, (d_in,)) * 0.01, "prior_b": jnp.zeros(())}

    def apply(p, xb):
        return ob.unit(jax.nn.relu(xb @ p["w1"] + p["b1"]) @ p["w2"])

    xt = jnp.asarray(x["train"])
    slice_sizes = [int(v) for v in args.slice.split(",")]
    P = tg.partners
    pool, pidx, pw, pm = (jnp.asarray(a) for a in (P.anchors, P.idx, P.weight, P.mask))
    hist, hlen = jnp.asarray(tg.histories.items), jnp.asarray(tg.histories.lengths)
    user_pool = jnp.asarray(np.flatnonzero(tg.histories.lengths >= 2).astype(np.int32))
    n_items = len(train_ids)
    teacher = jnp.asarray(tg.teacher)
    ease_rows = jnp.asarray(tg.ease)
    item_pool = jnp.arange(n_items, dtype=jnp.int32)
    liked_pool = jnp.asarray(np.flatnonzero(tg.likes.like_counts > 0).astype(np.int32))
    prior_t = jnp.asarray(tg.prior)

    def loss_of(objective):
        def loss(p, k):
            if objective == "co-like":
                a, b = ob.sample_co_like(k, pool, pidx, pw, pm, 256)
                pos, exc = ob.co_like_masks(a, b, pidx, pm)
                return ob.multi_positive_info_nce(apply(p, xt[a]), apply(p, xt[b]), pos, exc, 0.1)
            if objective.startswith("history"):
                s = ob.sample_history(k, user_pool, hist, hlen, n_items, *slice_sizes)
                kind = objective.split("-")[1]
                return ob.history_loss(s["likes"], apply(p, xt[s["items"]]), s["item_mask"], kind,
                                       args.history_temperature)
            if objective == "distill":
                items = ob.sample_items(k, liked_pool, 256)
                e = apply(p, xt[items])
                info = ob.distill_info_nce(e, p["kernel"], teacher[items], items, 0.1)
                kl = ob.similarity_kl(e, ob.teacher_logits(ease_rows, items, 0.5), items, 0.1)
                return info + kl
            raise ValueError(objective)
        return loss

    tx = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 2e-3, 50, args.steps), weight_decay=1e-4)

    def train(objective):
        loss = loss_of(objective)

        @jax.jit
        def step(p, o, i):
            k = jax.random.fold_in(key, i)
            value, g = jax.value_and_grad(loss)(p, k)
            u, o = tx.update(g, o, p)
            return optax.apply_updates(p, u), o, value

        p = init(jax.random.PRNGKey(1))
        o = tx.init(p)
        t = time.perf_counter()
        for i in range(args.steps):
            p, o, value = step(p, o, i)
        return p, float(value), time.perf_counter() - t

    # the prior head: a linear map of the content to standardised log like counts
    def prior_fit():
        def loss(p, k):
            items = ob.sample_items(k, item_pool, 512)
            return ob.prior_loss(xt[items] @ p["prior"] + p["prior_b"], prior_t[items])

        @jax.jit
        def step(p, o, i):
            value, g = jax.value_and_grad(loss)(p, jax.random.fold_in(key, 10_000 + i))
            u, o = tx.update(g, o, p)
            return optax.apply_updates(p, u), o, value

        p = init(jax.random.PRNGKey(1))
        o = tx.init(p)
        for i in range(args.steps):
            p, o, _ = step(p, o, i)
        return p

    pp = prior_fit()
    prior_of = {part: np.asarray(jnp.asarray(x[part]) @ pp["prior"] + pp["prior_b"]) for part in ("val", "test")}

    rows = {}
    raw = {part: evaluate(x[part], part) for part in ("val", "test")}
    rows["raw cosine"] = {"emb": x, "seconds": 0.0}
    for objective in args.objectives.split(","):
        p, last, secs = train(objective)
        rows[objective] = {"emb": {part: np.asarray(apply(p, jnp.asarray(x[part]))) for part in ("val", "test")},
                           "seconds": secs, "last_loss": last}
        print(f"{objective}: {args.steps} steps in {secs:.1f} s, last loss {last:.4f}", flush=True)

    out = {"features": kinds, "steps": args.steps, "targets_seconds": tg.seconds, "targets_stats": tg.stats,
           "tie_break": "random (seeded permutation, key 123)", "rows": {}}
    header = f"{'model':<28} {'val nDCG@10':>12} {'test nDCG@10 [95% CI]':>30} {'test HR@10':>10} {'vs raw (paired)':>28}"
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        for with_prior in (False, True):
            weights = [0.0] if not with_prior else [0.02, 0.05, 0.1, 0.2, 0.4]
            best_w, best_val = 0.0, -1.0
            for w in weights:  # prior weight chosen on validation only
                v = evaluate(r["emb"]["val"], "val", prior_of["val"] if with_prior else None, w)[0].mean()
                if v > best_val:
                    best_w, best_val = w, float(v)
            nd, hr = evaluate(r["emb"]["test"], "test", prior_of["test"] if with_prior else None, best_w)
            iv = bootstrap_interval(nd, seed=0)
            pair = paired_bootstrap(nd, raw["test"][0], seed=0)
            label = name + (f" + prior (w={best_w})" if with_prior else "")
            print(f"{label:<28} {best_val:>12.4f} {iv.mean:>10.4f} [{iv.low:.4f}, {iv.high:.4f}] {hr.mean():>10.4f} "
                  f"{pair.mean:+.4f} [{pair.low:+.4f}, {pair.high:+.4f}]")
            out["rows"][label] = {"val_ndcg10": best_val, "test_ndcg10": iv.as_dict(), "test_hr10": float(hr.mean()),
                                  "paired_vs_raw": pair.as_dict(), "train_seconds": r["seconds"],
                                  "prior_weight": best_w}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
