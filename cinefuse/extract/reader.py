"""Items in: the run's item list, its slice and chunks, and the DataLoader that fetches and decodes
each item in worker processes (low-level frame statistics and log-mel are computed there too).

The item list (manifest or folder scan) is cut into this run's slice (item ``i`` belongs to slice
``i % num_shards``), then into chunks of ``shard_size`` items (:func:`plan_chunks`). One of the
four roles of an extraction (clip-retrieval's reader / mapper / writer / runner): the mapper
(:mod:`cinefuse.extract.mapper`) turns what is decoded here into rows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.inputs import Item, MissingInput, fetch_s3, load_manifest, scan_videos

NO_VIDEO = "no video"
NO_TEXT = "no text"
MEDIA_OK = ("ok", "partial")


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


def load_items(config: ExtractConfig) -> list[Item]:
    if bool(config.manifest) == bool(config.videos):
        raise CinefuseError("extract needs exactly one input: --manifest FILE or --videos FOLDER")
    return load_manifest(config.manifest) if config.manifest else scan_videos(config.videos)


def slice_items(items: list[Item], num_shards: int, shard_index: int) -> list[Item]:
    return [item for i, item in enumerate(items) if i % num_shards == shard_index]

def plan_chunks(mine: list[Item], shard_size: int, committed: set[str]) -> list[list[Item]]:
    """Chunks of ``shard_size`` cut from the whole slice, then committed ids removed: a resumed
    run (or a Ray run) computes each remaining chunk with exactly the batches of a fresh run."""
    chunks = [mine[i:i + shard_size] for i in range(0, len(mine), shard_size)]
    chunks = [[item for item in chunk if item.id not in committed] for chunk in chunks]
    return [chunk for chunk in chunks if chunk]

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
