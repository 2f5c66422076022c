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
Validation (genre-pair ROC AUC on the validation pairs), early stopping, checkpoints and logging
happen on the host every ``eval_every`` steps only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.fuse import distributed
from cinefuse.fuse.config import (
    FuseConfig,
    LossConfig,
    ModelConfig,
    as_config,
    describe_modalities,
    model_name,
    modalities_label,
    resolve_feature_sets,
    resolve_modalities,
)
from cinefuse.fuse.features import (
    FeatureTable,
    apply_standardization,
    load_features,
    pack_genre_words,
    standardization,
    store_feature_kinds,
)
from cinefuse.fuse.pairs import PARTS, load_split_arrays, make_split, save_split
from cinefuse.fuse.workdir import Workdir, write_json


# -- what to train ------------------------------------------------------------------------------
@dataclass
class RunSpec:
    name: str
    loss: LossConfig
    model: ModelConfig
    feature_sets: list[str]          # the sets the tower is built over (a grid group: their union)
    token_mask: list[int]            # 1 for the sets this configuration uses

    def record(self, config: FuseConfig) -> dict:
        return {"name": self.name, "loss": asdict(self.loss), "margin": self.loss.resolved_margin(),
                "model": asdict(self.model), "feature_sets": self.feature_sets, "token_mask": self.token_mask,
                "train": asdict(config.train), "pairs": asdict(config.pairs), "split": asdict(config.split),
                "data": asdict(config.data)}


def plan_runs(config: FuseConfig, grid: bool) -> list[list[RunSpec]]:
    """Groups of runs; each group is one program (``GroupTrainer``).

    A group holds configurations that really share shapes: the same feature sets and head, so
    the same parameter layout, differing only in loss and distance (selected per member inside
    the one program). No member computes an encoder it does not use: the grid's ``visual``,
    ``visual+audio`` and ``full`` members are three groups of {pair, triplet} x {cosine,
    euclidean}, and every other head is a group of its own.
    """
    sets_of = lambda mods: resolve_feature_sets(mods, config.data.modality_sets)  # noqa: E731
    if not grid:
        sets = sets_of(config.model.modalities)
        name = model_name(config.loss.kind, config.loss.distance, config.model.modalities, config.model.head)
        return [[RunSpec(name, config.loss, config.model, sets, [1] * len(sets))]]
    g = config.grid
    groups: list[list[RunSpec]] = []
    for mods in g.modalities:
        sets = sets_of(mods)
        model = ModelConfig(**{**asdict(config.model), "modalities": mods})
        group = []
        for kind in g.losses:
            for distance in g.distances:
                loss = LossConfig(**{**asdict(config.loss), "kind": kind, "distance": distance,
                                     "margin": config.loss.margin if kind == config.loss.kind else None})
                group.append(RunSpec(model_name(kind, distance, mods, model.head), loss, model, sets,
                                     [1] * len(sets)))
        if group:
            groups.append(group)
    for head in g.heads:
        if head == config.model.head:
            continue
        model = ModelConfig(**{**asdict(config.model), "head": head})
        sets = sets_of(config.model.modalities)
        name = model_name(config.loss.kind, config.loss.distance, config.model.modalities, head)
        groups.append([RunSpec(name, config.loss, model, sets, [1] * len(sets))])
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


