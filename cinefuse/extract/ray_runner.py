"""Extraction on Ray Data: ``--ray`` starts a local instance, ``--ray ADDRESS`` joins a cluster.

The driver does what a single-process run does before its loop: it reads the items, fits the
corpus-dependent text backbones (TF-IDF) on all of them, takes this run's ``--num-shards K
--shard-index I`` slice, cuts it into chunks of ``shard_size`` and drops the ids the store
already holds under the same config hash (resume; ``--overwrite`` resets the store once, here,
before any worker writes). The pending items become a dataset (``ray.data.from_items``, one row
per item, tagged with its chunk) and go through ``map_batches`` with :class:`ChunkWorker`, a
callable class run by a fixed pool of ``--ray-tasks`` actors (default: one per CPU, or one per
GPU with ``--device cuda``, each actor holding one GPU), with batches of ``shard_size`` rows.
Each actor loads the backbones once, then for every batch decodes, embeds and commits its own
shard with ``StoreWriter.write_shard`` (atomic; the manifest lock serialises commits), reusing
:func:`cinefuse.extract.runner.extract_chunks`, and returns one status row per item. The
driver streams those rows into the progress bar and the usual summary (counts by status); the
manifest the workers committed to is the merged manifest. :func:`cinefuse.extract.run.run_extract`
calls this module (never the other way round) and does the ``s3://`` staging around it.

Chunks are the same as in a single-process run (one shard per chunk, forward batches never cross
a chunk), so the store holds the same values per id, bit for bit. Should Ray hand an actor a
batch that straddles two chunks, the actor still writes one shard per chunk part: shards never
mix chunks. Bad inputs become rows with a status, as without Ray; ``strict`` stops the run at
the first failed item (its chunk is not written). CPU actors take one core each and decode in
their own process (``workers=0``, one torch thread); a GPU actor keeps ``--workers`` decoding
processes so decoding hides behind its model. Ray Data restarts an actor that dies and retries
its batch; the restarted actor first reads the store's committed ids and reports those items as
``committed before an actor restart`` instead of writing them twice.

Storage. The actors write into one local folder: the store itself, or for an ``s3://`` store a
staging folder on the driver's machine, pulled before (resume) and pushed once at the end by
:mod:`cinefuse.extract.run`. This
is what is implemented, and it is enough on one machine. On a multi-node cluster every node must
see that folder at the same path, i.e. a shared filesystem (NFS, Lustre, ...) whose ``rename``
is atomic and which honours the store's manifest lock; per-node staging folders pushed
separately are not implemented. Video paths must likewise be readable from every node (shared
paths or ``s3://`` URIs).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections import Counter
from typing import Any

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig

RESULT_COLUMNS = ("id", "status", "failed", "frames", "shard", "error")
RETRIED = "committed before an actor restart"


class ChunkWorker:
    """One Ray Data actor: loads the backbones once, then commits one shard per batch."""

    def __init__(self, values: dict[str, Any], items: list, store_config: dict):
        from cinefuse.extract.runner import prepare_extractor
        from cinefuse.store import StoreWriter
        from cinefuse.store.manifest import config_hash

        config = ExtractConfig.from_dict(values, where="ray actor")
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        self.config = config
        # the driver's store config: the TF-IDF it fitted (or the store's) is loaded, never refitted
        _backbones, self.extractor, mine = prepare_extractor(
            config.replace(overwrite=False, refit=False), items, config.store, {"driver": store_config})
        self.writer = StoreWriter(config.store, mine)
        if self.writer.config_hash != config_hash(store_config):  # cannot differ, but check
            raise CinefuseError(f"ray actor: config hash {self.writer.config_hash} differs from the "
                                f"driver's {config_hash(store_config)}; run the same cinefuse version everywhere")
        # Ray Data restarts a dead actor and retries its batch; the dead one may have committed
        # chunks of it already, so a restarted actor skips what the store holds by now
        import ray

        self.committed: set[str] = set()
        if ray.get_runtime_context().was_current_actor_reconstructed:
            self.committed = self.writer.committed_ids()
        self.extractor.load_models(items)

    def __call__(self, batch: dict) -> dict:
        from cinefuse.extract.inputs import Item
        from cinefuse.extract.runner import ExtractFailed, extract_chunks

        out: dict[str, list] = {name: [] for name in RESULT_COLUMNS}
        chunks: dict[int, list] = {}
        for item_id, video, fields, chunk in zip(batch["id"], batch["video"], batch["fields"], batch["chunk"]):
            if str(item_id) in self.committed:
                for name, value in zip(RESULT_COLUMNS, (str(item_id), RETRIED, False, 0, "", "")):
                    out[name].append(value)
                continue
            chunks.setdefault(int(chunk), []).append(Item(str(item_id), str(video), json.loads(fields)))
        try:
            for done in extract_chunks(self.config, self.extractor, list(chunks.values()), self.writer):
                for item_id, status, bad, frames in zip(done.ids, done.statuses, done.failed, done.frames):
                    for name, value in zip(RESULT_COLUMNS, (item_id, status, bad, frames, done.shard, "")):
                        out[name].append(value)
        except ExtractFailed as exc:  # a plain row, so the driver raises it without Ray's wrapping
            for name, value in zip(RESULT_COLUMNS, ("", "strict", True, 0, "", str(exc))):
                out[name].append(value)
        return out


def run_extract_ray(config: ExtractConfig, local) -> dict:
    """Extract on Ray Data into the local folder ``local`` (the store, or its staging folder);
    returns the summary without ``seconds`` and ``exit_code`` (the caller adds them)."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise CinefuseError("--ray needs Ray Data: pip install 'cinefuse[ray]'") from exc
    from cinefuse.extract.runner import plan_run

    local = str(local)
    plan = plan_run(config, local)  # --overwrite resets once here, in the driver, before any actor writes
    summary = plan.summary
    summary["ray_tasks"] = 0
    if plan.pending:
        with _ray_session(ray, config):
            summary.update(_run_actors(ray, config, local, plan.items, plan.chunks, plan.writer.config))
    return summary


