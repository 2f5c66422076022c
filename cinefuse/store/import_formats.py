"""Read precomputed per-item features from the files researchers publish: ids and one vector each.

Formats (picked from the extension, or ``--format``):

- ``csv`` / ``tsv`` (header row; ``.csv``, ``.tsv``, ``.tab``, optionally ``.gz``): the id column
  (``--id-column``, default the first) and either one column per dimension or one column holding
  a delimited vector (``"0.1,0.2,..."``, ``"[0.1 0.2 ...]"``; separators ``,`` ``;`` or blanks).
  Without ``--columns`` / ``--vector-column`` the layout is found from the first row: a text
  column whose value splits into two or more numbers is the vector column; otherwise every
  column whose first value is a number is a dimension. Other columns (titles, genres) are
  ignored and named in the summary. An empty cell is NaN (the row becomes invalid).
- ``npy``: an (N, D) array plus ``--ids`` (a text file, one id a line, or an ``.npy`` of N ids).
- ``npz``: the ids under ``--ids-key`` (default ``ids``) and the (N, D) array under
  ``--data-key`` (default: the one other array).
- ``parquet``: the id column and a list column or one numeric column per dimension (as CSV).
- ``json``: one file mapping id -> vector, or a list of records ``{"id": ..., "<vector>": [...]}``.
- ``json-dir``: a folder of ``<id>.json`` files, each a vector or an object with one list field
  (``--vector-column`` picks it); the id is the file name without ``.json``.

Every reader returns :class:`ParsedFile` (ids as strings, data as float64, NaN where a value is
missing); the checks every format shares (no rows, repeated ids) follow in :func:`read_features`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.store.manifest import sha256_file

FORMATS = ("csv", "tsv", "npy", "npz", "parquet", "json", "json-dir")
_SPLIT = re.compile(r"[,;\s]+")


@dataclass
class ReadOptions:
    format: str | None = None
    id_column: str | None = None
    vector_column: str | None = None
    columns: list[str] | None = None
    delimiter: str | None = None
    ids: str | None = None          # npy: the ids file
    ids_key: str = "ids"            # npz
    data_key: str | None = None     # npz


@dataclass
class ParsedFile:
    ids: np.ndarray                 # (N,) str
    data: np.ndarray                # (N, D) float64
    format: str
    layout: dict[str, Any]          # how the file was read (id column, vector column, ...)
    sha256: str                     # of the file (of the files, for a folder or npy + ids)
    ignored: list[str] = field(default_factory=list)


def detect_format(path: Path, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise CinefuseError(f"unknown import format {given!r}; choose one of {', '.join(FORMATS)}")
        return given
    if path.is_dir():
        return "json-dir"
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    ext = suffixes[-1] if suffixes else ""
    known = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".npy": "npy", ".npz": "npz",
             ".parquet": "parquet", ".pq": "parquet", ".json": "json"}
    if ext not in known:
        raise CinefuseError(
            f"cannot tell the format of {path.name} from its extension; pass --format "
            f"({', '.join(FORMATS)})")
    return known[ext]


def read_features(path: str | Path, options: ReadOptions | None = None) -> ParsedFile:
    """Read one feature file (or folder) into ids and an (N, D) float64 matrix, checked: at
    least one row, each id once, one dimension for every row."""
    options = options or ReadOptions()
    path = Path(path)
    if not path.exists():
        raise CinefuseError(f"{path} does not exist")
    fmt = detect_format(path, options.format)
    reader = {"csv": _read_table_text, "tsv": _read_table_text, "npy": _read_npy, "npz": _read_npz,
              "parquet": _read_parquet, "json": _read_json, "json-dir": _read_json_dir}[fmt]
    parsed = reader(path, options, fmt)
    if len(parsed.ids) == 0:
        raise CinefuseError(f"{path.name} holds no rows: nothing to import")
    check_unique(parsed.ids, path.name)
    if parsed.data.ndim != 2 or parsed.data.shape[1] == 0:
        raise CinefuseError(f"{path.name} holds no feature values (shape {parsed.data.shape})")
    return parsed


def check_unique(ids: np.ndarray, where: str) -> None:
    values, first_at, counts = np.unique(ids, return_index=True, return_counts=True)
    repeated = np.flatnonzero(counts > 1)
    if repeated.size:
        first = repeated[np.argmin(first_at[repeated])]  # the repeated id met first in the file
        raise CinefuseError(
            f"{where}: id {str(values[first])!r} appears {int(counts[first])} times "
            f"({repeated.size} id(s) repeat); each id needs exactly one row")


def ragged_error(where: str, item_id: str, got: int, dim: int) -> CinefuseError:
    return CinefuseError(
        f"{where}: the row of id {item_id!r} has {got} values where the first row has {dim}; "
        "every row needs the same dimension")


def to_float(tokens: np.ndarray, where: str, describe) -> np.ndarray:
    """Strings to float64: an empty string is NaN; a non-number is an error naming it
    (``describe(k)`` says where token ``k`` was)."""
    tokens = np.char.strip(np.asarray(tokens, dtype=str))
    tokens = np.where(tokens == "", "nan", tokens)
    try:
        return tokens.astype(np.float64)
    except ValueError:
        for k, token in enumerate(tokens.tolist()):
            try:
                float(token)
            except ValueError:
                raise CinefuseError(f"{where}: {token!r} ({describe(k)}) is not a number") from None
        raise


def split_vectors(values: list[str], ids: np.ndarray, where: str, column: str) -> np.ndarray:
    """A column of delimited vectors as (N, D) float64; an empty field is a row of NaN."""
    plain = _plain_vectors(values)
    if plain is not None:
        lengths, flat = plain
    else:
        parts = [tokens(value) for value in values]
        lengths = np.array([len(p) for p in parts])
    full, dim = row_dimension(lengths, ids, where, column)
    if plain is None:
        flat = to_float(np.array([t for k in full for t in parts[k]], dtype=str), where,
                        lambda k: f"id {str(ids[full[k // dim]])}, column {column}")
    return fill_rows(len(values), full, dim, flat)


def row_dimension(lengths: np.ndarray, ids: np.ndarray, where: str, column: str) -> tuple[np.ndarray, int]:
    """(rows holding values, the dimension): the first such row's length, every other the same."""
    full = np.flatnonzero(lengths > 0)
    if not full.size:
        raise CinefuseError(f"{where}: column {column!r} holds no values")
    dim = int(lengths[full[0]])
    bad = np.flatnonzero((lengths != dim) & (lengths > 0))
    if bad.size:
        raise ragged_error(where, str(ids[bad[0]]), int(lengths[bad[0]]), dim)
    return full, dim


