"""The job of one evaluation: the workdir's run, its data, the protocol and cut-offs
(:func:`open_job`, every user mistake a clear error before any work), and every trained model
loaded once (:func:`load_models`: ids, embeddings and prior in one ``fuse.embed.load_embedded``
each, the feature sets they need read from the store once). The ratings are read as
:class:`RatingsSource` says: each of its options, else the workdir config's ``data.ratings_sep``,
``data.ratings_columns`` and ``data.on_bad_ratings``, else ``load_ratings``' defaults."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cinefuse.errors import CinefuseError
from cinefuse.evaluate.results import parse_ks
from cinefuse.evaluate.serving import check_workdir, untrained_error
from cinefuse.fuse.config import FuseConfig
from cinefuse.fuse.workdir import Workdir
from cinefuse.choices import EVAL_PROTOCOLS


@dataclass
class Job:
    """One evaluation: the workdir's run, its data, the protocol and cut-offs."""

    wd: Workdir
    config: FuseConfig
    protocol: str
    ks: tuple[int, ...]
    threshold: float
    models: list[str]
    ratings: Any            # cinefuse.datasets.movielens.Ratings
    movies: Any             # Movies or None
    store: Any              # the feature store the models read


@dataclass(frozen=True)
class RatingsSource:
    """Which ratings file and how to read it (``evaluate --ratings``, ``--ratings-sep``,
    ``--ratings-columns``, ``--on-bad-ratings``); None: the workdir config's choice. Passed where a
    ratings path goes (``run_evaluate(ratings=...)``)."""

    path: str | None = None
    sep: str | None = None
    columns: str | None = None       # "user,item,rating[,timestamp]": header names or 1-based positions
    on_bad_ratings: str | None = None  # cinefuse.choices.ON_BAD_RATINGS


def ratings_options(config: FuseConfig, source: RatingsSource) -> dict[str, Any]:
    """``load_ratings`` keywords: each option of ``source``, else the config's ``data.ratings_*`` key
    (absent or empty: ``load_ratings``' default)."""
    d = config.data
    recorded = {"sep": getattr(d, "ratings_sep", None), "columns": getattr(d, "ratings_columns", None),
                "on_bad_ratings": getattr(d, "on_bad_ratings", None)}
    chosen = {key: getattr(source, key) if getattr(source, key) is not None else recorded[key] for key in recorded}
    return {key: value for key, value in chosen.items() if value not in (None, "", [])}


def data_sources(config: FuseConfig, store=None, ratings=None, movies=None, endpoint_url=None) -> dict[str, str | None]:
    """Where the run's store, ratings and movies live: each override, else the fuse config's."""
    d = config.data

    def pick(override, recorded):
        if override is not None:
            return str(override)
        return str(recorded) if recorded else None

    return {"store": pick(store, d.store), "ratings": pick(ratings, d.ratings), "movies": pick(movies, d.movies),
            "endpoint_url": pick(endpoint_url, d.endpoint_url)}


def open_job(workdir, ks, protocol, threshold, store, ratings, movies, endpoint_url) -> Job:
    """The run's config and data, every user mistake a clear error before any work. ``ratings``: a
    path, a :class:`RatingsSource` or None (the config's file)."""
    from cinefuse.datasets.movielens import load_movies, load_ratings
    from cinefuse.store import open_store

    wd = Workdir(workdir)
    ks = parse_ks(ks)
    source = ratings if isinstance(ratings, RatingsSource) else RatingsSource(path=ratings)
    if protocol not in EVAL_PROTOCOLS:
        raise CinefuseError(f"unknown protocol {protocol!r}; choose one of {', '.join(EVAL_PROTOCOLS)}")
    check_workdir(wd)
    config = wd.config()
    sources = data_sources(config, store, source.path, movies, endpoint_url)
    if threshold is None:  # the like threshold the pairs were built with
        threshold = float(config.pairs.like_threshold)
    for key in ("store", "ratings"):
        if sources[key] is None:
            raise CinefuseError(f"{wd.root}/config.json names no {key}; pass --{key} PATH")
    models = wd.models()
    if not models:
        raise untrained_error(wd)
    rows = load_ratings(sources["ratings"], **ratings_options(config, source))
    return Job(wd, config, protocol, ks, threshold, models, rows,
               load_movies(sources["movies"]) if sources["movies"] else None,
               open_store(sources["store"], endpoint_url=sources["endpoint_url"]))


def load_models(job: Job, bar) -> tuple[dict, dict[str, float]]:
    """Every trained model loaded once (name -> ``EmbeddedModel``) and the seconds each took, the
    shared store read charged evenly."""
    from cinefuse.fuse.embed import load_embedded

    start = time.perf_counter()
    table = shared_table(job)
    load_seconds = (time.perf_counter() - start) / len(job.models)
    models, seconds = {}, {}
    for model in job.models:
        start = time.perf_counter() - load_seconds
        models[model] = load_embedded(job.wd.root, model, table=table)
        seconds[model] = time.perf_counter() - start
        bar.update(1)
    return models, seconds


def shared_table(job: Job):
    """One store read holding every feature set any model needs (None: let each model load)."""
    names: list[str] = []
    for model in job.models:
        try:
            sets = job.wd.run_record(model).feature_sets
        except (CinefuseError, KeyError):
            return None
        names += [n for n in sets if n not in names]
    return job.store.load(names) if names else None
