"""cinefuse/genres.py: the one genre encoding (vocabulary order, multi-hot, packed bits) and the
genre Jaccard, against set arithmetic on the genre lists themselves."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.genres import genre_multi_hot, genre_vocabulary, jaccard, pack_genre_bits, pairwise_jaccard_distance

GENRES = [["Drama", "Comedy"], [], ["Comedy"], ["War", "Drama", "Action"], ["Action"]]


def set_jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 0.0


def many_genres(n_items: int, n_genres: int, seed: int) -> list[list[str]]:
    """``n_items`` random genre lists (0 to 4 genres each) over ``n_genres`` names, each name used."""
    rng = np.random.default_rng(seed)
    names = [f"g{k:02d}" for k in range(n_genres)]
    drawn = [sorted(rng.choice(names, size=int(rng.integers(0, min(5, n_genres + 1))), replace=False).tolist())
             for _ in range(n_items - n_genres)]
    return [[name] for name in names] + drawn


def test_vocabulary_is_sorted_and_gives_columns_and_bits():
    assert genre_vocabulary(GENRES) == ["Action", "Comedy", "Drama", "War"]
    assert genre_multi_hot(GENRES).tolist() == [[0, 1, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 1], [1, 0, 0, 0]]
    assert pack_genre_bits(GENRES, np.uint64)[:, 0].tolist() == [0b0110, 0, 0b0010, 0b1101, 0b0001]
    assert genre_multi_hot(GENRES, vocab=["War", "Horror", "Drama", "Comedy", "Action"], dtype=bool).tolist() == [
        [False, False, True, True, False], [False] * 5, [False, False, False, True, False],
        [True, False, True, False, True], [False, False, False, False, True]]


@pytest.mark.parametrize("n_genres, word, words", [(3, np.uint32, 1), (32, np.uint32, 1), (33, np.uint32, 2),
                                                  (70, np.uint32, 3), (64, np.uint64, 1), (70, np.uint64, 2)])
def test_bit_k_of_the_vocabulary_is_bit_k_mod_w_of_word_k_div_w(n_genres, word, words):
    genres = many_genres(100, n_genres, seed=n_genres)
    packed = pack_genre_bits(genres, word)
    bits = np.dtype(word).itemsize * 8
    assert packed.dtype == np.dtype(word) and packed.shape == (100, words)
    vocab = genre_vocabulary(genres)
    for row, gs in zip(packed, genres):
        on = {k for k in range(len(vocab)) if (int(row[k // bits]) >> (k % bits)) & 1}
        assert on == {vocab.index(g) for g in gs}


def test_no_genre_at_all_packs_to_one_zero_word():
    assert pack_genre_bits([[], []]).tolist() == [[0], [0]]


@pytest.mark.parametrize("word", [np.uint32, np.uint64])
def test_jaccard_on_packed_words_equals_set_jaccard(word):
    genres = many_genres(80, 40, seed=1)
    packed = pack_genre_bits(genres, word)
    i, j = np.triu_indices(len(genres), 1)
    got = jaccard(packed[i], packed[j])
    want = np.array([set_jaccard(genres[a], genres[b]) for a, b in zip(i, j)], np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_pairwise_distance_equals_one_minus_set_jaccard():
    genres = many_genres(12, 6, seed=2)
    lists = np.array([[0, 3, 5, 7], [1, 2, 11, 4]])
    got = pairwise_jaccard_distance(genre_multi_hot(genres)[lists])
    want = [[[1.0 - set_jaccard(genres[a], genres[b]) if set(genres[a]) | set(genres[b]) else 0.0 for b in row]
             for a in row] for row in lists]
    assert got.shape == (2, 4, 4) and np.allclose(got, want, rtol=0, atol=1e-7)
