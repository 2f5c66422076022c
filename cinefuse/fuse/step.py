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
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from cinefuse.fuse.losses import batch_loss, split_specs


class DeviceData(NamedTuple):
    """What every step reads, resident on the device (a pytree)."""

    feats: dict          # feature set -> (N, ...) standardised features
    lens: dict           # sequence set -> (N,) valid timesteps
    words: Any           # (N, W) uint32 genre bits
    triplets: Any        # (T, 3) int32 rows of the training triplets
    key: Any             # the seed's PRNG key


class Batch(NamedTuple):
    feats: dict          # feature set -> (3B, ...) rows a0 p0 n0 a1 ...
    lens: dict
    items: Any           # (B, 3) item rows of the triplets
    words: Any           # (B, 3, W) their genre bits


def sample_batch(data: DeviceData, step, batch_size: int, batch_sharding=None) -> Batch:
    """The step's ``batch_size`` triplets, drawn with replacement, and their features."""
    rng = jax.random.fold_in(data.key, step)
    pick = jax.random.randint(rng, (batch_size,), 0, data.triplets.shape[0])
    items = data.triplets[pick]
    if batch_sharding is not None:
        items = jax.lax.with_sharding_constraint(items, batch_sharding)
    flat = items.reshape(-1)
    return Batch({n: x[flat] for n, x in data.feats.items()}, {n: v[flat] for n, v in data.lens.items()},
                 items, data.words[items])


def member_update(tower, tx, negative_max_jaccard: float, spec: dict, mask, params, opt_state, batch: Batch):
    """One configuration's update on ``batch``: (params, opt_state, metrics)."""
    size = batch.items.shape[0]

    def loss_fn(params):
        emb, raw = tower.apply(params, batch.feats, batch.lens, mask)
        emb, raw = emb.reshape(size, 3, -1), raw.reshape(size, 3, -1)
        return batch_loss(spec, emb, raw, batch.items, batch.words, negative_max_jaccard)

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": loss, **aux, "grad_norm": optax.global_norm(grads)}


def make_update(tower, tx, specs: list[dict], masks, *, batch_size: int, steps_per_call: int,
                negative_max_jaccard: float, unrolled: bool, batch_sharding=None):
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
    ``metrics`` are (steps_per_call, G) arrays.
    """
    static_spec, stacked_spec = split_specs(specs)
    n_members = len(specs)

    def step_vmapped(state, data):
        batch = sample_batch(data, state["step"], batch_size, batch_sharding)
        params, opt_state, metrics = jax.vmap(
            lambda p, o, spec, m: member_update(tower, tx, negative_max_jaccard, {**static_spec, **spec}, m, p, o, batch))(
            state["params"], state["opt_state"], stacked_spec, masks)
        return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics

    def step_unrolled(members, step, data):
        # members: a tuple of G (params, opt_state) trees, unstacked once per call
        batch = sample_batch(data, step, batch_size, batch_sharding)
        outs = [member_update(tower, tx, negative_max_jaccard, spec, masks[k], p, o, batch)
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


def make_embed(tower, masks):
    """``embed(params, feats, lens, rows) -> (normalised, raw)``, each (G, M, E), for every member."""

    def embed(params, feats, lens, rows):
        feats = {n: x[rows] for n, x in feats.items()}
        lens = {n: v[rows] for n, v in lens.items()}
        return jax.vmap(lambda p, m: tower.apply(p, feats, lens, m), in_axes=(0, 0))(params, masks)

    return embed
