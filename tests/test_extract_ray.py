"""Extraction on a local Ray instance: tasks write their own shards into one store."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.pipeline import run_extract
from cinefuse.store import open_store
from media_fixtures import encode_video, write_zero_byte


@pytest.mark.ray
def test_ray_local_instance_matches_a_single_process_run(tmp_path):
    pytest.importorskip("ray")
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
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:  # one local instance for both runs (run_extract joins it instead of starting its own)
        summary = run_extract(base.replace(ray="local"))
        again = run_extract(base.replace(ray="local"))  # resume on Ray: nothing left
    finally:
        ray.shutdown()
    assert summary["ray_tasks"] == 2 and summary["processed"] == 7 and summary["failed"] == 1
    assert summary["by_status"] == {"empty file": 1, "ok": 6}
    single = run_extract(base.replace(store=str(tmp_path / "single")))
    a, b = open_store(tmp_path / "ray"), open_store(tmp_path / "single")
    assert len(a.manifest.shards) == 4  # task 0: items 0,2,4,6 -> 2 shards; task 1: 1,3,5 -> 2 shards
    for name in b.feature_sets():
        fa, fb = a.load_feature_set(name), b.load_feature_set(name)
        oa, ob = np.argsort(fa.ids), np.argsort(fb.ids)
        assert fa.ids[oa].tolist() == fb.ids[ob].tolist()
        assert np.array_equal(fa.data[oa], fb.data[ob]) and fa.status[oa].tolist() == fb.status[ob].tolist()
    assert again["processed"] == 0 and again["skipped"] == 7
