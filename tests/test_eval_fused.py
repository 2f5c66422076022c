"""evaluate/fused.py: the fused embeddings written to a store and read back byte for byte."""

from __future__ import annotations

import numpy as np

from cinefuse.evaluate.fused import safe_set_name, write_fused_embeddings
from cinefuse.store import open_store


def test_safe_set_name():
    assert safe_set_name("triplet-cosine-visual+audio-concat-mlp") == "fused/triplet-cosine-visual-audio-concat-mlp"
    assert safe_set_name("a_b.c-1") == "fused/a_b.c-1"


def test_written_embeddings_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.array(["1", "2", "10"])
    embeddings = {"m+x": (ids, rng.standard_normal((3, 4)).astype(np.float32)),
                  "n": (ids[:2], rng.standard_normal((2, 4)).astype(np.float32))}
    (tmp_path / "wd").mkdir()
    location = write_fused_embeddings(tmp_path / "wd", embeddings)
    assert location == str(tmp_path / "wd" / "embeddings")
    store = open_store(location)
    for model, (want_ids, want) in embeddings.items():
        got = store.load_feature_set(safe_set_name(model))
        keep = np.asarray(got.valid, bool)
        order = {i: r for r, i in enumerate(np.asarray(got.ids, dtype=str)[keep].tolist())}
        rows = np.asarray(got.data, np.float32)[keep]
        assert sorted(order) == sorted(want_ids.tolist())
        assert np.array_equal(rows[[order[i] for i in want_ids.tolist()]], want)
    # the workdir's own store is rewritten whole on the next run
    write_fused_embeddings(tmp_path / "wd", {"n": embeddings["n"]})
    assert sorted(open_store(location).feature_sets()) == ["fused/n"]
