"""One extraction run from start to end: where the store is built, which runner does the work.

    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract

    summary = run_extract(ExtractConfig(manifest="items.csv", store="store/"))
    print(format_summary(summary))

This module stands above both runners: the single-process loop of
:mod:`cinefuse.extract.runner` and the Ray Data actors of :mod:`cinefuse.extract.ray_runner`
(which imports the runner, never this module). It validates the config, and for an
``s3://`` store builds the store in a local staging folder: the bucket's committed shards are
pulled first (so a rerun resumes), the staging folder is pushed at the end, also after a
failure (what was committed is kept). Then it finishes the summary both runners return: total
seconds and the exit code.

Summary keys: ``store``, ``config_hash``, ``items`` (in this slice), ``skipped`` (already
committed), ``processed``, ``failed``, ``shards_written``, ``by_status`` (status categories),
``frames``, ``seconds`` (the whole run), ``extract_seconds``, ``items_per_second``,
``frames_per_second`` (over the extraction loop, the progress bar's clock and figures),
``exit_code`` (1 when every processed item failed), and ``ray_tasks`` on Ray.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.progress import Throughput, rate_text


def run_extract(config: ExtractConfig | None = None, **overrides: Any) -> dict:
    """Extract every item of ``config`` into its store; returns the run summary (see module doc)."""
    config = (config or ExtractConfig()).replace(**overrides) if overrides else (config or ExtractConfig())
    config.validate()
    if not config.store:
        raise CinefuseError("extract needs --store: a local folder or s3://bucket/prefix")
    if config.overwrite and config.num_shards > 1:
        raise CinefuseError("--overwrite with --num-shards would let each slice wipe the others' shards: "
                            "delete the store (or run once with --overwrite and no slices) first")
    started = time.perf_counter()
    remote = config.store.startswith("s3://")
    local = staging_folder(config) if remote else Path(config.store)
    if remote:
        _pull_existing(config, local)
    try:
        if config.ray:
            from cinefuse.extract.ray_runner import run_extract_ray

            summary = run_extract_ray(config, local)
        else:
            summary = _run_local(config, local)
    finally:
        if remote and (local / "manifest.json").is_file():
            from cinefuse.store.s3 import push

            push(local, config.store, endpoint_url=config.endpoint_url)
    summary["seconds"] = time.perf_counter() - started
    processed = summary["processed"]
    summary["exit_code"] = 1 if processed and summary["failed"] == processed else 0
    return summary


def staging_folder(config: ExtractConfig) -> Path:
    """Where an ``s3://`` store is built: ``--staging``, else a per-store cache folder."""
    if config.staging:
        return Path(config.staging)
    digest = hashlib.sha256(config.store.encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "cinefuse" / "staging" / digest


def _pull_existing(config: ExtractConfig, local: Path) -> None:
    """Resume against an s3:// store: bring its committed shards into the staging folder."""
    from cinefuse.errors import StoreError
    from cinefuse.store.s3 import pull

    try:
        pull(config.store, local, endpoint_url=config.endpoint_url)
    except StoreError as exc:
        if "does not exist" not in str(exc):
            raise


def _run_local(config: ExtractConfig, root: Path) -> dict:
    """The single-process run: plan, load the models, extract chunk by chunk into ``root``."""
    from cinefuse.extract.runner import extract_chunks, plan_run

    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    plan = plan_run(config, root)
    summary = plan.summary
    if not plan.pending:
        return summary
    plan.extractor.load_models(plan.pending)  # before the clock of the loop and before the workers fork
    by_status: Counter = Counter()
    throughput = Throughput(len(plan.pending), config.progress)
    try:
        for done in extract_chunks(config, plan.extractor, plan.chunks, plan.writer, throughput):
            summary["shards_written"] += 1
            summary["failed"] += sum(done.failed)
            summary["frames"] += sum(done.frames)
            by_status.update(done.statuses)
    finally:
        throughput.close()
    summary.update(processed=len(plan.pending), by_status=dict(sorted(by_status.items())), **throughput.summary())
    return summary


def format_summary(summary: dict) -> str:
    """The readable summary ``cinefuse extract`` prints (``--json`` prints the dict instead)."""
    lines = [f"extract: {summary['processed']} item(s) processed, {summary['skipped']} already in the store, "
             f"{summary['failed']} failed, {summary['shards_written']} shard(s) written to {summary['store']}"]
    if summary.get("processed"):
        lines.append(f"  {rate_text(summary['processed'], summary['frames'], summary['extract_seconds'])} "
                     f"over {summary['extract_seconds']:.1f} s of extraction ({summary['seconds']:.1f} s in all)")
    for status, count in summary.get("by_status", {}).items():
        lines.append(f"  {count:>7}  {status}")
    return "\n".join(lines)
