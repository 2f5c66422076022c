"""Reading a ratings file of any common layout, and validating what it holds.

``read_ratings_frame`` recognises a file by its content, not its name: the separator (``::``, tab,
``,``, ``;``, ``|`` or runs of spaces, the first that splits the first lines into at least three
fields alike), whether the first line is a header (its rating field is not a number), and the
columns: by header name (MovieLens ``userId, movieId, rating, timestamp`` and the usual aliases),
by an explicit mapping ``user,item,rating[,timestamp]`` (header names, or 1-based column numbers
for a file without a header), else by position (``user item rating [timestamp]``, the layout of
``u.data`` and ``ratings.dat``).

``validate`` applies the policy for bad rows (``ON_BAD_RATINGS``):

- a rating that is not a number (empty, ``nan``, text), infinite, negative or above the maximum
  (5 for a MovieLens release, else the largest float32) is a bad value; a row without a user or
  item id is one too;
- a (user, item) pair rated more than once with different ratings is a conflicting duplicate;
  rows repeating a pair with the same rating are kept once under every policy (saying so).

``"error"`` (the default) stops with one line: the counts and examples with their line numbers
(the first row of each kind of bad value, the first two conflicting pairs). ``"drop"`` drops the
bad rows and every row of a conflicting pair; ``"keep-last"`` drops the bad rows and keeps the
latest row of a conflicting pair (the largest timestamp; the last in the file among equal ones or
without timestamps). Both say what they did. Line numbers count the header and assume no blank
lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cinefuse.choices import ON_BAD_RATINGS
from cinefuse.errors import CinefuseError

ROLES = ("user", "item", "rating", "timestamp")
ALIASES = {
    "user": ("userid", "user_id", "user"),
    "item": ("movieid", "movie_id", "itemid", "item_id", "item", "movie"),
    "rating": ("rating", "score"),
    "timestamp": ("timestamp", "time", "ts"),
}
SEPARATORS = (("::", "'::'"), ("\t", "tab"), (",", "','"), (";", "';'"), ("|", "'|'"), (r"\s+", "spaces"))
SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": r"\s+",
             "spaces": r"\s+", "whitespace": r"\s+"}
NA_RATINGS = ["", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"]
FLOAT32_MAX = float(np.finfo(np.float32).max)
MOVIELENS_MAX = 5.0


@dataclass
class Layout:
    """How a ratings file is read: separator, header, 0-based column of each role."""

    sep: str
    sep_name: str
    header: list[str] | None       # the header's field names, None without a header
    positions: dict[str, int]      # role -> 0-based column; "timestamp" absent without one
    movielens: bool                # a MovieLens release: ratings in [0, 5]
    encoding: str


def separator(sep: str | None) -> str | None:
    """``sep`` as pandas reads it: names such as ``tab`` or ``\\t`` are accepted."""
    if sep is None or sep == "":
        return None
    return SEP_NAMES.get(sep.lower(), sep)


def _sep_name(sep: str) -> str:
    return dict(SEPARATORS).get(sep, repr(sep))


def _fields(line: str, sep: str) -> list[str]:
    return line.split() if sep == r"\s+" else [f.strip() for f in line.split(sep)]


def _head(file: Path) -> tuple[list[str], str]:
    raw = file.open("rb").read(1 << 16)
    try:
        text, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 4:  # not just a character cut at the end of the sample
            text, encoding = raw.decode("latin-1"), "latin-1"
        else:
            text, encoding = raw[:exc.start].decode("utf-8"), "utf-8"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(raw) == 1 << 16 and len(lines) > 1:
        lines = lines[:-1]  # the last sampled line may be cut
    if not lines:
        raise CinefuseError(f"ratings file {file} is empty")
    return lines[:20], encoding


def _sniff_sep(file: Path, lines: list[str], sep: str | None) -> str:
    if sep is not None:
        if len(_fields(lines[-1], sep)) < 3:
            raise CinefuseError(f"ratings file {file}: separator {_sep_name(sep)} splits {lines[-1]!r} into fewer than "
                                "3 fields; check --ratings-sep")
        return sep
    for candidate, _ in SEPARATORS:
        counts = {len(_fields(ln, candidate)) for ln in lines}
        if min(counts) >= 3 and len(counts) == 1:
            return candidate
    raise CinefuseError(f"cannot tell how ratings file {file} is separated: no separator among "
                        f"{', '.join(name for _, name in SEPARATORS)} splits its first lines (e.g. {lines[0]!r}) "
                        "into the same 3 or more fields; pass the separator (--ratings-sep)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _by_name(file, header: list[str], name: str, role: str) -> int:
    if name in header:
        return header.index(name)
    lower = [h.lower() for h in header]
    if name.lower() in lower:
        return lower.index(name.lower())
    if name.isdigit() and 1 <= int(name) <= len(header):
        return int(name) - 1
    raise CinefuseError(f"ratings file {file} has no column {name!r} for the {role} (its columns: {', '.join(header)}); "
                        "--ratings-columns names the user,item,rating[,timestamp] columns of its header")


def _positions(file: Path, first: list[str], columns: list[str] | None, sep_name: str):
    """(header or None, role -> 0-based column) from the first line's fields and the mapping."""
    if columns is not None:
        if len(columns) not in (3, 4) or not all(columns):
            raise CinefuseError(f"ratings columns {','.join(columns)!r}: give user,item,rating or "
                                "user,item,rating,timestamp (header names, or 1-based column numbers)")
        numbers = all(c.isdigit() for c in columns)
        rating_at = int(columns[2]) - 1 if numbers else None
        header = None if numbers and rating_at < len(first) and _is_number(first[rating_at]) else first
        if header is None:
            bad = [c for c in columns if not 1 <= int(c) <= len(first)]
            if bad:
                raise CinefuseError(f"ratings file {file} has {len(first)} columns ({sep_name}-separated); "
                                    f"--ratings-columns asks for column {bad[0]}")
            return None, {role: int(c) - 1 for role, c in zip(ROLES, columns)}
        return header, {role: _by_name(file, header, c, role) for role, c in zip(ROLES, columns)}
    if len(first) >= 3 and _is_number(first[2]):  # the rating field of a data row: no header
        return None, {role: k for k, role in enumerate(ROLES[:min(4, len(first))])}
    lower = [h.lower() for h in first]
    found = {role: next((lower.index(a) for a in names if a in lower), None) for role, names in ALIASES.items()}
    missing = [role for role in ROLES[:3] if found[role] is None]
    if missing:
        raise CinefuseError(f"ratings file {file} ({sep_name}-separated) has no {' or '.join(missing)} column "
                            f"(its header: {', '.join(first)}); name them with --ratings-columns user,item,rating"
                            "[,timestamp] (header names), or check the separator (--ratings-sep)")
    return first, {role: k for role, k in found.items() if k is not None}