@contextlib.contextmanager
def _ray_session(ray, config: ExtractConfig):
    """Join the running Ray instance, or start/reach the one ``--ray`` names (shut down after)."""
    address = None if config.ray in ("local", "") else config.ray
    started_here = not ray.is_initialized()
    if started_here:
        _check_reachable(address)
        init: dict[str, Any] = dict(address=address, include_dashboard=False, log_to_driver=False,
                                    ignore_reinit_error=True, configure_logging=False)
        if address is None and config.ray_num_cpus:
            init["num_cpus"] = config.ray_num_cpus
        try:
            ray.init(**init)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise CinefuseError(f"--ray {config.ray}: cannot start or reach Ray ({exc})") from exc
    context = ray.data.DataContext.get_current()
    saved = {name: getattr(context, name) for name in ("enable_progress_bars", "print_on_execution_start")}
    context.enable_progress_bars = False  # our own tqdm bar counts items; Ray's would interleave with it
    context.print_on_execution_start = False
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        if started_here:
            ray.shutdown()


def _run_actors(ray, config: ExtractConfig, local: str, items: list, chunks: list, store_config: dict) -> dict:
    from cinefuse.extract.runner import ExtractFailed
    from cinefuse.extract.progress import Throughput

    cuda = config.device.startswith("cuda")
    resources = ray.cluster_resources()
    default = int(resources.get("GPU" if cuda else "CPU", 1))
    actors = max(1, min(config.ray_tasks or default, len(chunks)))
    if cuda and not resources.get("GPU"):
        raise CinefuseError(f"--ray {config.ray} --device {config.device}: the Ray cluster has no GPU; "
                            "use --device cpu or add GPU nodes")
    values = config.to_dict()
    # CPU actors are the parallelism (one core each, no DataLoader processes of their own); a GPU
    # actor keeps the configured decoding workers so decoding hides behind its model
    values.update(ray=None, store=local, overwrite=False, progress=False, num_shards=1, shard_index=0,
                  workers=config.workers if cuda else 0, torch_threads=config.torch_threads or (0 if cuda else 1))
    rows = [{"id": item.id, "video": item.video, "fields": json.dumps(item.fields, sort_keys=True), "chunk": index}
            for index, chunk in enumerate(chunks) for item in chunk]
    placement: dict[str, Any] = {"num_gpus": 1} if cuda else {"num_cpus": 1}
    dataset = ray.data.from_items(rows).map_batches(
        ChunkWorker, batch_size=config.shard_size, compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_args=(values, items, store_config), batch_format="numpy", **placement)
    by_status: Counter = Counter()
    shards: set[str] = set()
    processed = failed = frames = 0
    failed_items: list[dict] = []
    throughput = Throughput(len(rows), config.progress)
    try:
        for row in dataset.iter_rows():
            if row["error"]:  # the actor's count of shards before it is not the run's
                raise ExtractFailed(re.sub(r"\d+ shard\(s\) before it are committed",
                                           f"{len(shards)} shard(s) of this run are committed",
                                           str(row["error"])))
            processed += 1
            failed += bool(row["failed"])
            if row["failed"]:
                failed_items.append({"id": str(row["id"]), "status": str(row["status"])})
            frames += int(row["frames"])
            by_status[str(row["status"])] += 1
            if row["shard"]:
                shards.add(str(row["shard"]))
            throughput.add(1, int(row["frames"]))
    except Exception as exc:  # Ray wraps errors raised in actors: surface ours (exit codes, messages) as they are
        cause = _cinefuse_cause(exc)
        if cause is None or cause is exc:
            raise
        raise cause from None
    finally:
        throughput.close()
    return {"processed": processed, "failed": failed, "shards_written": len(shards),
            "by_status": dict(sorted(by_status.items())), "failed_items": failed_items, "frames": frames,
            "ray_tasks": actors, **throughput.summary()}


def _cinefuse_cause(exc: BaseException | None) -> CinefuseError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)  # a RayTaskError keeps the actor's own exception
        if isinstance(cause, CinefuseError):
            return cause
        if isinstance(exc, CinefuseError) and type(exc).__module__.startswith("cinefuse"):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _check_reachable(address: str | None) -> None:
    """Fail fast on an unreachable cluster: ``ray.init`` would keep retrying for a long time."""
    if address is None or address == "auto":
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise CinefuseError(f"--ray {address}: expected HOST:PORT of the head node (e.g. 10.0.0.5:6379), "
                            "ray://HOST:10001, 'auto', or no address for a local instance")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise CinefuseError(f"--ray {address}: cannot reach the Ray cluster ({exc}); check the address, "
                            "or start the head node with `ray start --head`") from exc
