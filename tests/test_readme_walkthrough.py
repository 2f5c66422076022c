"""The README's "pipeline, step by step" run as written, on a tiny generated text-only manifest
(every `video` empty) with small MovieLens-style ratings, with the defaults: extract -> store info
-> store verify -> fuse -> evaluate -> recommend; then its "Adding films to a trained model":
five new films appended to the manifest, extract (only the new ids, every old row byte for byte
the same) and recommend for a new film.

The commands are read from README.md, so the README cannot drift from what works. The one change
made to them is speed only: fuse trains ``--steps 100`` instead of the default 2000.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import write_movielens  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
WORDS = [["space", "rocket", "planet", "alien"], ["love", "wedding", "romance", "heart"],
         ["murder", "detective", "crime", "police"], ["war", "soldier", "battle", "army"]]
SPEED_ONLY = {"fuse": ["--steps", "100"]}


def walkthrough_commands() -> list[list[str]]:
    """The `cinefuse ...` lines of the README's step-by-step block, comments cut, as argv lists."""
    text = README.read_text()
    section = text.split("## The pipeline, step by step", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#", 1)[0])[1:] for line in block.splitlines() if line.startswith("cinefuse ")]


def write_inputs(root: Path, n_items: int = 60, n_users: int = 60) -> None:
    """trailers.csv (text only) and ml/ratings.csv, ml/movies.csv where the README's commands look."""
    clusters = np.arange(n_items) % len(WORDS)
    write_movielens(root / "ml", n_items, clusters, n_users, seed=0)
    rng = np.random.default_rng(0)
    with open(root / "trailers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "video", "title", "plot", "year", "language"])
        for i in range(n_items):
            plot = f"A story about {' and '.join(rng.choice(WORDS[clusters[i]], 3))}."
            w.writerow([i + 1, "", f"Film {i + 1}", plot, 1980 + i % 40, "en"])


def test_readme_walkthrough_on_a_text_only_manifest(tmp_path, monkeypatch, capsys):
    from cinefuse.cli import main

    commands = walkthrough_commands()
    assert [c[0] for c in commands] == ["extract", "store", "store", "fuse", "evaluate", "recommend"]
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for argv in commands:
        argv = argv + SPEED_ONLY.get(argv[0], []) + (["--no-progress"] if argv[0] in ("extract", "fuse") else [])
        code = main(argv)
        out = capsys.readouterr()
        assert code == 0, (argv, out.err[-2000:])
        outputs[" ".join(argv[:2])] = out

    # the store holds visual and audio sets with no valid row: the defaults leave them out
    assert "modalities: text = text/minilm, text/tfidf; meta = meta/language, meta/year; full = text+meta; " \
           "training full" in outputs[" ".join(commands[3][:2])].err.splitlines()
    workdir = Path(commands[3][commands[3].index("--workdir") + 1])
    from cinefuse.fuse.config import FuseConfig, model_name

    default = FuseConfig()     # the README's fuse line takes every default: objective, loss, head
    model = model_name(default.loss.kind, default.loss.distance, "full", default.model.head, default.objective.kind)
    assert model == "distill-full-concat-mlp"
    results = json.loads((workdir / "evaluation" / "cold-item" / "results.json").read_text())
    assert model in [r["name"] for r in results["rows"]]
    assert model in outputs["evaluate --workdir"].out

    # recommend serves the model validation chose (with or without its prior) and says so; its
    # list is the brute-force top 10 of item 1 over that model's embeddings (cos + w * prior)
    served = served_model(workdir, model)
    lines = outputs["recommend --workdir"].out.splitlines()
    assert lines[0] == f"top 10 items like 1 (Film 1 (1980))  [model {served}]"
    assert lines[1].startswith("  (chosen by validation: nDCG@10 ")
    assert listed(lines) == brute_force(workdir, model, served, "1", 10)

    # "Adding films to a trained model": five films, never rated, appended to trailers.csv
    store = Path(commands[0][commands[0].index("--store") + 1])
    old_ids = [str(i + 1) for i in range(60)]
    before = read_rows(store, old_ids)
    before_list = brute_force(workdir, model, served, "1", 59)
    append_items(tmp_path / "trailers.csv", 61, 5)
    adding = adding_commands()
    assert [c[0] for c in adding] == ["extract", "recommend"]
    for argv in adding:
        code = main(argv + (["--no-progress", "--json"] if argv[0] == "extract" else []))
        out = capsys.readouterr()
        assert code == 0, (argv, out.err[-2000:])
        outputs[argv[0]] = out.out
    summary = json.loads(outputs["extract"])
    assert (summary["processed"], summary["skipped"]) == (5, 60)  # only the new ids
    after = read_rows(store, old_ids)
    assert {name: rows.tobytes() for name, rows in after.items()} == {n: r.tobytes() for n, r in before.items()}
    item = adding[1][adding[1].index("--item") + 1]
    lines = outputs["recommend"].splitlines()
    assert lines[0] == f"top 10 items like {item}  [model {served}]"  # no title: not in movies.csv
    assert listed(lines) == brute_force(workdir, model, served, item, 10)
    # the old films' lists are the same, the new films aside
    new = {str(i) for i in range(61, 66)}
    assert [i for i in brute_force(workdir, model, served, "1", 64) if i not in new] == before_list


def adding_commands() -> list[list[str]]:
    """The `cinefuse ...` lines of the README's "Adding films to a trained model" block."""
    section = README.read_text().split("## Adding films to a trained model", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#", 1)[0])[1:] for line in block.splitlines() if line.startswith("cinefuse ")]


def append_items(manifest: Path, first: int, n: int) -> None:
    rng = np.random.default_rng(1)
    with open(manifest, "a", newline="") as f:
        w = csv.writer(f)
        for i in range(first, first + n):
            plot = f"A story about {' and '.join(rng.choice(WORDS[i % len(WORDS)], 3))}."
            w.writerow([i, "", f"Film {i}", plot, 2000, "en"])


def read_rows(store: Path, ids: list[str]) -> dict:
    from cinefuse.store import open_store

    opened = open_store(store)
    table = opened.load(sorted(opened.feature_sets()), ids=ids)
    return {name: np.concatenate([table.features[name].reshape(len(ids), -1).view(np.uint8),
                                  table.valid[name][:, None].astype(np.uint8)], axis=1)
            for name in table.features}


def served_model(workdir: Path, model: str) -> str:
    summary = json.loads((workdir / "runs" / model / "summary.json").read_text())
    return model + ("+prior" if summary.get("val_ndcg10_prior", -1) > summary["val_ndcg10"] else "")


def brute_force(workdir: Path, model: str, served: str, item: str, k: int) -> list[str]:
    """The top ``k`` ids for ``item``: cosine (+ w * prior for NAME+prior), ties by id."""
    from cinefuse.fuse.embed import load_embedded

    loaded = load_embedded(workdir, model)
    ids = np.asarray(loaded.ids, dtype=str)
    emb = loaded.emb / np.linalg.norm(loaded.emb, axis=1, keepdims=True)
    row = ids.tolist().index(item)
    scores = (emb @ emb[row]).astype(np.float64)
    if served.endswith("+prior"):
        scores += loaded.prior_weight * loaded.prior
    return [str(ids[j]) for j in sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j])) if j != row][:k]


def listed(lines: list[str]) -> list[str]:
    """The ids of recommend's table (the lines after its header)."""
    start = next(n for n, line in enumerate(lines) if line.lstrip().startswith("rank")) + 1
    return [line.split()[1] for line in lines[start:]]
