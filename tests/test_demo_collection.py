"""The demo collection: deterministic, MovieLens-shaped, and each genre visible in its own modality only.

The signals are measured from the decoded files (PyAV), not from the renderer's arrays, so a
codec that washed a genre out would fail here.
"""

from __future__ import annotations

import csv
import re

import av
import numpy as np
import pytest

from cinefuse.demo.collection import (
    MODALITIES,
    CollectionConfig,
    draw_genres,
    draw_ratings,
    generate_collection,
    load_collection,
)
from cinefuse.errors import CinefuseError

SMALL = CollectionConfig(items=48, users=60, seed=3, size=48, fps=4, seconds=2.0, ratings_per_user=(20, 40))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate_collection(tmp_path_factory.mktemp("demo") / "collection", SMALL, progress=False)


def decode(path):
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames.astype(np.float32) / 255.0, audio.astype(np.float64), rate


def visual_stats(frames):
    """Mean colour, motion and edge density of the decoded pictures."""
    colour = frames.mean(axis=(0, 1, 2))
    chroma = colour - colour.mean()
    motion = np.abs(np.diff(frames, axis=0)).mean()
    grey = frames.mean(axis=3)
    edges = np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=2)).mean()
    return np.concatenate([chroma * 4, [motion * 4, edges * 4]])


def audio_stats(audio, rate):
    """Log energy in eight log-spaced bands of the decoded sound."""
    win = 512
    frames = audio[: len(audio) // win * win].reshape(-1, win) * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(win, 1.0 / rate)
    edges = np.geomspace(50, rate / 2, 9)
    bands = np.stack([power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])], 1)
    shape = np.log(bands.mean(axis=0) + 1e-9)
    return shape - shape.mean()    # the spectral shape, not the (random) loudness


def loo_nearest_centroid(features, labels):
    """Leave-one-out accuracy of a nearest-centroid classifier on standardised features."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-9)
    hits = 0
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        centroids = {g: x[keep & (labels == g)].mean(0) for g in np.unique(labels[keep])}
        guess = min(centroids, key=lambda g: np.sum((x[i] - centroids[g]) ** 2))
        hits += guess == labels[i]
    return hits / len(x)


def manifest_rows(collection):
    with open(collection.manifest_csv, newline="") as fh:
        return list(csv.DictReader(fh))


def test_layout_and_movielens_format(small):
    from cinefuse.datasets.movielens import load_movies, load_ratings

    assert sorted(p.name for p in small.root.iterdir()) == [
        "collection.json", "genres.csv", "manifest.csv", "movies.csv", "ratings.csv", "videos"]
    assert small.ids == [str(i) for i in range(1, 49)]
    movies = load_movies(small.root)
    assert list(movies.ids) == small.ids
    assert all(len(g) == 3 for g in movies.genres)
    assert all(re.fullmatch(r".+ \(\d{4}\)", t) for t in movies.titles)
    assert np.all((movies.years >= 1960) & (movies.years <= 2020))
    ratings = load_ratings(small.ratings_csv)
    user, item, stars, _ = draw_ratings(SMALL, draw_genres(SMALL))
    assert len(ratings.rating) == len(stars)
    np.testing.assert_array_equal(ratings.user, user)
    np.testing.assert_array_equal(ratings.item, np.array([str(i + 1) for i in item]))
    np.testing.assert_array_equal(ratings.rating, stars)
    assert set(np.unique(ratings.rating * 2)) <= set(range(1, 11))   # half stars 0.5..5
    rows = manifest_rows(small)
    assert [r["id"] for r in rows] == small.ids
    assert all((small.root / r["video"]).is_file() for r in rows)


def test_decoded_media_have_the_configured_shape(small):
    frames, audio, rate = decode(small.video_path("1"))
    assert frames.shape == (SMALL.frames, SMALL.size, SMALL.size, 3)
    assert rate == SMALL.sample_rate
    # AAC adds priming and padding; the track is the clip's length within one frame of 1024.
    assert abs(len(audio) - SMALL.samples) <= 2048


def test_same_seed_same_bytes_other_seed_other_collection(small, tmp_path):
    again = generate_collection(tmp_path / "again", SMALL, workers=2, progress=False)
    for name in ("movies.csv", "ratings.csv", "manifest.csv", "genres.csv"):
        assert (again.root / name).read_bytes() == (small.root / name).read_bytes(), name
    for item_id in small.ids:
        assert again.video_path(item_id).read_bytes() == small.video_path(item_id).read_bytes(), item_id
    other = CollectionConfig(**{**SMALL.to_json(), "seed": 4, "ratings_per_user": (20, 40)})
    assert draw_genres(other)["visual"].tolist() != draw_genres(SMALL)["visual"].tolist()


def test_existing_collection_is_reused_and_a_different_one_refused(small):
    assert load_collection(small.root).genres["audio"].tolist() == small.genres["audio"].tolist()
    reused = generate_collection(small.root, SMALL, progress=False)
    assert reused.ids == small.ids
    with pytest.raises(CinefuseError, match="different config; remove the folder"):
        generate_collection(small.root, CollectionConfig(**{**SMALL.to_json(), "seed": 9,
                                                            "ratings_per_user": (20, 40)}), progress=False)


def test_each_genre_shows_in_its_own_modality_only(small):
    """Decoded pictures predict the visual genre, sound the audio genre, words the text genre;
    none predicts another modality's genre much above chance (1/3)."""
    visual, audio = [], []
    for item_id in small.ids:
        frames, sound, rate = decode(small.video_path(item_id))
        visual.append(visual_stats(frames))
        audio.append(audio_stats(sound, rate))
    plots = [r["plot"].lower() for r in manifest_rows(small)]
    vocab = sorted({w for p in plots for w in re.findall(r"[a-z]+", p)})
    words = np.array([[p.count(w) for w in vocab] for p in plots], dtype=np.float64)
    words /= np.linalg.norm(words, axis=1, keepdims=True)
    measured = {"visual": np.array(visual), "audio": np.array(audio), "text": words}
    accuracy = {(m, g): loo_nearest_centroid(measured[m], small.genres[g]) for m in MODALITIES for g in MODALITIES}
    for m in MODALITIES:
        assert accuracy[(m, m)] >= 0.95, (m, accuracy)
        for g in MODALITIES:
            if g != m:
                assert accuracy[(m, g)] <= 0.6, (m, g, accuracy)


