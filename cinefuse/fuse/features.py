"""The feature table fuse trains on: feature sets joined by id, cleaned, standardised, counted.

A row that is ``valid = false`` in the store, holds NaN or Inf, or (for a sequence) has no valid
timestep is masked (zeroed) and counted per feature set. Every requested set is required: an item
with any masked row is excluded and counted, never silently trained on zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cinefuse.errors import CinefuseError, StoreError
from cinefuse.genres import pack_genre_bits


@dataclass
class FeatureTable:
    ids: np.ndarray                       # (N,) str
    data: dict[str, np.ndarray]           # name -> (N, D) or (N, T, D) float32
    lengths: dict[str, np.ndarray | None]  # name -> (N,) int32 for sequences
    counts: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.data)

    def take(self, rows: np.ndarray) -> "FeatureTable":
        return FeatureTable(self.ids[rows], {k: v[rows] for k, v in self.data.items()},
                            {k: (v[rows] if v is not None else None) for k, v in self.lengths.items()}, self.counts)


def clean_table(ids, features: dict, valid: dict, lengths: dict) -> FeatureTable:
    """Mask invalid / non-finite rows, drop items with any masked row, count both."""
    ids = np.asarray(ids, dtype=object)
    n = len(ids)
    keep = np.ones(n, dtype=bool)
    data, lens, per_set = {}, {}, {}
    for name, x in features.items():
        x = np.asarray(x, dtype=np.float32)
        ok_valid = np.asarray(valid[name], dtype=bool)
        finite = np.isfinite(x.reshape(n, -1)).all(axis=1) if n else np.ones(0, bool)
        ok = ok_valid & finite
        length = lengths.get(name)
        if x.ndim == 3:
            length = np.full(n, x.shape[1], np.int32) if length is None else np.asarray(length, np.int32)
            ok &= length > 0
        x = np.where(ok.reshape((n,) + (1,) * (x.ndim - 1)), x, 0.0).astype(np.float32)
        per_set[name] = {"invalid": int((~ok_valid).sum()), "nonfinite": int((ok_valid & ~finite).sum()),
                         "masked": int((~ok).sum())}
        keep &= ok
        data[name], lens[name] = x, length
    counts = {"items": int(n), "kept": int(keep.sum()), "excluded_missing_modality": int((~keep).sum()),
              "per_feature_set": per_set}
    table = FeatureTable(ids, data, lens, counts)
    return table.take(np.flatnonzero(keep))


def store_feature_kinds(location: str, endpoint_url: str | None = None) -> dict[str, bool]:
    """The store's feature sets holding at least one valid row, fused embeddings left out:
    name -> True for a per-item vector (N, D), False for a sequence (N, T, D)."""
    from cinefuse.store import open_store

    store = open_store(location, endpoint_url=endpoint_url)
    return {name: len(info.shape) == 1 for name, info in store.feature_sets().items()
            if not name.startswith("fused/") and store.count_valid(name) > 0}


def load_features(location: str, names: list[str], endpoint_url: str | None = None) -> FeatureTable:
    from cinefuse.store import open_store

    store = open_store(location, endpoint_url=endpoint_url)
    available = store.feature_sets()
    missing = [n for n in names if n not in available]
    if missing:
        raise StoreError(
            f"feature set {missing[0]!r} is not in store {location} (it has: {', '.join(available) or 'none'}); "
            "run `cinefuse extract` for it or choose modalities the store holds ([model].modalities, "
            "[data.modality_sets])")
    table = store.load(names)
    return clean_table(table.ids, table.features, table.valid, table.lengths)


def standardization(table: FeatureTable, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-dimension mean and std of each set over ``rows`` (the training items, valid timesteps)."""
    stats = {}
    for name, x in table.data.items():
        x = x[rows]
        if x.ndim == 3:
            t = np.arange(x.shape[1])[None, :] < table.lengths[name][rows][:, None]
            flat = x[t]
        else:
            flat = x
        if len(flat) == 0:
            raise CinefuseError(f"no training rows hold feature set {name!r}; the split left training empty")
        mean = flat.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = flat.std(axis=0, dtype=np.float64).astype(np.float32)
        stats[name] = (mean, np.where(std > 1e-6, std, 1.0).astype(np.float32))
    return stats


def apply_standardization(table: FeatureTable, stats: dict) -> dict[str, np.ndarray]:
    out = {}
    for name, x in table.data.items():
        mean, std = stats[name]
        z = (x - mean) / std
        if x.ndim == 3:  # keep padding timesteps at zero
            t = np.arange(x.shape[1])[None, :] < table.lengths[name][:, None]
            z = np.where(t[..., None], z, 0.0)
        out[name] = z.astype(np.float32)
    return out


def pack_genre_words(genres: list[list[str]]) -> np.ndarray:
    """Genres as uint32 bit words (N, W) for the on-device Jaccard of the miner."""
    return pack_genre_bits(genres, np.uint32)
