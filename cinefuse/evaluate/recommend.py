"""Top-K similar items for one item, from a trained model's fused embeddings.

The catalogue is every item the model embeds (training, validation and test items alike, and
films added to the feature store after training: the cold-start case, embedded by the trained
model). The embeddings come from the store ``evaluate`` wrote (``W/embeddings``, feature set
``fused/<model>``) when it holds them and is newer than the model and the feature store, else
they are computed with ``cinefuse.fuse.embed``. ``--model NAME+prior`` ranks by
``cos + w * prior`` (``cinefuse.evaluate.serving``); without ``--model`` the model validation
chose answers, and the output says which.

``build_recommend_index`` writes a faiss index over them (``W/index/<model>``,
``cinefuse.evaluate.index``); ``recommend`` answers through it when it is there and newer than
the model (approximate past 100k items: the output names the index), else by the exact scan.
Both answer with ties broken by id order (``cinefuse.metrics.ties``, rule ``"id"``): one item's
neighbours need no seeded order, while evaluate's tables break ties in a seeded random order.
A user's list (``--user`` / ``--liked``) is ``cinefuse.evaluate.recommend_user``: the same
catalogue and tie order, ``format_recommendation`` prints both.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.fused import safe_set_name
from cinefuse.evaluate.job import data_sources
from cinefuse.evaluate.serving import Served, choose_served, dropped_reason, feature_store_mtime, with_prior
from cinefuse.fuse.config import FuseConfig
from cinefuse.fuse.workdir import Workdir
from cinefuse.metrics.ranking import top_k_cosine
from cinefuse.metrics.ties import tie_permutation


@dataclass
class Recommendation:
    item: str
    title: str | None
    model: str
    source: str  # where the embeddings came from
    results: list[dict] = field(default_factory=list)  # {"rank", "id", "score", "title"}
    index: dict | None = None  # the index.json of the index answered through; None: exact scan
    why: str = ""  # why this model answers ("asked for", or validation's choice and its figure)
    history: int | None = None  # a user's list: the liked items it is ranked from; None: an item's

    def to_json(self) -> dict:
        return asdict(self)


def load_catalogue(wd: Workdir, served: Served) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(ids in id order, candidate vectors, query tail, source) for ``served``: L2-normalised
    embeddings, plus the prior column for ``NAME+prior`` (:func:`~cinefuse.evaluate.serving.with_prior`).
    The fused store evaluate wrote answers when it is newer than the model and than the feature
    store (a film added to the store since is embedded now, with the trained model); a prior,
    which that store does not hold, is computed now."""
    ids = emb = None
    if served.prior_weight is None:
        ids, emb, source = _stored_embeddings(wd, served.model)
    if ids is None:
        from cinefuse.fuse.embed import load_embedded

        loaded = load_embedded(wd.root, served.model)
        ids, emb, source = np.asarray(loaded.ids, dtype=str), np.asarray(loaded.emb, np.float32), \
            f"embedded now with {served.model}"
        candidates, tail = with_prior(emb, loaded.prior, served.prior_weight)
    else:
        candidates, tail = with_prior(emb, None, None)
    order = tie_permutation(ids, "id")  # ties by id (evaluate's default is a seeded random order)
    return ids[order], candidates[order], tail, source


def _stored_embeddings(wd: Workdir, model: str):
    """(ids, emb, source) from ``W/embeddings`` when fresh, else (None, None, None)."""
    location = wd.embeddings_dir
    name = safe_set_name(model)
    manifest = location / "manifest.json"
    params = wd.params_dir(model)
    if not manifest.is_file():
        return None, None, None
    written = manifest.stat().st_mtime
    # embeddings written before the model was (re)trained, or before films were added to the
    # feature store, are stale: embed again
    if (params.exists() and params.stat().st_mtime > written) or feature_store_mtime(wd) > written:
        return None, None, None
    from cinefuse.store import open_store

    store = open_store(location)
    if name not in store.feature_sets():
        return None, None, None
    fa = store.load_feature_set(name)
    keep = np.asarray(fa.valid, bool)
    return np.asarray(fa.ids, dtype=str)[keep], np.asarray(fa.data, np.float32)[keep], f"{location} ({name})"


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


def unknown_item_error(item: str, ids: np.ndarray, titles: dict[str, str], model: str,
                       wd: Workdir | None = None, trained: str | None = None) -> CinefuseError:
    """A message naming the item and the closest ids and titles; or, for an item the feature
    store holds but the model left out, which of its feature sets is invalid and why."""
    reason = dropped_reason(wd, trained or model, item) if wd is not None else None
    if reason:
        return CinefuseError(reason)
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


