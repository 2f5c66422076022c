"""Rows out: a chunk's rows as the store's feature blocks (padded sequences, validity, status,
provenance attributes). The store config a run writes under is :mod:`cinefuse.extract.catalogue`'s.

The writing itself is :class:`cinefuse.store.StoreWriter`'s (atomic, checksummed shards); this
module decides what goes into a shard.
"""

from __future__ import annotations

import numpy as np

from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.reader import media_ok


def feature_blocks(extractor, ids: list[str], rows: dict[str, dict], library: dict) -> dict:
    """Per-set FeatureBlocks for one shard of ``extractor``'s sets (a
    :class:`~cinefuse.extract.mapper.Extractor`), padded sequences and provenance attributes.
    A set with no valid row in the shard is left out (a text-only chunk writes no video or audio
    set, which would be all zeros): the store reads a set a shard lacks as invalid rows. When no
    set has a valid row, the smallest one is kept, so the shard still records the ids and why
    they failed (a rerun skips them)."""
    from cinefuse.store import FeatureBlock

    blocks = _all_blocks(extractor, ids, rows, library, FeatureBlock)
    kept = {name: block for name, block in blocks.items() if block.valid.any()}
    if not kept and blocks:
        name = min(blocks, key=lambda n: (blocks[n].data[0].size if len(ids) else 0, n))
        kept = {name: blocks[name]}
    return kept


def _all_blocks(extractor, ids: list[str], rows: dict[str, dict], library: dict, FeatureBlock) -> dict:
    out = {}
    attrs_by_backbone = {id(b): b.attrs() for b, _ in extractor.specs.values()}
    for name, (backbone, spec) in extractor.specs.items():
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
        attrs.update(sampling_attrs(extractor.config, extractor.plan.size, spec), library_versions=library)
        out[name] = FeatureBlock(data=data, valid=valid, status=status, lengths=lengths, attrs=attrs)
    return out


def sampling_attrs(config: ExtractConfig, image_size: int, spec) -> dict:
    """How a set's inputs were sampled (frames, audio windows, text fields), by modality."""
    c = config
    modality = spec.name.split("/", 1)[0]
    if modality == "visual":
        return {"frames": c.frames, "frame_sampling": f"{c.frame_sampling}: centres of {c.frames} equal slices of the packet-scan span",
                "image_size": image_size}
    if modality == "audio":
        return {"audio_sample_rate": c.audio_sample_rate, "audio_window_seconds": c.audio_window_seconds,
                "audio_max_seconds": c.audio_max_seconds, "audio_max_windows": c.max_audio_windows}
    if modality == "text":
        return {"text_fields": list(c.text_fields)}
    return {}
