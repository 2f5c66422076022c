"""The objectives as values: each one's whole story in one class, looked up by name.

An objective (``[objective].kind``, docs/OBJECTIVES.md) says what a model learns. Its class here
is its one home: which targets it needs (``target_parts``), the host arrays the step reads
(``host_arrays``), its batch sampler (``sample``), its loss (``loss``), its run name pattern
(``run_name``), whether it trains through the ``[loss]`` section (``through_loss``: its batch is
then (anchor, positive, negative) triplets) and what else differs (``needs_triplets``, the rows
its features are standardised over, the distill kernel, which feature sets it may read).
``of(config)`` returns the objective of an ``ObjectiveConfig`` (None: the thesis without a
prior); the step, the trainer, the planner and the config dispatch on it, never on the name.

Importing this module loads no jax (the config reads it); the device math lives in
:mod:`cinefuse.fuse.copref` (the co-preference samplers and losses) and
:mod:`cinefuse.fuse.losses` (the thesis's pair, triplet and InfoNCE losses), imported when a
sampler or a loss is traced.
"""

from __future__ import annotations

import numpy as np

from cinefuse.choices import OBJECTIVES
from cinefuse.errors import CinefuseError

# the thesis's pair labels: never an input of a model trained on them
THESIS_LABEL_SETS = ("meta/genres",)


def modalities_label(modalities) -> str:
    """A modality spec as it appears in run names: ``visual+audio``, or the sets joined by ','."""
    if isinstance(modalities, (list, tuple)):
        return ",".join(s.replace("/", "_") for s in modalities)
    return str(modalities)


class Objective:
    """What every objective shares; a subclass per objective fills in the rest."""

    name = ""
    needs_triplets = False        # trains on the split's stored pairs (prepare checks they exist)

    def through_loss(self, cfg) -> bool:
        """True when the batch is (anchor, positive, negative) triplets through ``[loss]``."""
        return False

    def target_parts(self, cfg) -> tuple:
        """Which of ``targets.TARGET_PARTS`` to build from the training ratings."""
        return ()

    def allows(self, feature_sets) -> bool:
        """Whether a model trained on this objective may read ``feature_sets``."""
        return True

    def kernel_dim(self, cfg) -> int:
        """Width of the learnt map to a teacher's vectors (0: the tower has none)."""
        return 0

    def negative_max_jaccard(self, configured: float) -> float:
        """The miner's genre filter on triplet negatives."""
        return configured

    def fit_rows(self, data) -> np.ndarray:
        """The rows the feature standardisation is fitted over: every training item."""
        return data.train_rows

    def run_name(self, loss: str, distance: str, mods: str, head: str, cfg) -> str:
        return f"{self.name}-{mods}-{head}"

    def host_arrays(self, cfg, targets, out: dict) -> None:
        """Adds the objective's own host arrays to ``out`` (``train_rows`` and ``prior`` are there)."""

    def sample(self, cfg, rng, data, batch_size: int, batch_sharding=None):
        """(items, rows, extras) of the step's batch: the item rows of its structure, the rows
        whose features the tower embeds (M,), and the loss's other arrays (dict)."""
        raise NotImplementedError

    def loss(self, cfg, spec: dict, params, emb, raw, batch, negative_max_jaccard: float):
        """(loss, aux) of one member's embeddings ``emb`` / ``raw`` (M, E) of ``batch``."""
        raise NotImplementedError

    # shared by the objectives that train through [loss]
    def _triplet_loss(self, spec, emb, raw, batch, negative_max_jaccard):
        from cinefuse.fuse.losses import batch_loss

        size = batch.items.shape[0]
        return batch_loss(spec, emb.reshape(size, 3, -1), raw.reshape(size, 3, -1), batch.items, batch.words,
                          negative_max_jaccard)


