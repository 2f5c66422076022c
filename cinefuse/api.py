"""The Python API: what the ``cinefuse`` command does, as functions (docs/API.md shows each in use).

Every function takes keyword arguments only, delegates to the stage that does the work and
returns that stage's own object (an extract summary, an ``ImportResult``, a ``FuseConfig``, a
fuse summary, ``Results``, a ``Recommendation``, an ``EmbeddedModel``), so the names here stay
stable while the modules behind them move. Mistakes raise :class:`cinefuse.errors.CinefuseError`
with the one-line message the command prints. Nothing heavy is imported here at import time:
``import cinefuse.api`` loads neither torch nor jax; each function imports its stage when called.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Callable

PathLike = str | os.PathLike
DEFAULT_KS = (1, 3, 5, 10)  # cinefuse.evaluate.results.DEFAULT_KS (that module imports numpy)

__all__ = [
    "build_index", "evaluate", "export", "extract", "fuse", "fuse_config", "import_features", "list_models",
    "load_embeddings", "open_store", "recommend_for_item", "recommend_for_user", "served_model",
]


# -- extract and the store ----------------------------------------------------------------------
def extract(*, store: PathLike | None = None, manifest: PathLike | None = None, videos: PathLike | None = None,
            config: PathLike | None = None, **options: Any) -> dict:
    """``cinefuse extract``: run the backbones once over a manifest or a video folder into ``store``
    (a folder, or ``s3://bucket/prefix`` with ``endpoint_url=``). ``config``: an extract TOML
    file (which may name the store and the manifest); ``options``: any other
    :class:`~cinefuse.extract.config.ExtractConfig` key
    (``visual=["lowlevel"]``, ``frames=8``, ``workers=0``, ``progress=False``, ...), which
    override the file. Returns the run summary (``processed``, ``skipped``, ``failed``,
    ``by_status``, ``failed_items``, ...; ``cinefuse.extract.run``). Resumes like the command."""
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract

    given = {"store": _str(store), "manifest": _str(manifest), "videos": _str(videos), **options}
    return run_extract(ExtractConfig.from_toml(config, **given))


def import_features(*, store: PathLike, source: PathLike, name: str, description: str = "",
                    format: str | None = None, id_column: str | None = None, vector_column: str | None = None,
                    columns: Sequence[str] | None = None, delimiter: str | None = None, ids: PathLike | None = None,
                    ids_key: str = "ids", data_key: str | None = None, dtype: str = "float32",
                    unknown_ids: str = "skip", ids_from: PathLike | None = None):
    """``cinefuse store import``: precomputed per-item features from ``source`` (CSV/TSV, NPY with
    ``ids=``, NPZ, Parquet, JSON, a folder of ``<id>.json``) into the local ``store`` as the
    feature set ``name`` (``visual/...``, ``audio/...``, ``text/...``); the reading options are
    the command's. Returns the :class:`~cinefuse.store.importer.ImportResult` (``valid`` of
    ``items`` rows, ``unknown_ids`` skipped, ``changed`` False when the same import was there)."""
    from cinefuse.store.import_formats import ReadOptions
    from cinefuse.store.importer import import_features as run_import

    options = ReadOptions(format=format, id_column=id_column, vector_column=vector_column,
                          columns=list(columns) if columns is not None else None, delimiter=delimiter,
                          ids=_str(ids), ids_key=ids_key, data_key=data_key)
    return run_import(store, source, name, description, options, dtype=dtype, unknown_ids=unknown_ids,
                      ids_from=_str(ids_from))


def open_store(*, path: PathLike, endpoint_url: str | None = None):
    """The feature store at ``path`` (:class:`cinefuse.store.Store`: ``ids()``,
    ``feature_sets()``, ``load(names)`` -> ``Table``, ``load_feature_set(name)``)."""
    from cinefuse.store import open_store as open_feature_store

    return open_feature_store(path, endpoint_url=endpoint_url)


# -- fuse -----------------------------------------------------------------------------------------
def fuse_config(*, toml: PathLike | None = None, **sections: dict) -> Any:
    """A validated :class:`~cinefuse.fuse.config.FuseConfig`: the defaults, then the ``toml``
    file, then ``sections`` (``train={"steps": 100}``, ``model={"modalities": "text+meta"}``),
    with the same keys and checks as ``fuse --config``."""
    from cinefuse.fuse.config import load_config

    return load_config(toml, sections)


def fuse(*, workdir: PathLike, config: Any = None, store: PathLike | None = None,
         ratings: PathLike | None = None, movies: PathLike | None = None, grid: bool = False,
         steps: int | None = None, seed: int | None = None, seeds: Sequence[int] | None = None,
         progress: bool = False, log: Callable[[str], None] | None = None) -> dict:
    """``cinefuse fuse``: train into ``workdir`` (resumes when it holds the same run). ``config``:
    a ``FuseConfig`` (:func:`fuse_config`), a dict of sections or a TOML path (default: every
    default); ``store``, ``ratings``, ``movies``, ``steps``, ``seed`` and ``seeds`` override it as
    the command's options do. ``grid``: the ablation grid. ``log``: where the run's lines go
    (default stderr). Returns the summary: ``models``, ``runs`` (one summary per model, with its
    validation figures), ``items``, ``table`` (the text the command prints)."""
    from cinefuse.fuse.train import run_fuse

    overrides = {"data": {"store": _str(store), "ratings": _str(ratings), "movies": _str(movies)},
                 "train": {"steps": steps, "seed": seed, "seeds": list(seeds) if seeds is not None else None}}
    return run_fuse(_with_overrides(config, overrides), workdir, grid=grid, log=log, progress=progress)


def _with_overrides(config: Any, overrides: dict) -> Any:
    """``config`` (None, a TOML path, a dict or a FuseConfig) with the non-None ``overrides``."""
    from cinefuse.fuse.config import FuseConfig, config_from_dict, load_config

    if config is None or isinstance(config, (str, os.PathLike)):
        return load_config(config, overrides)
    data = json.loads(json.dumps(config.to_dict() if isinstance(config, FuseConfig) else config))
    for section, values in overrides.items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return config_from_dict(data)


# -- evaluate -------------------------------------------------------------------------------------
def evaluate(*, workdir: PathLike, task: str = "both", ks: Sequence[int] | str = DEFAULT_KS,
             protocol: str = "cold-item", threshold: float | None = None, store: PathLike | None = None,
             ratings: PathLike | None = None, movies: PathLike | None = None, ratings_sep: str | None = None,
             ratings_columns: str | None = None, on_bad_ratings: str | None = None,
             endpoint_url: str | None = None, fused_store: PathLike | None = None, seed: int = 0,
             tie_break: str = "random", tie_seed: int = 0, write: bool = True, progress: bool = False) -> dict:
    """``cinefuse evaluate``: score every trained model of ``workdir`` and the baselines. Returns a
    dict task name -> :class:`~cinefuse.evaluate.results.Results` (one entry per task: ``task``
    is "item-to-item", "user-to-item" or "both"). ``write``: also write the tables, plots and
    fused embeddings as the command does (``Results.outputs`` names the files)."""
    from cinefuse.evaluate.job import RatingsSource
    from cinefuse.evaluate.run import run_evaluate

    source = RatingsSource(_str(ratings), ratings_sep, ratings_columns, on_bad_ratings)
    results = run_evaluate(workdir, ks=ks, protocol=protocol, threshold=threshold, store=store, ratings=source,
                           movies=movies, fused_store=fused_store, endpoint_url=endpoint_url, seed=seed,
                           write=write, progress=progress, tie_break=tie_break, tie_seed=tie_seed, task=task)
    return results if isinstance(results, dict) else {results.task: results}


# -- trained models, recommendations, embeddings ------------------------------------------------
def list_models(*, workdir: PathLike) -> list[str]:
    """The trained models of ``workdir`` (folders under ``W/runs``), by name."""
    from cinefuse.fuse.embed import list_models as trained

    return trained(workdir)


def served_model(*, workdir: PathLike, model: str | None = None):
    """The model that answers recommendations (:class:`~cinefuse.evaluate.serving.Served`:
    ``name``, ``model``, ``prior_weight``, ``why``): ``model`` (``NAME`` or ``NAME+prior``), or
    by default the one validation chose, as ``cinefuse recommend`` picks it."""
    from cinefuse.evaluate.serving import choose_served
    from cinefuse.fuse.workdir import Workdir

    return choose_served(Workdir(workdir), model)


def recommend_for_item(*, workdir: PathLike, item: str, k: int = 10, model: str | None = None,
                       movies: PathLike | None = None, exact: bool = False):
    """``cinefuse recommend``: the ``k`` items closest to ``item`` (a film the model never saw
    included). Returns the :class:`~cinefuse.evaluate.recommend.Recommendation` (``results``:
    ``{"rank", "id", "score", "title"}`` dicts; ``model``, ``why``, ``source``)."""
    from cinefuse.evaluate.recommend import recommend

    return recommend(workdir, item, k=k, model=model, movies=movies, use_index=not exact)


def recommend_for_user(*, workdir: PathLike, liked: Iterable[str] | None = None, user: int | None = None,
                       k: int = 10, model: str | None = None, among: Iterable[str] | None = None,
                       movies: PathLike | None = None):
    """``cinefuse recommend --user/--liked``: the ``k`` items a user would like, ranked as
    evaluate's user-to-item task ranks them: by the cosine to the mean of the unit embeddings of
    the items the user liked (plus ``w * prior`` for a ``+prior`` model, ``w`` the run's
    user-to-item weight). ``liked``: those item ids; or ``user``: a user id of the run's ratings,
    whose liked items (rating >= the run's like threshold) are the history. Items the user liked
    or rated are never recommended; ``among`` restricts the candidates (e.g. the split's cold test
    items). ``model``: default the one user-to-item validation chose. Returns a
    ``Recommendation`` whose ``item`` names the user and ``history`` counts the liked items used."""
    from cinefuse.evaluate.recommend_user import recommend_for_user as recommend_user

    return recommend_user(workdir, liked=liked, user=user, k=k, model=model, among=among, movies=movies)


def build_index(*, workdir: PathLike, model: str | None = None, kind: str = "auto") -> dict:
    """``cinefuse index build``: a faiss index in ``W/index/<model>`` that
    :func:`recommend_for_item` then answers through; returns its record (``index.json``)."""
    from cinefuse.evaluate.recommend import build_recommend_index

    return build_recommend_index(workdir, model, kind)


def load_embeddings(*, workdir: PathLike, model: str | None = None, table: Any = None):
    """A trained model's fused embeddings of every item it can embed (a film added to the store
    after training included): :class:`~cinefuse.fuse.embed.EmbeddedModel` with ``ids`` (N,),
    ``emb`` (N, E) float32 L2-normalised, ``prior`` and ``prior_weight`` (None without a prior
    head), ``counts``. ``model``: default the one validation chose (:func:`served_model`).
    ``table``: a ``cinefuse.store.Table`` to embed instead of the run's store."""
    from cinefuse.fuse.embed import load_embedded

    name = model if model is not None else served_model(workdir=workdir).model
    return load_embedded(workdir, name, table=table)


# -- out to other tools -------------------------------------------------------------------------
def export(*, format: str, out: PathLike, sets: Sequence[str] | str, workdir: PathLike | None = None,
           store: PathLike | None = None, ratings: PathLike | None = None, name: str = "cinefuse",
           endpoint_url: str | None = None):
    """``cinefuse export FORMAT``: ``sets`` (raw sets, ``fused/<model>``, ``fused/<model>.prior``)
    of ``store`` (default: the workdir's) and, with ``workdir``, its split and ratings, into the
    new folder ``out`` in ``format`` (``cinefuse.choices.EXPORT_FORMATS``: cornac, recbole, mmrec,
    elliot, parquet, npz), with ``export.json`` and ``README.txt``. Returns the
    :class:`~cinefuse.export.folder.ExportResult` (``items``, ``interactions`` per part,
    ``skipped``/``dropped`` counts, ``files``, ``readme``)."""
    from cinefuse.export.run import export as run_export

    return run_export(format, _str(out), sets, store=_str(store), workdir=_str(workdir), ratings=_str(ratings),
                      endpoint_url=endpoint_url, name=name)


def _str(path: PathLike | None) -> str | None:
    return None if path is None else str(Path(path)) if isinstance(path, os.PathLike) else path
