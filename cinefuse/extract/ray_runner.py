"""Extraction on Ray: ``--ray`` starts a local instance, ``--ray ADDRESS`` joins a cluster.

The item list is split into one slice per Ray task (combined with any ``--num-shards K
--shard-index I`` given: task ``j`` takes items ``i`` with ``i % (K * T) == I + K * j``). Each
task runs the ordinary single-process pipeline on its slice and writes its own shards; the
store's manifest lock serialises their commits, so the driver's merge is the manifest itself and
the summaries are added up. The tasks must see the store folder: on one machine that is any local
folder; on a multi-node cluster use a shared filesystem (an ``s3://`` store is staged in a local
folder on the driver and pushed once at the end, so it needs the nodes to share that folder too).
Resume works as without Ray: ids already committed under the same config hash are skipped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig


def _run_slice(values: dict[str, Any]) -> dict:
    from cinefuse.extract.pipeline import run_extract

    return run_extract(ExtractConfig.from_dict(values, where="ray task"))


def run_extract_ray(config: ExtractConfig) -> dict:
    try:
        import ray
    except ImportError as exc:
        raise CinefuseError("--ray needs Ray: pip install 'cinefuse[ray]'") from exc
    from cinefuse.extract.pipeline import _pull_existing, staging_folder

    remote = config.store.startswith("s3://")
    local = str(staging_folder(config)) if remote else config.store
    if remote:
        _pull_existing(config, staging_folder(config))
    if config.overwrite:
        from cinefuse.store import StoreWriter

        StoreWriter(local, {}).reset()  # once, in the driver, before any task writes
    address = None if config.ray in ("local", "") else config.ray
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = dict(address=address, include_dashboard=False, log_to_driver=False,
                                    ignore_reinit_error=True, configure_logging=False)
        if address is None and config.ray_num_cpus:
            init["num_cpus"] = config.ray_num_cpus
        try:
            ray.init(**init)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise CinefuseError(f"--ray {config.ray}: cannot start or reach Ray ({exc})") from exc
    try:
        tasks = config.ray_tasks or max(1, int(ray.cluster_resources().get("CPU", 1)))
        base = config.to_dict()
        base.update(ray=None, store=local, overwrite=False, workers=0, progress=False,
                    num_shards=config.num_shards * tasks)
        remote_slice = ray.remote(num_cpus=1, max_retries=1)(_run_slice)
        futures = [remote_slice.remote({**base, "shard_index": config.shard_index + config.num_shards * j})
                   for j in range(tasks)]
        summaries = ray.get(futures)
    finally:
        if started_here:
            ray.shutdown()
    if remote:
        from cinefuse.store.s3 import push

        push(local, config.store, endpoint_url=config.endpoint_url)
    return merge_summaries(summaries, config.store, tasks)


def merge_summaries(summaries: list[dict], store: str, tasks: int) -> dict:
    by_status: Counter = Counter()
    for summary in summaries:
        by_status.update(summary.get("by_status", {}))
    total = {key: sum(s.get(key, 0) for s in summaries)
             for key in ("items", "skipped", "processed", "failed", "shards_written", "frames")}
    seconds = max((s.get("seconds", 0.0) for s in summaries), default=0.0)
    total.update(store=store, config_hash=summaries[0].get("config_hash") if summaries else "", ray_tasks=tasks,
                 by_status=dict(sorted(by_status.items())), seconds=seconds,
                 items_per_second=total["processed"] / seconds if seconds else 0.0,
                 frames_per_second=total["frames"] / seconds if seconds else 0.0)
    total["exit_code"] = 1 if total["processed"] and total["failed"] == total["processed"] else 0
    return total
