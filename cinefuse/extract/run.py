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
``failed_items`` (``{"id", "status"}`` of every failed item), ``device`` (the one used: ``auto``
is cuda when torch sees a GPU), ``exit_code`` (1 when every processed item failed), and
``ray_tasks`` on Ray.
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

FAILED_SHOWN = 20  # failed items the readable summary names (--json holds every one)


def run_extract(config: ExtractConfig | None = None, **overrides: Any) -> dict:
    """Extract every item of ``config`` into its store; returns the run summary (see module doc)."""
    config = (config or ExtractConfig()).replace(**overrides) if overrides else (config or ExtractConfig())
    config.validate()
    if not config.store:
        raise CinefuseError("extract needs --store: a local folder or s3://bucket/prefix")
    if (config.overwrite or config.refit) and config.num_shards > 1:
        flag = "--overwrite" if config.overwrite else "--refit"
        raise CinefuseError(f"{flag} with --num-shards would let each slice wipe the others' shards: "
                            f"delete the store (or run once with {flag} and no slices) first")
    config = config.replace(device=resolve_device(config.device))
    started = time.perf_counter()
    remote = config.store.startswith("s3://")
    local = staging_folder(config) if remote else Path(config.store)
    if remote:
        _pull_existing(config, local)
        sync_transforms(config, local, "pull")
    try:
        if config.ray:
            from cinefuse.extract.ray_runner import run_extract_ray

            summary = run_extract_ray(config, local)
        else:
            summary = _run_local(config, local)
    finally:
        if remote and (local / "manifest.json").is_file():
            from cinefuse.store.s3 import push

            sync_transforms(config, local, "push")  # before the manifest that names them
            push(local, config.store, endpoint_url=config.endpoint_url)
    summary["seconds"] = time.perf_counter() - started
    summary["device"] = config.device
    processed = summary["processed"]
    summary["exit_code"] = 1 if processed and summary["failed"] == processed else 0
    return summary


def resolve_device(device: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu. A cuda device torch cannot see is one
    line naming what it sees."""
    if device not in ("auto",) and not device.startswith("cuda"):
        return device
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda" if count else "cpu"
    index = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
    if count == 0:
        raise CinefuseError(f"--device {device}: torch sees no GPU here (torch {torch.__version__}, "
                            f"CUDA build {torch.version.cuda or 'none'}): run with --device cpu, or leave "
                            "--device at auto")
    if index >= count:
        raise CinefuseError(f"--device {device}: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return device


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


def sync_transforms(config: ExtractConfig, local: Path, direction: str) -> None:
    """Carry the store's fitted transforms (``transforms/*.npz``, :mod:`cinefuse.extract.transforms`)
    between the staging folder and an ``s3://`` store: ``store push`` and ``pull`` move shards and
    the manifest only, and a later run from a fresh staging folder needs the fit to add items."""
    from cinefuse.extract.transforms import FOLDER
    from cinefuse.store.location import join_key, split_s3_uri
    from cinefuse.store.s3 import s3_client

    bucket, prefix = split_s3_uri(config.store)
    client = s3_client(config.endpoint_url)
    remote_prefix = join_key(prefix, FOLDER) + "/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=remote_prefix)
    remote = {obj["Key"][len(remote_prefix):] for page in pages for obj in page.get("Contents", [])}
    folder = local / FOLDER
    if direction == "pull":
        for name in sorted(remote):
            if name.endswith(".npz") and "/" not in name and not (folder / name).is_file():
                folder.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, remote_prefix + name, str(folder / name))
        return
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        if path.name not in remote:
            client.upload_file(str(path), bucket, remote_prefix + path.name)


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
            summary["failed_items"] += [{"id": item_id, "status": status}
                                        for item_id, status, bad in zip(done.ids, done.details, done.failed) if bad]
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
    failed = summary.get("failed_items", [])
    if failed:
        lines.append(f"  failed item(s) ({len(failed)}):")
        lines += [f"    {f['id']}: {f['status']}" for f in failed[:FAILED_SHOWN]]
        if len(failed) > FAILED_SHOWN:
            lines.append(f"    ... and {len(failed) - FAILED_SHOWN} more (--json lists all)")
    return "\n".join(lines)
