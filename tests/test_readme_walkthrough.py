"""The README's "pipeline, step by step" run as written, on a tiny generated text-only manifest
(every `video` empty) with small MovieLens-style ratings, with the defaults: extract -> store info
-> store verify -> fuse -> evaluate -> recommend.

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
    from cinefuse.fuse.embed import embed_items

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

    # recommend's list is the brute-force cosine top 10 of item 1 over the model's embeddings
    ids, emb = embed_items(workdir, model)
    row = ids.tolist().index("1")
    sims = emb @ emb[row]
    sims[row] = -np.inf
    expected = [str(ids[j]) for j in np.argsort(-sims, kind="stable")[:10]]
    lines = outputs["recommend --workdir"].out.splitlines()
    assert lines[0].startswith(f"top 10 items like 1 (Film 1 (1980))  [model {model}]")
    got = [line.split()[1] for line in lines[2:]]
    assert got == expected
