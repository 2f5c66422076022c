"""The faiss item index: recall against the exact ranking, the flat index equal to it (ties
included), recommend through an index, and the parameters an index records."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.errors import CinefuseError
from cinefuse.evaluate.index import ItemIndex, build_index, choose_kind, open_index, write_index
from cinefuse.metrics.ranking import top_k_cosine

from fuse_fixtures import small_config, write_synthetic_store


def clustered_catalogue(n: int, dim: int = 32, clusters: int = 100, seed: int = 0) -> np.ndarray:
    """Items around cluster centres, as fused embeddings of genre-like groups are; the noise is as
    large as a centre, so an item's exact neighbours often sit in other IVF cells."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    return (centres[rng.integers(0, clusters, n)] + 1.0 * rng.standard_normal((n, dim))).astype(np.float32)


def recall_at(rows: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / truth.shape[1] for a, b in zip(rows, truth)]))


@pytest.mark.parametrize("kind, floor", [("hnsw", 0.95), ("ivf", 0.9)])
def test_approximate_index_recall_against_exact_top_10(kind, floor):
    x = clustered_catalogue(10_000)
    queries = np.random.default_rng(1).choice(len(x), 300, replace=False)
    truth, _ = top_k_cosine(x[queries], x, 10, self_index=queries)
    index, record = build_index(x, kind)
    rows, scores = ItemIndex(index, np.arange(len(x)).astype(str), record).search(x[queries], 10, self_rows=queries)
    assert not (rows == queries[:, None]).any()
    recall = recall_at(rows, truth)
    assert recall >= floor, (kind, recall)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_flat_index_equals_exact_ranking_ties_by_row():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((400, 16)).astype(np.float32)
    x = np.concatenate([base, base[:150] * 2.0])  # 150 exact duplicates (cosine ties) at rows 400..549
    rng.shuffle(x)
    queries = np.arange(0, len(x), 7)
    truth_rows, truth_scores = top_k_cosine(x[queries], x, 12, self_index=queries)
    index, record = build_index(x, "flat")
    assert record["exact"] and record["kind"] == "flat" and record["params"] == {}
    rows, scores = ItemIndex(index, np.arange(len(x)).astype(str), record).search(x[queries], 12, self_rows=queries)
    np.testing.assert_array_equal(rows, truth_rows)
    np.testing.assert_allclose(scores, truth_scores, atol=2e-6)


def test_index_records_its_parameters_and_reopens_with_them(tmp_path):
    assert choose_kind(99_999) == "flat" and choose_kind(100_000) == "hnsw"
    x = clustered_catalogue(3000, dim=8)
    index, record = build_index(x, "hnsw")
    assert record["params"] == {"M": 32, "efConstruction": 40, "efSearch": 128}
    assert (record["kind"], record["n_items"], record["dim"], record["exact"]) == ("hnsw", 3000, 8, False)
    ids = np.array([f"m{i}" for i in range(3000)])
    index.hnsw.efSearch = 16  # the value in use must come back from the record, not from the file
    write_index(tmp_path, index, ids, record)
    assert json.loads((tmp_path / "index.json").read_text())["params"]["efSearch"] == 128
    again = open_index(tmp_path)
    assert again.index.hnsw.efSearch == 128 and again.index.ntotal == 3000
    np.testing.assert_array_equal(again.ids, ids)
    ivf, rec = build_index(x, "ivf")
    assert rec["params"] == {"nlist": 76, "nprobe": 32, "train_points": 3000}  # 3000 // 39 points a cell and ivf.nprobe == 32
    assert open_index(tmp_path / "nothing") is None
    with pytest.raises(CinefuseError) as err:
        build_index(x, "lsh")
    assert str(err.value) == "index kind 'lsh' is unknown; choose one of auto, flat, hnsw, ivf"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("indexwd")
    env = write_synthetic_store(root, n_items=160)
    summary = run_fuse(small_config(env, train={"steps": 40, "eval_every": 20, "checkpoint_every": 20}), root / "wd",
                       log=lambda m: None)
    return root / "wd", summary["models"][0]


def test_recommend_through_flat_index_equals_exact(trained, capsys):
    from cinefuse.evaluate.recommend import build_recommend_index, recommend

    workdir, model = trained
    record = build_recommend_index(workdir, model, kind="auto")
    assert (record["kind"], record["model"], record["n_items"]) == ("flat", model, 160)
    for item in ("1", "17", "160"):
        exact = recommend(workdir, item, k=10, use_index=False, model=model)
        through = recommend(workdir, item, k=10, model=model)
        assert exact.index is None and through.index["kind"] == "flat"
        assert [r["id"] for r in through.results] == [r["id"] for r in exact.results]
        np.testing.assert_allclose([r["score"] for r in through.results], [r["score"] for r in exact.results],
                                   atol=2e-6)
    assert cli_main(["recommend", "--workdir", str(workdir), "--model", model, "--item", "5", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert f"through the flat (exact) index in {workdir / 'index' / model}" in out
    # parameters newer than the index: the index is stale and the exact scan answers
    params = workdir / "runs" / model / "params"
    before = params.stat().st_mtime
    later = (workdir / "index" / model / "index.json").stat().st_mtime + 5
    os.utime(params, (later, later))
    assert recommend(workdir, "5", k=3, model=model).index is None
    os.utime(params, (before, before))


def test_cli_index_build_hnsw(trained, capsys):
    workdir, model = trained
    assert cli_main(["index", "build", "--workdir", str(workdir), "--model", model, "--kind", "hnsw"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hnsw (approximate, M=32, efConstruction=40, efSearch=128) index over 160 items (16-d)")
    assert cli_main(["recommend", "--workdir", str(workdir), "--model", model, "--item", "5", "-k", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["index"]["kind"] == "hnsw"
    assert cli_main(["index", "build", "--workdir", str(workdir), "--model", "nope"]) == 2
    assert "model 'nope' is not in" in capsys.readouterr().err
