"""Training: one canonical trainer for a single configuration or an ablation grid.

``run_fuse(config, workdir, grid=False)`` is the whole stage as a function (the CLI is a thin shell
over it). The workdir is the single source of truth: ``config.json`` (the full record of the run),
``split.json`` and ``pairs.npz`` (deterministic for the seed), and one folder per trained model in
``runs/<model>/`` with ``config.json``, ``metrics.jsonl``, ``curves.png``, ``distances.png``,
``checkpoints/`` (orbax, for resume), ``params/`` (the final parameters), ``feature_stats.npz``
and ``summary.json``. Running the same command again resumes from the newest checkpoint; a run
that finished is not trained again.

How a step runs (``cinefuse.fuse.step``, pure functions jitted once): the whole feature table
sits on the device; each step samples a batch of training triplets with ``jax.random`` (the key is
``fold_in(seed_key, step)``, so the stream depends only on the step and a resumed run draws
exactly the batches an uninterrupted one would), gathers their features, takes the loss and
applies an optax AdamW update with global-norm clipping and a warmup-cosine schedule. ``lax.scan``
fuses ``steps_per_call`` steps into one jitted call. The workdir's layout is
``cinefuse.fuse.workdir``'s. A grid is planned as groups of configurations
that really share shapes (the same feature sets and head; ``plan_runs``), so no member computes an
encoder it does not use; each group is one program whose members see the same batches, their
parameters stacked on a leading axis, built either with ``jax.vmap`` or with the members unrolled
in one scan body (``train.grid_program``; see ``step.make_update``). With
several local devices each batch is sharded over them (``jax.sharding``, data parallel), the
parameters replicated; on several processes or hosts ``jax.distributed`` joins them into one mesh
(``train.distributed = true`` or ``--process-id`` and friends; each runs the same command on the
same store and workdir; ``cinefuse.fuse.distributed``).
Validation, early stopping, checkpoints and logging happen every ``eval_every`` steps only. The
selection metric is the pinned nDCG@10 over the validation cold items (queries and candidates
both the split's validation items, relevance their likes in the ratings, ties in a seeded random
order; ``metrics.device_ranking`` on the device): early stopping and the kept parameters follow
it. Genre-pair ROC AUC on the validation pairs is logged beside it as a diagnostic.

Objectives (``[objective]``, ``cinefuse.fuse.step``): a grid group shares one objective, so its
members share one batch; the targets come from the training ratings only
(``fuse.pairs.training_ratings``: the training items' ratings, before the cut under
``cold-item-time``) through ``fuse.targets``. With ``objective.prior`` the tower's prior head is
trained beside the embedding and, after training, its weight in ``cos + w * prior`` is chosen
on the validation items by nDCG@10 over ``objective.prior_weights`` (``prior_weight`` in the
model's summary.json; 0 when the prior does not help).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.interrupts import DeferredInterrupt
from cinefuse.fuse import distributed
from cinefuse.fuse.config import (
    FuseConfig,
    LossConfig,
    ModelConfig,
    ObjectiveConfig,
    as_config,
    describe_modalities,
    model_name,
    modalities_label,
    resolve_feature_sets,
    resolve_modalities,
    thesis_allows,
)
from cinefuse.fuse.features import (
    FeatureTable,
    apply_standardization,
    load_features,
    pack_genre_words,
    standardization,
    store_feature_kinds,
)
from cinefuse.fuse.pairs import PARTS, load_split_arrays, make_split, save_split, training_ratings
from cinefuse.fuse.workdir import Workdir, write_json

VALIDATION_K = 10          # the selection metric is nDCG@10 (DESIGN.md, Model selection)
TIE_STREAM = 0x7E5         # folded into the seed: the validation's random tie order


# -- what to train ------------------------------------------------------------------------------
@dataclass
class RunSpec:
    name: str
    loss: LossConfig
    model: ModelConfig
    feature_sets: list[str]          # the sets the tower is built over (a grid group: their union)
    token_mask: list[int]            # 1 for the sets this configuration uses
    objective: ObjectiveConfig = field(default_factory=lambda: ObjectiveConfig(kind="thesis"))

    def record(self, config: FuseConfig) -> dict:
        return {"name": self.name, "loss": asdict(self.loss), "margin": self.loss.resolved_margin(),
                "model": asdict(self.model), "feature_sets": self.feature_sets, "token_mask": self.token_mask,
                "train": asdict(config.train), "pairs": asdict(config.pairs), "split": asdict(config.split),
                "data": asdict(config.data), "objective": asdict(self.objective)}


def _members(config: FuseConfig, objective: ObjectiveConfig, mods, model: ModelConfig, sets: list[str],
             losses: list[str], distances: list[str]) -> list[RunSpec]:
    """One group's members: losses x distances where the objective trains through [loss] (thesis,
    co-like with ``co_like_loss = "loss"``), else the one member its own loss defines."""
    through_loss = objective.kind == "thesis" or (objective.kind == "co-like" and objective.co_like_loss == "loss")
    pairs = [(k, d) for k in losses for d in distances] if through_loss else [(config.loss.kind, config.loss.distance)]
    out = []
    for kind, distance in pairs:
        loss = LossConfig(**{**asdict(config.loss), "kind": kind, "distance": distance,
                             "margin": config.loss.margin if kind == config.loss.kind else None})
        name = model_name(kind, distance, mods, model.head, objective.kind, objective.co_like_loss)
        out.append(RunSpec(name, loss, model, sets, [1] * len(sets), objective))
    return out


def plan_runs(config: FuseConfig, grid: bool) -> list[list[RunSpec]]:
    """Groups of runs; each group is one program (``GroupTrainer``).

    A group holds configurations that really share shapes and batches: one objective, the same
    feature sets and head, so the same parameter layout and the same sampled batch, differing only
    in loss and distance (selected per member inside the one program). Grouping by objective (not
    mixing objectives in one program) is because each objective draws a batch of another shape
    from other targets and may add parameters (the distill kernel): a mixed group would compute
    every objective's batch for every member. No member computes an encoder it does not use: the
    grid's ``visual``, ``visual+audio`` and ``full`` members are three groups per objective
    (thesis: {pair, triplet} x {cosine, euclidean}; a co-preference objective: one member), and
    every other head is a group of its own. ``grid.objectives`` (default: ``[objective].kind``)
    multiplies all of it; the thesis skips modality sets holding its labels (``meta/genres``).
    """
    sets_of = lambda mods: resolve_feature_sets(mods, config.data.modality_sets)  # noqa: E731
    if not grid:
        sets = sets_of(config.model.modalities)
        return [_members(config, config.objective, config.model.modalities, config.model, sets,
                         [config.loss.kind], [config.loss.distance])]
    g = config.grid
    groups: list[list[RunSpec]] = []
    for kind in g.objectives or [config.objective.kind]:
        objective = ObjectiveConfig(**{**asdict(config.objective), "kind": kind})
        for mods in g.modalities:
            sets = sets_of(mods)
            if kind == "thesis" and not thesis_allows(sets):
                continue
            model = ModelConfig(**{**asdict(config.model), "modalities": mods})
            group = _members(config, objective, mods, model, sets, g.losses, g.distances)
            if group:
                groups.append(group)
        for head in g.heads:
            sets = sets_of(config.model.modalities)
            if head == config.model.head or (kind == "thesis" and not thesis_allows(sets)):
                continue
            model = ModelConfig(**{**asdict(config.model), "head": head})
            groups.append(_members(config, objective, config.model.modalities, model, sets,
                                   [config.loss.kind], [config.loss.distance]))
    return groups


# -- data -------------------------------------------------------------------------------------
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
    val_likes: np.ndarray = None         # (U, V) bool likes of the validation items (users with >= 2)
    seen: object = None                  # the Ratings training may see (training items, before the cut)
    targets: dict = field(default_factory=dict)   # objective kind -> cinefuse.fuse.targets.Targets


def targets_for(data: Prepared, config: FuseConfig, objective: ObjectiveConfig, log=print):
    """The objective's targets over the training items, from the ratings training may see
    (built once per kind and kept in ``data.targets``)."""
    from cinefuse.fuse.targets import TargetConfig, build_targets

    parts = {"thesis": (), "co-like": ("partners",), "history": ("histories",),
             "distill": ("teacher", "ease") if objective.teacher == "ease" else ("teacher",)}[objective.kind]
    key = (objective.kind, objective.association, objective.partners, objective.min_co_likes, objective.teacher_dim,
           objective.ease_lambda, objective.max_co_products, parts)
    if key not in data.targets:
        cfg = TargetConfig(like_threshold=float(config.pairs.like_threshold), association=objective.association,
                           n_partners=objective.partners, min_co_likes=objective.min_co_likes,
                           ease_lambda=objective.ease_lambda, teacher_dim=objective.teacher_dim,
                           max_co_products=float(objective.max_co_products))
        seen = data.seen
        tg = build_targets(seen.user, seen.item, seen.rating, data.ids[data.train_rows], cfg, config.train.seed, parts)
        if parts:
            log(f"targets for {objective.kind}: {tg.stats} in {sum(tg.seconds.values()):.1f} s")
        data.targets[key] = tg
    return data.targets[key]


def prepare(config: FuseConfig, workdir: Path, feature_sets: list[str], log=print,
            needs_triplets: bool = True) -> Prepared:
    from cinefuse.datasets.movielens import load_movies, load_ratings

    d = config.data
    table = load_features(d.store, feature_sets, endpoint_url=d.endpoint_url)
    counts = dict(table.counts)
    log(f"features: {counts['kept']} of {counts['items']} items hold every set "
        f"({counts['excluded_missing_modality']} excluded)")
    ratings, movies = load_ratings(d.ratings), load_movies(d.movies)
    movie_pos = {m: k for k, m in enumerate(movies.ids.tolist())}
    rated = set(np.unique(ratings.item).tolist())
    universe = [i for i in table.ids.tolist() if i in movie_pos and i in rated]
    counts["without_ratings_or_movie"] = int(len(table.ids) - len(universe))
    if len(universe) < MIN_ITEMS:
        raise CinefuseError(
            f"only {len(universe)} items of store {d.store} have features, ratings and a movie entry; fuse "
            f"needs at least {MIN_ITEMS}: check that the store ids are MovieLens movieIds of the ratings file")
    wd = Workdir(workdir)
    # process 0 writes the split, the others read it once written (the same for every process)
    if not distributed.is_writer() or (wd.split_path.is_file() and wd.pairs_path.is_file()):
        distributed.barrier("cinefuse-split")
        split_json, arrays = wd.split(), load_split_arrays(wd.pairs_path)
    else:
        split = make_split(ratings, movies, universe, config.pairs, config.split.protocol, config.train.seed,
                           config.split.fractions)
        save_split(split, wd.pairs_path)
        split_json = split.split_json()
        split_json["stats"] = split.stats()
        write_json(wd.split_path, split_json)
        arrays = load_split_arrays(wd.pairs_path)
        distributed.barrier("cinefuse-split")
    ids = arrays["ids"].astype(object)
    row = {k: r for r, k in enumerate(table.ids.tolist())}
    table = table.take(np.array([row[i] for i in ids.tolist()], dtype=np.int64))
    words = pack_genre_words([movies.genres[movie_pos[i]] for i in ids.tolist()])
    if needs_triplets:  # the thesis objective trains on the pairs
        for part in PARTS:
            if len(arrays[f"{part}_pairs"]) == 0 and part != "test":
                raise CinefuseError(f"the {part} split has no pairs; use more items or lower [pairs] thresholds")
        if len(arrays["train_triplets"]) == 0:
            raise CinefuseError("no training triplets; use more items or lower [pairs] thresholds")
    from cinefuse.metrics.likes import like_matrix

    row_of = {k: r for r, k in enumerate(ids.tolist())}
    train_rows = np.array([row_of[i] for i in split_json["train"] if i in row_of], dtype=np.int64)
    val_rows = np.array([row_of[i] for i in split_json["val"] if i in row_of], dtype=np.int64)
    likes = like_matrix(ratings.user, ratings.item, ratings.rating, ids[val_rows],
                        float(config.pairs.like_threshold)).X
    # only users with two liked validation items can ever be scored (one query, one relevant)
    val_likes = likes[np.asarray(likes.sum(axis=1)).ravel() >= 2].toarray() > 0
    if val_likes.shape[0] == 0:
        raise CinefuseError(f"no user liked two of the {len(val_rows)} validation items, so validation nDCG@10 "
                            "is undefined; use more items or ratings")
    seen = training_ratings(ratings, ids[train_rows], split_json.get("cut_timestamp"))
    return Prepared(ids, table, words, arrays, split_json, counts, train_rows, val_rows, val_likes, seen)


def objective_arrays(data: Prepared, config: FuseConfig, objective: ObjectiveConfig, log=print) -> dict:
    """The host arrays ``fuse.step`` reads for ``objective`` (``DeviceData.targets``)."""
    if objective.kind == "thesis" and not objective.prior:
        return {}
    tg = targets_for(data, config, objective, log)
    out = {"train_rows": data.train_rows.astype(np.int32)}
    if objective.prior:
        prior = np.zeros(len(data.ids), np.float32)
        prior[data.train_rows] = tg.prior
        out["prior"] = prior
    if objective.kind == "co-like":
        p = tg.partners
        if len(p.anchors) == 0:
            raise CinefuseError("co-like: no training item has a co-liked or co-rated partner; use more ratings")
        out.update(anchors=p.anchors, partner_idx=p.idx, partner_weight=p.weight, partner_mask=p.mask)
    elif objective.kind == "history":
        h = tg.histories
        pool = np.flatnonzero(h.lengths >= 2).astype(np.int32)
        if len(pool) == 0:
            raise CinefuseError("history: no user liked two training items; use more ratings")
        out.update(user_pool=pool, hist_items=h.items, hist_len=h.lengths)
    elif objective.kind == "distill":
        liked = np.flatnonzero(tg.likes.like_counts > 0).astype(np.int32)
        if len(liked) < 2:
            raise CinefuseError("distill: fewer than two training items have a like; use more ratings")
        out.update(liked_pool=liked, teacher=tg.teacher)
        if objective.teacher == "ease":
            out["ease"] = tg.ease
    return out


# -- the trainer --------------------------------------------------------------------------------
def _auc(distance: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of -distance for separating positive (1) from negative (0) pairs; ties count half."""
    from scipy.stats import rankdata

    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(-distance)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class GroupTrainer:
    """Holds one group's training: its tower, optimiser, the table resident on the device and the
    jitted step (``cinefuse.fuse.step``). ``multi_step(state)`` runs ``steps_per_call`` steps."""

    def __init__(self, config: FuseConfig, runs: list[RunSpec], data: Prepared, workdir: Path, log=print):
        import jax
        import jax.numpy as jnp
        import optax

        from cinefuse.fuse.losses import loss_spec
        from cinefuse.fuse.models import build_tower, set_specs
        from cinefuse.fuse.step import DeviceData, make_embed, make_init, make_update

        self.jax, self.jnp = jax, jnp
        self.config, self.runs, self.data, self.workdir, self.log = config, runs, data, workdir, log
        t = config.train
        self.sets = runs[0].feature_sets
        self.objective = objective = runs[0].objective
        table = data.table
        own = FeatureTable(table.ids, {n: table.data[n] for n in self.sets}, {n: table.lengths[n] for n in self.sets})
        # the thesis standardises over the items of its triplets (as it always did); the others
        # over every training item
        fit_rows = np.unique(data.arrays["train_triplets"].reshape(-1)) if objective.kind == "thesis" else data.train_rows
        self.stats = standardization(own, fit_rows)
        std = apply_standardization(own, self.stats)
        self.tower = build_tower(runs[0].model, set_specs(self.sets, {n: std[n].shape[1:] for n in self.sets},
                                                          runs[0].model.conv_sets), objective)
        self.mesh, replicated, batch_sharding = _data_parallel_mesh(t)
        self.put = lambda x: _put(x, replicated)
        self.resident = DeviceData(
            feats={n: self.put(std[n]) for n in self.sets},
            lens={n: self.put(table.lengths[n]) for n in self.sets if table.lengths[n] is not None},
            words=self.put(data.words), triplets=self.put(data.arrays["train_triplets"].astype(np.int32).reshape(-1, 3)),
            key=self.put(jax.random.PRNGKey(t.seed)),
            targets={k: self.put(v) for k, v in objective_arrays(data, config, objective, log).items()} or None)
        self.feats, self.lens = self.resident.feats, self.resident.lens
        self.n_triplets = int(len(data.arrays["train_triplets"]))
        specs = [loss_spec(r.loss.kind, r.loss.distance, r.loss.mining, r.loss.resolved_margin(), r.loss.temperature,
                           r.loss.euclidean_normalized) for r in runs]
        self.masks = jnp.asarray(np.array([r.token_mask for r in runs], dtype=np.float32))
        schedule = optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, max(1, min(t.warmup_steps, t.steps - 1)),
                                                      t.steps, end_value=t.learning_rate * 0.05)
        self.tx = optax.chain(optax.clip_by_global_norm(t.clip_norm),
                              optax.adamw(schedule, weight_decay=t.weight_decay))
        self.key = self.resident.key
        mode = t.grid_program
        if mode == "auto":
            mode = "unrolled" if jax.default_backend() == "cpu" else "vmap"
        self.program = mode if len(runs) > 1 else "single"
        update = make_update(self.tower, self.tx, specs, self.masks, batch_size=t.batch_size,
                             steps_per_call=t.steps_per_call,
                             negative_max_jaccard=float(config.pairs.negative_max_jaccard),
                             unrolled=mode == "unrolled" and len(runs) > 1, batch_sharding=batch_sharding,
                             objective=objective)
        # jitted once, the resident table bound in: a call passes only the state (donated)
        self.multi_step = jax.jit(partial(update, data=self.resident), donate_argnums=0)
        self.embed = jax.jit(make_embed(self.tower, self.masks))
        self.embed_prior = jax.jit(make_embed(self.tower, self.masks, with_prior=True)) if objective.prior else None
        self.val_likes = self.put(data.val_likes)
        self.tie_key = jax.random.fold_in(jax.random.PRNGKey(t.seed), TIE_STREAM)
        self._init_all = jax.jit(make_init(self.tower, self.tx, self.masks))

    # -- state ------------------------------------------------------------------------------------
    def init_state(self):
        jax = self.jax
        sample = {n: self.feats[n][:2] for n in self.sets}
        lens = {n: v[:2] for n, v in self.lens.items()}
        init_key = jax.random.fold_in(self.key, -1 & 0x7FFFFFFF)
        state = self._init_all(init_key, sample, lens)
        if self.mesh is not None:
            state = jax.tree.map(lambda x: self.put(np.asarray(x)), state)
        return state

    def embed_rows(self, params, rows: np.ndarray, chunk: int = 2048):
        """(G, M, E) normalised and raw embeddings of ``rows``; rows padded to a power of two (at
        most ``chunk``) so that few shapes are ever compiled."""
        outs_n, outs_r = [], []
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            size = min(chunk, 1 << max(4, int(len(part) - 1).bit_length()))
            padded = np.concatenate([part, np.full(size - len(part), part[0], part.dtype)])
            n, r = self.embed(params, self.feats, self.lens, self.put(padded.astype(np.int32)))
            outs_n.append(np.asarray(n)[:, :len(part)])
            outs_r.append(np.asarray(r)[:, :len(part)])
        return np.concatenate(outs_n, axis=1), np.concatenate(outs_r, axis=1)

    def validate(self, params, part: str = "val") -> list[dict]:
        """Per member: ``ndcg10`` / ``hr10`` over the validation items (the selection metric,
        on the device) and, where the split has validation pairs, their ``auc``, ``d_pos``,
        ``d_neg`` (a diagnostic)."""
        from cinefuse.metrics.device_ranking import ndcg_hr_at_k

        pairs = self.data.arrays[f"{part}_pairs"].reshape(-1, 2)
        labels = self.data.arrays[f"{part}_labels"]
        rows = np.unique(np.concatenate([self.data.val_rows, pairs.reshape(-1)]))
        emb, raw = self.embed_rows(params, rows)
        at_val = np.searchsorted(rows, self.data.val_rows)
        pos = np.searchsorted(rows, pairs)
        out = []
        for g, run in enumerate(self.runs):
            m = ndcg_hr_at_k(self.jnp.asarray(emb[g][at_val]), self.val_likes, self.tie_key, k=VALIDATION_K)
            rec = {"ndcg10": float(m["nDCG"]), "hr10": float(m["HR"])}
            if len(pairs) and 0 < labels.sum() < len(labels):
                d = _pair_distance(emb[g], raw[g], pos, run.loss)
                rec.update({"auc": _auc(d, labels), "d_pos": float(d[labels == 1].mean()),
                            "d_neg": float(d[labels == 0].mean()), "distances": d, "labels": labels})
            out.append(rec)
        return out

    def choose_prior_weights(self, params) -> list[dict]:
        """Per member: the prior weight of ``objective.prior_weights`` with the best validation
        nDCG@10 of cos + w * prior (the first on ties, so 0 unless the prior helps), and the scan."""
        from cinefuse.metrics.device_ranking import ndcg_hr_at_k

        rows = self.data.val_rows
        out = []
        emb_parts, prior_parts = [], []
        for start in range(0, len(rows), 2048):
            part = rows[start:start + 2048]
            e, _, p = self.embed_prior(params, self.feats, self.lens, self.jnp.asarray(part.astype(np.int32)))
            emb_parts.append(np.asarray(e))
            prior_parts.append(np.asarray(p))
        emb, prior = np.concatenate(emb_parts, axis=1), np.concatenate(prior_parts, axis=1)
        for g in range(len(self.runs)):
            scan = {}
            for w in self.objective.prior_weights:
                m = ndcg_hr_at_k(self.jnp.asarray(emb[g]), self.val_likes, self.tie_key, k=VALIDATION_K,
                                 prior=self.jnp.asarray(prior[g]), weight=float(w))
                scan[float(w)] = float(m["nDCG"])
            best = max(scan, key=lambda w: (scan[w], -w))
            out.append({"prior_weight": best, "val_ndcg10_prior": scan[best],
                        "prior_weight_scan": {str(w): v for w, v in scan.items()}})
        return out


