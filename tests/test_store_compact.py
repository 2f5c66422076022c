"""`cinefuse store compact`: many small shards become few, and every reader sees exactly the rows
it saw before (order, repeated ids, sequences, other configs in between); a compaction killed
before its manifest write changes nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.combine import compact_store
from cinefuse.store.manifest import read_manifest
from cinefuse.store.verify import verify_store


def small_shards(root: Path) -> Path:
    """24 shards of 9 rows (ids repeating across shards), with a shard of another config after the
    12th and a shard with other provenance after the 18th."""
    rng = np.random.default_rng(11)
    extract = StoreWriter(root, {"extract": 1})
    other = StoreWriter(root, {"fused": 1})
    for k in range(24):
        ids = [f"i{(k * 7 + j) % 150}" for j in range(9)]
        blocks = {
            "visual/a": FeatureBlock(rng.standard_normal((9, 32)).astype(np.float16), rng.random(9) > 0.2,
                                     [f"s{k}.{j}" for j in range(9)], attrs={"backbone": "b1" if k != 19 else "b2"}),
            "audio/s": FeatureBlock(rng.standard_normal((9, 5, 4)).astype(np.float32), np.ones(9, bool), ["ok"] * 9,
                                    lengths=rng.integers(0, 6, 9).astype(np.int32)),
        }
        extract.write_shard(ids, blocks)
        if k == 11:
            other.write_shard(["i3", "i200"], {"fused/m": FeatureBlock(np.ones((2, 3), np.float32), np.ones(2, bool), ["ok"] * 2)})
    return root


def unique_rows(shards: range) -> int:
    return len({(k * 7 + j) % 150 for k in shards for j in range(9)})


def everything(root) -> dict:
    """What a reader sees: each set in load order, and the joined table."""
    store = open_store(root)
    out = {}
    for name in ("visual/a", "audio/s", "fused/m"):
        fa = store.load_feature_set(name)
        out[name] = (fa.ids.tolist(), fa.data.tobytes(), fa.valid.tolist(), fa.status.tolist(),
                     None if fa.lengths is None else fa.lengths.tolist(), fa.attrs)
    table = store.load(["visual/a", "audio/s", "fused/m"])
    out["table"] = (table.ids.tolist(), {k: v.tobytes() for k, v in table.features.items()},
                    {k: v.tolist() for k, v in table.status.items()})
    return out


def files(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir()) if p.is_file()}


def test_compact_in_place_keeps_every_row_and_order(tmp_path, capsys):
    root = small_shards(tmp_path / "store")
    before = everything(root)
    old = read_manifest(root)
    assert len(old.shards) == 25
    assert cli_main(["store", "compact", str(root), "--shard-mb", "1"]) == 0
    # runs: 12 extraction shards | the fused shard | 7 (b1) | the b2 shard (other provenance) | 4 (b1);
    # a group keeps one row per id (the last)
    rows = [unique_rows(range(0, 12)), 2, unique_rows(range(12, 19)), 9, unique_rows(range(20, 24))]
    dropped = old.total_rows - sum(rows)
    assert dropped > 0
    assert capsys.readouterr().out.strip() == (
        f"compacted {root}: 25 shards -> 5, {sum(rows)} rows ({dropped} rows hidden by a later row of the same id dropped)")
    after = read_manifest(root)
    assert [s.rows for s in after.shards] == rows
    assert after.shards[1].sha256 == old.shards[12].sha256 and after.shards[3].sha256 == old.shards[20].sha256
    assert everything(root) == before
    report = verify_store(root)
    assert report.ok and report.leftovers == []
    assert sorted(p.name for p in root.glob("shard-*.h5")) == sorted(s.name for s in after.shards)
    assert set(after.configs) == set(old.configs)


def test_compact_into_dest_leaves_the_source(tmp_path):
    root = small_shards(tmp_path / "store")
    before, source_files = everything(root), files(root)
    result = compact_store(str(root), str(tmp_path / "dest"), target_mb=512)
    assert result == {"shards_before": 25, "shards_after": 5, "rows_before": 24 * 9 + 2,
                      "rows": unique_rows(range(0, 12)) + 2 + unique_rows(range(12, 19)) + 9 + unique_rows(range(20, 24))}
    assert files(root) == source_files
    assert everything(tmp_path / "dest") == before
    assert verify_store(tmp_path / "dest").ok


COMPACT = """
import sys
from cinefuse.store.combine import compact_store
compact_store(sys.argv[1], target_mb=512)
"""


def test_compaction_killed_before_its_manifest_write_changes_nothing(tmp_path):
    root = small_shards(tmp_path / "store")
    before, manifest_before = everything(root), (root / "manifest.json").read_bytes()
    env = dict(os.environ, CINEFUSE_FAULT="shard-renamed:kill")
    result = subprocess.run([sys.executable, "-c", COMPACT, str(root)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -9 and result.stdout == "fault shard-renamed\n", (result.returncode, result.stderr[-500:])
    assert (root / "manifest.json").read_bytes() == manifest_before
    renamed = sorted(set(p.name for p in root.glob("shard-*.h5")) - {s.name for s in read_manifest(root).shards})
    assert renamed == ["shard-00025.h5", "shard-00026.h5", "shard-00027.h5"]  # the 3 rewritten groups, uncommitted
    assert everything(root) == before
    assert verify_store(root).leftovers == renamed
    compact_store(str(root), target_mb=512)  # the next run removes them and compacts
    assert everything(root) == before and verify_store(root).leftovers == []
    assert len(read_manifest(root).shards) == 5


def test_size_limit_splits_a_run(tmp_path):
    root = small_shards(tmp_path / "store")
    before = everything(root)
    sizes = [s.bytes for s in read_manifest(root).shards[:12]]
    limit = 3.5 * sizes[0] / (1 << 20)  # three shards' worth a group
    compact_store(str(root), str(tmp_path / "dest"), target_mb=limit)
    after = read_manifest(tmp_path / "dest")
    # the first run of 12 becomes 4 groups of 3; the 7 after the fused shard 3 + 3 + 1 (copied as is); ...
    assert [s.rows for s in after.shards[:4]] == [unique_rows(range(k, k + 3)) for k in (0, 3, 6, 9)]
    assert len(after.shards) == 4 + 1 + 3 + 1 + 2
    assert everything(tmp_path / "dest") == before


def test_a_rewrite_that_reads_back_different_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    import cinefuse.store.combine as combine
    from cinefuse.errors import StoreError

    root = small_shards(tmp_path / "store")
    before, files_before = everything(root), files(root)
    real = combine.write_shard_file

    def one_value_off(path, ids, blocks, config_hash):  # a writer (or disk) that changes one stored value
        data = blocks["visual/a"].data.copy()
        data[3, 5] += np.float16(1)
        blocks = {**blocks, "visual/a": FeatureBlock(data, blocks["visual/a"].valid, blocks["visual/a"].status,
                                                     attrs=blocks["visual/a"].attrs)}
        return real(path, ids, blocks, config_hash)

    monkeypatch.setattr(combine, "write_shard_file", one_value_off)
    first = read_manifest(root).shards[0].name
    with pytest.raises(StoreError, match=f"^compacted shard for {first}\\.\\.shard-\\d+\\.h5 did not read back equal "
                                         r"\(visual/a\); nothing was changed$"):
        compact_store(str(root), target_mb=512)
    assert files(root) == files_before and everything(root) == before
    assert verify_store(root).ok and verify_store(root).leftovers == []
