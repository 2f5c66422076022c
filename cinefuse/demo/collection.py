"""The embedded demo collection: procedural films whose genres hide in one modality each.

Every item has three latent genres, one per modality, drawn independently:

- a **visual** genre that shows only in the pictures (palette, texture, motion),
- an **audio** genre that shows only in the sound (pitch, rhythm, noise colour),
- a **text** genre that shows only in the words of the blurb (vocabulary).

Everything else in each modality is nuisance drawn at random per item (hue jitter, a grey disk
moving over the picture, loudness, a noise floor, names, neutral filler sentences), so no modality
carries another's genre. Simulated users hold a taste for every genre of every modality and rate
an item by the sum of their tastes for its three genres. A model that sees one modality can find
items that share one genre with the query; only a model that fuses all three can rank items that
share all three first, which is what the users' ratings reward. ``cinefuse demo`` shows whether
the trained fusion does.

Output (a folder, all files deterministic for a seed):

- ``videos/<id>.mp4``: MPEG-4 video plus an AAC audio track,
- ``movies.csv`` and ``ratings.csv`` in MovieLens ml-latest-small format (integer movieId;
  the item id is ``str(movieId)``); ``genres`` lists the three latent genres,
- ``manifest.csv`` (``id, video, title, plot, year``) for ``cinefuse extract``,
- ``genres.csv`` (``id, visual, audio, text``): the ground truth, for tests and the report,
- ``collection.json``: the config that made it, so an unchanged folder is reused.

This module holds the latent structure (genres, users, ratings) and the folder; one clip's
frames, sound, blurb and encoding are :mod:`cinefuse.demo.render`'s.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from cinefuse.demo.render import render_item
from cinefuse.errors import CinefuseError

FORMAT_VERSION = 1

# Genre names as they appear in movies.csv; the prefix says which modality carries the genre.
VISUAL_GENRES = ("Ember", "Frost", "Moss", "Dusk")   # warm blobs, cold stripes, green checks, violet rings
AUDIO_GENRES = ("Bass", "Chime", "Hiss", "Warble")   # low drone, high pulses, bright noise, mid vibrato
TEXT_GENRES = ("Space", "Romance", "Crime", "Sports")

MODALITIES = ("visual", "audio", "text")


@dataclass(frozen=True)
class CollectionConfig:
    """What to render. Every field is a plain value so the config is also the record."""

    # 400 films, 30% of them cold (DemoConfig's split): 120 cold queries, enough for a paired
    # interval to separate a margin of ~0.02 nDCG@10 (36 cold films could not)
    items: int = 400
    users: int = 400
    seed: int = 0
    genres_per_modality: int = 3      # 2..4 genres in each modality
    size: int = 96                    # frame width and height in pixels (a multiple of 16)
    fps: int = 8
    seconds: float = 3.0
    sample_rate: int = 16000
    ratings_per_user: tuple[int, int] = (40, 90)   # each user rates a uniform count in [lo, hi]
    taste_weight: float = 1.2         # stars per unit of taste
    rating_noise: float = 0.4         # std of the per-rating noise, in stars
    first_movie_id: int = 1

    def __post_init__(self) -> None:
        if self.items < 12:
            raise CinefuseError(f"demo collection: items={self.items} is too small; use --items 12 or more")
        if self.users < 2:
            raise CinefuseError(f"demo collection: users={self.users} is too small; use 2 or more")
        if not 2 <= self.genres_per_modality <= 4:
            raise CinefuseError(
                f"demo collection: genres_per_modality={self.genres_per_modality}; use 2, 3 or 4")
        if self.size < 32 or self.size % 16:
            raise CinefuseError(f"demo collection: size={self.size}; use a multiple of 16 pixels >= 32")
        if self.fps < 1 or self.seconds <= 0 or self.fps * self.seconds < 2:
            raise CinefuseError(
                f"demo collection: fps={self.fps}, seconds={self.seconds} give fewer than 2 frames")
        if self.sample_rate not in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
            raise CinefuseError(f"demo collection: sample_rate={self.sample_rate} is not an AAC rate")
        lo, hi = self.ratings_per_user
        if not 1 <= lo <= hi:
            raise CinefuseError(f"demo collection: ratings_per_user={self.ratings_per_user}; need 1 <= lo <= hi")

    @property
    def frames(self) -> int:
        return int(round(self.fps * self.seconds))

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.seconds))

    def to_json(self) -> dict:
        record = asdict(self)
        record["ratings_per_user"] = list(self.ratings_per_user)
        return record

    @classmethod
    def from_json(cls, record: dict) -> "CollectionConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        if "ratings_per_user" in values:
            values["ratings_per_user"] = tuple(values["ratings_per_user"])
        return cls(**values)


@dataclass
class Collection:
    """A rendered collection on disk and its ground truth."""

    root: Path
    config: CollectionConfig
    ids: list[str]
    genres: dict[str, np.ndarray]     # modality -> (items,) int genre index

    @property
    def movies_csv(self) -> Path:
        return self.root / "movies.csv"

    @property
    def ratings_csv(self) -> Path:
        return self.root / "ratings.csv"

    @property
    def manifest_csv(self) -> Path:
        return self.root / "manifest.csv"

    def video_path(self, item_id: str) -> Path:
        return self.root / "videos" / f"{item_id}.mp4"

    def genre_names(self, modality: str) -> tuple[str, ...]:
        names = {"visual": VISUAL_GENRES, "audio": AUDIO_GENRES, "text": TEXT_GENRES}[modality]
        return names[: self.config.genres_per_modality]


# ----------------------------------------------------------------------------------------------
# latent structure: genres and users


def draw_genres(config: CollectionConfig) -> dict[str, np.ndarray]:
    """One genre per modality per item, balanced (each genre within one of the others' counts)."""
    rng = np.random.default_rng([config.seed, 0xC0FFEE])
    genres = {}
    for modality in MODALITIES:
        balanced = np.arange(config.items) % config.genres_per_modality
        genres[modality] = rng.permutation(balanced).astype(np.int64)
    return genres


def draw_ratings(config: CollectionConfig, genres: dict[str, np.ndarray]):
    """Simulated users: rating = 3 + taste_weight * (sum of the user's tastes for the item's three
    genres) + noise, in half stars.

    Returns (user (n,), item_index (n,), rating (n,) float32 in half stars 0.5..5, timestamp (n,)).
    """
    rng = np.random.default_rng([config.seed, 0x5EED])
    g = config.genres_per_modality
    # Every user has a favourite genre in every modality: taste +1 for it, -1/(g-1) for the others
    # (zero mean). An item matching the favourites in all three modalities is the sure like, so
    # ratings reward ranking by all three genres at once, which no single modality can do.
    favourite = rng.integers(0, g, size=(config.users, len(MODALITIES)))
    taste = np.where(np.arange(g)[None, None, :] == favourite[..., None], 1.0, -1.0 / (g - 1))
    lo, hi = config.ratings_per_user
    users, items, ratings, stamps = [], [], [], []
    t0 = 1_500_000_000
    for u in range(config.users):
        count = min(int(rng.integers(lo, hi + 1)), config.items)
        chosen = np.sort(rng.choice(config.items, size=count, replace=False))
        score = sum(taste[u, m, genres[name][chosen]] for m, name in enumerate(MODALITIES))
        raw = 3.0 + config.taste_weight * score + rng.normal(0.0, config.rating_noise, size=count)
        stars = np.clip(np.round(raw * 2.0) / 2.0, 0.5, 5.0)
        users.append(np.full(count, u + 1, dtype=np.int64))
        items.append(chosen)
        ratings.append(stars.astype(np.float32))
        stamps.append(t0 + u * 100_000 + np.sort(rng.integers(0, 90_000, size=count)))
    return (np.concatenate(users), np.concatenate(items), np.concatenate(ratings),
            np.concatenate(stamps).astype(np.int64))


# ----------------------------------------------------------------------------------------------
# the whole collection (each clip is rendered by cinefuse.demo.render)


def _render_range(args):
    start, stop, config, genres, video_dir = args
    return [render_item(i, config, genres, video_dir) for i in range(start, stop)]


def generate_collection(out: str | os.PathLike, config: CollectionConfig | None = None,
                        workers: int = 1, progress: bool = True) -> Collection:
    """Render the collection into ``out``; an existing folder made by the same config is reused.

    The folder is built under a temporary name and renamed into place, so an interrupted run
    never leaves a half collection that looks complete.
    """
    config = config or CollectionConfig()
    out = Path(out)
    record_path = out / "collection.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("config") == config.to_json() and record.get("format_version") == FORMAT_VERSION:
            return load_collection(out)
        raise CinefuseError(
            f"demo collection: {out} holds a collection made with a different config; "
            f"remove the folder or choose another --workdir")
    if out.exists() and any(out.iterdir()):
        raise CinefuseError(f"demo collection: {out} exists and is not a demo collection; "
                            f"remove it or choose another folder")

    genres = draw_genres(config)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    video_dir = tmp / "videos"
    video_dir.mkdir(parents=True)

    texts = _render_all(config, genres, video_dir, workers, progress)
    ids = [str(config.first_movie_id + i) for i in range(config.items)]
    _write_tables(tmp, config, genres, ids, texts)
    (tmp / "collection.json").write_text(json.dumps(
        {"format_version": FORMAT_VERSION, "config": config.to_json(), "items": config.items},
        indent=2) + "\n")
    if out.exists():
        out.rmdir()   # empty (checked above)
    os.replace(tmp, out)
    return Collection(root=out, config=config, ids=ids, genres=genres)


def _render_all(config, genres, video_dir, workers, progress):
    from cinefuse.progress import progress_bar

    bar = progress_bar(config.items, "render collection", "clip", enabled=progress)
    step = 16
    ranges = [(a, min(a + step, config.items), config, genres, video_dir)
              for a in range(0, config.items, step)]
    texts = []
    if workers > 1:
        # Threads, not processes: numpy and FFmpeg release the GIL for the heavy parts, and a
        # process pool would re-import the caller's main module (spawn) or fork a parent that
        # may already hold torch or jax threads.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            for chunk in pool.map(_render_range, ranges):
                texts.extend(chunk)
                bar.update(len(chunk))
    else:
        for r in ranges:
            chunk = _render_range(r)
            texts.extend(chunk)
            bar.update(len(chunk))
    bar.close()
    return texts


def _write_tables(root: Path, config, genres, ids, texts) -> None:
    names = {m: {"visual": VISUAL_GENRES, "audio": AUDIO_GENRES, "text": TEXT_GENRES}[m] for m in MODALITIES}
    with open(root / "movies.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["movieId", "title", "genres"])
        for i, item_id in enumerate(ids):
            title, _, year = texts[i]
            w.writerow([item_id, f"{title} ({year})",
                        "|".join(names[m][genres[m][i]] for m in MODALITIES)])
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "video", "title", "plot", "year"])
        for i, item_id in enumerate(ids):
            title, plot, year = texts[i]
            w.writerow([item_id, f"videos/{item_id}.mp4", title, plot, year])
    with open(root / "genres.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *MODALITIES])
        for i, item_id in enumerate(ids):
            w.writerow([item_id, *(names[m][genres[m][i]] for m in MODALITIES)])
    user, item, rating, stamp = draw_ratings(config, genres)
    with open(root / "ratings.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for u, i, r, t in zip(user.tolist(), item.tolist(), rating.tolist(), stamp.tolist()):
            w.writerow([u, config.first_movie_id + i, f"{r:.1f}", t])


def load_collection(root: str | os.PathLike) -> Collection:
    """Open a collection written by :func:`generate_collection`."""
    root = Path(root)
    record_path = root / "collection.json"
    if not record_path.is_file():
        raise CinefuseError(f"demo collection: {root} has no collection.json; generate it with `cinefuse demo`")
    config = CollectionConfig.from_json(json.loads(record_path.read_text())["config"])
    ids, genres = [], {m: [] for m in MODALITIES}
    names = {"visual": VISUAL_GENRES, "audio": AUDIO_GENRES, "text": TEXT_GENRES}
    with open(root / "genres.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            ids.append(row["id"])
            for m in MODALITIES:
                genres[m].append(names[m].index(row[m]))
    return Collection(root=root, config=config, ids=ids,
                      genres={m: np.asarray(v, dtype=np.int64) for m, v in genres.items()})
