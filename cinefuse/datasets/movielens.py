"""MovieLens loaders for every common release, one API.

Formats:
- ``ml-latest-small``, ``ml-latest``, ``ml-20m``, ``ml-25m``: ``ratings.csv``, ``movies.csv``,
  ``tags.csv`` (comma-separated with a header, UTF-8, genres joined by ``|``).
- ``ml-100k``: ``u.data`` (tab-separated ``user item rating timestamp``) and ``u.item``
  (``|``-separated, latin-1, 19 genre flags in the order of ``u.genre``); no tags.
- ``ml-1m`` / ``ml-10m``: ``ratings.dat``, ``movies.dat`` (``::``-separated, latin-1), ``tags.dat``
  in ml-10m only.

A folder argument detects the release from the files it holds. A ratings file is read by its
content, whatever its name (``cinefuse.datasets.ratings_file``: separator, header, columns; a
``--ratings-sep`` and a ``--ratings-columns user,item,rating[,timestamp]`` mapping where the
content is not enough) and validated on load (``on_bad_ratings``). Item ids are strings everywhere
(``movieId`` 1 is ``"1"``). Years come from the ``(YYYY)`` at the end of a title, or ml-100k's
release date when the title has none; ``nan`` when unknown. ``(no genres listed)`` is no genre.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cinefuse.errors import CinefuseError
from cinefuse.genres import genre_vocabulary  # noqa: F401  (its old home: still imported from here)

# ml-100k's u.genre, in flag order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
NO_GENRES = "(no genres listed)"
_YEAR_IN_TITLE = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")

# version -> (ratings file, movies file, tags file or None)
LAYOUTS = {
    "csv": ("ratings.csv", "movies.csv", "tags.csv"),
    "ml-100k": ("u.data", "u.item", None),
    "dat": ("ratings.dat", "movies.dat", "tags.dat"),
}


@dataclass
class Ratings:
    user: np.ndarray              # (n,) int64
    item: np.ndarray              # (n,) str (object array)
    rating: np.ndarray            # (n,) float32
    timestamp: np.ndarray | None = None  # (n,) int64; None when the file has no timestamp column
    notes: list[str] = field(default_factory=list)  # what loading dropped or merged, one line each

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, keep: np.ndarray) -> "Ratings":
        """The rows where ``keep`` (a mask or indices); the timestamp follows when there is one."""
        return type(self)(self.user[keep], self.item[keep], self.rating[keep],
                          None if self.timestamp is None else self.timestamp[keep])

    def require_timestamp(self, why: str = "the cold-item-time protocol") -> np.ndarray:
        """The timestamps, or a one-line error naming ``why`` they are needed."""
        if self.timestamp is None:
            raise CinefuseError(f"{why} orders items by their first rating time, and these ratings have no "
                                "timestamp column; add one, name it with --ratings-columns "
                                "user,item,rating,timestamp, or use another protocol")
        return self.timestamp


@dataclass
class Movies:
    ids: np.ndarray            # (m,) str (object array)
    titles: list[str]
    genres: list[list[str]]
    years: np.ndarray          # (m,) float64, nan when unknown

    def __len__(self) -> int:
        return len(self.ids)


def detect_version(folder: str | Path) -> str:
    """``"csv"`` (ml-latest*, ml-20m, ml-25m), ``"ml-100k"`` or ``"dat"`` (ml-1m, ml-10m)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CinefuseError(f"MovieLens folder {folder} does not exist; pass the unpacked ml-* folder")
    for version, (ratings_name, movies_name, _) in LAYOUTS.items():
        if (folder / ratings_name).is_file() or (folder / movies_name).is_file():
            return version
    raise CinefuseError(
        f"{folder} holds no MovieLens files (expected ratings.csv + movies.csv, u.data + u.item, "
        "or ratings.dat + movies.dat); pass the unpacked ml-* folder or one of those files"
    )


