"""The extraction loop: items in, committed store shards out (run by :mod:`cinefuse.extract.run`
in one process, and by each Ray actor of :mod:`cinefuse.extract.ray_runner`).

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

import contextlib
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.inputs import Item, MissingInput, fetch_s3, load_manifest, scan_videos

class ExtractFailed(CinefuseError):
    """``strict`` stopped the run at a failed item (exit status 1, like a run where all failed)."""

    exit_code = 1


STOP_AT_ENV = "CINEFUSE_EXTRACT_STOP_AT"
NO_VIDEO = "no video"
NO_TEXT = "no text"
MEDIA_OK = ("ok", "partial")


# ----------------------------------------------------------------------------------------------
# decoding (runs in the DataLoader workers)
# ----------------------------------------------------------------------------------------------
@dataclass
class DecodedItem:
    position: int  # index in the run's pending list
    id: str
    frames: Any = None  # torch uint8 (T, S, S, 3) or None
    frame_times: np.ndarray | None = None
    video_status: str = NO_VIDEO
    windows: Any = None  # torch float32 (W, L), only when a model backbone needs raw audio
    n_windows: int = 0
    audio_status: str = NO_VIDEO
    media: dict[str, np.ndarray] = field(default_factory=dict)  # media backbone outputs by set
    seconds: float = 0.0


def category(status: str) -> str:
    return status.split(":", 1)[0].strip()


def media_ok(status: str) -> bool:
    return category(status) in MEDIA_OK


@dataclass
class DecodePlan:
    """Everything a worker needs to turn an item into a :class:`DecodedItem` (picklable)."""

    frames: int
    size: int  # 0: no visual backbone
    frame_sampling: str
    decode_threads: int
    need_audio: bool
    keep_windows: bool
    sample_rate: int
    window_seconds: float
    max_seconds: float
    endpoint_url: str | None
    visual_media: list = field(default_factory=list)
    audio_media: list = field(default_factory=list)


def decode_item(item: Item, position: int, plan: DecodePlan) -> DecodedItem:
    import torch

    from cinefuse.extract.decode import MediaError, sample_audio, sample_frames

    started = time.perf_counter()
    out = DecodedItem(position, item.id)
    if not item.video:
        out.seconds = time.perf_counter() - started
        return out
    path, temp = item.video, None
    try:
        if item.video.startswith("s3://"):
            path = temp = fetch_s3(item.video, plan.endpoint_url)
        if plan.size:
            try:
                sample = sample_frames(path, plan.frames, plan.size, plan.frame_sampling, plan.decode_threads)
                out.frames = torch.from_numpy(sample.frames)
                out.frame_times = sample.times
                out.video_status = sample.status
                for backbone in plan.visual_media:
                    out.media.update(backbone.compute(sample.frames))
            except MediaError as exc:
                out.video_status = str(exc)
        else:
            out.video_status = "ok"
        if plan.need_audio:
            if category(out.video_status) in ("missing file", "empty file", "not a video"):
                out.audio_status = out.video_status  # the same file: no second attempt
            else:
                try:
                    audio = sample_audio(path, plan.sample_rate, plan.window_seconds, plan.max_seconds)
                    out.audio_status = audio.status
                    out.n_windows = audio.windows.shape[0]
                    if plan.keep_windows:
                        out.windows = torch.from_numpy(audio.windows)
                    for backbone in plan.audio_media:
                        out.media.update(backbone.compute(audio.windows))
                except MediaError as exc:
                    out.audio_status = str(exc)
    except MissingInput as exc:
        out.video_status = out.audio_status = str(exc)
    except Exception as exc:  # an unforeseen failure in one item must not end the run
        message = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        out.frames = None
        out.media = {}
        out.video_status = out.audio_status = message
    finally:
        if temp:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    out.seconds = time.perf_counter() - started
    return out


class ItemDataset:
    """Map-style dataset over the pending items (a torch Dataset by duck typing)."""

    def __init__(self, items: list[Item], plan: DecodePlan):
        self.items = items
        self.plan = plan

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> DecodedItem:
        return decode_item(self.items[index], index, self.plan)


def _identity(sample):
    return sample


def _worker_init(_worker_id: int) -> None:
    import torch

    from cinefuse.extract.parent_watch import exit_with_parent

    exit_with_parent()  # a worker ends with the main process, even mid-item (issue 24.6)
    torch.set_num_threads(1)  # the workers parallelise over items, not inside one


# ----------------------------------------------------------------------------------------------
# models (main process)
# ----------------------------------------------------------------------------------------------
class Extractor:
    """Holds the backbones of a run and turns decoded items into per-set rows."""

    def __init__(self, config: ExtractConfig, backbones):
        self.config = config
        self.backbones = backbones
        self.specs = backbones.sets()
        size = backbones.decode_size or (config.image_size if backbones.visual_media else 0)
        self.plan = DecodePlan(
            frames=config.frames, size=max(size, config.image_size) if size else 0,
            frame_sampling=config.frame_sampling, decode_threads=config.decode_threads,
            need_audio=backbones.needs_audio, keep_windows=bool(backbones.audio_models),
            sample_rate=config.audio_sample_rate, window_seconds=config.audio_window_seconds,
            max_seconds=config.audio_max_seconds, endpoint_url=config.endpoint_url,
            visual_media=list(backbones.visual_media), audio_media=list(backbones.audio_media))

    def load_models(self, items: list[Item] | None = None) -> None:
        """Load the model backbones ``items`` need (all of them when None): the visual and audio
        models only when some item names a video, so text-only items never wait for them."""
        media = items is None or any(item.video for item in items)
        models = [*self.backbones.visual_models, *self.backbones.audio_models] if media else []
        for backbone in [*models, *self.backbones.text]:
            if hasattr(backbone, "load"):
                backbone.load()

    # rows: set name -> {item id: (array or None, status)}
    def forward_media_models(self, batch: list[DecodedItem], rows: dict[str, dict]) -> int:
        """Run the visual and audio model backbones on one batch; returns frames processed."""
        frame_items = [d for d in batch if d.frames is not None]
        _embed_sequences(self.backbones.visual_models, batch, "frames", "video_status", rows)
        _embed_sequences(self.backbones.audio_models, batch, "windows", "audio_status", rows)
        for backbone in [*self.backbones.visual_media, *self.backbones.audio_media]:
            visual = backbone in self.backbones.visual_media
            for spec in backbone.sets():
                for d in batch:
                    status = d.video_status if visual else d.audio_status
                    rows[spec.name][d.id] = (d.media.get(spec.name), status)
        return sum(len(d.frames) for d in frame_items)

    def text_and_meta(self, items: list[Item], rows: dict[str, dict]) -> None:
        from cinefuse.extract.backbones.tfidf import TfIdf

        texts = [item.text(self.config.text_fields) for item in items]
        for backbone in self.backbones.text:
            (spec,) = backbone.sets()
            if isinstance(backbone, TfIdf):
                vectors, valid = backbone.transform([self.tfidf_text(item) for item in items])
                for item, vector, ok in zip(items, vectors, valid):
                    rows[spec.name][item.id] = (vector, "ok") if ok else (None, NO_TEXT if not self.tfidf_text(item) else "no known words")
                continue
            present = [i for i, text in enumerate(texts) if text]
            vectors = backbone.embed([texts[i] for i in present]) if present else np.zeros((0, 1))
            for item in items:
                rows[spec.name][item.id] = (None, NO_TEXT)
            for i, vector in zip(present, vectors):
                rows[spec.name][items[i].id] = (vector, "ok")
        for backbone in self.backbones.meta:
            (spec,) = backbone.sets()
            for item in items:
                rows[spec.name][item.id] = backbone.encode(item.fields)

    def tfidf_text(self, item: Item) -> str:
        return item.fields.get(self.config.tfidf_field, "").strip() or item.text(self.config.text_fields)

    def fit_text(self, items: list[Item]) -> str:
        """Fit corpus-dependent backbones (TF-IDF) on every item; returns the corpus fingerprint."""
        from cinefuse.extract.backbones.tfidf import TfIdf

        fingerprint = ""
        for backbone in self.backbones.text:
            if isinstance(backbone, TfIdf):
                backbone.fit([self.tfidf_text(item) for item in items])
                fingerprint = backbone.fingerprint
        return fingerprint

    def blocks(self, ids: list[str], rows: dict[str, dict], library: dict) -> dict:
        """Per-set FeatureBlocks for one shard, padded sequences and provenance attributes."""
        from cinefuse.store import FeatureBlock

        out = {}
        attrs_by_backbone = {id(b): b.attrs() for b, _ in self.specs.values()}
        for name, (backbone, spec) in self.specs.items():
            dtype = np.dtype(spec.dtype)
            data = np.zeros((len(ids), *spec.shape), dtype)
            valid = np.zeros(len(ids), bool)
            status = []
            lengths = np.zeros(len(ids), np.int32) if spec.sequence else None
            for row, item_id in enumerate(ids):
                value, text = rows[name].get(item_id, (None, "not extracted"))
                ok = value is not None and media_ok(text)
                if ok:
                    value = np.asarray(value, np.float32)
                    if spec.sequence:
                        n = min(len(value), spec.shape[0])
                        data[row, :n] = value[:n]
                        lengths[row] = n
                    else:
                        data[row] = value
                    valid[row] = bool(np.isfinite(data[row]).all())
                    if not valid[row]:
                        data[row] = 0
                        text = "error: non-finite values"
                        if lengths is not None:
                            lengths[row] = 0
                status.append(text if ok or text != "ok" else "not extracted")
            attrs = dict(attrs_by_backbone[id(backbone)])
            attrs.update(self.sampling_attrs(spec), library_versions=library)
            out[name] = FeatureBlock(data=data, valid=valid, status=status, lengths=lengths, attrs=attrs)
        return out

    def sampling_attrs(self, spec) -> dict:
        c = self.config
        modality = spec.name.split("/", 1)[0]
        if modality == "visual":
            return {"frames": c.frames, "frame_sampling": f"{c.frame_sampling}: centres of {c.frames} equal slices of the packet-scan span",
                    "image_size": self.plan.size}
        if modality == "audio":
            return {"audio_sample_rate": c.audio_sample_rate, "audio_window_seconds": c.audio_window_seconds,
                    "audio_max_seconds": c.audio_max_seconds, "audio_max_windows": c.max_audio_windows}
        if modality == "text":
            return {"text_fields": list(c.text_fields)}
        return {}


def _embed_sequences(models, batch: list, sequence: str, status: str, rows: dict[str, dict]) -> None:
    """Run each model over the ``sequence`` tensors (frames or audio windows) of a whole batch at
    once, then hand each item its rows: the per-step sequence and its mean. Items without the
    sequence get empty rows carrying their status (why it is missing)."""
    import torch

    present = [d for d in batch if getattr(d, sequence) is not None]
    for backbone in models:
        steps_name, pooled_name = (spec.name for spec in backbone.sets())
        if present:
            embedded = backbone.embed(torch.cat([getattr(d, sequence) for d in present])).cpu().numpy()
            start = 0
            for d in present:
                part = embedded[start:start + len(getattr(d, sequence))]
                start += len(part)
                rows[steps_name][d.id] = (part, getattr(d, status))
                rows[pooled_name][d.id] = (part.mean(axis=0), getattr(d, status))
        for d in batch:
            if getattr(d, sequence) is None:
                rows[steps_name][d.id] = (None, getattr(d, status))
                rows[pooled_name][d.id] = (None, getattr(d, status))

def item_status(item: Item, rows: dict[str, dict], backbones) -> str:
    """One status per item for the summary: the first thing that went wrong, else ok."""
    visual = [s.name for b in [*backbones.visual_models, *backbones.visual_media] for s in b.sets()]
    audio = [s.name for b in [*backbones.audio_models, *backbones.audio_media] for s in b.sets()]
    if not item.video:
        return NO_VIDEO if (visual or audio) else "ok"
    for names in (visual, audio):
        for name in names:
            status = rows[name][item.id][1]
            if status != "ok":
                return status
    return "ok"


def item_failed(item: Item, rows: dict[str, dict], backbones) -> bool:
    """Failed: a video was named and none of its media decoded, or no feature set is valid."""
    if not any(rows[name][item.id][0] is not None and media_ok(rows[name][item.id][1]) for name in rows):
        return True
    media = [s.name for b in [*backbones.visual_models, *backbones.visual_media, *backbones.audio_models,
                              *backbones.audio_media] for s in b.sets()]
    if item.video and media:
        return not any(media_ok(rows[name][item.id][1]) for name in media)
    return False


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def load_items(config: ExtractConfig) -> list[Item]:
    if bool(config.manifest) == bool(config.videos):
        raise CinefuseError("extract needs exactly one input: --manifest FILE or --videos FOLDER")
    return load_manifest(config.manifest) if config.manifest else scan_videos(config.videos)


def slice_items(items: list[Item], num_shards: int, shard_index: int) -> list[Item]:
    return [item for i, item in enumerate(items) if i % num_shards == shard_index]


def store_config(config: ExtractConfig, fingerprint: str) -> dict:
    out = config.feature_config()
    if fingerprint:
        out["text"]["tfidf_corpus"] = fingerprint
    return out


def prepare_extractor(config: ExtractConfig, items: list[Item]):
    """The run's backbones (models not loaded yet) and extractor, with corpus-dependent text
    backbones fitted on every item; returns ``(backbones, extractor, corpus fingerprint)``."""
    from cinefuse.extract import backbones as registry

    backbones = registry.build(config)
    extractor = Extractor(config, backbones)
    fingerprint = extractor.fit_text(items)
    return backbones, extractor, fingerprint


def plan_chunks(mine: list[Item], shard_size: int, committed: set[str]) -> list[list[Item]]:
    """Chunks of ``shard_size`` cut from the whole slice, then committed ids removed: a resumed
    run (or a Ray run) computes each remaining chunk with exactly the batches of a fresh run."""
    chunks = [mine[i:i + shard_size] for i in range(0, len(mine), shard_size)]
    chunks = [[item for item in chunk if item.id not in committed] for chunk in chunks]
    return [chunk for chunk in chunks if chunk]


def stop_point(name: str, passed: Counter) -> None:
    """Crash-test hook: with ``CINEFUSE_EXTRACT_STOP_AT=NAME:N`` in the environment the process
    stops itself (SIGSTOP) the N-th time it passes point NAME (``forward``: after a forward batch;
    ``before-commit``: a chunk computed, nothing of it written; ``after-commit``: a shard
    committed to the manifest), so a test can look at the disk at a known moment and then kill
    the process. Without the variable it costs one dictionary lookup."""
    spec = os.environ.get(STOP_AT_ENV)
    if spec:
        passed[name] += 1
        if spec == f"{name}:{passed[name]}":
            os.kill(os.getpid(), signal.SIGSTOP)


@dataclass
class ChunkDone:
    """One committed chunk: its shard and, per item, the summary status, failure flag, frames."""

    shard: str
    ids: list[str]
    statuses: list[str]  # status categories (``category``)
    failed: list[bool]
    frames: list[int]


def make_loader(config: ExtractConfig, dataset: ItemDataset):
    """The DataLoader that decodes ``dataset`` in ``config.workers`` processes, in order. Items
    without a video have nothing to decode: when none has one, they are "decoded" here, in this
    process, instead of paying for worker processes (seconds each when they must be spawned)."""
    import torch

    workers = config.workers if any(item.video for item in dataset.items) else 0
    loader_kwargs: dict[str, Any] = dict(batch_size=None, shuffle=False, collate_fn=_identity,
                                         num_workers=workers)
    if workers:
        loader_kwargs.update(worker_init_fn=_worker_init, prefetch_factor=max(2, config.batch_size),
                             pin_memory=config.device.startswith("cuda"))
        if "jax" in sys.modules:
            # forking a process whose JAX thread pools are running can deadlock the child (the
            # demo and the test suite load fuse first): spawn fresh workers instead (not a fork
            # server, whose environment would be the one of the moment it started)
            loader_kwargs["multiprocessing_context"] = "spawn"
    return torch.utils.data.DataLoader(dataset, **loader_kwargs)


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
    passed: Counter = Counter()
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
            stop_point("forward", passed)
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
        blocks = extractor.blocks(ids, rows, library)
        stop_point("before-commit", passed)
        record = writer.write_shard(ids, blocks)
        stop_point("after-commit", passed)
        shards_written += 1
        yield ChunkDone(record.name, ids, [category(s) for s in statuses], fails,
                        [frames_of.pop(item_id) for item_id in ids])
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
    """Read the items, fit what needs the whole corpus (TF-IDF), open the store, apply
    ``--overwrite`` (once, before any worker writes), take this slice and drop committed ids.
    Shared by the single-process run and the Ray driver."""
    from cinefuse.store import StoreWriter

    items = load_items(config)
    _backbones, extractor, fingerprint = prepare_extractor(config, items)
    writer = StoreWriter(root, store_config(config, fingerprint))
    if config.overwrite:
        writer.reset()
    mine = slice_items(items, config.num_shards, config.shard_index)
    chunks = plan_chunks(mine, config.shard_size, writer.committed_ids())
    pending = [item for chunk in chunks for item in chunk]
    summary: dict[str, Any] = {
        "store": config.store, "config_hash": writer.config_hash, "items": len(mine),
        "skipped": len(mine) - len(pending), "processed": 0, "failed": 0, "shards_written": 0,
        "by_status": {}, "frames": 0, "seconds": 0.0, "extract_seconds": 0.0, "items_per_second": 0.0,
        "frames_per_second": 0.0,
    }
    return RunPlan(items, extractor, writer, chunks, pending, summary)
