"""Decoded items to rows: the run's backbones, and per item and feature set ``(array or None,
status)``.

:class:`Extractor` holds the backbones of a run: the visual and audio models run in this process
on whole forward batches (all the frames of a batch in one call), text and metadata features are
computed per chunk. ``rows`` maps a set name to ``{item id: (array or None, status)}``; the writer
(:mod:`cinefuse.extract.writer`) turns a chunk's rows into store blocks.
"""

from __future__ import annotations

import numpy as np

from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.inputs import Item
from cinefuse.extract.reader import NO_TEXT, NO_VIDEO, DecodedItem, DecodePlan, media_ok


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

    @property
    def tfidf(self):
        """The run's corpus-dependent backbone (:class:`~cinefuse.extract.backbones.tfidf.TfIdf`),
        or None."""
        from cinefuse.extract.backbones.tfidf import TfIdf

        return next((b for b in self.backbones.text if isinstance(b, TfIdf)), None)

    def fit_text(self, items: list[Item]) -> str:
        """Fit corpus-dependent backbones (TF-IDF) on every item; returns the corpus fingerprint
        (a store keeps the fit: :mod:`cinefuse.extract.catalogue`)."""
        if self.tfidf is None:
            return ""
        self.tfidf.fit([self.tfidf_text(item) for item in items])
        return self.tfidf.fingerprint


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
