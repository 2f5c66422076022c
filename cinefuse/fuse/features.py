"""The feature table fuse trains on: feature sets joined by id, cleaned, standardised, counted.

A row that is ``valid = false`` in the store, holds NaN or Inf, or (for a sequence) has no valid
timestep is absent: zeroed, its length set to 0, and counted per feature set. ``lengths`` holds,
for every set, each item's count of valid entries: the valid timesteps of a sequence set, 1 or 0
(present or absent) for a vector set; the tower reads an item's modality mask from it
(``models.presence``), so the mask travels with the rows wherever they are gathered.
``require``: ``"any"`` keeps every item holding at least one of the sets (it trains and is
embedded from the ones it has), ``"all"`` only the items holding every set; the items dropped
are counted, never silently trained on zeros. ``combinations`` counts the kept items per
combination of sets they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cinefuse.choices import REQUIRES
from cinefuse.errors import CinefuseError, StoreError
from cinefuse.genres import pack_genre_bits


@dataclass
class FeatureTable:
    ids: np.ndarray                       # (N,) str
    data: dict[str, np.ndarray]           # name -> (N, D) or (N, T, D) float32
    lengths: dict[str, np.ndarray | None]  # name -> (N,) int32 valid entries (None: every row present)
    counts: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.data)

    def present(self, name: str) -> np.ndarray:
        """(N,) bool: the items holding a valid row of ``name``."""
        length = self.lengths.get(name)
        return np.ones(len(self.ids), bool) if length is None else np.asarray(length) > 0

    def take(self, rows: np.ndarray) -> "FeatureTable":
        return FeatureTable(self.ids[rows], {k: v[rows] for k, v in self.data.items()},
                            {k: (v[rows] if v is not None else None) for k, v in self.lengths.items()}, self.counts)




def clean_table(ids, features: dict, valid: dict, lengths: dict, require: str = "all") -> FeatureTable:
    """Mark invalid / non-finite rows absent (zeroed, length 0), keep the items holding any
    (``require="any"``) or all (``"all"``) of the sets, count both."""
    if require not in REQUIRES:
        raise CinefuseError(f"data.require must be one of {', '.join(REQUIRES)} (got {require!r})")
    ids = np.asarray(ids, dtype=object)
    n = len(ids)
    data, lens, per_set, present = {}, {}, {}, {}
    for name, x in features.items():
        x = np.asarray(x, dtype=np.float32)
        ok_valid = np.asarray(valid[name], dtype=bool)
        finite = np.isfinite(x.reshape(n, -1)).all(axis=1) if n else np.ones(0, bool)
        ok = ok_valid & finite
        length = lengths.get(name)
        if x.ndim == 3:
            length = np.full(n, x.shape[1], np.int32) if length is None else np.asarray(length, np.int32)
            ok &= length > 0
            length = np.where(ok, length, 0).astype(np.int32)
        else:
            length = ok.astype(np.int32)
        x = np.where(ok.reshape((n,) + (1,) * (x.ndim - 1)), x, 0.0).astype(np.float32)
        per_set[name] = {"invalid": int((~ok_valid).sum()), "nonfinite": int((ok_valid & ~finite).sum()),
                         "masked": int((~ok).sum())}
        data[name], lens[name], present[name] = x, length, ok
    held = np.stack([present[k] for k in data], axis=1) if data else np.zeros((n, 0), bool)
    keep = held.all(axis=1) if require == "all" else held.any(axis=1)
    counts = {"items": int(n), "kept": int(keep.sum()), "excluded_missing_modality": int((~keep).sum()),
              "require": require, "per_feature_set": per_set,
              "combinations": combination_counts(list(data), held[keep])}
    table = FeatureTable(ids, data, lens, counts)
    return table.take(np.flatnonzero(keep))


def combination_counts(names: list[str], held: np.ndarray) -> dict[str, int]:
    """Items per combination of the sets they hold (``held`` (N, S) bool): ``"a+b" -> count``,
    the most common first."""
    out: dict[str, int] = {}
    for row in held:
        key = "+".join(n for n, h in zip(names, row) if h) or "none"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def store_feature_kinds(location: str, endpoint_url: str | None = None) -> dict[str, bool]:
    """The store's feature sets holding at least one valid row, fused embeddings left out:
    name -> True for a per-item vector (N, D), False for a sequence (N, T, D)."""
    from cinefuse.store import open_store

    store = open_store(location, endpoint_url=endpoint_url)
    return {name: len(info.shape) == 1 for name, info in store.feature_sets().items()
            if not name.startswith("fused/") and store.count_valid(name) > 0}


def load_features(location: str, names: list[str], endpoint_url: str | None = None,
                  require: str = "all") -> FeatureTable:
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
    return clean_table(table.ids, table.features, table.valid, table.lengths, require)


def standardization(table: FeatureTable, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-dimension mean and std of each set over ``rows`` (the training items holding it, valid timesteps)."""
    stats = {}
    for name, x in table.data.items():
        x = x[rows]
        if x.ndim == 3:
            t = np.arange(x.shape[1])[None, :] < table.lengths[name][rows][:, None]
            flat = x[t]
        else:
            flat = x[table.present(name)[rows]]
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
        if x.ndim == 3:  # keep padding timesteps (and absent rows, length 0) at zero
            t = np.arange(x.shape[1])[None, :] < table.lengths[name][:, None]
            z = np.where(t[..., None], z, 0.0)
        elif table.lengths.get(name) is not None:  # absent rows stay zero
            z = np.where(table.present(name)[:, None], z, 0.0)
        out[name] = z.astype(np.float32)
    return out


def pack_genre_words(genres: list[list[str]]) -> np.ndarray:
    """Genres as uint32 bit words (N, W) for the on-device Jaccard of the miner."""
    return pack_genre_bits(genres, np.uint32)