def _resolve(path: str | Path, role: int) -> tuple[Path, str]:
    """(file, version) for a file or a folder; ``role`` 0 ratings, 1 movies, 2 tags."""
    path = Path(path)
    if path.is_dir():
        version = detect_version(path)
        name = LAYOUTS[version][role]
        if name is None:
            return path / "__none__", version
        return path / name, version
    if not path.is_file():
        raise CinefuseError(f"MovieLens file {path} does not exist")
    for version, names in LAYOUTS.items():
        if path.name == names[role]:
            return path, version
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return path, "csv"
    if suffix == ".dat":
        return path, "dat"
    kinds = ["ratings.csv | u.data | ratings.dat", "movies.csv | u.item | movies.dat", "tags.csv | tags.dat"][role]
    raise CinefuseError(f"cannot tell the MovieLens format of {path}; expected {kinds} or a folder")


def _read_dat(path: Path, names: list[str]) -> pd.DataFrame:
    # '::' separators need the python engine; latin-1 because ml-1m titles are not UTF-8.
    return pd.read_csv(path, sep="::", engine="python", header=None, names=names, encoding="latin-1",
                       dtype=str, keep_default_na=False)


def load_ratings(path: str | Path, *, sep: str | None = None, columns: str | Sequence[str] | None = None,
                 on_bad_ratings: str = "error", require_timestamp: bool = False, max_rating: float | None = None,
                 log: Callable[[str], None] | None = None) -> Ratings:
    """The ratings of a release folder or of any ratings file, validated.

    - ``sep``: the separator (``,``, ``tab`` or ``\\t``, ``::``, ``;``, ``|``, ``spaces``); by default
      recognised from the content.
    - ``columns``: ``"user,item,rating[,timestamp]"`` (or a list): the file's header names for those
      roles, or 1-based column numbers for a file without a header; by default MovieLens names and
      the usual aliases, or positions ``user item rating [timestamp]`` without a header.
    - ``on_bad_ratings``: ``"error"`` (default: non-finite, negative or too large ratings, rows
      without ids and (user, item) pairs rated differently stop the run, one line with counts and
      examples), ``"drop"`` or ``"keep-last"`` (``cinefuse.datasets.ratings_file``); what they did,
      and identical repeated rows kept once, is passed to ``log`` (default: stderr) and kept in
      ``Ratings.notes``.
    - ``max_rating``: the largest valid rating (default 5 for a MovieLens release, else float32's max).
    - ``require_timestamp``: the file must have a timestamp column (``cold-item-time``); otherwise
      ``Ratings.timestamp`` is None where the file has none, or where it holds no integer times.
    User ids that are not all integers are numbered in order of appearance.
    """
    from cinefuse.datasets import ratings_file as rf

    file = _ratings_file(path)
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",")]
    layout = rf.sniff(file, sep, list(columns) if columns is not None else None)
    if require_timestamp and "timestamp" not in layout.positions:
        raise CinefuseError(f"ratings file {file} has no timestamp column, which the cold-item-time protocol needs "
                            "(it orders items by their first rating time); name it with --ratings-columns "
                            "user,item,rating,timestamp, or use another protocol")
    df = rf.read_ratings_frame(file, layout)
    limit = max_rating if max_rating is not None else (rf.MOVIELENS_MAX if layout.movielens else rf.FLOAT32_MAX)
    df, notes = rf.validate(df, file, on_bad_ratings, limit)
    timestamp = _timestamps(df, file, require_timestamp, notes)
    user = df["user"].to_numpy(np.int64) if df["user"].dtype == np.int64 else pd.factorize(df["user"])[0].astype(np.int64)
    for note in notes:
        if log is None:
            print(note, file=sys.stderr)
        else:
            log(note)
    return Ratings(user=user, item=df["item"].astype(str).to_numpy(object),
                   rating=df["rating"].to_numpy(np.float32), timestamp=timestamp, notes=notes)


