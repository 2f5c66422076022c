"""What to extract: items from a manifest (CSV, JSONL, Parquet) or a scanned folder, and local
copies of ``s3://`` videos.

An item is an id, a video location (local path, ``s3://`` URI, or empty for text-only items) and
its text fields. Ids are strings (MovieLens ``movieId`` 1 is ``"1"``) and must be unique.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cinefuse.errors import CinefuseError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


@dataclass
class Item:
    id: str
    video: str = ""  # local path, s3:// URI, or "" for a text-only item
    fields: dict[str, str] = field(default_factory=dict)

    def text(self, names: list[str]) -> str:
        """The named text fields joined with '. ' (empty ones left out)."""
        parts = [self.fields.get(n, "").strip() for n in names]
        return ". ".join(p for p in parts if p)


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))  # a year read as 1995.0 by pandas
    return str(value).strip()


def load_manifest(path: str | os.PathLike) -> list[Item]:
    """Read a manifest with at least an ``id`` column; ``video`` may be absent or empty."""
    file = Path(path)
    if not file.is_file():
        raise CinefuseError(f"manifest {file} not found: pass an existing CSV, JSONL or Parquet file")
    suffix = "".join(file.suffixes[-2:]).lower() if file.suffix.lower() == ".gz" else file.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl", ".ndjson", ".json"):
        _check_text(file)
    try:
        if suffix in (".csv", ".tsv", ".csv.gz"):
            import pandas as pd

            frame = pd.read_csv(file, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
            rows = frame.to_dict("records")
        elif suffix in (".jsonl", ".ndjson", ".json"):
            rows = []
            with open(file, encoding="utf-8-sig") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise CinefuseError(f"manifest {file} line {number} is not JSON: {exc}") from exc
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            rows = pq.read_table(file).to_pylist()
        else:
            raise CinefuseError(f"manifest {file}: unknown format {suffix!r}; use .csv, .jsonl or .parquet")
    except CinefuseError:
        raise
    except Exception as exc:  # a damaged file of a known format
        raise CinefuseError(f"manifest {file} cannot be read: {type(exc).__name__}: {exc}") from exc
    if not rows:
        raise CinefuseError(f"manifest {file} has no rows (a header only?): add one row per item "
                            "(id, video, title, plot, ...)")
    return items_from_rows(rows, where=str(file), base=file.parent)


def _check_text(file: Path) -> None:
    """A text manifest must hold something, in UTF-8: said in one line, before any parser's
    own wording."""
    data = file.read_bytes()
    if not data.strip():
        raise CinefuseError(f"manifest {file} is empty: write a header (id,video,title,plot,...) and one row per item")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CinefuseError(
            f"manifest {file} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None


def items_from_rows(rows: list[dict[str, Any]], where: str, base: Path | None = None) -> list[Item]:
    if rows and "id" not in rows[0]:
        raise CinefuseError(f"manifest {where} has no 'id' column (columns: {sorted(rows[0])})")
    items: list[Item] = []
    seen: set[str] = set()
    for number, row in enumerate(rows, 1):
        item_id = _clean(row.get("id"))
        if not item_id:
            raise CinefuseError(f"manifest {where} row {number} has an empty id")
        if item_id in seen:
            raise CinefuseError(f"manifest {where}: id {item_id!r} appears more than once (row {number})")
        seen.add(item_id)
        video = _clean(row.get("video"))
        if video and base is not None and not video.startswith("s3://") and not os.path.isabs(video):
            video = str(base / video)  # relative paths are relative to the manifest
        fields = {k: _clean(v) for k, v in row.items() if k not in ("id", "video")}
        items.append(Item(item_id, video, fields))
    return items


def scan_videos(folder: str | os.PathLike) -> list[Item]:
    """Every video file under ``folder`` (recursive, sorted); id = relative path without suffix,
    title = file stem with separators as spaces."""
    root = Path(folder)
    if not root.is_dir():
        raise CinefuseError(f"--videos {root} is not a folder: pass a folder holding video files")
    items = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES):
        rel = path.relative_to(root).with_suffix("").as_posix()
        title = path.stem.replace("_", " ").replace("-", " ")
        items.append(Item(rel, str(path), {"title": title}))
    if not items:
        raise CinefuseError(f"--videos {root} holds no video files ({', '.join(VIDEO_SUFFIXES)})")
    return items


class MissingInput(Exception):
    """The video named by an item is not there (its status names why)."""


def fetch_s3(uri: str, endpoint_url: str | None, folder: str | None = None) -> str:
    """Download ``uri`` to a temporary file and return its path (the caller deletes it).
    A missing key raises :class:`MissingInput`."""
    from botocore.exceptions import BotoCoreError, ClientError

    from cinefuse.store.location import split_s3_uri
    from cinefuse.store.s3 import s3_client

    bucket, key = split_s3_uri(uri)
    suffix = Path(key).suffix or ".bin"
    handle, temp = tempfile.mkstemp(prefix="cinefuse-fetch-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        s3_client(endpoint_url).download_file(bucket, key, temp)
    except ClientError as exc:
        os.unlink(temp)
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            raise MissingInput(f"missing s3 object: {uri}") from exc
        if code in ("NoSuchBucket",):
            raise MissingInput(f"missing s3 bucket: {uri}") from exc
        raise MissingInput(f"s3 error: {uri}: {code or exc}") from exc
    except (BotoCoreError, OSError) as exc:
        if os.path.exists(temp):
            os.unlink(temp)
        raise MissingInput(f"s3 error: {uri}: {type(exc).__name__}: {exc}") from exc
    return temp