def sniff(file: Path, sep: str | None = None, columns: list[str] | None = None) -> Layout:
    """The layout of ``file`` from its first lines (module doc)."""
    lines, encoding = _head(file)
    sep = _sniff_sep(file, lines, separator(sep))
    first = _fields(lines[0], sep)
    header, positions = _positions(file, first, columns, _sep_name(sep))
    names = {h.lower() for h in header} if header else set()
    movielens = ({"userid", "movieid"} <= names) or (header is None and file.name in ("u.data", "ratings.dat"))
    return Layout(sep, _sep_name(sep), header, positions, movielens, encoding)


def read_ratings_frame(file: Path, layout: Layout) -> pd.DataFrame:
    """Columns ``user`` (int64 or str), ``item`` (str), ``rating`` (float64, NaN where not a number),
    ``timestamp`` (int64, or str where not all integers; absent without the column) and ``line``."""
    roles = sorted(layout.positions, key=layout.positions.get)
    cols = [layout.positions[r] for r in roles]
    typed = {"user": np.int64, "item": str, "rating": np.float64, "timestamp": np.int64}
    na = {"user": [""], "item": [""], "rating": NA_RATINGS, "timestamp": [""]}
    kw = dict(sep=layout.sep, header=None, skiprows=1 if layout.header else 0, usecols=cols,
              engine="python" if len(layout.sep) > 1 and layout.sep != r"\s+" else "c", encoding=layout.encoding,
              keep_default_na=False)
    try:
        try:
            df = pd.read_csv(file, dtype={layout.positions[r]: typed[r] for r in roles},
                             na_values={layout.positions[r]: na[r] for r in roles}, **kw)
        except ValueError:  # a user id, rating or timestamp that is not a number: read as text, then sort out
            df = pd.read_csv(file, dtype=str, na_values={layout.positions[r]: na[r] for r in roles}, **kw)
            df = df.rename(columns={layout.positions[r]: r for r in roles})
            df = _coerce(df)
            df["item"] = df["item"].str.strip()
            df["line"] = np.arange(len(df), dtype=np.int64) + 1 + bool(layout.header)
            return df
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CinefuseError(f"cannot read ratings file {file} as {layout.sep_name}-separated "
                            f"({str(exc).strip().splitlines()[-1]}); check the separator (--ratings-sep)") from exc
    df = df.rename(columns={layout.positions[r]: r for r in roles})
    df["item"] = df["item"].str.strip()
    df["line"] = np.arange(len(df), dtype=np.int64) + 1 + bool(layout.header)
    return df


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    """The text columns of a file whose numbers did not all parse: ratings that are not numbers
    become NaN (bad values), user ids stay text when they are not all integers."""
    df["rating"] = pd.to_numeric(df["rating"], errors="coerce").astype(np.float64)
    user = pd.to_numeric(df["user"], errors="coerce")
    if user.notna().all() and (user == np.floor(user)).all():
        df["user"] = user.astype(np.int64)
    if "timestamp" in df:
        ts = pd.to_numeric(df["timestamp"], errors="coerce")
        if ts.notna().all() and (ts == np.floor(ts)).all():
            df["timestamp"] = ts.astype(np.int64)
    return df


