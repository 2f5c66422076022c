"""The cold-start use case end to end: 20 films added to a store under a trained run are embedded
and recommended by that run, while the 300 old films' features stay byte for byte the same and
their recommendations do not change (the new films aside)."""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import write_movielens  # noqa: E402

from cinefuse.cli import main  # noqa: E402

WORDS = [["space", "rocket", "planet", "alien", "orbit"], ["love", "wedding", "romance", "heart", "kiss"],
         ["murder", "detective", "crime", "police", "clue"], ["war", "soldier", "battle", "army", "front"]]
OLD, NEW = 300, 20


def write_films(path: Path, first: int, n: int, mode: str = "w") -> None:
    rng = np.random.default_rng(first)
    with open(path, mode, newline="") as f:
        w = csv.writer(f)
        if mode == "w":
            w.writerow(["id", "video", "title", "plot", "year"])
        for i in range(first, first + n):
            plot = " ".join(rng.choice(WORDS[i % 4], 4)) + f" chapter{i % 11}"
            w.writerow([i, "", f"Film {i}", plot, 1950 + i % 60])


def run(*argv: str) -> str:
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    assert code == 0, argv
    return out.getvalue()


def shard_digests(store: Path) -> dict[str, str]:
    manifest = json.loads((store / "manifest.json").read_text())
    return {s["name"]: hashlib.sha256((store / s["name"]).read_bytes()).hexdigest() for s in manifest["shards"]}


def test_twenty_films_added_under_a_trained_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_movielens(tmp_path / "ml", OLD, np.arange(OLD) % 4, 80, seed=0)
    write_films(tmp_path / "films.csv", 1, OLD)
    extract = ["extract", "--manifest", "films.csv", "--store", "store", "--visual", "", "--audio", "",
               "--text", "tfidf", "--meta", "year", "--no-progress", "--json"]
    assert json.loads(run(*extract))["processed"] == OLD
    run("fuse", "--store", "store", "--ratings", "ml/ratings.csv", "--movies", "ml/movies.csv", "--workdir", "wd",
        "--steps", "100", "--no-progress")
    (model,) = [p.name for p in (tmp_path / "wd" / "runs").iterdir()]
    run("evaluate", "--workdir", "wd", "-k", "10", "--no-progress")  # writes wd/embeddings
    run("index", "build", "--workdir", "wd", "--model", model)
    old_ids = [str(i) for i in range(1, OLD + 1)]
    digests = shard_digests(tmp_path / "store")
    before = {item: json.loads(run("recommend", "--workdir", "wd", "--model", model, "--item", item, "-k", "30",
                                   "--json")) for item in ("1", "150", "300")}
    assert all(b["index"] is not None for b in before.values())  # answered through the index

    write_films(tmp_path / "films.csv", OLD + 1, NEW, mode="a")  # 20 new films, never rated
    summary = json.loads(run(*extract))
    assert (summary["processed"], summary["skipped"]) == (NEW, OLD)
    # the old films' features: the same shard files, byte for byte
    after_digests = shard_digests(tmp_path / "store")
    assert {name: after_digests[name] for name in digests} == digests and len(after_digests) == len(digests) + 1

    # a new film is embedded by the trained run and recommended against the whole catalogue
    new = json.loads(run("recommend", "--workdir", "wd", "--model", model, "--item", str(OLD + 5), "-k", "10",
                         "--json"))
    assert new["index"] is None and new["source"] == f"embedded now with {model}"  # index and fused store stale
    assert len(new["results"]) == 10
    from cinefuse.fuse.embed import load_embedded

    loaded = load_embedded(tmp_path / "wd", model)
    ids = np.asarray(loaded.ids, dtype=str)
    assert set(ids.tolist()) == set(old_ids) | {str(i) for i in range(OLD + 1, OLD + NEW + 1)}
    emb = loaded.emb / np.linalg.norm(loaded.emb, axis=1, keepdims=True)
    row = ids.tolist().index(str(OLD + 5))
    sims = emb @ emb[row]
    order = [j for j in sorted(range(len(ids)), key=lambda j: (-sims[j], ids[j])) if j != row][:10]
    assert [r["id"] for r in new["results"]] == [str(ids[j]) for j in order]

    # the old films' recommendations: the same films and scores, the new films aside
    added = {str(i) for i in range(OLD + 1, OLD + NEW + 1)}
    for item, was in before.items():
        now = json.loads(run("recommend", "--workdir", "wd", "--model", model, "--item", item, "-k", "50", "--json"))
        kept = [r for r in now["results"] if r["id"] not in added][:30]
        assert [r["id"] for r in kept] == [r["id"] for r in was["results"]]
        np.testing.assert_allclose([r["score"] for r in kept], [r["score"] for r in was["results"]], atol=1e-5)