def _ratings_file(path: str | Path) -> Path:
    """The file itself, or in a folder the release's ratings file, else its one ``ratings.*`` file."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CinefuseError(f"MovieLens file {path} does not exist")
    named = [path / names[0] for names in LAYOUTS.values() if (path / names[0]).is_file()]
    found = named or sorted(p for p in path.glob("ratings.*") if p.is_file())
    if len(found) == 1 or named:
        return found[0]
    if found:
        raise CinefuseError(f"{path} holds several ratings files ({', '.join(p.name for p in found)}); pass one of them")
    raise CinefuseError(f"{path} holds no ratings file (ratings.csv, u.data, ratings.dat or another ratings.* file); "
                        "pass the unpacked ml-* folder or the ratings file itself")


def _timestamps(df: pd.DataFrame, file: Path, required: bool, notes: list[str]) -> np.ndarray | None:
    if "timestamp" not in df:
        return None
    ts = df["timestamp"]
    if ts.dtype == np.int64:
        return ts.to_numpy(np.int64)
    number = pd.to_numeric(ts, errors="coerce")
    bad = np.flatnonzero((number.isna() | (number.fillna(0.5) % 1 != 0)).to_numpy())
    k = int(bad[0]) if len(bad) else 0
    example = f"line {df['line'].iat[k]}: {ts.iat[k]!r}"
    if required:
        raise CinefuseError(f"ratings file {file}: {len(bad)} timestamp(s) are not integer times (e.g. {example}); "
                            "the cold-item-time protocol needs them")
    notes.append(f"ratings file {file}: timestamp column ignored, {len(bad)} value(s) are not integer times "
                 f"(e.g. {example}); only cold-item-time uses it")
    return None


def _year_from_title(title: str) -> float:
    match = _YEAR_IN_TITLE.search(title)
    return float(match.group(1)) if match else float("nan")


def _split_genres(text: str) -> list[str]:
    if not text or text == NO_GENRES:
        return []
    return [g for g in text.split("|") if g and g != NO_GENRES]


def load_movies(path: str | Path) -> Movies:
    file, version = _resolve(path, 1)
    if not file.is_file():
        raise CinefuseError(f"movies file {file} does not exist")
    try:
        if version == "csv":
            df = pd.read_csv(file, dtype=str, keep_default_na=False)
            ids, titles, genre_text = df["movieId"], df["title"], df["genres"]
            genres = [_split_genres(g) for g in genre_text]
            years = [_year_from_title(t.strip()) for t in titles]
        elif version == "ml-100k":
            columns = ["item", "title", "release", "video_release", "url", *ML100K_GENRES]
            df = pd.read_csv(file, sep="|", header=None, names=columns, encoding="latin-1", dtype=str,
                             keep_default_na=False)
            ids, titles = df["item"], df["title"]
            flags = df[list(ML100K_GENRES)].to_numpy()
            # "unknown" is ml-100k's flag for no genre: it is not a genre two films can share.
            genres = [[g for g, f in zip(ML100K_GENRES, row) if f.strip() == "1" and g != "unknown"] for row in flags]
            years = []
            for title, release in zip(titles, df["release"]):
                year = _year_from_title(title.strip())
                if np.isnan(year) and release.strip():
                    year = float(release.strip()[-4:]) if release.strip()[-4:].isdigit() else float("nan")
                years.append(year)
        else:
            df = _read_dat(file, ["item", "title", "genres"])
            ids, titles = df["item"], df["title"]
            genres = [_split_genres(g) for g in df["genres"]]
            years = [_year_from_title(t.strip()) for t in titles]
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise CinefuseError(f"cannot read movies from {file} ({exc}); is it a MovieLens movies file?") from exc
    return Movies(
        ids=np.array([str(i).strip() for i in ids], dtype=object),
        titles=[str(t).strip() for t in titles],
        genres=genres,
        years=np.array(years, dtype=np.float64),
    )


def load_tags(path: str | Path) -> dict[str, list[str]]:
    """Tags per item id in file order, duplicates kept once; ``{}`` for releases without tags."""
    path = Path(path)
    if path.is_dir():
        file, version = _resolve(path, 2)
        if not file.is_file():
            return {}
    else:
        file, version = _resolve(path, 2)
    try:
        if version == "csv":
            df = pd.read_csv(file, dtype=str, keep_default_na=False)
            items, tags = df["movieId"], df["tag"]
        elif version == "dat":
            df = _read_dat(file, ["user", "item", "tag", "timestamp"])
            items, tags = df["item"], df["tag"]
        else:
            return {}
    except (ValueError, KeyError, pd.errors.ParserError) as exc:
        raise CinefuseError(f"cannot read tags from {file} ({exc}); is it a MovieLens tags file?") from exc
    out: dict[str, list[str]] = {}
    for item, tag in zip(items, tags):
        tag = str(tag).strip()
        if not tag:
            continue
        bucket = out.setdefault(str(item).strip(), [])
        if tag not in bucket:
            bucket.append(tag)
    return out
