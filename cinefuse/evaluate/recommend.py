"""Top-K similar items for one item, from a trained model's fused embeddings.

The catalogue is every item the model embeds (training, validation and test items alike). The
embeddings come from the store ``evaluate`` wrote (``W/embeddings``, feature set
``fused/<model>``) when it holds them, else they are computed with ``cinefuse.fuse.embed``.

``build_recommend_index`` writes a faiss index over them (``W/index/<model>``,
``cinefuse.evaluate.index``); ``recommend`` answers through it when it is there and newer than
the model (approximate past 100k items: the output names the index), else by the exact scan.
Both answer with ties broken by id order (``cinefuse.metrics.ties``, rule ``"id"``): one item's
neighbours need no seeded order, while evaluate's tables break ties in a seeded random order.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.fused import safe_set_name
from cinefuse.evaluate.job import data_sources
from cinefuse.fuse.config import FuseConfig
from cinefuse.fuse.workdir import Workdir, read_json
from cinefuse.metrics.ranking import top_k_cosine
from cinefuse.metrics.ties import tie_permutation
from cinefuse.protocols import EVAL_PROTOCOLS


@dataclass
class Recommendation:
    item: str
    title: str | None
    model: str
    source: str  # where the embeddings came from
    results: list[dict] = field(default_factory=list)  # {"rank", "id", "score", "title"}
    index: dict | None = None  # the index.json of the index answered through; None: exact scan

    def to_json(self) -> dict:
        return asdict(self)


def best_model(workdir: Path, models: list[str], metric: str = "nDCG@10") -> str:
    """The model with the best ``metric`` in the last cold-item (else thesis) evaluation; the
    first model when none was evaluated."""
    for protocol in EVAL_PROTOCOLS:
        path = Workdir(workdir).evaluation_dir(protocol) / "results.json"
        if not path.is_file():
            continue
        try:
            rows = read_json(path, "rerun `cinefuse evaluate`").get("rows", [])
        except CinefuseError:
            continue
        scored = [
            (r["metrics"].get(metric, float("-inf")), r["name"])
            for r in rows
            if r.get("kind") == "model" and r.get("name") in models
        ]
        scored = [(v, n) for v, n in scored if v == v]  # drop NaN
        if scored:
            return max(scored, key=lambda x: x[0])[1]
    return models[0]


def load_embeddings(workdir: Path, model: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(ids, embeddings, source) for ``model``: the fused store when it has them, else embed."""
    wd = Workdir(workdir)
    location = wd.embeddings_dir
    name = safe_set_name(model)
    manifest = location / "manifest.json"
    params = wd.params_dir(model)
    # embeddings written before the model was (re)trained are stale: embed again
    fresh = manifest.is_file() and (not params.exists() or params.stat().st_mtime <= manifest.stat().st_mtime)
    if fresh:
        from cinefuse.store import open_store

        store = open_store(location)
        if name in store.feature_sets():
            fa = store.load_feature_set(name)
            keep = np.asarray(fa.valid, bool)
            return np.asarray(fa.ids, dtype=str)[keep], np.asarray(fa.data, np.float32)[keep], f"{location} ({name})"
    from cinefuse.fuse.embed import load_embedded

    loaded = load_embedded(workdir, model)
    return np.asarray(loaded.ids, dtype=str), np.asarray(loaded.emb, np.float32), f"embedded now with {model}"


def titles_for(config: FuseConfig, movies=None) -> dict[str, str]:
    path = data_sources(config, movies=movies)["movies"]
    if not path:
        return {}
    from cinefuse.datasets.movielens import load_movies

    try:
        m = load_movies(path)
    except (OSError, CinefuseError):
        return {}  # titles are a courtesy; the ids alone still answer the question
    return dict(zip(np.asarray(m.ids, dtype=str).tolist(), m.titles))


def unknown_item_error(item: str, ids: np.ndarray, titles: dict[str, str], model: str) -> CinefuseError:
    """A message naming the item and the closest ids and titles."""
    id_list = ids.tolist()
    by_id = difflib.get_close_matches(item, id_list, n=5, cutoff=0.6)
    known = set(id_list)
    title_to_id = {t.lower(): i for i, t in titles.items() if i in known}
    by_title = [title_to_id[t] for t in difflib.get_close_matches(item.lower(), list(title_to_id), n=5, cutoff=0.5)]
    # a title typed partly ("toy story") is a substring of the full one ("Toy Story (1995)")
    if len(item) >= 3:
        by_title += [i for t, i in title_to_id.items() if item.lower() in t][:5]
    seen, close = set(), []
    for i in by_id + by_title:
        if i not in seen:
            seen.add(i)
            close.append(f"{i} ({titles[i]})" if i in titles else i)
    hint = f"; close matches: {', '.join(close[:8])}" if close else ""
    return CinefuseError(
        f"item {item!r} is not among the {len(id_list)} items model {model} embeds{hint}. "
        "Pass an item id (MovieLens movieId) with --item"
    )