def ndcg10_cold(embedding, test_items, liked):
    """Brute-force binary nDCG@10 (DESIGN.md definition) over the test items."""
    e = embedding[test_items] / np.linalg.norm(embedding[test_items], axis=1, keepdims=True)
    sims = e @ e.T
    per_query = []
    for qi, q in enumerate(test_items):
        scores = sims[qi].copy()
        scores[qi] = -np.inf
        # ties broken by id: stable sort on -score over items in id order
        order = np.argsort(-scores, kind="stable")[:10]
        values = []
        for likes in liked.values():
            if q not in likes:
                continue
            rel = {j for j, it in enumerate(test_items) if it in likes and it != q}
            if not rel:
                continue
            dcg = sum(1.0 / np.log2(r + 2) for r, j in enumerate(order) if j in rel)
            idcg = sum(1.0 / np.log2(r + 2) for r in range(min(len(rel), 10)))
            values.append(dcg / idcg)
        if values:
            per_query.append(np.mean(values))
    return float(np.mean(per_query))


def test_ratings_reward_all_three_genres_at_once():
    """With perfect genre features, all three modalities together beat any one of them on
    cold-item nDCG@10: the property the demo's trained fusion is asked to reproduce."""
    config = CollectionConfig(items=120, users=150, seed=0)
    genres = draw_genres(config)
    user, item, stars, _ = draw_ratings(config, genres)
    liked = {}
    for u, i, r in zip(user, item, stars):
        if r >= 4:
            liked.setdefault(u, set()).add(int(i))
    onehot = {m: np.eye(config.genres_per_modality)[genres[m]] for m in MODALITIES}
    scores = {m: [] for m in (*MODALITIES, "full")}
    for split_seed in range(3):
        test_items = np.sort(np.random.default_rng(split_seed).permutation(config.items)[:30])
        for m in MODALITIES:
            scores[m].append(ndcg10_cold(onehot[m], test_items, liked))
        scores["full"].append(ndcg10_cold(np.hstack([onehot[m] for m in MODALITIES]), test_items, liked))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    for m in MODALITIES:
        assert mean["full"] > mean[m] + 0.05, mean


def test_bad_configs_name_the_field_and_the_fix():
    with pytest.raises(CinefuseError, match="items=5 is too small; use --items 12 or more"):
        CollectionConfig(items=5)
    with pytest.raises(CinefuseError, match="size=50; use a multiple of 16"):
        CollectionConfig(size=50)
    with pytest.raises(CinefuseError, match="genres_per_modality=5; use 2, 3 or 4"):
        CollectionConfig(genres_per_modality=5)


def test_demo_cli_refuses_bad_options_with_one_line(tmp_path, capsys):
    from cinefuse.cli import main

    assert main(["demo", "--workdir", str(tmp_path / "w"), "--items", "5"]) == 2
    assert capsys.readouterr().err == ("cinefuse demo: error: demo collection: items=5 is too small; "
                                       "use --items 12 or more\n")
    assert main(["demo", "--workdir", str(tmp_path / "w"), "--steps", "120"]) == 2
    assert capsys.readouterr().err == "cinefuse demo: error: --steps 120: use a positive multiple of 50\n"
    assert not (tmp_path / "w").exists()