def _fmt(x: float) -> str:
    return f"{x:g}"


def bad_values(df: pd.DataFrame, max_rating: float) -> tuple[np.ndarray, dict[str, int], list[str]]:
    """(mask of rows with a bad value, count per kind, examples: the first row of each kind, in
    file order)."""
    r = df["rating"].to_numpy(np.float64)
    ids_missing = df["user"].isna().to_numpy() | df["item"].isna().to_numpy() | (df["item"] == "").to_numpy()
    kinds = [("without a user or item id", ids_missing), ("rating not a number", np.isnan(r)),
             ("rating infinite", np.isinf(r)), ("rating negative", r < 0),
             (f"rating above {_fmt(max_rating)}", np.isfinite(r) & (r > max_rating))]
    bad = np.zeros(len(df), bool)
    counts, examples = {}, []
    for name, mask in kinds:
        mask = mask & ~bad
        if mask.any():
            counts[name] = int(mask.sum())
            examples.append(int(np.flatnonzero(mask)[0]))
        bad |= mask
    rows = [df.iloc[k] for k in sorted(examples)]
    return bad, counts, [f"line {r['line']}: user {r['user']}, item {r['item']}, rating {_fmt(r['rating'])}" for r in rows]


def duplicates(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(rows of pairs rated differently on several rows, rows repeating an earlier identical row,
    examples of the first). One sort of a 64-bit (user, item) key finds the repeated pairs."""
    n = len(df)
    none = np.zeros(n, bool)
    if n < 2:
        return none, none.copy(), []
    user = df["user"].to_numpy()
    if df["user"].dtype != np.int64 or user.min() < 0:
        user = pd.factorize(df["user"])[0]
    item_codes, items = pd.factorize(df["item"])
    if int(user.max()) >= (1 << 62) // max(1, len(items)):
        user = pd.factorize(user)[0]
    key = user.astype(np.int64) * len(items) + item_codes
    order = np.argsort(key, kind="stable")
    same = key[order][1:] == key[order][:-1]
    if not same.any():
        return none, none.copy(), []
    dup = np.zeros(n, bool)
    dup[order[1:][same]] = True
    dup[order[:-1][same]] = True
    rows = np.flatnonzero(dup)
    sub = pd.DataFrame({"key": key[rows], "rating": df["rating"].to_numpy()[rows], "row": rows})
    spread = sub.groupby("key")["rating"].nunique()
    conflicting_keys = spread.index[spread.to_numpy() > 1]
    in_conflict = sub["key"].isin(conflicting_keys).to_numpy()
    conflict = none.copy()
    conflict[rows[in_conflict]] = True
    repeat = none.copy()
    repeat[rows[sub.duplicated(["key", "rating"], keep="first").to_numpy() & ~in_conflict]] = True
    examples = []
    for k in conflicting_keys[:2]:
        at = rows[sub["key"].to_numpy() == k]
        first = df.iloc[at[0]]
        rated = ", ".join(f"{_fmt(df['rating'].iat[i])} (line {df['line'].iat[i]})" for i in at[:4])
        examples.append(f"user {first['user']}, item {first['item']} rated {rated}")
    return conflict, repeat, examples


def keep_latest(df: pd.DataFrame, conflict: np.ndarray) -> np.ndarray:
    """Of the conflicting rows, the mask of those to drop: all but the latest of each pair (the
    largest timestamp; the last in the file among equal ones or without timestamps)."""
    rows = np.flatnonzero(conflict)
    sub = df.iloc[rows]
    ts = sub["timestamp"].to_numpy() if "timestamp" in df and df["timestamp"].dtype == np.int64 else np.zeros(len(rows))
    order = pd.DataFrame({"u": sub["user"].to_numpy(), "i": sub["item"].to_numpy(), "ts": ts, "row": rows})
    latest = order.sort_values(["ts", "row"], kind="stable").drop_duplicates(["u", "i"], keep="last")["row"].to_numpy()
    drop = np.zeros(len(df), bool)
    drop[rows] = True
    drop[latest] = False
    return drop


def validate(df: pd.DataFrame, file: Path, policy: str, max_rating: float) -> tuple[pd.DataFrame, list[str]]:
    """The rows kept under ``policy`` (module doc) and the notes saying what was done."""
    if policy not in ON_BAD_RATINGS:
        raise CinefuseError(f"on_bad_ratings {policy!r}: choose one of {', '.join(ON_BAD_RATINGS)}")
    bad, counts, bad_examples = bad_values(df, max_rating)
    good = df[~bad].reset_index(drop=True) if bad.any() else df
    conflict, repeat, dup_examples = duplicates(good)
    n_bad, n_pairs = int(bad.sum()), len({(u, i) for u, i in zip(good["user"][conflict], good["item"][conflict])})
    what = []
    if n_bad:
        what.append(f"{n_bad} bad row(s) ({', '.join(f'{v} {k}' for k, v in counts.items())})")
    if n_pairs:
        what.append(f"{n_pairs} (user, item) pair(s) rated differently on {int(conflict.sum())} rows")
    if what and policy == "error":
        raise CinefuseError(f"ratings file {file}: {' and '.join(what)}; e.g. {'; '.join(bad_examples + dup_examples)}. "
                            "Fix the file, or choose --on-bad-ratings drop (drop those rows) or keep-last (drop the bad "
                            "rows, keep the latest rating of each pair)")
    notes = []
    if n_bad:
        notes.append(f"ratings file {file}: dropped {what[0]} (--on-bad-ratings {policy})")
    drop = repeat.copy()
    if n_pairs and policy == "drop":
        drop |= conflict
        notes.append(f"ratings file {file}: dropped every row of {what[-1]} (--on-bad-ratings drop)")
    elif n_pairs:
        drop |= keep_latest(good, conflict)
        notes.append(f"ratings file {file}: kept the latest row of each of {what[-1]}, dropped "
                     f"{int(conflict.sum()) - n_pairs} (--on-bad-ratings keep-last)")
    if repeat.any():
        notes.append(f"ratings file {file}: {int(repeat.sum())} row(s) repeating an earlier (user, item, rating) "
                     "row kept once")
    return (good[~drop].reset_index(drop=True) if drop.any() else good), notes