def _chosen_model(wd: Workdir, model: str | None) -> str:
    wd.check()
    models = wd.models()
    if not models:
        raise CinefuseError(f"{wd.root} holds no trained model under runs/; train first with `cinefuse fuse`")
    if model is None:
        return best_model(wd.root, models)
    if model not in models:
        raise CinefuseError(f"model {model!r} is not in {wd.root}/runs; choose one of {', '.join(models)}")
    return model


def build_recommend_index(workdir, model: str | None = None, kind: str = "auto") -> dict:
    """Writes ``W/index/<model>`` over the model's fused embeddings; returns its record."""
    from cinefuse.evaluate.index import build_index, write_index

    wd = Workdir(workdir)
    model = _chosen_model(wd, model)
    ids, emb, source = load_embeddings(wd.root, model)
    order = tie_permutation(ids, "id")  # rows in id order, the exact scan's tie order
    index, record = build_index(emb[order], kind)
    record.update({"model": model, "source": source})
    write_index(wd.index_dir(model), index, ids[order], record)
    return record


def _fresh_index(wd: Workdir, model: str):
    """The model's index when built after its parameters, else None (stale: exact scan)."""
    from cinefuse.evaluate.index import RECORD_FILE, open_index

    directory = wd.index_dir(model)
    params = wd.params_dir(model)
    record = directory / RECORD_FILE
    if not record.is_file() or (params.exists() and params.stat().st_mtime > record.stat().st_mtime):
        return None
    return open_index(directory)


def recommend(workdir, item: str, k: int = 10, model: str | None = None, movies=None,
              use_index: bool = True) -> Recommendation:
    workdir = Path(workdir)
    wd = Workdir(workdir)
    if k < 1:
        raise CinefuseError(f"-k {k}: ask for at least 1 recommendation")
    model = _chosen_model(wd, model)
    titles = titles_for(wd.config(), movies)
    item = str(item).strip()
    item_index = _fresh_index(wd, model) if use_index else None
    if item_index is not None:
        ids = item_index.ids
        where = np.flatnonzero(ids == item)
        if where.size == 0:
            raise unknown_item_error(item, ids, titles, model)
        rows, scores = item_index.search(item_index.vectors(where[:1]), k, self_rows=where[:1])
        return Recommendation(item, titles.get(item), model, str(wd.index_dir(model)),
                              _ranked(ids, rows[0], scores[0], titles), item_index.record)
    ids, emb, source = load_embeddings(workdir, model)
    order = tie_permutation(ids, "id")  # ties by id (evaluate's default is a seeded random order)
    ids, emb = ids[order], emb[order]
    where = np.flatnonzero(ids == item)
    if where.size == 0:
        raise unknown_item_error(item, ids, titles, model)
    row = int(where[0])
    topk, scores = top_k_cosine(emb[row : row + 1], emb, k, self_index=np.array([row]))
    return Recommendation(item, titles.get(item), model, source, _ranked(ids, topk[0], scores[0], titles))


def _ranked(ids: np.ndarray, rows: np.ndarray, scores: np.ndarray, titles: dict[str, str]) -> list[dict]:
    return [{"rank": r + 1, "id": str(ids[c]), "score": float(s), "title": titles.get(str(ids[c]))}
            for r, (c, s) in enumerate(zip(rows.tolist(), scores.tolist())) if c >= 0]


def format_recommendation(rec: Recommendation) -> str:
    head = f"top {len(rec.results)} items like {rec.item}" + (f" ({rec.title})" if rec.title else "")
    lines = [f"{head}  [model {rec.model}]"]
    if rec.index is not None:
        from cinefuse.evaluate.index import describe_record

        lines.append(f"through the {describe_record(rec.index)} index in {rec.source}")
    lines.append(f"{'rank':>4}  {'id':>8}  {'score':>7}  title")
    for r in rec.results:
        lines.append(f"{r['rank']:>4}  {r['id']:>8}  {r['score']:>7.4f}  {r['title'] or '-'}")
    return "\n".join(lines)
