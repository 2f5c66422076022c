"""extract/inputs.py: manifests in every format it reads, folder scans, and ``s3://`` fetches,
with the exact one-line errors a user sees for bad input."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from cinefuse.errors import CinefuseError
from cinefuse.extract.inputs import Item, MissingInput, fetch_s3, items_from_rows, load_manifest, scan_videos

ROWS = [
    {"id": "1", "video": "clips/a.mp4", "title": "Toy Story", "year": "1995"},
    {"id": "2", "video": "", "title": "Jumanji", "year": ""},
    {"id": "3", "video": "s3://bucket/c.mp4", "title": " Heat ", "year": "1995"},
]


def expected(base: Path) -> list[Item]:
    return [Item("1", str(base / "clips" / "a.mp4"), {"title": "Toy Story", "year": "1995"}),
            Item("2", "", {"title": "Jumanji", "year": ""}),
            Item("3", "s3://bucket/c.mp4", {"title": "Heat", "year": "1995"})]


def write_csv(path: Path, sep: str = ",") -> None:
    lines = [sep.join(["id", "video", "title", "year"])]
    lines += [sep.join(row[k] for k in ("id", "video", "title", "year")) for row in ROWS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("name", ["items.csv", "items.tsv", "items.csv.gz", "items.jsonl", "items.parquet"])
def test_every_manifest_format_gives_the_same_items(tmp_path, name):
    path = tmp_path / name
    if name == "items.csv":
        write_csv(path)
    elif name == "items.tsv":
        write_csv(path, "\t")
    elif name == "items.csv.gz":
        write_csv(tmp_path / "plain.csv")
        path.write_bytes(gzip.compress((tmp_path / "plain.csv").read_bytes()))
    elif name == "items.jsonl":
        path.write_text("".join(json.dumps(row) + "\n\n" for row in ROWS), encoding="utf-8")  # blank lines skipped
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), path)
    assert load_manifest(path) == expected(tmp_path)  # relative videos resolve next to the manifest


def test_numbers_read_as_floats_become_integers_and_nan_becomes_empty(tmp_path):
    items = items_from_rows([{"id": 7.0, "year": 1995.0, "score": float("nan"), "title": None}], where="rows")
    assert items == [Item("7", "", {"year": "1995", "score": "", "title": ""})]


def test_item_text_joins_the_named_non_empty_fields():
    item = Item("1", "", {"title": "Heat", "plot": "  ", "tags": "crime"})
    assert item.text(["title", "plot", "tags", "absent"]) == "Heat. crime"


@pytest.mark.parametrize("content, message", [
    ("video,title\na.mp4,A\n", r"^manifest {m} has no 'id' column \(columns: \['title', 'video'\]\)$"),
    ("id,title\n1,A\n,B\n", r"^manifest {m} row 2 has an empty id$"),
    ("id,title\n1,A\n2,B\n1,C\n", r"^manifest {m}: id '1' appears more than once \(row 3\)$"),
])
def test_bad_manifest_rows_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "items.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CinefuseError, match=message.format(m=path)):
        load_manifest(path)


def test_bad_manifest_files_are_one_line_errors(tmp_path):
    with pytest.raises(CinefuseError, match=f"^manifest {tmp_path / 'none.csv'} not found: pass an existing CSV, "
                                            "JSONL or Parquet file$"):
        load_manifest(tmp_path / "none.csv")
    odd = tmp_path / "items.xlsx"
    odd.write_text("x")
    with pytest.raises(CinefuseError, match=f"^manifest {odd}: unknown format '.xlsx'; use .csv, .jsonl or .parquet$"):
        load_manifest(odd)
    broken = tmp_path / "items.jsonl"
    broken.write_text('{"id": "1"}\n{"id": \n', encoding="utf-8")
    with pytest.raises(CinefuseError, match=f"^manifest {broken} line 2 is not JSON: "):
        load_manifest(broken)
    damaged = tmp_path / "items.parquet"
    damaged.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(CinefuseError, match=f"^manifest {damaged} cannot be read: ArrowInvalid: "):
        load_manifest(damaged)


def test_folder_scan_is_recursive_sorted_and_keeps_video_suffixes_only(tmp_path):
    for rel in ("b/second_film.MKV", "a-first-film.mp4", "notes.txt", "b/c/third.webm"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert scan_videos(tmp_path) == [
        Item("a-first-film", str(tmp_path / "a-first-film.mp4"), {"title": "a first film"}),
        Item("b/c/third", str(tmp_path / "b/c/third.webm"), {"title": "third"}),
        Item("b/second_film", str(tmp_path / "b/second_film.MKV"), {"title": "second film"}),
    ]


def test_folder_scan_errors(tmp_path):
    with pytest.raises(CinefuseError, match=f"^--videos {tmp_path / 'none'} is not a folder: pass a folder holding "
                                            "video files$"):
        scan_videos(tmp_path / "none")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(CinefuseError, match=rf"^--videos {tmp_path} holds no video files \(\.mp4, \.mkv, "):
        scan_videos(tmp_path)


def test_fetch_s3_copies_the_object_and_names_what_is_missing(s3_server, tmp_path):
    payload = os.urandom(4096)
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="videos/a.mp4", Body=payload)
    temp = fetch_s3(f"s3://{s3_server.bucket}/videos/a.mp4", s3_server.endpoint_url, folder=str(tmp_path))
    assert Path(temp).parent == tmp_path and temp.endswith(".mp4")
    assert Path(temp).read_bytes() == payload
    os.unlink(temp)
    with pytest.raises(MissingInput, match=f"^missing s3 object: s3://{s3_server.bucket}/videos/b.mp4$"):
        fetch_s3(f"s3://{s3_server.bucket}/videos/b.mp4", s3_server.endpoint_url, folder=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # no temp file left behind by a failed fetch
