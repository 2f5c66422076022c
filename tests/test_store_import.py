"""`cinefuse store import`: every format round-trips against numpy, the published trailer files
read as they are, each bad input stops with its exact one-line error, a re-import changes no byte,
a changed file replaces the set, and an import killed at any commit point leaves the store as it
was (verify passes, the same rows read)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.manifest import read_manifest
from cinefuse.store.verify import verify_store

ITEMS = [f"m{i}" for i in range(12)]
DIM = 5


def make_store(root: Path) -> Path:
    """A store of 12 items holding one extract-like set (``meta/year``)."""
    writer = StoreWriter(root, {"test": "import"})
    writer.write_shard(ITEMS, {"meta/year": FeatureBlock(np.arange(12, dtype=np.float32)[:, None],
                                                         np.ones(12, bool), ["ok"] * 12)})
    return root


def features() -> tuple[list[str], np.ndarray]:
    """File rows: 8 store items (one holding NaN, one Inf) and 2 ids the store lacks, in a
    shuffled order; values with many digits so a float32 round trip is exercised."""
    rng = np.random.default_rng(7)
    ids = ["m3", "m0", "x-unknown", "m7", "m11", "m5", "m2", "y-unknown", "m9", "m8"]
    data = rng.normal(size=(len(ids), DIM)) * 10.0 ** rng.integers(-6, 3, size=(len(ids), DIM))
    data[ids.index("m5"), 2] = np.nan
    data[ids.index("m9"), 0] = np.inf
    return ids, data


def expected(ids, data, source: str):
    at = {i: k for k, i in enumerate(ids)}
    want = np.zeros((len(ITEMS), data.shape[1]), np.float32)
    valid, status = [], []
    for row, item in enumerate(ITEMS):
        if item not in at:
            valid.append(False)
            status.append(f"missing: not in {source}")
        elif not np.isfinite(data[at[item]]).all():
            valid.append(False)
            status.append(f"invalid: NaN or Inf in {source}")
        else:
            want[row] = data[at[item]].astype(np.float32)
            valid.append(True)
            status.append("ok")
    return want, valid, status


def read_set(root: Path, name: str):
    fa = open_store(root).load_feature_set(name)
    order = [list(fa.ids).index(i) for i in ITEMS]
    return fa.data[order], fa.valid[order].tolist(), fa.status[order].tolist(), fa.attrs


def fmt(x: float) -> str:
    return repr(float(x))


def write_csv_columns(path: Path, ids, data):
    with open(path, "w", newline="") as h:
        w = csv.writer(h)
        w.writerow(["movie", "title"] + [f"f{k + 1}" for k in range(DIM)])
        for i, row in zip(ids, data):
            w.writerow([i, f"Film {i}, the"] + [fmt(v) for v in row])


def write_csv_published(path: Path, ids, data):
    """The MMTF-14K layout: ``itemId,title,genres,embedding``, the vector one quoted field."""
    with open(path, "w", newline="") as h:
        w = csv.writer(h)
        w.writerow(["itemId", "title", "genres", "embedding"])
        for i, row in zip(ids, data):
            w.writerow([i, f"Film {i} (1999)", "Comedy|Crime", ",".join(fmt(v) for v in row)])


def write_tsv_bracketed(path: Path, ids, data):
    with open(path, "w") as h:
        h.write("id\tvec\n")
        for i, row in zip(ids, data):
            h.write(f"{i}\t[{' '.join(fmt(v) for v in row)}]\n")


def write_npy(path: Path, ids, data):
    np.save(path, data)
    path.with_suffix(".ids.txt").write_text("\n".join(ids) + "\n")
    return ["--ids", str(path.with_suffix(".ids.txt"))]


def write_npz(path: Path, ids, data):
    np.savez(path, ids=np.array(ids), embeddings=data.astype(np.float32))


def write_parquet_list(path: Path, ids, data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"item": ids, "vector": [list(map(float, r)) for r in data]}), path)


def write_parquet_columns(path: Path, ids, data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"item": ids, "title": [f"t{i}" for i in ids]}
    columns.update({f"d{k}": data[:, k] for k in range(DIM)})
    pq.write_table(pa.table(columns), path)


def write_json_mapping(path: Path, ids, data):
    path.write_text(json.dumps({i: [float(v) for v in row] for i, row in zip(ids, data)}))


def write_json_records(path: Path, ids, data):
    path.write_text(json.dumps([{"id": i, "embedding": [float(v) for v in row], "n": 1} for i, row in zip(ids, data)]))


def write_json_dir(path: Path, ids, data):
    path.mkdir()
    for i, row in zip(ids, data):
        (path / f"{i}.json").write_text(json.dumps({"features": [float(v) for v in row]}))


FORMATS = {
    "csv-columns": ("f.csv", write_csv_columns, np.float64),
    "csv-published": ("f.csv", write_csv_published, np.float64),
    "tsv-bracketed": ("f.tsv", write_tsv_bracketed, np.float64),
    "npy": ("f.npy", write_npy, np.float64),
    "npz": ("f.npz", write_npz, np.float32),
    "parquet-list": ("f.parquet", write_parquet_list, np.float64),
    "parquet-columns": ("f.parquet", write_parquet_columns, np.float64),
    "json": ("f.json", write_json_mapping, np.float64),
    "json-records": ("f.json", write_json_records, np.float64),
    "json-dir": ("per_item", write_json_dir, np.float64),
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_each_format_round_trips_against_numpy(tmp_path, capsys, kind):
    root = make_store(tmp_path / "store")
    file_name, writer, precision = FORMATS[kind]
    ids, data = features()
    data = data.astype(precision)
    source = tmp_path / file_name
    extra = writer(source, ids, data) or []
    assert cli_main(["store", "import", str(root), str(source), "--name", "visual/x", "--description", "test set",
                     *extra]) == 0
    out = capsys.readouterr().out
    assert "2 of the file's 10 ids are not store items: skipped (--unknown-ids error refuses such a file)" in out
    assert "coverage: 6 of 12 store items hold a valid row (50.0%); 4 not in the file, 2 with NaN or Inf" in out
    got, valid, status, attrs = read_set(root, "visual/x")
    want, want_valid, want_status = expected(ids, data, source.name)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    assert valid == want_valid and status == want_status
    assert attrs["description"] == "test set" and attrs["dimension"] == DIM and attrs["dtype"] == "float32"
    assert attrs["source"] == source.name and attrs["file_rows"] == 10 and attrs["unknown_ids"] == 2
    assert verify_store(root).ok


def test_float16_and_overflow(tmp_path, capsys):
    root = make_store(tmp_path / "store")
    ids, data = features()
    source = tmp_path / "f.csv"
    write_csv_columns(source, ids, data)
    assert cli_main(["store", "import", str(root), str(source), "--name", "visual/h", "--dtype", "float16"]) == 0
    got, valid, _, attrs = read_set(root, "visual/h")
    want, want_valid, _ = expected(ids, data, source.name)
    assert got.dtype == np.float16 and got.tobytes() == want.astype(np.float16).tobytes() and valid == want_valid
    data[ids.index("m0"), 1] = 1e6
    write_csv_columns(source, ids, data)
    capsys.readouterr()
    assert cli_main(["store", "import", str(root), str(source), "--name", "visual/h", "--dtype", "float16"]) == 2
    assert capsys.readouterr().err == (
        "cinefuse store: error: f.csv: the values of id 'm0' exceed the float16 range; import with --dtype float32\n")


def import_error(capsys, *args) -> str:
    capsys.readouterr()
    assert cli_main(["store", "import", *map(str, args)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.removeprefix("cinefuse store: error: ").rstrip("\n")


def test_bad_inputs_each_stop_with_one_clear_error(tmp_path, capsys):
    root = make_store(tmp_path / "store")
    before = sorted(p.name for p in root.iterdir()), (root / "manifest.json").read_bytes()
    ragged = tmp_path / "ragged.csv"
    ragged.write_text('itemId,embedding\nm0,"1,2,3"\nm1,"1,2,3"\nm2,"1,2"\n')
    assert import_error(capsys, root, ragged, "--name", "visual/x") == (
        "ragged.csv: the row of id 'm2' has 2 values where the first row has 3; every row needs the same dimension")
    ragged_json = tmp_path / "ragged.json"
    ragged_json.write_text('{"m0": [1, 2], "m1": [1, 2, 3]}')
    assert import_error(capsys, root, ragged_json, "--name", "visual/x") == (
        "ragged.json: the row of id 'm1' has 3 values where the first row has 2; every row needs the same dimension")
    dup = tmp_path / "dup.csv"
    dup.write_text("id,a,b\nm4,1,2\nm1,1,2\nm0,3,4\nm1,5,6\nm0,7,8\nm1,0,0\n")
    assert import_error(capsys, root, dup, "--name", "visual/x") == (
        "dup.csv: id 'm1' appears 3 times (2 id(s) repeat); each id needs exactly one row")
    for name, text in (("empty.csv", ""), ("header.csv", "id,a,b\n"), ("empty.json", "{}"), ("blank.json", "")):
        (tmp_path / name).write_text(text)
        assert import_error(capsys, root, tmp_path / name, "--name", "visual/x") == f"{name} holds no rows: nothing to import"
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    (tmp_path / "none.txt").write_text("")
    assert import_error(capsys, root, tmp_path / "empty.npy", "--name", "visual/x", "--ids", tmp_path / "none.txt") == (
        "empty.npy holds no rows: nothing to import")
    word = tmp_path / "word.csv"
    word.write_text("id,a,b\nm0,1,2\nm1,x,2\n")
    assert import_error(capsys, root, word, "--name", "visual/x") == "word.csv: 'x' (id m1, column a) is not a number"
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,a\nm0,1\nzz,2\nzy,3\n")
    assert import_error(capsys, root, unknown, "--name", "visual/x", "--unknown-ids", "error") == (
        f"unknown.csv: 2 id(s) are not items of store {root} (first: 'zz'); --unknown-ids skip imports the others")
    assert import_error(capsys, root, tmp_path / "word.npy", "--name", "visual/x") == f"{tmp_path / 'word.npy'} does not exist"
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    assert import_error(capsys, root, tmp_path / "a.npy", "--name", "visual/x") == (
        "a.npy is an NPY array: name its ids file with --ids (one id a line, in row order)")
    assert import_error(capsys, root, unknown, "--name", "meta/year") == (
        f"feature set meta/year of store {root} was not written by `store import` (shard shard-00000.h5, "
        f"config {read_manifest(root).shards[0].config_hash}); import under another name")
    assert import_error(capsys, root, unknown, "--name", "fused/mine") == (
        "feature set names under fused/ are the embeddings evaluate writes; choose another name than 'fused/mine'")
    assert import_error(capsys, tmp_path / "new", unknown, "--name", "visual/x") == (
        f"store {tmp_path / 'new'} does not exist: `--ids-from {unknown}` creates it with the ids of that file as its "
        "items (or name a text file of ids, one a line)")
    assert not (tmp_path / "new").exists()
    assert import_error(capsys, root, unknown, "--name", "visual/x", "--ids-from", unknown) == (
        f"store {root} already has 12 items; --ids-from only names the items of a new store")
    assert (sorted(p.name for p in root.iterdir()), (root / "manifest.json").read_bytes()) == before


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_reimport_changes_nothing_and_a_changed_file_replaces_the_set(tmp_path, capsys):
    root = make_store(tmp_path / "store")
    ids, data = features()
    source = tmp_path / "f.csv"
    write_csv_published(source, ids, data)
    args = ["store", "import", str(root), str(source), "--name", "audio/x", "--description", "d"]
    assert cli_main(args) == 0
    first = snapshot(root)
    capsys.readouterr()
    assert cli_main(args) == 0
    assert capsys.readouterr().out == (
        f"audio/x in {root} is already imported from f.csv (sha256 {_sha(source)[:12]}, same options): "
        "nothing changed\n")
    assert snapshot(root) == first  # byte-identical, manifest included
    data[ids.index("m0")] += 1.0
    write_csv_published(source, ids, data)
    assert cli_main(args) == 0
    assert "; replaced shard-00001.h5" in capsys.readouterr().out
    manifest = read_manifest(root)
    assert [s.name for s in manifest.shards] == ["shard-00000.h5", "shard-00002.h5"]
    assert sorted(p.name for p in root.iterdir()) == [".manifest.lock", "manifest.json", "shard-00000.h5", "shard-00002.h5"]
    assert len(manifest.configs) == 2  # the replaced import's config is gone with it
    got, *_ = read_set(root, "audio/x")
    assert got.tobytes() == expected(ids, data, "f.csv")[0].tobytes()
    assert verify_store(root).ok


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_import(root: Path, source: Path, fault: str | None = None):
    env = dict(os.environ)
    env.pop("CINEFUSE_FAULT", None)
    if fault:
        env["CINEFUSE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "cinefuse", "store", "import", str(root), str(source),
                           "--name", "visual/x"], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("point", ["shard-temp-written", "shard-renamed", "manifest.json-temp-written"])
def test_an_import_killed_part_way_leaves_the_store_as_it_was(tmp_path, point):
    root = make_store(tmp_path / "store")
    ids, data = features()
    source = tmp_path / "f.csv"
    write_csv_columns(source, ids, data)
    assert run_import(root, source).returncode == 0
    manifest_before = (root / "manifest.json").read_bytes()
    rows_before = read_set(root, "visual/x")[:3]
    write_csv_columns(source, ids, data * 2.0)
    result = run_import(root, source, f"{point}:kill")
    assert result.returncode == -signal.SIGKILL and result.stdout == f"fault {point}\n", result.stderr[-2000:]
    assert (root / "manifest.json").read_bytes() == manifest_before
    report = verify_store(root)
    left = [n if not n.startswith(".") else n.split("tmp-")[0] + "tmp-" for n in report.leftovers]
    assert report.ok and left == {"shard-temp-written": [".tmp-"], "shard-renamed": ["shard-00002.h5"],
                                  "manifest.json-temp-written": [".manifest.json.tmp-", "shard-00002.h5"]}[point]
    got = read_set(root, "visual/x")[:3]
    assert got[0].tobytes() == rows_before[0].tobytes() and got[1:] == rows_before[1:]
    assert run_import(root, source).returncode == 0  # the next import completes and clears the leftover
    report = verify_store(root)
    assert report.ok and report.leftovers == []
    assert read_set(root, "visual/x")[0].tobytes() == expected(ids, data * 2.0, "f.csv")[0].tobytes()


def test_a_new_store_from_the_files_ids_or_an_id_list(tmp_path, capsys):
    ids, data = features()
    source = tmp_path / "f.csv"
    write_csv_columns(source, ids, data)
    root = tmp_path / "new"
    assert cli_main(["store", "import", str(root), str(source), "--name", "visual/x", "--ids-from", str(source)]) == 0
    assert "; new store, its items the 10 ids of f.csv\n" in capsys.readouterr().out
    fa = open_store(root).load_feature_set("visual/x")
    assert fa.ids.tolist() == ids and fa.data.tobytes() == np.where(
        np.isfinite(data).all(1)[:, None], data, 0).astype(np.float32).tobytes()
    listed = tmp_path / "ids.txt"
    listed.write_text("m0\nm1\nzz\n\n")
    other = tmp_path / "other"
    assert cli_main(["store", "import", str(other), str(source), "--name", "visual/x", "--ids-from", str(listed)]) == 0
    assert "; new store, its items the 3 ids of ids.txt\n" in capsys.readouterr().out
    fa = open_store(other).load_feature_set("visual/x")
    assert fa.ids.tolist() == ["m0", "m1", "zz"] and fa.valid.tolist() == [True, False, False]
    assert fa.status.tolist() == ["ok", "missing: not in f.csv", "missing: not in f.csv"]
    # a second set over the new store uses its items
    assert cli_main(["store", "import", str(other), str(tmp_path / "f.csv"), "--name", "audio/y"]) == 0
    assert open_store(other).load_feature_set("audio/y").ids.tolist() == ["m0", "m1", "zz"]


def test_info_shows_provenance_and_coverage(tmp_path, capsys):
    root = make_store(tmp_path / "store")
    ids, data = features()
    source = tmp_path / "f.csv"
    write_csv_published(source, ids, data)
    assert cli_main(["store", "import", str(root), str(source), "--name", "visual/x", "--description", "AVF"]) == 0
    capsys.readouterr()
    assert cli_main(["store", "info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["items"] == 12
    assert info["coverage"]["visual/x"] == {"valid": 6, "items": 12, "fraction": 0.5}
    assert info["coverage"]["meta/year"] == {"valid": 12, "items": 12, "fraction": 1.0}
    source_info = info["imported"]["visual/x"]
    assert source_info["source"] == "f.csv" and source_info["source_sha256"] == _sha(source)
    assert source_info["description"] == "AVF" and source_info["dtype"] == "float32" and source_info["format"] == "csv"
    assert source_info["layout"] == {"id_column": "itemId", "vector_column": "embedding"}
    assert list(info["imported"]) == ["visual/x"]
    assert cli_main(["store", "info", str(root)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("visual/x "))
    assert row.split() == ["visual/x", "5", "float32", "12", "6", "50.0%", "imported:", "f.csv"]
    assert f"imported visual/x: f.csv (sha256 {_sha(source)[:12]}, csv, float32): AVF" in text


def test_fuse_reads_an_imported_set_requiring_every_set(tmp_path):
    from cinefuse.fuse.features import load_features

    root = make_store(tmp_path / "store")
    ids, data = features()
    source = tmp_path / "f.csv"
    write_csv_columns(source, ids, data)
    assert cli_main(["store", "import", str(root), str(source), "--name", "visual/x"]) == 0
    table = load_features(str(root), ["meta/year", "visual/x"])
    _, valid, _ = expected(ids, data, "f.csv")
    assert table.ids.tolist() == sorted(i for i, ok in zip(ITEMS, valid) if ok)
    assert table.counts["excluded_missing_modality"] == 6
    assert table.counts["per_feature_set"]["visual/x"] == {"invalid": 6, "nonfinite": 0, "masked": 6}
    want = dict(zip(ITEMS, expected(ids, data, "f.csv")[0]))
    assert np.array_equal(table.data["visual/x"], np.stack([want[i] for i in table.ids]))


def test_the_published_trailer_files_import_as_they_are(tmp_path, shared_data, capsys):
    import pandas as pd

    trailers = shared_data / "trailers"
    movies = shared_data / "movielens" / "ml-latest-small" / "movies.csv"
    if not (trailers / "mise_en_scene_13k.csv").is_file() or not movies.is_file():
        pytest.skip(f"trailer features or ml-latest-small not found under {shared_data}")
    items = pd.read_csv(movies, dtype=str)["movieId"].tolist()
    (tmp_path / "items.txt").write_text("\n".join(items) + "\n")
    root = tmp_path / "store"
    files = {"visual/mmtf_aesthetic": ("mmtf14k_aesthetic_visual_med.csv", 107, 1807),
             "audio/mmtf_ivector": ("mmtf14k_audio_ivector_gmm32_tv20.csv", 20, 1807),
             "visual/mise_en_scene": ("mise_en_scene_13k.csv", 7, 4751)}
    for k, (name, (file_name, dim, covered)) in enumerate(files.items()):
        extra = ["--ids-from", str(tmp_path / "items.txt")] if k == 0 else []
        assert cli_main(["store", "import", str(root), str(trailers / file_name), "--name", name, *extra]) == 0
        frame = pd.read_csv(trailers / file_name, dtype=str)
        if "embedding" in frame:
            ref = np.array([np.array(v.split(","), dtype=np.float64) for v in frame["embedding"]])
        else:
            ref = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
        fa = open_store(root).load_feature_set(name)
        assert fa.ids.tolist() == items and fa.data.shape == (len(items), dim)
        at = {i: r for r, i in enumerate(items)}
        rows = [(at[i], r) for r, i in enumerate(frame.iloc[:, 0]) if i in at]
        assert len(rows) == covered == int(fa.valid.sum())
        assert fa.data[[a for a, _ in rows]].tobytes() == ref[[b for _, b in rows]].astype(np.float32).tobytes()
    assert verify_store(root).ok
    out = capsys.readouterr().out
    assert "8622 of the file's 13373 ids are not store items: skipped" in out


def test_empty_cells_nulls_and_empty_vectors_are_invalid_rows(tmp_path, capsys):
    root = make_store(tmp_path / "store")
    cells = tmp_path / "cells.csv"
    cells.write_text("id,a,b\nm0,1,2\nm1,,2\nm2,3,4\n")
    vectors = tmp_path / "vectors.csv"
    vectors.write_text('id,v\nm0,"1,2"\nm1,""\nm2,"[3, 4]"\n')
    nulls = tmp_path / "nulls.json"
    nulls.write_text('{"m0": [1, 2], "m1": [null, 2], "m2": [3, 4], "m3": null}')
    import pyarrow as pa
    import pyarrow.parquet as pq

    lists = tmp_path / "lists.parquet"
    pq.write_table(pa.table({"id": ["m0", "m1", "m2", "m3"], "v": [[1.0, 2.0], [None, 2.0], [3.0, 4.0], None]}), lists)
    for k, source in enumerate((cells, vectors, lists, nulls)):
        assert cli_main(["store", "import", str(root), str(source), "--name", f"visual/s{k}"]) == 0
        fa = open_store(root).load_feature_set(f"visual/s{k}")
        at = {i: r for r, i in enumerate(fa.ids.tolist())}
        assert [bool(fa.valid[at[i]]) for i in ("m0", "m1", "m2", "m3")] == [True, False, True, False]
        assert fa.status[at["m1"]] == f"invalid: NaN or Inf in {source.name}"
        assert fa.data[at["m2"]].tolist() == [3.0, 4.0] and fa.data[at["m1"]].tolist() == [0.0, 0.0]
    assert fa.status[at["m3"]] == "invalid: NaN or Inf in nulls.json"  # listed with null: in the file, no vector
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"id": ["m0", "m1"], "v": [[1.0, 2.0], [1.0, 2.0, 3.0]]}), ragged)
    assert import_error(capsys, root, ragged, "--name", "visual/r") == (
        "ragged.parquet: the row of id 'm1' has 3 values where the first row has 2; every row needs the same dimension")
