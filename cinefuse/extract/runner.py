"""The extraction loop: items in, committed store shards out (run by :mod:`cinefuse.extract.run`
in one process, and by each Ray actor of :mod:`cinefuse.extract.ray_runner`).

One file per role, as clip-retrieval's ``clip_inference``: :mod:`~cinefuse.extract.reader` (items,
slices, chunks, decoding workers), :mod:`~cinefuse.extract.mapper` (backbones: decoded items to
rows), :mod:`~cinefuse.extract.writer` (rows to store blocks) and this runner, which plans a run
and drives the loop.

Flow. The item list (manifest or folder scan) is cut into this run's slice (item ``i`` belongs to
slice ``i % num_shards``), then into chunks of ``shard_size`` items; a chunk is the unit of commit
and of resume: ids the store already holds under the same config hash are skipped. A DataLoader
whose worker processes fetch, decode and compute the cheap media features (low-level frame
statistics, log-mel) feeds the main process, which runs the neural backbones on batches of
``batch_size`` items (all their frames in one forward) while the workers decode ahead. When a
chunk is complete its text and metadata features are computed and the chunk is written as one
shard (atomic; see ``cinefuse.store``).

Determinism. Chunks are cut from the full slice before committed ids are removed, and forward
batches never cross a chunk, so a run killed and resumed computes every remaining chunk with
exactly the same batches as an uninterrupted run: the store content is bit-for-bit the same.

Bad input never stops the run: each item's feature sets get ``valid=False`` and a status naming
the reason, or keep what decoded with a ``partial: ...`` status. ``strict`` stops at the first
item that is not fully ok.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.inputs import Item
from cinefuse.extract.mapper import Extractor, item_failed, item_status
from cinefuse.extract.reader import (NO_VIDEO, DecodedItem, ItemDataset, category, load_items, make_loader,
                                     plan_chunks, slice_items)
from cinefuse.extract.writer import feature_blocks
from cinefuse.faults import fault_point


class ExtractFailed(CinefuseError):
    """``strict`` stopped the run at a failed item (exit status 1, like a run where all failed)."""

    exit_code = 1


def prepare_extractor(config: ExtractConfig, items: list[Item], root: Path | str,
                      existing: dict[str, dict]):
    """The run's backbones (models not loaded yet) and extractor, with corpus-dependent text
    backbones fitted on every item or loaded from the store at ``root`` (whose configs are
    ``existing``); returns ``(backbones, extractor, store config)``
    (:func:`cinefuse.extract.catalogue.run_store_config`)."""
    from cinefuse.extract import backbones as registry
    from cinefuse.extract.catalogue import run_store_config

    backbones = registry.build(config)
    extractor = Extractor(config, backbones)
    return backbones, extractor, run_store_config(config, extractor, items, Path(root), existing)


@dataclass
class ChunkDone:
    """One committed chunk: its shard and, per item, the summary status, failure flag, frames."""

    shard: str
    ids: list[str]
    statuses: list[str]  # status categories (``category``)
    failed: list[bool]
    frames: list[int]
    details: list[str]  # the full status of each item (``statuses`` holds its category)


def extract_chunks(config: ExtractConfig, extractor: Extractor, chunks: list[list[Item]], writer,
                   progress=None):
    """Decode, embed and commit ``chunks`` (one shard each), yielding a :class:`ChunkDone` per
    shard. A DataLoader (``config.workers`` processes) decodes ahead while this process runs the
    model backbones on batches of ``config.batch_size`` items that never cross a chunk. Models
    must be loaded (``extractor.load_models()``). ``strict`` raises :class:`ExtractFailed` before
    writing a chunk holding an item that is not fully ok. ``progress`` (a
    :class:`~cinefuse.extract.progress.Throughput`) counts items and frames per forward batch.
    Used by the single-process run and by each Ray actor."""
    from cinefuse.extract.backbones.base import library_versions

    backbones = extractor.backbones
    pending = [item for chunk in chunks for item in chunk]
    if not pending:
        return
    loader = make_loader(config, ItemDataset(pending, extractor.plan))
    library = library_versions()
    shards_written = 0
    chunk_of = {item.id: index for index, chunk in enumerate(chunks) for item in chunk}
    rows: dict[str, dict] = {name: {} for name in extractor.specs}
    frames_of: dict[str, int] = {}
    batch: list[DecodedItem] = []
    done_in_chunk = 0
    chunk_index = 0
    for decoded in loader:
        batch.append(decoded)
        frames_of[decoded.id] = len(decoded.frames) if decoded.frames is not None else 0
        done_in_chunk += 1
        chunk = chunks[chunk_index]
        last_of_chunk = done_in_chunk == len(chunk)
        if len(batch) == config.batch_size or last_of_chunk:
            frames = extractor.forward_media_models(batch, rows)
            if progress is not None:
                progress.add(len(batch), frames)
            batch = []
            fault_point("forward")
        if not last_of_chunk:
            continue
        assert all(chunk_of[item.id] == chunk_index for item in chunk)
        extractor.text_and_meta(chunk, rows)
        statuses = [item_status(item, rows, backbones) for item in chunk]
        fails = [item_failed(item, rows, backbones) for item in chunk]
        if config.strict:
            for item, status, bad in zip(chunk, statuses, fails):
                if bad or category(status) not in ("ok", NO_VIDEO):
                    raise ExtractFailed(
                        f"--strict: item {item.id!r} ({item.video or 'no video'}) failed: {status}; "
                        f"{shards_written} shard(s) before it are committed, run again without "
                        "--strict to record the failure and go on")
        ids = [item.id for item in chunk]
        blocks = feature_blocks(extractor, ids, rows, library)
        fault_point("before-commit")
        record = writer.write_shard(ids, blocks)
        fault_point("after-commit")
        shards_written += 1
        yield ChunkDone(record.name, ids, [category(s) for s in statuses], fails,
                        [frames_of.pop(item_id) for item_id in ids], statuses)
        for name in rows:  # keep memory flat: drop the committed chunk's rows
            for item_id in ids:
                rows[name].pop(item_id, None)
        chunk_index += 1
        done_in_chunk = 0


@dataclass
class RunPlan:
    """What a run knows before it extracts anything: the items, what is left to do, in chunks."""

    items: list
    extractor: Any
    writer: Any
    chunks: list
    pending: list
    summary: dict[str, Any]


def plan_run(config: ExtractConfig, root: Path | str) -> RunPlan:
    """Read the items, fit what needs the whole corpus (TF-IDF) or take the store's fit (a
    growing catalogue), open the store, apply ``--overwrite`` / ``--refit`` (once, before any
    worker writes), take this slice and drop committed ids. Shared by the single-process run and
    the Ray driver."""
    from cinefuse.store import StoreWriter
    from cinefuse.store.manifest import read_manifest

    items = load_items(config)
    if not items:
        raise CinefuseError(f"{config.manifest or config.videos} lists no items: nothing to extract")
    fresh = config.overwrite or config.refit
    existing = {} if fresh or not Path(root).is_dir() else read_manifest(Path(root)).configs
    _backbones, extractor, store_cfg = prepare_extractor(config, items, root, existing)
    writer = StoreWriter(root, store_cfg)
    if fresh:
        writer.reset()
    mine = slice_items(items, config.num_shards, config.shard_index)
    chunks = plan_chunks(mine, config.shard_size, writer.committed_ids())
    pending = [item for chunk in chunks for item in chunk]
    summary: dict[str, Any] = {
        "store": config.store, "config_hash": writer.config_hash, "items": len(mine),
        "skipped": len(mine) - len(pending), "processed": 0, "failed": 0, "shards_written": 0,
        "by_status": {}, "failed_items": [], "frames": 0, "seconds": 0.0, "extract_seconds": 0.0, "items_per_second": 0.0,
        "frames_per_second": 0.0,
    }
    return RunPlan(items, extractor, writer, chunks, pending, summary)
