"""Preparation: the split, the features and the targets a fuse run trains on.

``prepare`` makes (or reads back) the split (``split.json``, ``pairs.npz``; process 0 writes it),
loads the feature sets of the split's items and the validation likes the selection metric reads,
and keeps the ratings training may see (the training items', before the cut under
``cold-item-time``: ``fuse.pairs.training_ratings``). ``targets_for`` builds an objective's
targets from them once (``fuse.targets``; ``target_config`` is the one derivation of their
settings) and ``objective_arrays`` the host arrays the step reads (``objectives.Objective.host_arrays``).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.fuse import distributed, objectives
from cinefuse.fuse.config import FuseConfig, ObjectiveConfig
from cinefuse.fuse.features import FeatureTable, load_features, pack_genre_words
from cinefuse.fuse.pairs import PARTS, load_split_arrays, make_split, split_arrays, training_ratings
from cinefuse.fuse.workdir import Workdir, write_json

MIN_ITEMS = 10  # items with features, ratings and a movie entry: fewer cannot make a three-way split


@dataclass
class Prepared:
    ids: np.ndarray                      # split items, pairs index into these
    table: FeatureTable                  # rows aligned with ids, raw (unstandardised)
    words: np.ndarray                    # (N, W) uint32 genre bits
    arrays: dict                         # pairs.npz content
    split: dict                          # split.json content
    counts: dict = field(default_factory=dict)
    train_rows: np.ndarray = None        # (I,) rows of the training items: the targets' item order
    val_rows: np.ndarray = None          # (V,) rows of the validation items
    val_likes: object = None             # (U, V) likes of the validation items (users with >= 2): dense or
                                         #   device_ranking.Likes above DENSE_LIKES cells
    seen: object = None                  # the Ratings training may see (training items, before the cut)
    targets: dict = field(default_factory=dict)   # (kind, settings, parts) -> cinefuse.fuse.targets.Targets
    validation: object = None            # fuse.validation.ValidationSet: both tasks' validation likes


def target_config(config: FuseConfig, objective: ObjectiveConfig):
    """The one derivation of the targets' settings from the objective's (and the like threshold)."""
    from cinefuse.fuse.targets import TargetConfig

    return TargetConfig(like_threshold=float(config.pairs.like_threshold), association=objective.association,
                        n_partners=objective.partners, min_co_likes=objective.min_co_likes,
                        ease_lambda=objective.ease_lambda, teacher_dim=objective.teacher_dim,
                        max_co_products=float(objective.max_co_products))


def targets_for(data: Prepared, config: FuseConfig, objective: ObjectiveConfig, log=print):
    """The objective's targets over the training items, from the ratings training may see
    (built once per settings and kept in ``data.targets``)."""
    from cinefuse.fuse.targets import build_targets

    parts = objectives.of(objective).target_parts(objective)
    cfg = target_config(config, objective)
    key = (objective.kind, astuple(cfg), parts)
    if key not in data.targets:
        seen = data.seen
        tg = build_targets(seen.user, seen.item, seen.rating, data.ids[data.train_rows], cfg, config.train.seed, parts)
        if parts:
            log(f"targets for {objective.kind}: {tg.stats} in {sum(tg.seconds.values()):.1f} s")
        data.targets[key] = tg
    return data.targets[key]


def prepare(config: FuseConfig, workdir: Path, feature_sets: list[str], log=print,
            needs_triplets: bool = True) -> Prepared:
    """The split (written once, read back by every process), the feature table aligned with the
    split's items, their genre words, the validation likes and the ratings training may see.
    ``needs_triplets``: an objective of the run trains on the stored pairs (they must exist)."""
    from cinefuse.datasets.movielens import load_movies, load_ratings

    d = config.data
    table = load_features(d.store, feature_sets, endpoint_url=d.endpoint_url, require=d.require)
    counts = dict(table.counts)
    log_combinations(counts, log)
    ratings = load_ratings(d.ratings, sep=d.ratings_sep, columns=d.ratings_columns, on_bad_ratings=d.on_bad_ratings,
                           require_timestamp=config.split.protocol == "cold-item-time", log=log)
    movies = load_movies(d.movies)
    movie_pos = {m: k for k, m in enumerate(movies.ids.tolist())}
    rated = set(np.unique(ratings.item).tolist())
    universe = [i for i in table.ids.tolist() if i in movie_pos and i in rated]
    counts["without_ratings_or_movie"] = int(len(table.ids) - len(universe))
    if len(table.ids) == 0:
        raise CinefuseError(
            f"no item of store {d.store} holds a valid row of {'every one' if d.require == 'all' else 'any'} of "
            f"{', '.join(feature_sets)} (data.require = {d.require!r}; `cinefuse store info {d.store}` shows each "
            "set's coverage): re-extract those sets, train on others (--modalities) or set data.require = \"any\"")
    if len(universe) < MIN_ITEMS:
        with_movie = sum(i in movie_pos for i in table.ids.tolist())
        raise CinefuseError(
            f"only {len(universe)} items of store {d.store} have features, ratings and a movie entry ({len(table.ids)} "
            f"hold features, {with_movie} of them are in the movies file); fuse needs at least {MIN_ITEMS}: check "
            "that the store ids are the movie ids of the ratings file")
    wd = Workdir(workdir)
    # process 0 writes the split, the others read it once written (the same for every process)
    if not distributed.is_writer() or (wd.split_path.is_file() and wd.pairs_path.is_file()):
        distributed.barrier("cinefuse-split")
        split_json, arrays = wd.split(), load_split_arrays(wd.pairs_path)
    else:
        split = make_split(ratings, movies, universe, config.pairs, config.split.protocol, config.train.seed,
                           config.split.fractions)
        wd.save_split_arrays(split_arrays(split))
        split_json = split.split_json()
        split_json["stats"] = split.stats()
        write_json(wd.split_path, split_json)
        arrays = load_split_arrays(wd.pairs_path)
        distributed.barrier("cinefuse-split")
    ids = arrays["ids"].astype(object)
    row = {k: r for r, k in enumerate(table.ids.tolist())}
    table = table.take(np.array([row[i] for i in ids.tolist()], dtype=np.int64))
    words = pack_genre_words([movies.genres[movie_pos[i]] for i in ids.tolist()])
    if needs_triplets:
        for part in PARTS:
            if len(arrays[f"{part}_pairs"]) == 0 and part != "test":
                raise CinefuseError(f"the {part} split has no pairs; use more items or lower [pairs] thresholds")
        if len(arrays["train_triplets"]) == 0:
            raise CinefuseError("no training triplets; use more items or lower [pairs] thresholds")
    from cinefuse.fuse import validation

    row_of = {k: r for r, k in enumerate(ids.tolist())}
    train_rows = np.array([row_of[i] for i in split_json["train"] if i in row_of], dtype=np.int64)
    val_rows = np.array([row_of[i] for i in split_json["val"] if i in row_of], dtype=np.int64)
    seen = training_ratings(ratings, ids[train_rows], split_json.get("cut_timestamp"))
    # only users with two liked validation items can ever be scored (one query, one relevant)
    vs = validation.build(ratings, seen, ids, train_rows, val_rows, float(config.pairs.like_threshold),
                          config.train.seed)
    if (vs.likes.shape[0] if isinstance(vs.likes, np.ndarray) else vs.likes.n_users) == 0:
        raise CinefuseError(f"no user liked two of the {len(val_rows)} validation items, so validation nDCG@10 "
                            "is undefined; use more items or ratings")
    if vs.relevant.n_users == 0 and config.selection.task == validation.U2I:
        raise CinefuseError("no user liked both a training and a validation item, so validation Recall@20 is "
                            "undefined; use [selection] task = \"item-to-item\", more items or more ratings")
    return Prepared(ids, table, words, arrays, split_json, counts, train_rows, val_rows, vs.likes, seen,
                    validation=vs)


def log_combinations(counts: dict, log=print) -> None:
    """How many items hold each combination of the run's feature sets, and how many were left out."""
    rule = "every set" if counts["require"] == "all" else "at least one set"
    log(f"features: {counts['kept']} of {counts['items']} items hold {rule} "
        f"({counts['excluded_missing_modality']} excluded; [data] require = {counts['require']!r})")
    for combo, n in counts["combinations"].items():
        log(f"  {n:>7} items hold {combo}")


def objective_arrays(data: Prepared, config: FuseConfig, objective: ObjectiveConfig, log=print) -> dict:
    """The host arrays ``fuse.step`` reads for ``objective`` (``DeviceData.targets``): the
    training rows, the prior's targets with ``objective.prior``, and the objective's own."""
    kind = objectives.of(objective)
    if not kind.target_parts(objective) and not objective.prior:
        return {}
    tg = targets_for(data, config, objective, log)
    out = {"train_rows": data.train_rows.astype(np.int32)}
    if objective.prior:
        prior = np.zeros(len(data.ids), np.float32)
        prior[data.train_rows] = tg.prior
        out["prior"] = prior
    kind.host_arrays(objective, tg, out)
    return out
