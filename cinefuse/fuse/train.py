"""Training: one canonical trainer for a single configuration or an ablation grid.

The stage in modules named after their jobs: ``plan`` (what to train: modalities, run names,
groups), ``prepare`` (split, features, targets), ``trainer`` (one group's program, validation and
the one chunked embedding), ``selection`` (early stopping and the kept parameters), ``step`` (the
jitted step), ``objectives`` (what each objective does); this module runs them:
``run_fuse`` for the stage, ``train_group`` for one group's loop.

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
that really share shapes (the same feature sets and head; ``plan.plan_runs``), so no member computes an
encoder it does not use; each group is one program whose members see the same batches, their
parameters stacked on a leading axis, built either with ``jax.vmap`` or with the members unrolled
in one scan body (``train.grid_program``; see ``step.make_update``). With
several local devices each batch is sharded over them (``jax.sharding``, data parallel), the
parameters replicated; on several processes or hosts ``jax.distributed`` joins them into one mesh
(``train.distributed = true`` or ``--process-id`` and friends; each runs the same command on the
same store and workdir; ``cinefuse.fuse.distributed``).
Validation, early stopping, checkpoints and logging happen every ``eval_every`` steps only
(``fuse.trainer`` validates, ``fuse.selection`` keeps the best parameters and stops early; each
validation is a metrics.jsonl line with the learning rate and steps/s, and, given a folder,
the same numbers as TensorBoard scalars: ``fuse.tensorboard``).
Validation measures both tasks over the validation cold items (``fuse.validation``; on the device,
in bounded memory, ``metrics.device_ranking``): item-to-item nDCG@10 (the pinned metric: queries
and candidates both the split's validation items, relevance their likes in the ratings, ties in
a seeded random order) and user-to-item Recall@20 and nDCG@10 (the users' liked training items as
history); ``[selection] task`` names the one whose metric the early stopping and the kept
parameters follow (item-to-item nDCG@10 by default, user-to-item Recall@20). Both are logged in
metrics.jsonl and summary.json, with genre-pair ROC AUC on the validation pairs as a diagnostic.
Checkpoints and final parameters are sealed with a sha256 manifest (``fuse.checksums``) and
verified before use; ``train.seeds`` trains every model once per seed (``<model>@seed<N>``).

Objectives (``[objective]``, ``cinefuse.fuse.objectives``): a grid group shares one objective, so its
members share one batch; the targets come from the training ratings only
(``fuse.pairs.training_ratings``: the training items' ratings, before the cut under
``cold-item-time``) through ``fuse.targets`` (``fuse.prepare``). With ``objective.prior`` the
tower's prior head is trained beside the embedding and, after training, its weight in ``cos + w * prior`` is chosen
on the validation items over ``objective.prior_weights`` in each task: by nDCG@10 (``prior_weight``)
and by user-to-item Recall@20 (``prior_weight_u2i``) in the model's summary.json; 0 when the
prior does not help.

``GroupTrainer``, ``Prepared``, ``RunSpec``, ``plan_runs``, ``prepare``, ``objective_arrays``
and ``with_store_modalities`` stay importable from here for the callers that import them so.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cinefuse.fuse import checksums, distributed, objectives
from cinefuse.fuse.config import FuseConfig, as_config
from cinefuse.fuse.objectives import modalities_label
from cinefuse.fuse.pairs import PARTS
from cinefuse.fuse.plan import RunSpec, plan_runs, seeded_name, with_store_modalities
from cinefuse.fuse.plots import plot_run
from cinefuse.fuse.prepare import Prepared, objective_arrays, prepare  # noqa: F401 (objective_arrays re-exported)
from cinefuse.fuse.selection import Selection, keep
from cinefuse.fuse.trainer import VALIDATION_K, GroupTrainer  # noqa: F401 (re-exported)
from cinefuse.fuse.validation import SELECTION_METRIC
from cinefuse.fuse.tensorboard import Boards
from cinefuse.fuse.workdir import Workdir, redacted_record, write_json
from cinefuse.interrupts import DeferredInterrupt
from cinefuse.progress import progress_bar


@dataclass
class Loop:
    """Where one group's training stands: the state on the device, the kept parameters on the
    host (a copy: the state's buffers are donated each call), the selection, the step reached
    and the training seconds of the last checkpoint (``t0``: when training began, resumes included)."""

    state: dict
    kept: dict
    selection: Selection
    step: int
    elapsed: float
    t0: float
    mark: tuple = (0, 0.0)      # (step, time) where the last validation ended: steps/s since then


def train_group(config: FuseConfig, runs: list[RunSpec], data: Prepared, workdir: Path, log=print,
                progress: bool = True, tensorboard=None) -> list[dict]:
    """Trains one group (one program) to its end, resuming from its newest checkpoint; returns
    the members' summaries (read back when every member is already trained). ``tensorboard``:
    the folder of the members' event files (``fuse.tensorboard``; None: none)."""
    t, wd = config.train, Workdir(workdir)
    if _record_runs(config, runs, wd, log):
        return [wd.summary(r.name) for r in runs]
    trainer = GroupTrainer(config, runs, data, workdir, log)
    for r in runs if distributed.is_writer() else []:
        wd.save_feature_stats(r.name, trainer.stats)
    group_dir = _group_dir(wd, runs)
    manager, loop = _restore(trainer, group_dir, t, log)
    logs = _open_logs(wd, runs, loop.step)
    boards = Boards(tensorboard if distributed.is_writer() else None, [r.name for r in runs], loop.step, log)
    bar = progress_bar(t.steps, f"fuse {group_dir.name}", "step", enabled=progress, initial=loop.step,
                       dynamic_ncols=True, mininterval=0.5)  # the first call compiles, which can take a while
    bar.set_postfix_str("compiling")
    start_step, loop_t0 = loop.step, time.perf_counter()
    loop.mark = (start_step, loop_t0)
    # Ctrl-C is taken between calls, after any checkpoint in flight (cinefuse.interrupts)
    with DeferredInterrupt() as interrupt, contextlib.ExitStack() as cleanup:
        cleanup.callback(lambda: [f.close() for f in logs])
        cleanup.callback(bar.close)
        cleanup.callback(boards.close)
        cleanup.push(_discard_unless_checkpointed(boards, manager))
        while loop.step < t.steps and not loop.selection.all_stopped:
            interrupt.raise_if_pending(before=manager.wait_until_finished)
            loop.state, metrics = trainer.multi_step(loop.state)
            loop.step += t.steps_per_call
            if loop.step - t.steps_per_call == start_step:
                bar.set_postfix_str("", refresh=False)  # compiled
            bar.update(t.steps_per_call)
            if loop.step % t.eval_every == 0 or loop.step >= t.steps:
                _evaluate(trainer, loop, metrics, (logs, boards), bar, manager, t)
        manager.wait_until_finished()
        interrupt.raise_if_pending()
    _log_throughput(group_dir.name, loop.step - start_step, time.perf_counter() - loop_t0, log)
    summaries = _finish(config, runs, data, trainer, loop, wd, boards)
    for s in summaries:
        if s["stopped_early"]:
            log(f"{s['model']}: stopped early at step {s['steps']} of {t.steps}: validation "
                f"{'nDCG@10' if config.selection.task == 'item-to-item' else 'Recall@20'} did not improve for "
                f"{t.patience} evaluations (train.patience, --patience); kept step {s['best_step']}")
    return summaries


def val_record(val: dict) -> dict:
    """The validation measures of one member as metrics.jsonl and summary.json both write them."""
    return {"val_ndcg10": val["ndcg10"], "val_hr10": val["hr10"], "val_u2i_recall20": val["u2i_recall20"],
            "val_u2i_ndcg10": val["u2i_ndcg10"],
            **{f"val_{name}": val[name] for name in ("auc", "d_pos", "d_neg") if name in val}}


def _group_dir(wd: Workdir, runs: list[RunSpec]) -> Path:
    if len(runs) == 1:
        return wd.run_dir(runs[0].name)
    label = f"{modalities_label(runs[0].model.modalities)}-{runs[0].model.head}"
    seeded = runs[0].base_model and runs[0].name != runs[0].base_model
    return wd.grid_dir(seeded_name(label, runs[0].seed) if seeded else label)


def _record_runs(config: FuseConfig, runs: list[RunSpec], wd: Workdir, log) -> bool:
    """Writes each member's record; True when every member is already trained."""
    for r in runs if distributed.is_writer() else []:
        wd.save_run_record(r.name, r.record(config))
    trained = [wd.is_trained(r.name) for r in runs]
    damaged = [checksums.damage(wd.params_dir(r.name)) if t else None for r, t in zip(runs, trained)]
    if all(trained) and not any(damaged):
        log(f"{', '.join(r.name for r in runs)}: already trained, nothing to do")
        return True
    for r, bad in zip(runs, damaged):
        if bad:
            log(f"{r.name}: its final parameters do not verify ({bad}); writing them again from its checkpoints")
    return False


def _restore(trainer: GroupTrainer, group_dir: Path, t, log):
    """(the checkpoint manager, the loop from the newest checkpoint or from the start)."""
    import jax
    import orbax.checkpoint as ocp

    state = trainer.init_state()
    kept = jax.tree.map(lambda x: np.array(x), state["params"])
    selection, elapsed = Selection.start(len(trainer.runs), t.patience), 0.0
    _set_aside_damaged(group_dir / "checkpoints", log)
    manager = ocp.CheckpointManager(
        (group_dir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=t.keep_checkpoints, create=True))
    start = manager.latest_step()
    if start is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"state": state, "best": kept})
        restored = manager.restore(start, args=ocp.args.Composite(
            train=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        state, kept, meta = restored["train"]["state"], restored["train"]["best"], restored["meta"]
        kept = jax.tree.map(lambda x: np.array(x), kept)
        selection, elapsed = Selection.from_meta(meta, t.patience), float(meta["elapsed"])
        log(f"resuming {group_dir.name} from step {start}")
    return manager, Loop(state, kept, selection, int(state["step"]), elapsed, time.perf_counter() - elapsed)


def _set_aside_damaged(folder: Path, log) -> None:
    """Moves checkpoint steps that do not verify (``checksums``; newest first, until one does)
    to ``damaged-checkpoints/`` beside ``folder``, saying so: the run resumes from the previous good one."""
    steps = sorted((p for p in folder.glob("*") if p.is_dir() and p.name.isdigit()), key=lambda p: -int(p.name))
    for step in steps:
        bad = checksums.damage(step)
        if bad is None:
            break
        if distributed.is_writer():
            aside = folder.parent / "damaged-checkpoints" / f"{step.name}-{time.strftime('%Y%m%dT%H%M%S')}"
            aside.parent.mkdir(exist_ok=True)
            step.rename(aside)
            log(f"checkpoint step {step.name} of {folder.parent.name} is damaged ({bad}); moved to {aside}, "
                "resuming from the previous good one")
    distributed.barrier(f"cinefuse-damaged-{folder.parent.name}")


def _open_logs(wd: Workdir, runs: list[RunSpec], step: int) -> list:
    """Each member's metrics.jsonl for appending, less the lines written after ``step`` (the
    checkpoint resumed from); other processes than the writer log to the null device."""
    writer = distributed.is_writer()
    for r in runs if writer else []:
        lines = wd.metrics_lines(r.name, step)
        wd.metrics_path(r.name).write_text("".join(json.dumps(x) + "\n" for x in lines))
    return [open(wd.metrics_path(r.name) if writer else os.devnull, "a") for r in runs]


def _discard_unless_checkpointed(boards: Boards, manager):
    """An exit callback: a group that fails before its first checkpoint takes its events away."""
    def on_exit(exc_type, exc, tb) -> None:
        if exc_type is not None:
            try:
                checkpointed = manager.latest_step() is not None
            except Exception:  # noqa: BLE001 (the failure in flight is the one to report)
                checkpointed = True
            if not checkpointed:
                boards.discard()
    return on_exit


def _evaluate(trainer: GroupTrainer, loop: Loop, metrics, outputs: tuple, bar, manager, t) -> None:
    """Validation at ``loop.step``: the selection's update, a log line per member still
    training (metrics.jsonl and its TensorBoard scalars: ``outputs``), the kept parameters and,
    every ``checkpoint_every`` steps or at the end, a checkpoint."""
    import jax
    import orbax.checkpoint as ocp

    logs, boards = outputs
    metrics = jax.tree.map(lambda x: np.asarray(x).mean(axis=0), metrics)   # (G,): waits for the steps
    rate = (loop.step - loop.mark[0]) / max(time.perf_counter() - loop.mark[1], 1e-9)
    lr = trainer.learning_rate(loop.step)
    val = trainer.validate(loop.state["params"])
    training = [not s for s in loop.selection.stopped]
    metric = SELECTION_METRIC[trainer.config.selection.task]
    loop.selection, improved = loop.selection.update([v[metric] for v in val], loop.step)
    for k in np.flatnonzero(training):
        rec = {"step": loop.step, **{name: float(v[k]) for name, v in metrics.items()},
               "learning_rate": lr, **val_record(val[k]),
               "steps_per_second": round(rate, 3), "seconds": round(time.perf_counter() - loop.t0, 3)}
        logs[k].write(json.dumps(rec) + "\n")
        logs[k].flush()
        boards.scalars(k, rec)
    loop.kept = keep(loop.kept, loop.state["params"], improved)
    bar.set_postfix({f"val_{metric}": f"{max(v[metric] for v in val):.4f}"})
    last = loop.step >= t.steps or loop.selection.all_stopped
    if loop.step % t.checkpoint_every == 0 or last:
        loop.elapsed = time.perf_counter() - loop.t0
        # a diverged state is never written: the last good checkpoint stays the newest
        checksums.require_finite({"state": loop.state["params"], "best": loop.kept},
                                 f"step {loop.step} of {', '.join(r.name for r in trainer.runs)}")
        manager.save(loop.step, args=ocp.args.Composite(
            train=ocp.args.StandardSave({"state": loop.state, "best": loop.kept}),
            meta=ocp.args.JsonSave(loop.selection.meta(loop.elapsed, last))))
        manager.wait_until_finished()      # then its manifest: a step without one is not trusted
        if distributed.is_writer():
            checksums.seal(Path(manager.directory) / str(loop.step))
    loop.mark = (loop.step, time.perf_counter())


def _log_throughput(name: str, steps: int, seconds: float, log) -> None:
    if steps > 0:
        log(f"{name}: {steps} steps in {seconds:.1f} s "
            f"({steps / max(seconds, 1e-9):.1f} steps/s, first call's compile included)")


def _finish(config: FuseConfig, runs: list[RunSpec], data: Prepared, trainer: GroupTrainer, loop: Loop,
            wd: Workdir, boards: Boards) -> list[dict]:
    """The final parameters (the kept ones under early stopping, else the last) of each member
    saved to ``params/``, validated once more, with the prior's weight chosen; the summaries."""
    import jax

    t, g = config.train, len(runs)
    final = loop.kept if t.patience else jax.tree.map(lambda x: np.array(x), loop.state["params"])
    checksums.require_finite(final, f"the final parameters of {', '.join(r.name for r in runs)}")
    val = trainer.validate(final)
    priors = trainer.choose_prior_weights(final) if trainer.embed_prior is not None else [{}] * g
    summaries = []
    for k, r in enumerate(runs):
        _save_params(wd, r.name, jax.tree.map(lambda x: np.ascontiguousarray(x[k]), final))
        summary = {"model": r.name, "base_model": r.base_model or r.name, "seed": r.model_seed(config),
                   "objective": r.objective.kind, "train_seconds": round(loop.elapsed, 3),
                   "steps": loop.step, "best_step": int(loop.selection.best_step[k]),
                   "stopped_early": bool(loop.selection.stopped[k]) and loop.step < t.steps,
                   **val_record(val[k]), **priors[k], "group_size": g, "program": trainer.program,
                   "feature_counts": data.counts, "selection_task": config.selection.task,
                   "validation_sampling": data.validation.sampling()}
        if distributed.is_writer():
            wd.save_summary(r.name, summary)
            plot_run(wd.run_dir(r.name), wd.metrics_lines(r.name, loop.step), val[k])
            boards.final(k, summary, redacted_record(r.record(config)))
        summaries.append(summary)
    return summaries


def _save_params(wd: Workdir, name: str, params) -> None:
    """One member's final parameters to ``runs/<name>/params/`` (orbax; every process calls
    save for orbax's barriers, the primary host writes), sealed with their checksum manifest."""
    import shutil

    import orbax.checkpoint as ocp

    target = wd.params_dir(name).absolute()
    if target.exists() and distributed.is_writer():
        shutil.rmtree(target)
    distributed.barrier(f"cinefuse-params-{name}")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, params)
    checkpointer.wait_until_finished()
    if distributed.is_writer():
        checksums.seal(target)             # written with them, checked on every load


def results_table(summaries: list[dict]) -> str:
    """Validation table, best item-to-item nDCG@10 first, with user-to-item Recall@20 beside it.
    The genre-pair AUC is shown for the thesis objective only: its pairs are what that objective
    trains on, while for a co-preference objective genre agreement is no target (about 0.5 there
    says nothing about the model). "early" marks a member stopped by patience."""
    head = (f"{'model':<44} {'val nDCG@10':>11} {'+prior':>7} {'w':>5} {'u2i R@20':>8} {'genre AUC':>9} "
            f"{'best step':>9} {'train s':>8}")
    rows = [head, "-" * len(head)]
    for s in sorted(summaries, key=lambda s: -s["val_ndcg10"]):
        shown = "val_auc" in s and s.get("objective", "thesis") == "thesis"
        auc = f"{s['val_auc']:>9.4f}" if shown else f"{'-':>9}"
        prior = (f"{s['val_ndcg10_prior']:>7.4f} {s['prior_weight']:>5.2f}" if "prior_weight" in s
                 else f"{'-':>7} {'-':>5}")
        u2i = f"{s['val_u2i_recall20']:>8.4f}" if s.get("val_u2i_recall20") is not None else f"{'-':>8}"
        early = " early" if s.get("stopped_early") else ""
        rows.append(f"{s['model']:<44} {s['val_ndcg10']:>11.4f} {prior} {u2i} {auc} {s['best_step']:>9d} "
                    f"{s['train_seconds']:>8.2f}{early}")
    rows.append("val: the validation cold items; +prior: nDCG@10 of cos + w * prior; genre AUC: thesis "
                "objective only; early: stopped by train.patience at its best step")
    return "\n".join(rows)


def run_fuse(config, workdir, grid: bool = False, log=None, progress: bool = True,
             processes: distributed.ProcessGroup | None = None, tensorboard=None) -> dict:
    """Train one configuration (or the ablation grid) into ``workdir``; returns the summary.

    ``config``: a :class:`FuseConfig`, a dict of sections, or a TOML path; its modality sets follow
    what the store holds (``with_store_modalities``). Resumes when ``workdir`` already holds
    checkpoints for the same configuration. ``progress``: a progress bar per program on stderr.
    ``tensorboard``: a folder for TensorBoard event files, one subfolder per model
    (``fuse.tensorboard``; the CLI's default is ``W/tensorboard``); None writes none.
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
    needs_triplets = any(objectives.of(r.objective).needs_triplets for group in groups for r in group)
    # the record stays only once something trained: a run that fails before leaves no workdir
    with Workdir(workdir).recording(config, grid, writer=distributed.is_writer()):
        data = prepare(config, workdir, needed, log, needs_triplets=needs_triplets)
        t0 = time.perf_counter()
        summaries = []
        for group in groups:
            summaries.extend(train_group(config, group, data, workdir, log, progress=progress,
                                         tensorboard=tensorboard))
    table = results_table(summaries)
    summary = {"workdir": str(workdir), "models": [s["model"] for s in summaries], "runs": summaries,
               "split": {k: v for k, v in data.split.items() if k not in PARTS},
               "items": {part: len(data.split[part]) for part in PARTS}, "feature_counts": data.counts,
               "seconds": round(time.perf_counter() - t0, 3), "table": table}
    if distributed.is_writer():
        write_json(Workdir(workdir).summary_path(grid), summary)
    return summary
