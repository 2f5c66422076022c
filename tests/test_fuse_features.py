"""fuse/features.py: cleaning a table (masked rows counted, items dropped), the standardisation
against numpy written out by hand, and the genre bit words against the sets they pack."""

from __future__ import annotations

import numpy as np

from cinefuse.fuse.features import (
    FeatureTable,
    apply_standardization,
    clean_table,
    pack_genre_words,
    standardization,
)


def test_clean_table_masks_invalid_and_nonfinite_rows_and_counts_them():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    x[2, 1] = np.nan
    seq = np.ones((4, 5, 2), np.float32)
    table = clean_table(["a", "b", "c", "d"], {"v/x": x, "s/q": seq},
                        {"v/x": [True, False, True, True], "s/q": [True, True, True, True]},
                        {"s/q": np.array([5, 2, 3, 0])})
    assert table.ids.tolist() == ["a"]          # b invalid, c non-finite, d an empty sequence
    assert table.counts == {"items": 4, "kept": 1, "excluded_missing_modality": 3, "require": "all", "per_feature_set": {
        "v/x": {"invalid": 1, "nonfinite": 1, "masked": 2}, "s/q": {"invalid": 0, "nonfinite": 0, "masked": 1}},
        "combinations": {"v/x+s/q": 1}}
    assert table.data["v/x"].tolist() == [[0, 1, 2]] and table.lengths["s/q"].tolist() == [5]


def test_standardization_over_training_rows_and_valid_timesteps_only():
    rng = np.random.default_rng(0)
    vec = rng.normal(3.0, 2.0, size=(6, 4)).astype(np.float32)
    vec[:, 3] = 1.5                               # a constant dimension keeps std 1
    seq = rng.normal(size=(6, 3, 2)).astype(np.float32)
    lens = np.array([3, 1, 2, 3, 3, 2], np.int32)
    table = FeatureTable(np.arange(6).astype(object), {"v/x": vec, "s/q": seq}, {"v/x": None, "s/q": lens})
    rows = np.array([0, 1, 2])
    stats = standardization(table, rows)
    mean, std = stats["v/x"]
    assert np.allclose(mean, vec[rows].mean(axis=0), atol=1e-6)
    assert np.allclose(std[:3], vec[rows, :3].std(axis=0), atol=1e-6) and std[3] == 1.0
    valid = np.concatenate([seq[0, :3], seq[1, :1], seq[2, :2]])
    assert np.allclose(stats["s/q"][0], valid.mean(axis=0), atol=1e-6)
    z = apply_standardization(table, stats)
    assert np.allclose(z["v/x"], (vec - mean) / std, atol=1e-6)
    assert (z["s/q"][1, 1:] == 0).all() and (z["s/q"][2, 2:] == 0).all()   # padding stays zero


def test_genre_words_hold_exactly_each_items_genres():
    genres = [["Action", "Comedy"], [], ["Comedy"]] + [[f"G{k}"] for k in range(40)]
    words = pack_genre_words(genres)
    assert words.dtype == np.uint32 and words.shape == (len(genres), 2)   # 42 genres: two words
    bits = [{w * 32 + b for w in range(words.shape[1]) for b in range(32) if words[r, w] >> np.uint32(b) & 1}
            for r in range(len(genres))]
    assert bits[1] == set() and len(bits[0]) == 2 and bits[2] < bits[0]
    assert len({min(b) for b in bits[3:]}) == 40 and all(len(b) == 1 for b in bits[3:])
