"""The training step of a group of configurations, as pure functions (the flax/big_vision way).

``sample_batch(data, step, batch_size)`` draws the step's triplets on the device: the key is
``fold_in(data.key, step)``, so the stream depends only on the step and a resumed run draws exactly
the batches an uninterrupted one would. ``member_update`` takes one configuration's loss and
applies its optax update. ``make_update`` binds a group's tower, optimiser and losses once and
returns ``update(state, data) -> (state, metrics)``, ``steps_per_call`` steps fused into one
``lax.scan``; the trainer jits it once. ``make_init`` and ``make_embed`` do the same for the
initial state and for embedding rows of the resident table.

``state`` is ``{"params", "opt_state", "step"}`` with the members' parameters stacked on a leading
axis (G, ...); ``data`` is a :class:`DeviceData`, the whole training table on the device.

Objectives (``[objective]``, an ``ObjectiveConfig``; None is the thesis without a prior): the
step asks ``objectives.of(objective)`` for its sampler and its loss (``cinefuse.fuse.objectives``
holds what each objective does), chosen at trace time, so a group's program holds only its
objective's branch, jitted once. A group's members share one objective (``plan.plan_runs``
groups by it), so they share its batch; an objective that trains through ``[loss]`` (the thesis,
co-like with ``co_like_loss = "loss"``) hands ``losses.batch_loss`` triplets and their genre bits.
With ``objective.prior`` the prior head's MSE against the standardised log like counts of the
batch's training items is added (``prior_loss_weight``). The targets live in
``DeviceData.targets`` (rows of the training items: ``train_rows`` maps a target index to its row
of the resident table). Data-parallel sharding applies to the thesis triplet batch; the
co-preference batches are computed replicated.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cinefuse.fuse import objectives
from cinefuse.fuse.losses import split_specs


DROPOUT_STREAM = 0x6D6F64  # folded into the step's key for the modality dropout's draws


class DeviceData(NamedTuple):
    """What every step reads, resident on the device (a pytree)."""

    feats: dict          # feature set -> (N, ...) standardised features
    lens: dict           # feature set -> (N,) valid entries (timesteps; 1/0 for a vector set: present or absent)
    words: Any           # (N, W) uint32 genre bits
    triplets: Any        # (T, 3) int32 rows of the training triplets
    key: Any             # the seed's PRNG key
    targets: Any = None  # the objective's target arrays (dict; ``prepare.objective_arrays``), None: none


class Batch(NamedTuple):
    feats: dict          # feature set -> (M, ...) rows (triplets: a0 p0 n0 a1 ...)
    lens: dict
    items: Any           # triplets: (B, 3) item rows; else the (M,) rows embedded
    words: Any           # triplets: (B, 3, W) their genre bits; else None
    extras: Any = None   # the objective's batch arrays (dict), None for the thesis without a prior


def _gather(data: DeviceData, rows) -> tuple[dict, dict]:
    return {n: x[rows] for n, x in data.feats.items()}, {n: v[rows] for n, v in data.lens.items()}


def drop_modalities(rng, feats: dict, lens: dict, rate: float) -> dict:
    """``lens`` with each row's present feature sets dropped (length 0) at ``rate``, never all of
    a row's present sets: a row that would lose every one keeps the one with the largest draw.
    The draws are made over the sets in name order, so they do not depend on how the sets are
    listed. A vector set is present where its length is 1 (``features.clean_table``); one without
    lengths is present in every row."""
    names = sorted(feats)
    m = feats[names[0]].shape[0]
    present = jnp.stack([lens[n] > 0 if n in lens else jnp.ones((m,), bool) for n in names], axis=1)
    u = jax.random.uniform(rng, present.shape)
    kept = present & (u >= rate)
    rescue = jax.nn.one_hot(jnp.argmax(jnp.where(present, u, -1.0), axis=1), len(names), dtype=bool) & present
    kept = jnp.where(jnp.any(kept, axis=1, keepdims=True), kept, rescue)
    out = dict(lens)
    for k, n in enumerate(names):
        out[n] = jnp.where(kept[:, k], lens[n], 0).astype(jnp.int32) if n in lens else kept[:, k].astype(jnp.int32)
    return out


def sample_batch(data: DeviceData, step, batch_size: int, batch_sharding=None, objective=None,
                 modality_dropout: float = 0.0) -> Batch:
    """The step's batch of ``objective`` (None: the thesis triplets), drawn with replacement
    from the key ``fold_in(data.key, step)``, and its features; with ``modality_dropout`` > 0
    its rows' feature sets dropped at that rate (``drop_modalities``, its own key)."""
    rng = jax.random.fold_in(data.key, step)
    kind = objectives.of(objective)
    items, rows, extras = kind.sample(objective, rng, data, batch_size, batch_sharding)
    if objective is not None and objective.prior:
        extras["prior_target"] = data.targets["prior"][rows]
        extras["prior_mask"] = extras.get("item_mask", jnp.ones(rows.shape, bool))
    feats, lens = _gather(data, rows)
    if modality_dropout > 0:
        lens = drop_modalities(jax.random.fold_in(rng, DROPOUT_STREAM), feats, lens, float(modality_dropout))
    words = data.words[items] if kind.through_loss(objective) else None
    return Batch(feats, lens, items, words, extras or None)


def objective_loss(objective, spec: dict, params, emb, raw, batch: Batch, negative_max_jaccard: float):
    """(loss, aux) of one member's embeddings ``emb`` / ``raw`` (M, E) of ``batch``."""
    return objectives.of(objective).loss(objective, spec, params, emb, raw, batch, negative_max_jaccard)