def _data_parallel_mesh(t):
    """(mesh, replicated sharding, batch sharding); all None on one device or when
    ``train.data_parallel`` is off. Under ``jax.distributed`` the mesh spans every process's
    devices (``jax.devices()`` is global), so each process computes its shard of the batch."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    devices = jax.devices()
    if not (t.data_parallel and len(devices) > 1):
        return None, None, None
    if t.batch_size % len(devices):
        raise CinefuseError(f"train.batch_size {t.batch_size} must be a multiple of the {len(devices)} devices "
                            "for data-parallel training (or set train.data_parallel = false)")
    mesh = Mesh(np.array(devices), ("data",))
    return mesh, NamedSharding(mesh, P()), NamedSharding(mesh, P("data", None))


def _put(x, replicated):
    import jax
    import jax.numpy as jnp

    x = np.asarray(x)
    if replicated is None:
        return jnp.asarray(x)
    return jax.make_array_from_callback(x.shape, replicated, lambda idx: x[idx])


def _pair_distance(emb, raw, pos, loss: LossConfig):
    if loss.distance == "euclidean" and loss.kind != "infonce":
        x = emb if loss.euclidean_normalized else raw
        return np.linalg.norm(x[pos[:, 0]] - x[pos[:, 1]], axis=1)
    return 1.0 - np.sum(emb[pos[:, 0]] * emb[pos[:, 1]], axis=1)


# -- the loop -----------------------------------------------------------------------------------
def _group_dir(wd: Workdir, runs: list[RunSpec]) -> Path:
    if len(runs) == 1:
        return wd.run_dir(runs[0].name)
    return wd.grid_dir(f"{modalities_label(runs[0].model.modalities)}-{runs[0].model.head}")


def train_group(config: FuseConfig, runs: list[RunSpec], data: Prepared, workdir: Path, log=print,
                progress: bool = True) -> list[dict]:
    import jax
    import orbax.checkpoint as ocp
    from tqdm import tqdm

    t = config.train
    wd = Workdir(workdir)
    group_dir = _group_dir(wd, runs)
    writer = distributed.is_writer()
    for r in runs:
        if writer:
            wd.save_run_record(r.name, r.record(config))
    if all(wd.is_trained(r.name) for r in runs):
        log(f"{', '.join(r.name for r in runs)}: already trained, nothing to do")
        return [wd.summary(r.name) for r in runs]

    trainer = GroupTrainer(config, runs, data, workdir, log)
    for r in runs:
        if writer:
            wd.save_feature_stats(r.name, trainer.stats)
    state = trainer.init_state()
    g = len(runs)
    # the best parameters live on the host (a copy: the state's buffers are donated each call)
    best = jax.tree.map(lambda x: np.array(x), state["params"])
    meta = {"best_ndcg10": [-1.0] * g, "bad": [0] * g, "best_step": [0] * g, "stopped": [False] * g,
            "elapsed": 0.0, "done": False}
    manager = ocp.CheckpointManager(
        (group_dir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=t.keep_checkpoints, create=True))
    start = manager.latest_step()
    if start is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"state": state, "best": best})
        restored = manager.restore(start, args=ocp.args.Composite(
            train=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        state, best, meta = restored["train"]["state"], restored["train"]["best"], restored["meta"]
        best = jax.tree.map(lambda x: np.array(x), best)
        log(f"resuming {group_dir.name} from step {start}")
    step = int(state["step"])
    for r in runs if writer else []:  # drop log lines written after the checkpoint we resume from
        lines = wd.metrics_lines(r.name, step)
        wd.metrics_path(r.name).write_text("".join(json.dumps(x) + "\n" for x in lines))
    logs = [open(wd.metrics_path(r.name) if writer else os.devnull, "a") for r in runs]
    t0 = time.perf_counter() - float(meta["elapsed"])
    # on unless turned off, as extract's bar: the first call compiles, which can take a while
    bar = tqdm(total=t.steps, initial=step, desc=f"fuse {group_dir.name}", unit="step", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, mininterval=0.5)
    bar.set_postfix_str("compiling")
    start_step, loop_t0 = step, time.perf_counter()
    # Ctrl-C is taken between calls, after any checkpoint in flight (cinefuse.interrupts)
    with DeferredInterrupt() as interrupt, contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: [f.close() for f in logs])
        cleanup.callback(bar.close)
        while step < t.steps and not all(meta["stopped"]):
            interrupt.raise_if_pending(before=manager.wait_until_finished)
            state, metrics = trainer.multi_step(state)
            step += t.steps_per_call
            if step - t.steps_per_call == start_step:
                bar.set_postfix_str("", refresh=False)  # compiled
            bar.update(t.steps_per_call)
            if step % t.eval_every == 0 or step >= t.steps:
                metrics = jax.tree.map(lambda x: np.asarray(x).mean(axis=0), metrics)   # (G,)
                val = trainer.validate(state["params"])
                improved = np.zeros(g, bool)
                for k in range(g):
                    if meta["stopped"][k]:
                        continue
                    if val[k]["ndcg10"] > meta["best_ndcg10"][k] + 1e-6 or meta["best_step"][k] == 0:
                        improved[k] = True
                        meta["best_ndcg10"][k], meta["best_step"][k], meta["bad"][k] = val[k]["ndcg10"], step, 0
                    else:
                        meta["bad"][k] += 1
                        if t.patience and meta["bad"][k] >= t.patience:
                            meta["stopped"][k] = True
                    rec = {"step": step, **{name: float(v[k]) for name, v in metrics.items()},
                           "val_ndcg10": val[k]["ndcg10"], "val_hr10": val[k]["hr10"],
                           **{f"val_{name}": val[k][name] for name in ("auc", "d_pos", "d_neg") if name in val[k]},
                           "seconds": round(time.perf_counter() - t0, 3)}
                    logs[k].write(json.dumps(rec) + "\n")
                    logs[k].flush()
                if improved.any():
                    best = jax.tree.map(lambda b, p: np.where(improved.reshape((g,) + (1,) * (p.ndim - 1)),
                                                              np.asarray(p), b), best, state["params"])
                bar.set_postfix(val_ndcg10=f"{max(v['ndcg10'] for v in val):.4f}")
                last = step >= t.steps or all(meta["stopped"])
                if step % t.checkpoint_every == 0 or last:
                    meta["elapsed"] = time.perf_counter() - t0
                    meta["done"] = last
                    manager.save(step, args=ocp.args.Composite(
                        train=ocp.args.StandardSave({"state": state, "best": best}), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()
        interrupt.raise_if_pending()
    if step > start_step:
        seconds = time.perf_counter() - loop_t0
        log(f"{group_dir.name}: {step - start_step} steps in {seconds:.1f} s "
            f"({(step - start_step) / max(seconds, 1e-9):.1f} steps/s, first call's compile included)")
    train_seconds = float(meta.get("elapsed", time.perf_counter() - t0))
    final = best if t.patience else jax.tree.map(lambda x: np.array(x), state["params"])
    val = trainer.validate(final)
    priors = trainer.choose_prior_weights(final) if trainer.embed_prior is not None else [{}] * g
    summaries = []
    checkpointer = ocp.StandardCheckpointer()
    for k, r in enumerate(runs):
        params_k = jax.tree.map(lambda x: np.ascontiguousarray(x[k]), final)
        target = wd.params_dir(r.name).absolute()
        if target.exists() and writer:
            import shutil
            shutil.rmtree(target)
        distributed.barrier(f"cinefuse-params-{r.name}")
        # every process calls save (orbax's barriers); the primary host (process 0) writes
        checkpointer.save(target, params_k)
        checkpointer.wait_until_finished()
        summary = {"model": r.name, "objective": r.objective.kind, "train_seconds": round(train_seconds, 3),
                   "steps": step, "best_step": int(meta["best_step"][k]),
                   "stopped_early": bool(meta["stopped"][k]) and step < t.steps,
                   "val_ndcg10": val[k]["ndcg10"], "val_hr10": val[k]["hr10"],
                   **{f"val_{name}": val[k][name] for name in ("auc", "d_pos", "d_neg") if name in val[k]},
                   **priors[k], "group_size": g, "program": trainer.program, "feature_counts": data.counts}
        if writer:
            wd.save_summary(r.name, summary)
            _plot(wd.run_dir(r.name), wd.metrics_lines(r.name, step), val[k])
        summaries.append(summary)
    return summaries


def _plot(run_dir: Path, lines: list[dict], val: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if lines:
        steps = [x["step"] for x in lines]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        axes[0].plot(steps, [x["loss"] for x in lines], label="train loss")
        axes[0].set_xlabel("step")
        axes[0].legend()
        axes[1].plot(steps, [x["val_ndcg10"] for x in lines], label="val nDCG@10", color="C1")
        if all("val_auc" in x for x in lines):
            axes[1].plot(steps, [x["val_auc"] for x in lines], label="val pair AUC", color="C2")
        axes[1].set_xlabel("step")
        axes[1].legend()
        fig.suptitle(run_dir.name)
        fig.tight_layout()
        fig.savefig(run_dir / "curves.png", dpi=80)
        plt.close(fig)
    if "distances" not in val:  # no validation pairs (a co-preference split without them)
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    d, y = val["distances"], val["labels"]
    ax.hist(d[y == 1], bins=40, alpha=0.6, label="positive pairs", density=True)
    ax.hist(d[y == 0], bins=40, alpha=0.6, label="negative pairs", density=True)
    ax.set_xlabel("distance (validation pairs)")
    ax.legend()
    ax.set_title(f"{run_dir.name}: AUC {val['auc']:.3f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "distances.png", dpi=80)
    plt.close(fig)


def results_table(summaries: list[dict]) -> str:
    """Validation table, best nDCG@10 first (AUC: the pair diagnostic, '-' without pairs)."""
    head = (f"{'model':<44} {'val nDCG@10':>11} {'+prior':>7} {'w':>5} {'val AUC':>8} {'best step':>9} "
            f"{'train s':>8}")
    rows = [head, "-" * len(head)]
    for s in sorted(summaries, key=lambda s: -s["val_ndcg10"]):
        auc = f"{s['val_auc']:>8.4f}" if "val_auc" in s else f"{'-':>8}"
        prior = (f"{s['val_ndcg10_prior']:>7.4f} {s['prior_weight']:>5.2f}" if "prior_weight" in s
                 else f"{'-':>7} {'-':>5}")
        rows.append(f"{s['model']:<44} {s['val_ndcg10']:>11.4f} {prior} {auc} {s['best_step']:>9d} "
                    f"{s['train_seconds']:>8.2f}")
    return "\n".join(rows)


def with_store_modalities(config: FuseConfig, grid: bool, log) -> FuseConfig:
    """``config`` with its modality sets and grid fixed by what the store holds (the store's
    defaults merged with [data.modality_sets]); says in one line what it chose."""
    d = config.data
    for key in ("store", "ratings", "movies"):
        if not getattr(d, key):
            raise CinefuseError(f"fuse needs --{key} (or data.{key} in the config)")
    config = resolve_modalities(config, store_feature_kinds(d.store, endpoint_url=d.endpoint_url))
    log(describe_modalities(config, grid))
    return config


def run_fuse(config, workdir, grid: bool = False, log=None, progress: bool = True,
             processes: distributed.ProcessGroup | None = None) -> dict:
    """Train one configuration (or the ablation grid) into ``workdir``; returns the summary.

    ``config``: a :class:`FuseConfig`, a dict of sections, or a TOML path; its modality sets follow
    what the store holds (``with_store_modalities``). Resumes when ``workdir`` already holds
    checkpoints for the same configuration. ``progress``: a progress bar per program on stderr.
    ``processes`` (or ``train.distributed = true``) starts ``jax.distributed`` first: see
    ``cinefuse.fuse.distributed``.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    config = as_config(config)
    if config.train.distributed or (processes is not None and processes.given):
        distributed.start(processes or distributed.resolve_process_group())
    config = with_store_modalities(config, grid, log)
    workdir = Path(workdir)
    groups = plan_runs(config, grid)
    needed: list[str] = []
    for group in groups:
        for s in group[0].feature_sets:
            if s not in needed:
                needed.append(s)
    thesis = any(r.objective.kind == "thesis" for group in groups for r in group)
    # the record stays only once something trained: a run that fails before leaves no workdir
    with Workdir(workdir).recording(config, grid, writer=distributed.is_writer()):
        data = prepare(config, workdir, needed, log, needs_triplets=thesis)
        t0 = time.perf_counter()
        summaries = []
        for group in groups:
            summaries.extend(train_group(config, group, data, workdir, log, progress=progress))
    table = results_table(summaries)
    summary = {"workdir": str(workdir), "models": [s["model"] for s in summaries], "runs": summaries,
               "split": {k: v for k, v in data.split.items() if k not in PARTS},
               "items": {part: len(data.split[part]) for part in PARTS}, "feature_counts": data.counts,
               "seconds": round(time.perf_counter() - t0, 3), "table": table}
    if distributed.is_writer():
        write_json(Workdir(workdir).summary_path(grid), summary)
    return summary