def build_recommend_index(workdir, model: str | None = None, kind: str = "auto") -> dict:
    """Writes ``W/index/<model>`` (``<model>+prior``: the prior as an extra dimension, so a flat
    index is exact for ``cos + w * prior``) over the served model's vectors; returns its record."""
    from cinefuse.evaluate.index import build_index, write_index

    wd = Workdir(workdir)
    served = choose_served(wd, model)
    ids, candidates, tail, source = load_catalogue(wd, served)
    index, record = build_index(candidates, kind, normalise=False)
    record.update({"model": served.name, "source": source, "why": served.why})
    if served.prior_weight is not None:
        record.update(prior_weight=served.prior_weight,
                      metric="cosine + prior_weight * prior: the prior as an extra dimension (exact with flat)")
    write_index(wd.index_dir(served.name), index, ids, record)
    return record


def _fresh_index(wd: Workdir, served: Served):
    """The served model's index when built after its parameters and after the feature store last
    changed, else None (stale: exact scan)."""
    from cinefuse.evaluate.index import RECORD_FILE, open_index

    directory = wd.index_dir(served.name)
    params = wd.params_dir(served.model)
    record = directory / RECORD_FILE
    if not record.is_file():
        return None
    built = record.stat().st_mtime
    if (params.exists() and params.stat().st_mtime > built) or feature_store_mtime(wd) > built:
        return None
    return open_index(directory)


def recommend(workdir, item: str, k: int = 10, model: str | None = None, movies=None,
              use_index: bool = True) -> Recommendation:
    """The ``k`` items closest to ``item`` under the served model (``model``: ``NAME`` or
    ``NAME+prior``; None: validation's choice, :func:`~cinefuse.evaluate.serving.choose_served`)."""
    workdir = Path(workdir)
    wd = Workdir(workdir)
    if k < 1:
        raise CinefuseError(f"-k {k}: ask for at least 1 recommendation")
    served = choose_served(wd, model)
    titles = titles_for(wd.config(), movies)
    item = str(item).strip()
    item_index = _fresh_index(wd, served) if use_index else None
    if item_index is not None:
        ids = item_index.ids
        where = np.flatnonzero(ids == item)
        if where.size == 0:
            raise unknown_item_error(item, ids, titles, served.name, wd, served.model)
        query = item_index.vectors(where[:1])
        if served.prior_weight is not None:
            query[:, -1] = served.prior_weight
        rows, scores = item_index.search(query, k, self_rows=where[:1])
        return Recommendation(item, titles.get(item), served.name, str(wd.index_dir(served.name)),
                              _ranked(ids, rows[0], scores[0], titles), item_index.record, served.why)
    ids, candidates, tail, source = load_catalogue(wd, served)
    where = np.flatnonzero(ids == item)
    if where.size == 0:
        raise unknown_item_error(item, ids, titles, served.name, wd, served.model)
    row = int(where[0])
    query = candidates[row:row + 1].copy()
    query[:, candidates.shape[1] - tail.size:] = tail  # the prior weight in the prior's column
    topk, scores = top_k_cosine(query, candidates, k, self_index=np.array([row]), normalise=False)
    return Recommendation(item, titles.get(item), served.name, source, _ranked(ids, topk[0], scores[0], titles),
                          None, served.why)


def _ranked(ids: np.ndarray, rows: np.ndarray, scores: np.ndarray, titles: dict[str, str]) -> list[dict]:
    return [{"rank": r + 1, "id": str(ids[c]), "score": float(s), "title": titles.get(str(ids[c]))}
            for r, (c, s) in enumerate(zip(rows.tolist(), scores.tolist())) if c >= 0]


def format_recommendation(rec: Recommendation) -> str:
    """The command's text: a head naming the item (or the user and their history), the model
    and why it answers, then rank, id, score and title per line."""
    if rec.history is None:
        head = f"top {len(rec.results)} items like {rec.item}" + (f" ({rec.title})" if rec.title else "")
    else:
        head = f"top {len(rec.results)} items for {rec.item} (history: {rec.history} liked item(s) the model embeds)"
    lines = [f"{head}  [model {rec.model}]"]
    if rec.why and rec.why != "asked for":
        lines.append(f"  ({rec.why})")
    if rec.index is not None:
        from cinefuse.evaluate.index import describe_record

        lines.append(f"through the {describe_record(rec.index)} index in {rec.source}")
    lines.append(f"{'rank':>4}  {'id':>8}  {'score':>7}  title")
    for r in rec.results:
        lines.append(f"{r['rank']:>4}  {r['id']:>8}  {r['score']:>7.4f}  {r['title'] or '-'}")
    return "\n".join(lines)
