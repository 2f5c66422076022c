"""`cinefuse export`: every format read back with numpy / pyarrow / csv and compared exactly with
the store's arrays and the ratings file; the provenance record; what is left out and why; bad
input in one line. The consumer frameworks themselves load exports in test_export_consumers.py.

The fixture: a synthetic store (two text rows marked invalid, one visual row of NaN, a float16
frame sequence set), a fuse workdir whose config and cold-item split are written through the
real Workdir (as `cinefuse fuse` writes them), and a fused store (as `cinefuse evaluate` writes
it) lacking two items.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

from cinefuse.cli import main  # noqa: E402
from cinefuse.errors import CinefuseError  # noqa: E402

SETS = ["visual/effnet", "text/minilm", "fused/distill-full"]
PARTS = ("train", "val", "test")


def build_env(root: Path, protocol: str = "cold-item", cut: int | None = None) -> dict:
    """The store, ratings, workdir (config, split) and fused store of the module docstring."""
    from cinefuse.evaluate.fused import write_fused_embeddings
    from cinefuse.fuse.config import config_from_dict
    from cinefuse.fuse.pairs import split_items
    from cinefuse.fuse.workdir import Workdir, write_json

    env = write_synthetic_store(root, n_items=40, n_users=30, sequences=True,
                                bad_rows={"text/minilm": {"invalid": [3, 7]}, "visual/effnet": {"nan": [5]}})
    wd = Workdir(root / "w")
    wd.root.mkdir()
    wd.save_config(config_from_dict(small_config(env)), grid=False)
    ids = np.array(env["ids"], dtype=object)
    parts = split_items(ids, [0.7, 0.15, 0.15], 0)
    split = {"protocol": protocol, "seed": 0, **{k: v.tolist() for k, v in parts.items()}, "stats": {}}
    if cut is not None:
        split["cut_timestamp"] = cut
    write_json(wd.split_path, split)
    fused = np.random.default_rng(1).standard_normal((len(ids), 8)).astype(np.float32)
    write_fused_embeddings(wd.root, {"distill-full": (ids[:-2].tolist(), fused[:-2])})
    return {**env, "workdir": wd.root, "split": split, "fused_store": wd.embeddings_dir}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("export"))


def store_rows(env: dict) -> dict:
    """set -> {id: (row, usable)} straight from the stores (usable: valid there and finite)."""
    from cinefuse.store import open_store

    out = {}
    for location, names in ((env["store"], SETS[:2] + ["visual/effnet_frames"]), (env["fused_store"], SETS[2:])):
        table = open_store(location).load(names)
        for name in names:
            data, valid = table.features[name], table.valid[name]
            usable = valid & np.isfinite(data.reshape(len(data), -1)).all(axis=1)
            out[name] = {i: (data[k], bool(usable[k])) for k, i in enumerate(table.ids.tolist())}
    return out


def rating_rows(env: dict) -> list[tuple[int, str, float, int]]:
    with open(env["ratings"], newline="") as handle:
        return [(int(r["userId"]), r["movieId"], float(r["rating"]), int(r["timestamp"])) for r in csv.DictReader(handle)]


def expected_parts(env: dict, items: set[str]) -> dict[str, list[tuple]]:
    """part -> the ratings of its items among ``items``, in file order (brute force)."""
    split = env["split"]
    return {part: [r for r in rating_rows(env) if r[1] in set(split[part]) & items] for part in PARTS}


def usable_everywhere(env: dict) -> list[str]:
    rows = store_rows(env)
    items = [str(i) for p in PARTS for i in env["split"][p]]
    return sorted((i for i in items if all(i in rows[s] and rows[s][i][1] for s in SETS)), key=int)


def read_tsv(path: Path) -> list[tuple]:
    with open(path, newline="") as handle:
        return [(int(u), i, float(r), int(t)) for u, i, r, t in csv.reader(handle, delimiter="\t")]


# -- npz and parquet: every item, with a mask --------------------------------------------------------
def test_npz_holds_every_split_item_with_the_stores_rows_nan_where_invalid(env, tmp_path):
    from cinefuse.export.tables import export_npz

    sets = SETS + ["visual/effnet_frames"]
    result = export_npz(tmp_path / "npz", sets, workdir=env["workdir"])
    rows = store_rows(env)
    with np.load(tmp_path / "npz" / "features.npz", allow_pickle=False) as z:
        ids = z["ids"].tolist()
        assert ids == sorted(ids, key=int) and len(ids) == 40 == result.items
        for name in sets:
            for k, item in enumerate(ids):
                row, usable = rows[name].get(item, (None, False))
                assert bool(z[f"{name}/valid"][k]) == usable, (name, item)
                if usable:
                    assert np.array_equal(z[name][k], row.astype(np.float32)), (name, item)
                else:
                    assert np.isnan(z[name][k]).all(), (name, item)
        assert z["visual/effnet_frames"].dtype == np.float32 and z["visual/effnet_frames"].ndim == 3
        assert z["visual/effnet_frames/lengths"].tolist()[:4] == [3, 6, 6, 3]
        assert int((~z["text/minilm/valid"]).sum()) == 2 and int((~z["fused/distill-full/valid"]).sum()) == 2
        part = dict(zip(ids, z["part"].tolist()))
    assert all(part[i] == p for p in PARTS for i in env["split"][p])
    expected = expected_parts(env, set(ids))
    with np.load(tmp_path / "npz" / "interactions.npz", allow_pickle=False) as z:
        for p in PARTS:
            got = list(zip(z[f"{p}/user"].tolist(), z[f"{p}/item"].tolist(), z[f"{p}/rating"].tolist(),
                           z[f"{p}/timestamp"].tolist()))
            assert got == expected[p]
    assert result.interactions == {p: len(expected[p]) for p in PARTS}


def test_parquet_vectors_are_the_stores_rows_and_null_where_invalid(env, tmp_path):
    import pyarrow.parquet as pq

    from cinefuse.export.tables import export_parquet

    export_parquet(tmp_path / "pq", SETS, workdir=env["workdir"])
    table = pq.read_table(tmp_path / "pq" / "features.parquet")
    assert table.column_names == ["id", "part"] + SETS
    rows = store_rows(env)
    ids = table["id"].to_pylist()
    for name in SETS:
        column = table[name].combine_chunks()
        assert column.type.list_size == rows[name][ids[0]][0].shape[0]
        for k, item in enumerate(ids):
            row, usable = rows[name].get(item, (None, False))
            value = column[k].as_py()
            assert (value is not None) == usable, (name, item)
            if usable:
                assert np.array_equal(np.array(value, np.float32), row), (name, item)
    inter = pq.read_table(tmp_path / "pq" / "interactions.parquet").to_pylist()
    expected = expected_parts(env, set(ids))
    for p in PARTS:
        got = [(r["user"], r["item"], r["rating"], r["timestamp"]) for r in inter if r["part"] == p]
        assert got == expected[p]


# -- the aligned formats: items valid in every set ------------------------------------------------------
def test_cornac_npz_per_set_and_tsv_split_hold_only_items_valid_everywhere(env, tmp_path):
    from cinefuse.export.cornac import export_cornac

    result = export_cornac(tmp_path / "c", SETS, workdir=env["workdir"])
    keep = usable_everywhere(env)
    assert len(keep) == 35 and result.skipped == {"not valid in every exported set": 5}
    rows = store_rows(env)
    for name in SETS:
        with np.load(tmp_path / "c" / "features" / f"{name}.npz", allow_pickle=False) as z:
            assert z["ids"].tolist() == keep
            assert z["features"].dtype == np.float32
            assert np.array_equal(z["features"], np.stack([rows[name][i][0] for i in keep]))
    expected = expected_parts(env, set(keep))
    for p in PARTS:
        assert read_tsv(tmp_path / "c" / "interactions" / f"{p}.tsv") == expected[p]
    every = expected_parts(env, {str(i) for p in PARTS for i in env["split"][p]})
    lost = sum(len(every[p]) - len(expected[p]) for p in PARTS)
    assert result.dropped == {"ratings of split items without a valid row in every exported set": lost}
    assert "item_image=visual_effnet" in result.readme and "exclude_unknowns=False" in result.readme
    assert "5 item(s) left out: not valid in every exported set" in result.readme


def test_recbole_atomic_files_parse_back_to_the_split_and_the_stores_rows(env, tmp_path):
    from cinefuse.export.recbole import export_recbole

    export_recbole(tmp_path / "rb", SETS, workdir=env["workdir"], name="ml")
    folder = tmp_path / "rb" / "ml"
    keep = usable_everywhere(env)
    assert sorted(p.name for p in folder.iterdir()) == ["ml.item", "ml.itememb", "ml.test.inter", "ml.train.inter",
                                                       "ml.valid.inter"]
    expected = expected_parts(env, set(keep))
    for p, suffix in zip(PARTS, ("train", "valid", "test")):
        lines = (folder / f"ml.{suffix}.inter").read_text().splitlines()
        assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
        assert [(int(u), i, float(r), int(t)) for u, i, r, t in (x.split("\t") for x in lines[1:])] == expected[p]
    assert (folder / "ml.item").read_text().splitlines() == ["item_id:token"] + keep
    emb = (folder / "ml.itememb").read_text().splitlines()
    assert emb[0] == "iid:token\tvisual_effnet:float_seq\ttext_minilm:float_seq\tfused_distill_full:float_seq"
    rows = store_rows(env)
    for line, item in zip(emb[1:], keep, strict=True):
        cells = line.split("\t")
        assert cells[0] == item
        for cell, name in zip(cells[1:], SETS):
            # RecBole parses float_seq through float64: the float32 comes back exactly
            assert np.array_equal(np.array(cell.split(" "), np.float64).astype(np.float32), rows[name][item][0])
    config = (tmp_path / "rb" / "recbole.yaml").read_text()
    assert "benchmark_filename: [train, valid, test]" in config and "alias_of_item_id: [iid]" in config


def test_mmrec_inter_x_label_and_feature_rows_follow_its_loader(env, tmp_path):
    from cinefuse.export.mmrec import export_mmrec

    export_mmrec(tmp_path / "mm", SETS, workdir=env["workdir"])
    folder = tmp_path / "mm" / "cinefuse"
    with open(folder / "cinefuse.inter", newline="") as handle:
        inter = list(csv.DictReader(handle, delimiter="\t"))
    assert list(inter[0]) == ["userID", "itemID", "rating", "timestamp", "x_label"]
    with open(folder / "i_id_mapping.csv", newline="") as handle:
        items = {int(r["itemID"]): r["item_id"] for r in csv.DictReader(handle, delimiter="\t")}
    with open(folder / "u_id_mapping.csv", newline="") as handle:
        users = {int(r["userID"]): int(r["user_id"]) for r in csv.DictReader(handle, delimiter="\t")}
    keep = usable_everywhere(env)
    assert [items[k] for k in range(len(items))] == keep and sorted(users) == list(range(len(users)))
    expected = expected_parts(env, set(keep))
    for label, p in enumerate(PARTS):
        got = [(users[int(r["userID"])], items[int(r["itemID"])], float(r["rating"]), int(r["timestamp"]))
               for r in inter if r["x_label"] == str(label)]
        assert got == expected[p]
    assert {r["x_label"] for r in inter} == {"0", "1", "2"}
    # MMRec sizes its item table as max(itemID) + 1 and indexes each feature file by itemID
    assert max(int(r["itemID"]) for r in inter) + 1 == len(keep)
    rows = store_rows(env)
    for file, name in (("visual_feat.npy", "visual/effnet"), ("text_feat.npy", "text/minilm"),
                       ("fused_feat.npy", "fused/distill-full")):
        feat = np.load(folder / file)
        assert feat.dtype == np.float32 and feat.shape[0] == len(keep)
        assert np.array_equal(feat, np.stack([rows[name][items[k]][0] for k in range(len(keep))]))
    config = (folder / "cinefuse.yaml").read_text()
    assert "vision_feature_file: 'visual_feat.npy'" in config and "text_feature_file: 'text_feat.npy'" in config


def test_elliot_writes_one_npy_per_item_in_ducho_layout(env, tmp_path):
    from cinefuse.export.elliot import export_elliot

    export_elliot(tmp_path / "el", SETS, workdir=env["workdir"])
    keep = usable_everywhere(env)
    rows = store_rows(env)
    for name in SETS:
        folder = tmp_path / "el" / name
        assert sorted((p.stem for p in folder.iterdir()), key=int) == keep
        for item in keep:
            vector = np.load(folder / f"{item}.npy")
            assert vector.shape == rows[name][item][0].shape and np.array_equal(vector, rows[name][item][0])
    expected = expected_parts(env, set(keep))
    for p in PARTS:
        assert read_tsv(tmp_path / "el" / f"{p}.tsv") == expected[p]


# -- provenance ------------------------------------------------------------------------------------------
def test_export_json_records_stores_run_split_sets_version_and_file_digests(env, tmp_path):
    from cinefuse import __version__
    from cinefuse.export.cornac import export_cornac
    from cinefuse.store import open_store
    from cinefuse.store.manifest import config_hash, sha256_file

    export_cornac(tmp_path / "c", SETS, workdir=env["workdir"])
    record = json.loads((tmp_path / "c" / "export.json").read_text())
    store_hashes = sorted({r.config_hash for r in open_store(env["store"]).manifest.shards})
    fused_hashes = sorted({r.config_hash for r in open_store(env["fused_store"]).manifest.shards})
    assert record["store_config_hashes"] == {env["store"]: store_hashes, str(env["fused_store"]): fused_hashes}
    assert list(record["feature_sets"]) == SETS
    assert record["feature_sets"]["text/minilm"]["not_valid"] == {"marked invalid in the store": 2}
    assert record["feature_sets"]["visual/effnet"]["not_valid"] == {"NaN or infinite values": 1}
    assert record["feature_sets"]["fused/distill-full"]["not_valid"] == {"not in the store": 2}
    config = json.loads((Path(env["workdir"]) / "config.json").read_text())
    assert record["workdir"] == {"path": str(Path(env["workdir"]).resolve()), "config_hash": config_hash(config)}
    split = env["split"]
    fingerprint = config_hash({"protocol": "cold-item", "seed": 0, "train": split["train"], "val": split["val"],
                               "test": split["test"], "cut_timestamp": None})
    assert record["split"] == {"protocol": "cold-item", "seed": 0, "fingerprint": fingerprint,
                               "items": {p: len(split[p]) for p in PARTS}}
    assert record["ratings"] == {"path": env["ratings"], "rows": len(rating_rows(env)), "like_threshold": 4.0}
    assert record["cinefuse_version"] == __version__ and record["format"] == "cornac"
    assert record["created"].endswith("Z") and record["items"] == 35
    files = sorted(str(p.relative_to(tmp_path / "c")) for p in (tmp_path / "c").rglob("*")
                   if p.is_file() and p.name != "export.json")
    assert sorted(record["files"]) == files
    assert all(record["files"][f] == sha256_file(tmp_path / "c" / f) for f in files)


def test_cold_item_time_leaves_out_training_ratings_after_the_cut(tmp_path):
    from cinefuse.export.tables import export_npz

    env = build_env(tmp_path, protocol="cold-item-time", cut=1015)
    result = export_npz(tmp_path / "npz", ["visual/lowlevel"], workdir=env["workdir"])
    train = set(env["split"]["train"])
    late = [r for r in rating_rows(env) if r[1] in train and r[3] >= 1015]
    assert len(late) > 0 and result.dropped == {"training items' ratings at or after the cut": len(late)}
    with np.load(tmp_path / "npz" / "interactions.npz") as z:
        assert int(z["train/timestamp"].max()) < 1015
        assert len(z["train/user"]) == sum(1 for r in rating_rows(env) if r[1] in train) - len(late)


def test_ratings_option_replaces_the_runs_file_and_a_file_without_timestamps_reads_as_uir(env, tmp_path):
    from cinefuse.export.cornac import export_cornac

    rows = rating_rows(env)[:120]
    path = tmp_path / "few.csv"
    path.write_text("userId,movieId,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r, _ in rows))
    result = export_cornac(tmp_path / "c", ["visual/lowlevel"], workdir=env["workdir"], ratings=str(path))
    split = env["split"]
    for p in PARTS:
        lines = (tmp_path / "c" / "interactions" / f"{p}.tsv").read_text().splitlines()
        assert [tuple(x.split("\t")) for x in lines] == [(str(u), i, f"{r:g}") for u, i, r, _ in rows if i in split[p]]
    assert sum(result.interactions.values()) == 120
    assert 'fmt="UIR", sep=' in result.readme and "UIRT" not in result.readme
    assert json.loads((tmp_path / "c" / "export.json").read_text())["ratings"]["path"] == str(path)


def test_features_only_without_a_run(env, tmp_path):
    from cinefuse.export.run import export

    result = export("npz", tmp_path / "f", "visual/lowlevel", store=env["store"])
    assert result.interactions is None and result.items == 40
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["README.txt", "export.json", "features.npz"]
    record = json.loads((tmp_path / "f" / "export.json").read_text())
    assert record["workdir"] is None and record["split"] is None and record["interactions"] is None


# -- the folder --------------------------------------------------------------------------------------------
def test_a_second_export_replaces_the_first_and_leaves_no_staging(env, tmp_path):
    from cinefuse.export.run import export

    export("npz", tmp_path / "x", "visual/effnet", workdir=env["workdir"])
    export("cornac", tmp_path / "x", "visual/lowlevel", workdir=env["workdir"])
    assert json.loads((tmp_path / "x" / "export.json").read_text())["format"] == "cornac"
    assert not (tmp_path / "x" / "features.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_a_failed_export_leaves_the_earlier_one_whole(env, tmp_path):
    from cinefuse.export.run import export

    export("npz", tmp_path / "x", "visual/effnet", workdir=env["workdir"])
    before = {p: p.read_bytes() for p in (tmp_path / "x").rglob("*") if p.is_file()}
    with pytest.raises(CinefuseError, match="is a sequence set"):  # refused while writing, inside the staging folder
        export("cornac", tmp_path / "x", "visual/effnet_frames", workdir=env["workdir"])
    assert {p: p.read_bytes() for p in (tmp_path / "x").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_a_folder_of_other_files_is_refused_untouched(env, tmp_path):
    from cinefuse.export.run import export

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(CinefuseError) as info:
        export("npz", tmp_path / "mine", "visual/effnet", workdir=env["workdir"])
    assert str(info.value) == (f"--out {tmp_path / 'mine'} is a folder that holds other files (no export.json); "
                               "pass a new or empty folder, or an earlier export's folder to replace it")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# -- bad input -------------------------------------------------------------------------------------------
def test_unknown_set_names_what_the_stores_hold(env, tmp_path):
    from cinefuse.export.run import export

    with pytest.raises(CinefuseError) as info:
        export("cornac", tmp_path / "o", "text/nope", workdir=env["workdir"])
    assert str(info.value) == (
        f"feature set 'text/nope' is not in store {env['store']} (it has: audio/logmel_seq, audio/logmel_stats, "
        "text/minilm, visual/effnet, visual/effnet_frames, visual/lowlevel) nor in the fused store "
        f"{env['fused_store']} (it has: fused/distill-full; `cinefuse evaluate --workdir {env['workdir']}` writes "
        "fused/<model> sets)")
    with pytest.raises(CinefuseError) as info:
        export("npz", tmp_path / "o", "fused/distill-full", store=env["store"])
    assert str(info.value).endswith("; fused/<model> sets live in a fuse workdir's embeddings store: pass --workdir")
    assert not (tmp_path / "o").exists()


def test_unknown_format_is_refused(env, tmp_path, capsys):
    from cinefuse.export.run import export

    with pytest.raises(CinefuseError) as info:
        export("surprise", tmp_path / "o", "visual/effnet", workdir=env["workdir"])
    assert str(info.value) == "export format 'surprise' is unknown; choose one of cornac, recbole, mmrec, elliot, parquet, npz"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "surprise", "--sets", "visual/effnet", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "argument FORMAT: invalid choice: 'surprise'" in capsys.readouterr().err


def test_workdir_without_split_is_one_line(env, tmp_path, capsys):
    import shutil

    wd = tmp_path / "w"
    wd.mkdir()
    shutil.copy(Path(env["workdir"]) / "config.json", wd / "config.json")
    code = main(["export", "cornac", "--sets", "visual/effnet", "--out", str(tmp_path / "o"), "--workdir", str(wd)])
    assert code == 2
    assert capsys.readouterr().err == (
        f"cinefuse export: error: workdir {wd} has no split.json (fuse writes it when a run starts); train first with "
        f"`cinefuse fuse --workdir {wd} ...`, or export without --workdir\n")


def test_pair_split_mmrec_without_run_and_sequences_are_refused(env, tmp_path):
    from cinefuse.export.run import export
    from cinefuse.fuse.workdir import write_json

    with pytest.raises(CinefuseError, match=r"^mmrec needs interactions divided by a split \(its x_label\); pass "
                       "--workdir of a cold-item or cold-item-time fuse run"):
        export("mmrec", tmp_path / "o", "visual/effnet", store=env["store"])
    with pytest.raises(CinefuseError) as info:
        export("cornac", tmp_path / "o", "visual/effnet_frames", workdir=env["workdir"])
    assert str(info.value) == ("feature set 'visual/effnet_frames' is a sequence set (6 x 24 per item); cornac holds "
                               "one vector per item: export a pooled set of the store instead, or use the npz format "
                               "(which keeps sequences with their lengths)")
    pair = tmp_path / "pair"
    pair.mkdir()
    (pair / "config.json").write_text((Path(env["workdir"]) / "config.json").read_text())
    write_json(pair / "split.json", {**env["split"], "protocol": "pair"})
    with pytest.raises(CinefuseError) as info:
        export("npz", tmp_path / "o", "visual/effnet", workdir=pair)
    assert str(info.value) == (f"{pair / 'split.json'} is a pair split (protocol 'pair'): its parts share items, so "
                               "it does not divide the ratings; export a cold-item or cold-item-time run")
    assert not (tmp_path / "o").exists()


def test_cli_prints_counts_and_the_loading_lines(env, tmp_path, capsys):
    code = main(["export", "cornac", "--sets", ",".join(SETS), "--out", str(tmp_path / "c"),
                 "--workdir", str(env["workdir"])])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(f"exported 35 items, ")
    assert "5 item(s) left out: not valid in every exported set" in out
    assert "from cornac.data import FeatureModality, ImageModality, Reader" in out
    assert out.endswith((tmp_path / "c" / "README.txt").read_text())
    assert main(["export", "parquet", "--sets", "visual/lowlevel", "--out", str(tmp_path / "p"),
                 "--workdir", str(env["workdir"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["format"] == "parquet" and result["items"] == 40 and result["out"] == str(tmp_path / "p")
    assert result["files"] == ["README.txt", "features.parquet", "interactions.parquet", "export.json"]