def member_update(tower, tx, negative_max_jaccard: float, spec: dict, mask, params, opt_state, batch: Batch,
                  objective=None):
    """One configuration's update on ``batch``: (params, opt_state, metrics)."""
    with_prior = objective is not None and objective.prior

    def loss_fn(params):
        out = tower.apply(params, batch.feats, batch.lens, mask, with_prior=with_prior)
        loss, aux = objective_loss(objective, spec, params, out[0], out[1], batch, negative_max_jaccard)
        if with_prior:
            m = batch.extras["prior_mask"].astype(out[2].dtype)
            err = (out[2] - batch.extras["prior_target"]) ** 2
            prior = jnp.sum(err * m) / jnp.maximum(jnp.sum(m), 1.0)
            loss = loss + objective.prior_loss_weight * prior
            aux = {**aux, "prior_loss": prior}
        return loss, aux

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": loss, **aux, "grad_norm": optax.global_norm(grads)}


def make_update(tower, tx, specs: list[dict], masks, *, batch_size: int, steps_per_call: int,
                negative_max_jaccard: float, unrolled: bool, batch_sharding=None, objective=None,
                modality_dropout: float = 0.0):
    """``update(state, data) -> (state, metrics)`` running ``steps_per_call`` steps of every member.

    How a group of G configurations becomes one program (``train.grid_program``):
    - vmap (``unrolled=False``): ``jax.vmap`` over stacked parameters, optimiser states and loss
      selectors. The selectors are traced, so every loss branch is computed for every member and
      selected; the encoders' GEMMs become batched GEMMs. Best where one wide kernel beats several
      (GPU).
    - unrolled: the G members written out one after another inside the one scan body, each with
      its own loss resolved at trace time (no wasted branches). The batch sampling, feature gather
      and genre masks are computed once for all members, and XLA schedules the members'
      independent op chains in one program (our guess at why it helps: the small non-GEMM ops of
      one member overlap another's GEMMs). Measured faster than vmap and than one run after
      another on 2-core CPUs (benchmarks/results/fuse.md).
    ``metrics`` are (steps_per_call, G) arrays. ``objective`` (shared by the members) picks the
    sampler and the loss at trace time (module docstring). ``modality_dropout``
    (``train.modality_dropout``) drops the batch rows' feature sets (``drop_modalities``).
    """
    static_spec, stacked_spec = split_specs(specs)
    n_members = len(specs)
    negative_max_jaccard = objectives.of(objective).negative_max_jaccard(negative_max_jaccard)

    def step_vmapped(state, data):
        batch = sample_batch(data, state["step"], batch_size, batch_sharding, objective, modality_dropout)
        params, opt_state, metrics = jax.vmap(
            lambda p, o, spec, m: member_update(tower, tx, negative_max_jaccard, {**static_spec, **spec}, m, p, o,
                                                batch, objective))(
            state["params"], state["opt_state"], stacked_spec, masks)
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics

    def step_unrolled(members, step, data):
        # members: a tuple of G (params, opt_state) trees, unstacked once per call
        batch = sample_batch(data, step, batch_size, batch_sharding, objective, modality_dropout)
        outs = [member_update(tower, tx, negative_max_jaccard, spec, masks[k], p, o, batch, objective)
                for k, ((p, o), spec) in enumerate(zip(members, specs))]
        metrics = jax.tree.map(lambda *xs: jnp.stack(xs), *[m for _, _, m in outs])
        return tuple((p, o) for p, o, _ in outs), metrics

    def update(state, data):
        if not unrolled:
            return jax.lax.scan(lambda s, _: step_vmapped(s, data), state, None, length=steps_per_call)
        members = tuple((_member(state["params"], k), _member(state["opt_state"], k)) for k in range(n_members))

        def body(carry, _):
            members, step = carry
            members, metrics = step_unrolled(members, step, data)
            return (members, step + 1), metrics

        (members, step), metrics = jax.lax.scan(body, (members, state["step"]), None, length=steps_per_call)
        return {"params": _stack([p for p, _ in members]), "opt_state": _stack([o for _, o in members]),
                "step": step}, metrics

    return update


def _member(tree, k: int):
    return jax.tree.map(lambda x: x[k], tree)


def _stack(trees: list):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def make_init(tower, tx, masks):
    """``init(key, sample_feats, sample_lens) -> state``: the same initial parameters for every
    member, as sequential runs with the same seed would have, so that differences come from the
    configurations only. One compiled program for the whole state (no per-leaf dispatches)."""
    n_members = masks.shape[0]

    def init(key, sample, lens):
        params = tower.init(key, sample, lens, masks[0])
        params = jax.tree.map(lambda x: jnp.broadcast_to(x, (n_members,) + x.shape), params)
        return {"params": params, "opt_state": jax.vmap(tx.init)(params), "step": jnp.int32(0)}

    return init


def make_embed(tower, masks, with_prior: bool = False):
    """``embed(params, feats, lens, rows) -> (normalised, raw)``, each (G, M, E), for every member;
    ``with_prior``: (normalised, raw, prior (G, M)) from a tower with the prior head."""

    def embed(params, feats, lens, rows):
        feats = {n: x[rows] for n, x in feats.items()}
        lens = {n: v[rows] for n, v in lens.items()}
        return jax.vmap(lambda p, m: tower.apply(p, feats, lens, m, with_prior=with_prior), in_axes=(0, 0))(
            params, masks)

    return embed
