"""Fixtures every stage's tests share, in one place (stage-specific data stays in
``fuse_fixtures.py`` and ``media_fixtures.py``; pytest fixtures such as ``s3_server`` in
``conftest.py``):

- :func:`ok_block`: a feature block whose rows are all valid with status ``ok``;
- :func:`write_store`: a store written through the real :class:`~cinefuse.store.StoreWriter`,
  one shard per ``(ids, blocks)``;
- :func:`make_store`: a store of random-normal rows, shards of given sizes (for the store's
  damage, integrity and s3 tests);
- :func:`write_movielens_csv`: ``movies.csv`` and ``ratings.csv`` in ml-latest-small format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np


def ok_block(data: np.ndarray, lengths: np.ndarray | None = None, attrs: dict[str, Any] | None = None):
    """A FeatureBlock over ``data`` with every row valid and status ``ok``."""
    from cinefuse.store import FeatureBlock

    n = len(data)
    return FeatureBlock(data, np.ones(n, bool), ["ok"] * n, lengths, attrs if attrs is not None else {})


def write_store(root: str | Path, config: dict, shards: Iterable[tuple[Sequence[str], dict]]) -> Path:
    """Commit each ``(ids, {set name: FeatureBlock})`` of ``shards`` as one shard of the store at
    ``root`` (made under ``config``); returns ``root``."""
    from cinefuse.store import StoreWriter

    writer = StoreWriter(root, config)
    for ids, blocks in shards:
        writer.write_shard(ids, blocks)
    return Path(root)


def make_store(root: str | Path, config: dict, rows_per_shard: Sequence[int] = (20, 20, 20), dim: int = 16,
               dtype=np.float32, seed: int = 0, running_ids: bool = False, text_set: bool = False) -> Path:
    """A store of ``len(rows_per_shard)`` shards holding ``visual/a``: standard-normal rows of
    ``dim`` values (``dtype``), all valid. Ids are ``"{shard}-{row}"``, or ``"0", "1", ...``
    across shards with ``running_ids``. ``text_set`` adds ``text/t`` (8 float32 values, about 70%
    of rows valid). One seeded generator draws the shards in order."""
    from cinefuse.store import FeatureBlock

    rng = np.random.default_rng(seed)
    shards, start = [], 0
    for k, rows in enumerate(rows_per_shard):
        ids = [str(i) for i in range(start, start + rows)] if running_ids else [f"{k}-{i}" for i in range(rows)]
        blocks = {"visual/a": ok_block(rng.standard_normal((rows, dim)).astype(dtype))}
        if text_set:
            blocks["text/t"] = FeatureBlock(rng.standard_normal((rows, 8)).astype(np.float32), rng.random(rows) > 0.3,
                                            ["ok"] * rows)
        shards.append((ids, blocks))
        start += rows
    return write_store(root, config, shards)


def write_movielens_csv(folder: str | Path, movies: Iterable[tuple], ratings: Iterable[tuple]) -> tuple[Path, Path]:
    """``movies.csv`` from ``(movieId, title, genres list)`` and ``ratings.csv`` from ``(userId,
    movieId, rating, timestamp)`` rows, in MovieLens ml-latest-small format (genres joined by
    ``|``); returns ``(ratings path, movies path)``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["movieId,title,genres"] + [f"{movie},{title},{'|'.join(genres)}" for movie, title, genres in movies]
    (folder / "movies.csv").write_text("\n".join(lines) + "\n")
    lines = ["userId,movieId,rating,timestamp"] + [f"{u},{m},{r},{t}" for u, m, r, t in ratings]
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    return folder / "ratings.csv", folder / "movies.csv"