def fill_rows(n: int, full: np.ndarray, dim: int, flat: np.ndarray) -> np.ndarray:
    """(n, dim) float64: the values of rows ``full`` in order, NaN in every other row."""
    out = np.full((n, dim), np.nan)
    out[full] = flat.reshape(len(full), dim)
    return out


def _plain_vectors(values: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The common layout (``1.5,-2,nan,...``: commas, no brackets, no empty values) parsed in C:
    (values per row, every value); None for anything else, which the general path then reads
    (and reports). About 5x faster than splitting in Python, without a Python object per value."""
    lengths = np.array([v.count(",") + 1 if v else 0 for v in values], dtype=np.int64)
    try:
        flat = np.fromstring(",".join(v for v in values if v), dtype=np.float64, sep=",")
    except ValueError:  # a bracket, another separator, an empty value or a word: the general path
        return None
    return (lengths, flat) if flat.size == int(lengths.sum()) else None


def tokens(text: str) -> list[str]:
    """The numbers of one delimited vector field, brackets and outer separators dropped."""
    text = text.strip(" \t,;[]()")
    return _SPLIT.split(text) if text else []


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_filled(values) -> str:
    return next((v for v in values if str(v).strip() != ""), "")


def pick_columns(names: list[str], first_values: dict[str, str], options: ReadOptions,
                 where: str) -> tuple[str | None, list[str], list[str]]:
    """(vector column or None, dimension columns, ignored columns) of a table, the id column
    left out; from the options, else from the first row."""
    for given in [options.vector_column, *(options.columns or [])]:
        if given is not None and given not in names:
            raise CinefuseError(f"{where} has no column {given!r}; its columns: {', '.join(names)}")
    if options.vector_column:
        return options.vector_column, [], [n for n in names if n != options.vector_column]
    if options.columns:
        return None, list(options.columns), [n for n in names if n not in options.columns]
    numeric = [n for n in names if first_values[n].strip() == "" or _is_number(first_values[n])]
    vectors = [n for n in names if n not in numeric and len(tokens(first_values[n])) >= 2
               and all(_is_number(t) for t in tokens(first_values[n]))]
    if len(vectors) > 1:
        raise CinefuseError(f"{where} has several vector columns ({', '.join(vectors)}); pick one with --vector-column")
    if vectors:
        return vectors[0], [], [n for n in names if n != vectors[0]]
    if not numeric:
        raise CinefuseError(
            f"{where} has no feature columns (no numeric column, no column of delimited vectors); "
            "name them with --columns or --vector-column")
    return None, numeric, [n for n in names if n not in numeric]


def _table_to_parsed(frame, path: Path, options: ReadOptions, fmt: str, sha: str) -> ParsedFile:
    """A pandas frame of strings -> ParsedFile (CSV, TSV and Parquet share it)."""
    names = [str(c) for c in frame.columns]
    frame.columns = names
    id_column = options.id_column or names[0]
    if id_column not in names:
        raise CinefuseError(f"{path.name} has no column {id_column!r}; its columns: {', '.join(names)}")
    ids = np.array(frame[id_column].astype(str).str.strip().tolist(), dtype=str)
    if len(frame) == 0:
        return ParsedFile(ids, np.zeros((0, 0)), fmt, {}, sha)
    rest = [n for n in names if n != id_column]
    first = {n: str(_first_filled(frame[n])) for n in rest}
    vector, dims, ignored = pick_columns(rest, first, options, path.name)
    if vector is not None:
        data = split_vectors(frame[vector].astype(str).tolist(), ids, path.name, vector)
        layout = {"id_column": id_column, "vector_column": vector}
    else:
        data = np.empty((len(ids), len(dims)))
        for j, name in enumerate(dims):  # a column at a time: memory stays one column of text
            data[:, j] = to_float(np.array(frame[name].astype(str).tolist(), dtype=str), path.name,
                                  lambda k, name=name: f"id {ids[k]}, column {name}")
        layout = {"id_column": id_column, "columns": dims}
    return ParsedFile(ids, data, fmt, layout, sha, ignored)


def _read_table_text(path: Path, options: ReadOptions, fmt: str) -> ParsedFile:
    import pandas as pd

    sep = options.delimiter or ("\t" if fmt == "tsv" else ",")
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                            encoding="utf-8-sig", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise CinefuseError(f"{path.name} holds no rows: nothing to import") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CinefuseError(f"{path.name} is not a readable {fmt.upper()} file ({exc})".replace("\n", " ")) from None
    parsed = _table_to_parsed(frame, path, options, fmt, sha256_file(path))
    if sep != ",":
        parsed.layout["delimiter"] = sep
    return parsed


def _read_parquet(path: Path, options: ReadOptions, fmt: str) -> ParsedFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CinefuseError(f"{path.name} is not a readable Parquet file ({exc})") from None
    names = table.column_names
    if not names:
        raise CinefuseError(f"{path.name} holds no rows: nothing to import")
    id_column = options.id_column or names[0]
    lists = [n for n in names if n != id_column and (pa.types.is_list(table.schema.field(n).type)
                                                     or pa.types.is_fixed_size_list(table.schema.field(n).type)
                                                     or pa.types.is_large_list(table.schema.field(n).type))]
    vector = options.vector_column or (lists[0] if len(lists) == 1 and not options.columns else None)
    if vector is None or id_column not in names:
        frame = table.to_pandas()
        frame = frame.astype(object).where(frame.notna(), "").astype(str)  # a null cell is an empty one
        return _table_to_parsed(frame, path, options, fmt, sha256_file(path))
    if vector not in names:
        raise CinefuseError(f"{path.name} has no column {vector!r}; its columns: {', '.join(names)}")
    import pyarrow.compute as pc

    ids = np.array([str(v) for v in table.column(id_column).to_pylist()], dtype=str)
    column = table.column(vector).combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type)
            or pa.types.is_large_list(column.type)):
        raise CinefuseError(f"{path.name}: column {vector!r} is not a list column ({column.type})")
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    try:  # a null list is no row; a null inside one is NaN
        flat = pc.cast(pc.list_flatten(column), pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CinefuseError(f"{path.name}: column {vector!r} holds values that are not numbers ({exc})") from None
    if len(ids) == 0:
        return ParsedFile(ids, np.zeros((0, 0)), fmt, {}, "")
    full, dim = row_dimension(lengths, ids, path.name, vector)
    return ParsedFile(ids, fill_rows(len(ids), full, dim, flat), "parquet",
                      {"id_column": id_column, "vector_column": vector}, sha256_file(path),
                      [n for n in names if n not in (id_column, vector)])


def _vectors_to_parsed(ids: np.ndarray, rows: list, where: str, fmt: str, layout: dict, sha: str,
                       ignored: list[str] | None = None) -> ParsedFile:
    """Python lists (one per id; None or [] = missing) -> ParsedFile, ragged rows refused."""
    if not len(ids):
        return ParsedFile(ids, np.zeros((0, 0)), fmt, layout, sha)
    lengths = [len(r) if isinstance(r, (list, tuple)) else -1 for r in rows]
    for item_id, row, n in zip(ids, rows, lengths):
        if n < 0 and row is not None:
            raise CinefuseError(f"{where}: the value of id {str(item_id)!r} is not a list of numbers")
    dim = next((n for n in lengths if n > 0), 0)
    if dim == 0:
        raise CinefuseError(f"{where} holds no feature values")
    out = np.full((len(ids), dim), np.nan)
    for k, (row, n) in enumerate(zip(rows, lengths)):
        if n <= 0:
            continue
        if n != dim:
            raise ragged_error(where, str(ids[k]), n, dim)
        try:
            out[k] = np.array([np.nan if v is None else v for v in row], dtype=np.float64)
        except (TypeError, ValueError):
            raise CinefuseError(f"{where}: the vector of id {str(ids[k])!r} holds a value that is not a number") from None
    return ParsedFile(ids, out, fmt, layout, sha, list(ignored or []))


def read_id_list(path: Path) -> np.ndarray:
    """Ids from a text file (one a line, blank lines skipped) or an ``.npy`` array."""
    if not path.exists():
        raise CinefuseError(f"ids file {path} does not exist")
    if path.suffix.lower() == ".npy":
        raw = np.load(path, allow_pickle=False)
        return np.array([str(v) for v in raw.reshape(-1).tolist()], dtype=str)
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    return np.array([line for line in lines if line], dtype=str)


def _read_npy(path: Path, options: ReadOptions, fmt: str) -> ParsedFile:
    if not options.ids:
        raise CinefuseError(f"{path.name} is an NPY array: name its ids file with --ids (one id a line, in row order)")
    ids_path = Path(options.ids)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise CinefuseError(f"{path.name} is not a readable NPY array ({exc})") from None
    ids = read_id_list(ids_path)
    if data.ndim != 2:
        raise CinefuseError(f"{path.name} has shape {data.shape}; import needs an (items, dims) matrix")
    if len(ids) != data.shape[0]:
        raise CinefuseError(f"{path.name} has {data.shape[0]} rows but {ids_path.name} holds {len(ids)} ids")
    sha = _combined_sha({path.name: sha256_file(path), ids_path.name: sha256_file(ids_path)})
    return ParsedFile(ids, np.asarray(data, dtype=np.float64), fmt, {"ids_file": ids_path.name}, sha)


def _read_npz(path: Path, options: ReadOptions, fmt: str) -> ParsedFile:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CinefuseError(f"{path.name} is not a readable NPZ archive ({exc})") from None
    with archive:
        keys = list(archive.keys())
        if options.ids_key not in keys:
            raise CinefuseError(f"{path.name} has no array {options.ids_key!r} (its arrays: {', '.join(keys)}); "
                                "name the ids with --ids-key")
        others = [k for k in keys if k != options.ids_key]
        data_key = options.data_key or (others[0] if len(others) == 1 else None)
        if data_key is None or data_key not in keys:
            raise CinefuseError(f"{path.name}: name the feature array with --data-key (its arrays: {', '.join(keys)})")
        ids = np.array([str(v) for v in archive[options.ids_key].reshape(-1).tolist()], dtype=str)
        data = archive[data_key]
    if len(ids) == 0:
        return ParsedFile(ids, np.zeros((0, 0)), fmt, {}, "")
    if data.ndim != 2:
        raise CinefuseError(f"{path.name}: array {data_key!r} has shape {data.shape}; import needs (items, dims)")
    if len(ids) != data.shape[0]:
        raise CinefuseError(f"{path.name}: {data_key!r} has {data.shape[0]} rows but {options.ids_key!r} holds {len(ids)} ids")
    return ParsedFile(ids, np.asarray(data, dtype=np.float64), fmt,
                      {"ids_key": options.ids_key, "data_key": data_key}, sha256_file(path))


def _load_json(path: Path, where: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if path.stat().st_size == 0:
            raise CinefuseError(f"{where} holds no rows: nothing to import") from None
        raise CinefuseError(f"{where} is not valid JSON ({exc})") from None


def _vector_of(value: Any, key: str | None, where: str) -> Any:
    """The vector inside one JSON value: a list itself, or the object's one list field (or ``key``)."""
    if isinstance(value, list) or value is None:
        return value
    if isinstance(value, dict):
        if key is not None:
            if key not in value:
                raise CinefuseError(f"{where} has no field {key!r}")
            return value[key]
        lists = [k for k, v in value.items() if isinstance(v, list)]
        if len(lists) == 1:
            return value[lists[0]]
        raise CinefuseError(f"{where}: name the vector field with --vector-column (fields: {', '.join(value)})")
    raise CinefuseError(f"{where} is not a list of numbers")


def _read_json(path: Path, options: ReadOptions, fmt: str) -> ParsedFile:
    raw = _load_json(path, path.name)
    key = options.vector_column
    if isinstance(raw, dict):
        ids = np.array([str(k) for k in raw], dtype=str)
        rows = [_vector_of(v, key, f"{path.name} (id {k!r})") for k, v in raw.items()]
        layout = {"mapping": "id -> vector"}
    elif isinstance(raw, list):
        id_key = options.id_column or "id"
        if any(not isinstance(r, dict) or id_key not in r for r in raw):
            raise CinefuseError(f"{path.name}: a list of records needs an {id_key!r} field in each (--id-column names it)")
        ids = np.array([str(r[id_key]) for r in raw], dtype=str)
        rows = [_vector_of({k: v for k, v in r.items() if k != id_key}, key, f"{path.name} (id {r[id_key]!r})")
                for r in raw]
        layout = {"records": id_key}
    else:
        raise CinefuseError(f"{path.name} must hold an object (id -> vector) or a list of records")
    if key:
        layout["vector_column"] = key
    return _vectors_to_parsed(ids, rows, path.name, fmt, layout, sha256_file(path))


def _read_json_dir(path: Path, options: ReadOptions, fmt: str) -> ParsedFile:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file())
    ids = np.array([p.stem for p in files], dtype=str)
    rows = [_vector_of(_load_json(p, f"{path.name}/{p.name}"), options.vector_column, f"{path.name}/{p.name}")
            for p in files]
    sha = _combined_sha({p.name: sha256_file(p) for p in files})
    layout = {"files": "<id>.json"} | ({"vector_column": options.vector_column} if options.vector_column else {})
    return _vectors_to_parsed(ids, rows, path.name, fmt, layout, sha)


def _combined_sha(digests: dict[str, str]) -> str:
    """One sha256 for several files: of the lines ``<sha256>  <name>`` sorted by name (what
    ``sha256sum`` prints), so it can be checked by hand."""
    text = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
