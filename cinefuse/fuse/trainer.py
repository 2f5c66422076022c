"""The trainer of one group of configurations: its tower, optimiser, the table resident on the
device and the jitted step (``cinefuse.fuse.step``), with one way to embed rows in chunks.

``GroupTrainer.multi_step(state)`` runs ``train.steps_per_call`` steps of every member;
``validate(params)`` measures both tasks over the validation cold items (``fuse.validation``):
item-to-item nDCG@10 (the pinned metric: queries and candidates both the split's validation
items, relevance their likes in the ratings, ties in a seeded random order) and user-to-item
Recall@20 and nDCG@10 (the users' liked training items as history), on the device
(``metrics.device_ranking``), with the genre-pair ROC AUC on the validation pairs beside them as a
diagnostic; ``choose_prior_weights`` picks the prior's weight in ``cos + w * prior`` on the
validation items, in each task. Every embedding of rows
(validation, the prior scan, ``fuse.embed``) goes through ``embed_in_chunks``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.fuse import objectives
from cinefuse.fuse.config import FuseConfig, LossConfig
from cinefuse.fuse.features import FeatureTable, apply_standardization, standardization
from cinefuse.fuse.plan import RunSpec
from cinefuse.fuse.prepare import Prepared, objective_arrays
from cinefuse.metrics.ties import validation_tie_key

VALIDATION_K = 10          # the selection metric is nDCG@10 (DESIGN.md, Model selection)
CHUNK = 2048               # rows embedded per call


def embed_in_chunks(apply, rows: np.ndarray, chunk: int, axis: int = 0, pad: bool = True) -> tuple:
    """``apply(idx)`` over ``rows`` in chunks of at most ``chunk``; ``apply`` returns a tuple of
    arrays with the rows on ``axis`` (None entries stay None), concatenated over the chunks.
    ``pad``: each chunk padded (with its first row) to a power of two, so that few shapes are
    ever compiled (validation, called every ``eval_every`` steps); off, the chunks are embedded
    as they are (a row's embedding can differ in its last bit between batch shapes, so the
    prior scan and ``fuse.embed`` keep the shapes they always had)."""
    rows = np.asarray(rows)
    parts = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        size = min(chunk, 1 << max(4, int(len(part) - 1).bit_length())) if pad else len(part)
        padded = np.concatenate([part, np.full(size - len(part), part[0], part.dtype)]).astype(np.int32)
        parts.append([None if x is None else np.take(np.asarray(x), np.arange(len(part)), axis=axis)
                      for x in apply(padded)])
    if not parts:
        return ()
    return tuple(None if xs[0] is None else np.concatenate(xs, axis=axis) for xs in zip(*parts))


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
        # over every training item (``Objective.fit_rows``)
        self.stats = standardization(own, objectives.of(objective).fit_rows(data))
        std = apply_standardization(own, self.stats)
        self.tower = build_tower(runs[0].model, set_specs(self.sets, {n: std[n].shape[1:] for n in self.sets},
                                                          runs[0].model.conv_sets), objective)
        self.mesh, replicated, batch_sharding = _data_parallel_mesh(t)
        self.put = lambda x: _put(x, replicated)
        self.resident = DeviceData(
            feats={n: self.put(std[n]) for n in self.sets},
            lens={n: self.put(table.lengths[n]) for n in self.sets if table.lengths[n] is not None},
            words=self.put(data.words), triplets=self.put(data.arrays["train_triplets"].astype(np.int32).reshape(-1, 3)),
            key=self.put(jax.random.PRNGKey(runs[0].model_seed(config))),  # the group's seed (train.seeds)
            targets={k: self.put(v) for k, v in objective_arrays(data, config, objective, log).items()} or None)
        self.feats, self.lens = self.resident.feats, self.resident.lens
        self.n_triplets = int(len(data.arrays["train_triplets"]))
        specs = [loss_spec(r.loss.kind, r.loss.distance, r.loss.mining, r.loss.resolved_margin(), r.loss.temperature,
                           r.loss.euclidean_normalized) for r in runs]
        self.masks = jnp.asarray(np.array([r.token_mask for r in runs], dtype=np.float32))
        schedule = optax.warmup_cosine_decay_schedule(0.0, t.learning_rate, max(1, min(t.warmup_steps, t.steps - 1)),
                                                      t.steps, end_value=t.learning_rate * 0.05)
        self.schedule = schedule
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
                             objective=objective, modality_dropout=float(t.modality_dropout))
        # jitted once, the resident table bound in: a call passes only the state (donated)
        self.multi_step = jax.jit(partial(update, data=self.resident), donate_argnums=0)
        self.embed = jax.jit(make_embed(self.tower, self.masks))
        self.embed_prior = jax.jit(make_embed(self.tower, self.masks, with_prior=True)) if objective.prior else None
        likes = data.val_likes
        self.val_likes = self.put(likes) if isinstance(likes, np.ndarray) else likes  # dense, or Likes (host CSR)
        self.tie_key = validation_tie_key(t.seed)
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

    def learning_rate(self, step: int) -> float:
        """The learning rate the update that reached ``step`` used: optax counts updates from 0,
        so the schedule at ``step - 1`` (a host float, for the logs)."""
        return float(self.schedule(max(step - 1, 0)))

    def embed_rows(self, params, rows: np.ndarray, with_prior: bool = False, chunk: int = CHUNK, pad: bool = True):
        """(G, M, E) normalised and raw embeddings of ``rows`` for every member (and, with
        ``with_prior``, their (G, M) prior), in chunks (``embed_in_chunks``)."""
        fn = self.embed_prior if with_prior else self.embed
        return embed_in_chunks(lambda idx: fn(params, self.feats, self.lens, self.put(idx)), rows, chunk, axis=1,
                               pad=pad)

    def validate(self, params, part: str = "val") -> list[dict]:
        """Per member: ``ndcg10`` / ``hr10`` (item-to-item) and ``u2i_recall20`` / ``u2i_ndcg10``
        (user-to-item) over the validation items (on the device; ``fuse.validation``) and, where
        the split has validation pairs, their ``auc``, ``d_pos``, ``d_neg`` (a diagnostic)."""
        from cinefuse.metrics.device_ranking import ndcg_hr_at_k, u2i_at_k

        vs = self.data.validation or _item_to_item_only()
        pairs = self.data.arrays[f"{part}_pairs"].reshape(-1, 2)
        labels = self.data.arrays[f"{part}_labels"]
        rows = np.unique(np.concatenate([self.data.val_rows, pairs.reshape(-1)]))
        emb, raw = self.embed_rows(params, rows)[:2]
        hist = self.embed_rows(params, vs.hist_rows)[0] if vs.relevant.n_users else None
        at_val = np.searchsorted(rows, self.data.val_rows)
        pos = np.searchsorted(rows, pairs)
        out = []
        for g, run in enumerate(self.runs):
            val_emb = self.jnp.asarray(emb[g][at_val])
            m = ndcg_hr_at_k(val_emb, self.val_likes, self.tie_key, k=VALIDATION_K, queries=vs.queries)
            rec = {"ndcg10": float(m["nDCG"]), "hr10": float(m["HR"]), "u2i_recall20": 0.0, "u2i_ndcg10": 0.0}
            if hist is not None:
                u = u2i_at_k(val_emb, hist[g], vs.histories, vs.relevant, self.tie_key, users=vs.users)
                rec.update({"u2i_recall20": float(u["recall20"]), "u2i_ndcg10": float(u["ndcg10"])})
            if len(pairs) and 0 < labels.sum() < len(labels):
                d = _pair_distance(emb[g], raw[g], pos, run.loss)
                rec.update({"auc": _auc(d, labels), "d_pos": float(d[labels == 1].mean()),
                            "d_neg": float(d[labels == 0].mean()), "distances": d, "labels": labels})
            out.append(rec)
        return out

    def choose_prior_weights(self, params) -> list[dict]:
        """Per member, in each task: the prior weight of ``objective.prior_weights`` with the best
        validation value of cos + w * prior (item-to-item nDCG@10: ``prior_weight``; user-to-item
        Recall@20: ``prior_weight_u2i``; the first on ties, so 0 unless the prior helps), and the scans."""
        from cinefuse.fuse.validation import scan_best
        from cinefuse.metrics.device_ranking import ndcg_hr_at_k, u2i_at_k

        vs = self.data.validation or _item_to_item_only()
        out = []
        emb, _, prior = self.embed_rows(params, self.data.val_rows, with_prior=True, pad=False)
        hist = self.embed_rows(params, vs.hist_rows, pad=False)[0] if vs.relevant.n_users else None
        for g in range(len(self.runs)):
            scan, scan_u2i = {}, {}
            for w in self.objective.prior_weights:
                m = ndcg_hr_at_k(self.jnp.asarray(emb[g]), self.val_likes, self.tie_key, k=VALIDATION_K,
                                 prior=self.jnp.asarray(prior[g]), weight=float(w), queries=vs.queries)
                scan[float(w)] = float(m["nDCG"])
                if hist is not None:
                    u = u2i_at_k(emb[g], hist[g], vs.histories, vs.relevant, self.tie_key, prior=prior[g],
                                 weight=float(w), users=vs.users)
                    scan_u2i[float(w)] = float(u["recall20"])
            best = scan_best(scan)
            rec = {"prior_weight": best, "val_ndcg10_prior": scan[best],
                   "prior_weight_scan": {str(w): v for w, v in scan.items()}}
            if scan_u2i:
                best_u = scan_best(scan_u2i)
                rec.update({"prior_weight_u2i": best_u, "val_u2i_recall20_prior": scan_u2i[best_u],
                            "prior_weight_scan_u2i": {str(w): v for w, v in scan_u2i.items()}})
            out.append(rec)
        return out


def _item_to_item_only():
    """The validation set of a ``Prepared`` made without one (benchmarks): every query, no users."""
    from cinefuse.fuse.validation import ValidationSet
    from cinefuse.metrics.device_ranking import Likes

    none = Likes(np.zeros(1, np.int32), np.zeros(0, np.int32), 0)
    return ValidationSet(None, None, np.zeros(0, np.int64), none, none, None, 0)


def _data_parallel_mesh(t):
    """(mesh, replicated sharding, batch sharding); all None on one device or when
    ``train.data_parallel`` is off. Under ``jax.distributed`` the mesh spans every process's
    devices (``jax.devices()`` is global), so each process computes its shard of the batch."""
    import jax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

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
