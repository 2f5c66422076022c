"""The one genre encoding and the one genre Jaccard (ground floor: numpy only, no stage import).

Every genre encoding of cinefuse starts from :func:`genre_vocabulary`: the distinct genres,
sorted, give genre ``k`` its column ``k`` of the multi-hot matrix (:func:`genre_multi_hot`,
evaluation's diversity) and its bit ``k`` of the packed words (:func:`pack_genre_bits`: bit
``k % w`` of word ``k // w`` for ``w``-bit words; the pair builder's uint64 masks, the miner's
uint32 words). The genre Jaccard of two items is ``|G_i & G_j| / |G_i | G_j|``, 0 when both have
no genre: :func:`jaccard` on packed words, :func:`pairwise_jaccard_distance` (1 - Jaccard) among
the multi-hot rows of lists. (The miner computes the same quantity on the device, in jax, from
the uint32 words: ``cinefuse.fuse.losses.genre_jaccard``.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def genre_vocabulary(genres) -> list[str]:
    """The distinct genres of ``genres`` (one list per item), sorted: the one column / bit order
    of every genre encoding (pairs' masks, the miner's bit words, evaluation's multi-hot)."""
    return sorted({g for gs in genres for g in gs})


def genre_multi_hot(genres: Sequence[Sequence[str]], vocab: Sequence[str] | None = None,
                    dtype=np.float32) -> np.ndarray:
    """(items, genres) multi-hot matrix, columns in ``vocab`` order (default: the vocabulary of
    ``genres``)."""
    vocab = genre_vocabulary(genres) if vocab is None else list(vocab)
    column = {g: k for k, g in enumerate(vocab)}
    out = np.zeros((len(genres), len(vocab)), dtype=dtype)
    for row, gs in enumerate(genres):
        for g in gs:
            out[row, column[g]] = 1
    return out


def pack_genre_bits(genres: Sequence[Sequence[str]], word=np.uint32) -> np.ndarray:
    """Genres as bit words (items, W) of dtype ``word`` (W = ceil(genres / bits), at least 1):
    genre ``k`` of the vocabulary is bit ``k % bits`` of word ``k // bits``."""
    word = np.dtype(word)
    bits = word.itemsize * 8
    hot = genre_multi_hot(genres, dtype=bool)
    out = np.zeros((len(genres), max(1, (hot.shape[1] + bits - 1) // bits)), dtype=word)
    for k in range(hot.shape[1]):
        out[hot[:, k], k // bits] |= word.type(1) << word.type(k % bits)
    return out


def jaccard(words_a: np.ndarray, words_b: np.ndarray) -> np.ndarray:
    """Genre Jaccard of item pairs from their packed words (float32): ``(n,)`` masks, or
    ``(n, W)`` words summed over the last axis."""
    inter = np.bitwise_count(words_a & words_b)
    union = np.bitwise_count(words_a | words_b)
    if inter.ndim > 1:
        inter, union = inter.sum(axis=-1), union.sum(axis=-1)
    inter, union = inter.astype(np.float32), union.astype(np.float32)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pairwise_jaccard_distance(hot: np.ndarray) -> np.ndarray:
    """(..., L, G) multi-hot rows -> (..., L, L) genre distances 1 - Jaccard between every two
    rows of a list (0 where neither has a genre)."""
    inter = np.matmul(hot, np.swapaxes(hot, -1, -2))
    size = hot.sum(axis=-1)
    union = size[..., :, None] + size[..., None, :] - inter
    return np.where(union > 0, 1.0 - inter / np.where(union > 0, union, 1.0), 0.0)