class Thesis(Objective):
    """The thesis's genre-filtered pairs: the stored triplets and the [loss] section."""

    name = "thesis"
    needs_triplets = True

    def through_loss(self, cfg) -> bool:
        return True

    def allows(self, feature_sets) -> bool:
        return not any(s in THESIS_LABEL_SETS for s in feature_sets)

    def fit_rows(self, data) -> np.ndarray:
        # the thesis standardises over the items of its triplets (as it always did)
        return np.unique(data.arrays["train_triplets"].reshape(-1))

    def run_name(self, loss, distance, mods, head, cfg) -> str:
        # the names of the thesis reproduction stay as they were
        return f"{loss}-{distance}-{mods}-{head}"

    def sample(self, cfg, rng, data, batch_size, batch_sharding=None):
        import jax

        pick = jax.random.randint(rng, (batch_size,), 0, data.triplets.shape[0])
        items = data.triplets[pick]
        if batch_sharding is not None:
            items = jax.lax.with_sharding_constraint(items, batch_sharding)
        return items, items.reshape(-1), {}

    def loss(self, cfg, spec, params, emb, raw, batch, negative_max_jaccard):
        return self._triplet_loss(spec, emb, raw, batch, negative_max_jaccard)


class CoLike(Objective):
    """Co-liked partners: multi-positive InfoNCE, or (``co_like_loss = "loss"``) (anchor,
    partner, uniform training item) triplets through [loss] with the genre filter off."""

    name = "co-like"

    def through_loss(self, cfg) -> bool:
        return cfg.co_like_loss == "loss"

    def target_parts(self, cfg) -> tuple:
        return ("partners",)

    def negative_max_jaccard(self, configured: float) -> float:
        return 1.0  # co-like triplets: any other item may be the negative

    def run_name(self, loss, distance, mods, head, cfg) -> str:
        if self.through_loss(cfg):
            return f"co-like-{loss}-{distance}-{mods}-{head}"
        return super().run_name(loss, distance, mods, head, cfg)

    def host_arrays(self, cfg, targets, out) -> None:
        p = targets.partners
        if len(p.anchors) == 0:
            raise CinefuseError("co-like: no training item has a co-liked or co-rated partner; use more ratings")
        out.update(anchors=p.anchors, partner_idx=p.idx, partner_weight=p.weight, partner_mask=p.mask)

    def sample(self, cfg, rng, data, batch_size, batch_sharding=None):
        import jax
        import jax.numpy as jnp

        from cinefuse.fuse import copref

        t = data.targets
        k_pair, k_neg = jax.random.split(rng)
        a, p = copref.sample_co_like(k_pair, t["anchors"], t["partner_idx"], t["partner_weight"], t["partner_mask"],
                                     batch_size)
        if batch_sharding is not None:  # each process computes its shard of the batch (data parallel)
            from jax.sharding import NamedSharding, PartitionSpec

            one_d = NamedSharding(batch_sharding.mesh, PartitionSpec("data"))
            a, p = jax.lax.with_sharding_constraint(a, one_d), jax.lax.with_sharding_constraint(p, one_d)
        if self.through_loss(cfg):
            n = jax.random.randint(k_neg, (batch_size,), 0, t["train_rows"].shape[0])
            items = t["train_rows"][jnp.stack([a, p, n], axis=1)]
            return items, items.reshape(-1), {}
        positive, exclude = copref.co_like_masks(a, p, t["partner_idx"], t["partner_mask"])
        rows = t["train_rows"][jnp.concatenate([a, p])]
        return rows, rows, {"positive": positive, "exclude": exclude}

    def loss(self, cfg, spec, params, emb, raw, batch, negative_max_jaccard):
        import jax.numpy as jnp

        from cinefuse.fuse import copref

        if self.through_loss(cfg):
            return self._triplet_loss(spec, emb, raw, batch, negative_max_jaccard)
        x = batch.extras
        b = emb.shape[0] // 2
        a, p = emb[:b], emb[b:]
        loss = copref.multi_positive_info_nce(a, p, x["positive"], x["exclude"], cfg.temperature)
        d = 1.0 - a @ p.T
        off = ~x["positive"] & ~x["exclude"]
        return loss, {"d_pos": jnp.mean(jnp.diagonal(d)),
                      "d_neg": jnp.sum(jnp.where(off, d, 0.0)) / jnp.maximum(jnp.sum(off), 1)}