def prepare(config: FuseConfig, workdir: Path, feature_sets: list[str], log=print) -> Prepared:
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
    for part in PARTS:
        if len(arrays[f"{part}_pairs"]) == 0 and part != "test":
            raise CinefuseError(f"the {part} split has no pairs; use more items or lower [pairs] thresholds")
    if len(arrays["train_triplets"]) == 0:
        raise CinefuseError("no training triplets; use more items or lower [pairs] thresholds")
    return Prepared(ids, table, words, arrays, split_json, counts)


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
        table = data.table
        own = FeatureTable(table.ids, {n: table.data[n] for n in self.sets}, {n: table.lengths[n] for n in self.sets})
        self.stats = standardization(own, np.unique(data.arrays["train_triplets"].reshape(-1)))
        std = apply_standardization(own, self.stats)
        self.tower = build_tower(runs[0].model, set_specs(self.sets, {n: std[n].shape[1:] for n in self.sets},
                                                          runs[0].model.conv_sets))
        self.mesh, replicated, batch_sharding = _data_parallel_mesh(t)
        self.put = lambda x: _put(x, replicated)
        self.resident = DeviceData(
            feats={n: self.put(std[n]) for n in self.sets},
            lens={n: self.put(table.lengths[n]) for n in self.sets if table.lengths[n] is not None},
            words=self.put(data.words), triplets=self.put(data.arrays["train_triplets"].astype(np.int32)),
            key=self.put(jax.random.PRNGKey(t.seed)))
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
                             unrolled=mode == "unrolled" and len(runs) > 1, batch_sharding=batch_sharding)
        # jitted once, the resident table bound in: a call passes only the state (donated)
        self.multi_step = jax.jit(partial(update, data=self.resident), donate_argnums=0)
        self.embed = jax.jit(make_embed(self.tower, self.masks))
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
        pairs = self.data.arrays[f"{part}_pairs"]
        labels = self.data.arrays[f"{part}_labels"]
        rows = np.unique(pairs.reshape(-1))
        pos = np.searchsorted(rows, pairs)
        emb, raw = self.embed_rows(params, rows)
        out = []
        for g, run in enumerate(self.runs):
            d = _pair_distance(emb[g], raw[g], pos, run.loss)
            out.append({"auc": _auc(d, labels), "d_pos": float(d[labels == 1].mean()),
                        "d_neg": float(d[labels == 0].mean()), "distances": d, "labels": labels})
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
    meta = {"best_auc": [-1.0] * g, "bad": [0] * g, "best_step": [0] * g, "stopped": [False] * g,
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
    try:
        while step < t.steps and not all(meta["stopped"]):
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
                    if val[k]["auc"] > meta["best_auc"][k] + 1e-6 or meta["best_step"][k] == 0:
                        improved[k] = True
                        meta["best_auc"][k], meta["best_step"][k], meta["bad"][k] = val[k]["auc"], step, 0
                    else:
                        meta["bad"][k] += 1
                        if t.patience and meta["bad"][k] >= t.patience:
                            meta["stopped"][k] = True
                    rec = {"step": step, "loss": float(metrics["loss"][k]), "d_pos": float(metrics["d_pos"][k]),
                           "d_neg": float(metrics["d_neg"][k]), "grad_norm": float(metrics["grad_norm"][k]),
                           "val_auc": val[k]["auc"], "val_d_pos": val[k]["d_pos"], "val_d_neg": val[k]["d_neg"],
                           "seconds": round(time.perf_counter() - t0, 3)}
                    logs[k].write(json.dumps(rec) + "\n")
                    logs[k].flush()
                if improved.any():
                    best = jax.tree.map(lambda b, p: np.where(improved.reshape((g,) + (1,) * (p.ndim - 1)),
                                                              np.asarray(p), b), best, state["params"])
                bar.set_postfix(val_auc=f"{max(v['auc'] for v in val):.3f}")
                last = step >= t.steps or all(meta["stopped"])
                if step % t.checkpoint_every == 0 or last:
                    meta["elapsed"] = time.perf_counter() - t0
                    meta["done"] = last
                    manager.save(step, args=ocp.args.Composite(
                        train=ocp.args.StandardSave({"state": state, "best": best}), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()
    finally:
        bar.close()
        for f in logs:
            f.close()
    if step > start_step:
        seconds = time.perf_counter() - loop_t0
        log(f"{group_dir.name}: {step - start_step} steps in {seconds:.1f} s "
            f"({(step - start_step) / max(seconds, 1e-9):.1f} steps/s, first call's compile included)")
    train_seconds = float(meta.get("elapsed", time.perf_counter() - t0))
    final = best if t.patience else jax.tree.map(lambda x: np.array(x), state["params"])
    val = trainer.validate(final)
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
        summary = {"model": r.name, "train_seconds": round(train_seconds, 3), "steps": step,
                   "best_step": int(meta["best_step"][k]), "stopped_early": bool(meta["stopped"][k]) and step < t.steps,
                   "val_auc": val[k]["auc"], "val_d_pos": val[k]["d_pos"], "val_d_neg": val[k]["d_neg"],
                   "group_size": g, "program": trainer.program, "feature_counts": data.counts}
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
        axes[1].plot(steps, [x["val_auc"] for x in lines], label="val AUC", color="C1")
        axes[1].set_xlabel("step")
        axes[1].legend()
        fig.suptitle(run_dir.name)
        fig.tight_layout()
        fig.savefig(run_dir / "curves.png", dpi=80)
        plt.close(fig)
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
    head = f"{'model':<44} {'val AUC':>8} {'d(pos)':>8} {'d(neg)':>8} {'best step':>9} {'train s':>8}"
    rows = [head, "-" * len(head)]
    for s in sorted(summaries, key=lambda s: -s["val_auc"]):
        rows.append(f"{s['model']:<44} {s['val_auc']:>8.4f} {s['val_d_pos']:>8.4f} {s['val_d_neg']:>8.4f} "
                    f"{s['best_step']:>9d} {s['train_seconds']:>8.2f}")
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
    # the record stays only once something trained: a run that fails before leaves no workdir
    with Workdir(workdir).recording(config, grid, writer=distributed.is_writer()):
        data = prepare(config, workdir, needed, log)
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
