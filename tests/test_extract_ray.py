"""Extraction on Ray Data (a local instance): actors write their own shards into one store."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.run import run_extract
from cinefuse.store import open_store
from media_fixtures import encode_video, write_zero_byte


@pytest.mark.ray
def test_ray_data_matches_a_single_process_run_and_resumes(tmp_path):
    pytest.importorskip("ray.data")
    lines = ["id,video,title,plot"]
    for i in range(6):
        encode_video(tmp_path / f"v{i}.mp4", seconds=1.0, size=(48, 32), tone_hz=400 + 100 * i)
        lines.append(f"{i},v{i}.mp4,Clip {i},plot {i}")
    write_zero_byte(tmp_path / "zero.mp4")
    lines.append("z,zero.mp4,Zero,nothing")
    manifest = tmp_path / "items.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = ExtractConfig(manifest=str(manifest), store=str(tmp_path / "ray"), frames=2, shard_size=2, workers=0,
                         visual=["lowlevel"], audio=["logmel"], text=["tfidf"], meta=[], progress=False)
    # a plain slice run commits items 1, 3, 5 first: the Ray run must skip exactly those
    sliced = run_extract(base.replace(num_shards=2, shard_index=1))
    assert sliced["processed"] == 3 and sliced["shards_written"] == 2
    import ray
    import ray.data

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_auto_log_stats = False
    context.print_on_execution_start = False
    try:  # run_extract joins this instance instead of starting its own
        summary = run_extract(base.replace(ray="local"))
        again = run_extract(base.replace(ray="local"))  # resume on Ray: nothing left
    finally:
        ray.shutdown()
    assert summary["ray_tasks"] == 2 and summary["skipped"] == 3
    assert summary["processed"] == 4 and summary["failed"] == 1 and summary["exit_code"] == 0
    assert summary["by_status"] == {"empty file": 1, "ok": 3}
    assert summary["frames"] == 6  # 2 frames for each of the 3 good videos, none for the empty file
    # chunks are cut as in a single-process run ([0,1] [2,3] [4,5] [z]) minus the committed ids:
    # the actors write one shard each for [0], [2], [4], [z]
    assert summary["shards_written"] == 4
    ray_store = open_store(tmp_path / "ray")
    assert sorted(s.rows for s in ray_store.manifest.shards) == [1, 1, 1, 1, 1, 2]
    assert again["processed"] == 0 and again["skipped"] == 7 and again["shards_written"] == 0

    single = run_extract(base.replace(store=str(tmp_path / "single")))
    assert single["config_hash"] == summary["config_hash"]
    b = open_store(tmp_path / "single")
    sets_a, sets_b = ray_store.feature_sets(), b.feature_sets()
    assert sorted(sets_a) == sorted(sets_b)
    # same shapes and provenance (rows per shard differ: 6 shards vs 4); library_versions also lists
    # the optional libraries the writing process happened to import (here: whatever earlier tests
    # imported into pytest's process), so only its core entries must agree
    core = ("python", "torch", "numpy", "av", "ffmpeg")
    for name, info in sets_b.items():
        attrs_a, attrs_b = dict(sets_a[name].attrs), dict(info.attrs)
        versions_a, versions_b = attrs_a.pop("library_versions"), attrs_b.pop("library_versions")
        assert (sets_a[name].shape, sets_a[name].dtype, attrs_a) == (info.shape, info.dtype, attrs_b)
        assert {k: versions_a[k] for k in core} == {k: versions_b[k] for k in core}
    # shards cut differently leave out different all-invalid sets (a set with no valid row in a
    # shard is not written): the joined tables hold the same rows, valid flags and values
    names = sorted(b.feature_sets())
    ta, tb = ray_store.load(names), b.load(names)
    assert ta.ids.tolist() == tb.ids.tolist() == ["0", "1", "2", "3", "4", "5", "z"]
    for name in names:
        assert ta.features[name].dtype == tb.features[name].dtype
        assert np.array_equal(ta.features[name], tb.features[name])
        valid = ta.valid[name]
        assert valid.tolist() == tb.valid[name].tolist()
        assert ta.status[name][valid].tolist() == tb.status[name][valid].tolist()
        if tb.lengths.get(name) is not None:
            assert np.array_equal(ta.lengths[name], tb.lengths[name])
    z = ta.ids.tolist().index("z")
    assert not any(ta.valid[name][z] for name in names)
    assert "empty file: 0 bytes" in {ta.status[name][z] for name in names}  # its shard keeps one set: the why


def test_unreachable_ray_cluster_is_a_clear_error(tmp_path):
    pytest.importorskip("ray.data")
    from cinefuse.errors import CinefuseError

    manifest = tmp_path / "items.csv"
    manifest.write_text("id,video,title,plot\na,,A,plot a\n", encoding="utf-8")
    config = ExtractConfig(manifest=str(manifest), store=str(tmp_path / "s"), text=["tfidf"], visual=[], audio=[],
                           meta=[], progress=False, ray="127.0.0.1:1")
    with pytest.raises(CinefuseError) as caught:
        run_extract(config)
    assert str(caught.value).startswith("--ray 127.0.0.1:1: cannot reach the Ray cluster (")
    assert str(caught.value).endswith("); check the address, or start the head node with `ray start --head`")
    with pytest.raises(CinefuseError, match=r"^--ray nowhere: expected HOST:PORT of the head node"):
        run_extract(config.replace(ray="nowhere"))