class History(Objective):
    """Users' likes reconstructed through the embeddings over a user x item slice (ELSA)."""

    name = "history"

    def target_parts(self, cfg) -> tuple:
        return ("histories",)

    def host_arrays(self, cfg, targets, out) -> None:
        h = targets.histories
        pool = np.flatnonzero(h.lengths >= 2).astype(np.int32)
        if len(pool) == 0:
            raise CinefuseError("history: no user liked two training items; use more ratings")
        out.update(user_pool=pool, hist_items=h.items, hist_len=h.lengths)

    def sample(self, cfg, rng, data, batch_size, batch_sharding=None):
        from cinefuse.fuse import copref

        t = data.targets
        s = copref.sample_history(rng, t["user_pool"], t["hist_items"], t["hist_len"], t["train_rows"].shape[0],
                                  cfg.history_users, cfg.history_per_user, cfg.history_random)
        rows = t["train_rows"][s["items"]]
        return rows, rows, {"likes": s["likes"], "item_mask": s["item_mask"]}

    def loss(self, cfg, spec, params, emb, raw, batch, negative_max_jaccard):
        from cinefuse.fuse import copref

        x = batch.extras
        return copref.history_loss(x["likes"], emb, x["item_mask"], cfg.history_loss, cfg.history_temperature), {}


class Distill(Objective):
    """A CF teacher's item vectors (InfoNCE through a learnt kernel) and similarity rows (KL)."""

    name = "distill"

    def target_parts(self, cfg) -> tuple:
        return ("teacher", "ease") if self._ease(cfg) else ("teacher",)

    def kernel_dim(self, cfg) -> int:
        return cfg.teacher_dim

    @staticmethod
    def _ease(cfg) -> bool:
        """The similarity rows come from EASE's dense B (else the teacher vectors' dot products)."""
        return cfg.teacher == "ease"

    def host_arrays(self, cfg, targets, out) -> None:
        liked = np.flatnonzero(targets.likes.like_counts > 0).astype(np.int32)
        if len(liked) < 2:
            raise CinefuseError("distill: fewer than two training items have a like; use more ratings")
        out.update(liked_pool=liked, teacher=targets.teacher)
        if self._ease(cfg):
            out["ease"] = targets.ease

    def sample(self, cfg, rng, data, batch_size, batch_sharding=None):
        import jax.numpy as jnp

        from cinefuse.fuse import copref

        t = data.targets
        picked = copref.sample_items(rng, t["liked_pool"], batch_size)
        vec = t["teacher"][picked]
        if self._ease(cfg):
            logits = copref.teacher_logits(t["ease"], picked, cfg.teacher_temperature)
        else:  # the teacher vectors' dot products: no dense (I, I) matrix on the device
            logits = copref.teacher_logits(vec @ vec.T, jnp.arange(batch_size), cfg.teacher_temperature)
        rows = t["train_rows"][picked]
        return rows, rows, {"picked": picked, "teacher_vec": vec, "teacher_logits": logits}

    def loss(self, cfg, spec, params, emb, raw, batch, negative_max_jaccard):
        from cinefuse.fuse import copref

        x = batch.extras
        kernel = params["params"]["distill_kernel"]
        info = copref.distill_info_nce(emb, kernel, x["teacher_vec"], x["picked"], cfg.temperature)
        kl = copref.similarity_kl(emb, x["teacher_logits"], x["picked"], cfg.temperature)
        return info + kl, {"distill_info_nce": info, "similarity_kl": kl}


REGISTRY: dict[str, Objective] = {o.name: o for o in (Thesis(), CoLike(), History(), Distill())}
assert tuple(REGISTRY) == OBJECTIVES, "cinefuse.choices.OBJECTIVES and the registry name the same objectives"


def of(cfg) -> Objective:
    """The objective of an ``ObjectiveConfig`` (None: the thesis, without a prior)."""
    return REGISTRY["thesis" if cfg is None else cfg.kind]


def model_name(loss: str, distance: str, modalities, head: str, objective: str = "thesis",
               co_like_loss: str = "infonce") -> str:
    """Readable run name for results tables: ``triplet-cosine-full-concat-mlp`` under the thesis
    objective (the names of the thesis reproduction stay as they were), ``distill-full-concat-mlp``
    for a co-preference objective, ``co-like-triplet-cosine-full-concat-mlp`` for co-like pairs
    trained with the [loss] section."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(kind=objective, co_like_loss=co_like_loss)
    return REGISTRY[objective].run_name(loss, distance, modalities_label(modalities), head, cfg)

