"""docs/API.md runs as written: its ```python blocks are executed in order, in one namespace, in
a folder holding the inputs the document describes (four tiny clips, a 60-film manifest,
MovieLens-style ratings, a file of precomputed features). Each block's stdout must equal the
output block printed after it in the document (a ``` block without a language), so the
document cannot show what the code does not print. Then the values behind them are checked
against the CLI and brute force: ``recommend_for_item`` lists what ``cinefuse recommend`` lists
for the same workdir, ``recommend_for_user`` the brute-force ranking of the mean liked
embedding, ``load_embeddings`` the rows evaluate wrote to ``W/embeddings``.

The run trains three small workdirs (about a minute on 2 loaded cores): slow. The fast tests
compile every block, check that every ``api.NAME`` and every name imported from cinefuse exists,
that the facade is keyword-only and that ``import cinefuse`` loads neither torch nor jax.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import importlib
import inspect
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import write_movielens  # noqa: E402

API_MD = Path(__file__).resolve().parents[1] / "docs" / "API.md"
N_ITEMS, N_USERS, N_CLIPS, N_FEATURES = 60, 60, 4, 50
WORDS = [["space", "rocket", "planet", "alien"], ["love", "wedding", "romance", "heart"],
         ["murder", "detective", "crime", "police"], ["war", "soldier", "battle", "army"]]


def doc_blocks(text: str | None = None) -> list[tuple[str, str | None]]:
    """(code, expected stdout or None) for every ```python block of API.md, in order; the
    expected output is the plain ``` block right after it, when there is one."""
    text = API_MD.read_text() if text is None else text
    fences = list(re.finditer(r"^```(\w*)\n(.*?)^```\s*$", text, re.S | re.M))
    blocks = []
    for i, fence in enumerate(fences):
        if fence.group(1) != "python":
            continue
        following = fences[i + 1] if i + 1 < len(fences) else None
        expected = following.group(2) if following is not None and following.group(1) == "" else None
        blocks.append((fence.group(2), expected))
    return blocks


def write_inputs(root: Path) -> None:
    """What API.md says the folder holds: videos/, trailers.csv, ml/, aesthetic.csv."""
    from media_fixtures import encode_video

    clusters = np.arange(N_ITEMS) % len(WORDS)
    write_movielens(root / "ml", N_ITEMS, clusters, N_USERS, seed=0)
    (root / "videos").mkdir()
    for i in range(1, N_CLIPS + 1):
        encode_video(root / "videos" / f"{i}.mp4", seconds=1, size=(48, 32), tone_hz=300 * i)
    rng = np.random.default_rng(0)
    with open(root / "trailers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "video", "title", "plot", "year", "language"])
        for i in range(N_ITEMS):
            plot = f"A story about {' and '.join(rng.choice(WORDS[clusters[i]], 3))}."
            video = f"videos/{i + 1}.mp4" if i < N_CLIPS else ""
            w.writerow([i + 1, video, f"Film {i + 1}", plot, 1980 + i % 40, "en"])
    centroids = rng.normal(size=(len(WORDS), 8))
    with open(root / "aesthetic.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["itemId", *[f"a{d}" for d in range(8)]])
        for i in [*range(1, N_FEATURES + 1), *range(1001, 1006)]:
            row = centroids[(i - 1) % len(WORDS)] + rng.normal(scale=0.5, size=8)
            w.writerow([i, *[f"{v:.5f}" for v in row]])


# -- fast: every block compiles and names only what exists --------------------------------------
def test_every_block_compiles_and_names_what_exists():
    from cinefuse import api

    blocks = doc_blocks()
    assert len(blocks) >= 12 and all(expected is not None for _, expected in blocks)
    used = set()
    for n, (code, _) in enumerate(blocks):
        tree = ast.parse(compile(code, f"API.md python block {n + 1}", "exec", ast.PyCF_ONLY_AST))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "api":
                used.add(node.attr)
                assert hasattr(api, node.attr), f"block {n + 1}: api.{node.attr} does not exist"
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cinefuse":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(
                        f"{node.module}.{alias.name}"), f"block {n + 1}: {node.module}.{alias.name} does not exist"
    # the document shows every function of the facade
    assert used >= set(api.__all__)
    text = API_MD.read_text()
    assert "## Exporting to other tools\n" in text
    # every dotted cinefuse name the prose gives exists
    for path in sorted(set(re.findall(r"`(cinefuse(?:\.\w+)+)", text))):
        assert resolves(path), f"API.md names {path}, which does not exist"


def resolves(path: str) -> bool:
    """Whether ``cinefuse.a.b.c`` is a module, or attributes of the longest module prefix."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False

def test_the_facade_is_keyword_only_documented_and_cheap_to_import():
    from cinefuse import api

    import cinefuse

    for name in api.__all__:
        function = getattr(api, name)
        assert function.__doc__, name
        positional = [p.name for p in inspect.signature(function).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert positional == [], f"api.{name} takes {positional} by position"
    for name in cinefuse.API_NAMES:
        assert name in api.__all__ and importlib.util.find_spec(f"cinefuse.{name}") is None
    code = ("import sys, cinefuse, cinefuse.api; f = cinefuse.recommend_for_user; "
            "print(sorted(m for m in ('jax', 'torch', 'numpy', 'flax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(API_MD.parents[1])})
    assert out.stdout.strip() == "[]"


def test_block_reader_pairs_code_with_its_output():
    text = "x\n```python\nprint(1)\n```\n\n```\n1\n```\n```python\ny = 2\n```\n```bash\nls\n```\n"
    assert doc_blocks(text) == [("print(1)\n", "1\n"), ("y = 2\n", None)]


# -- slow: the document run as written ----------------------------------------------------------
@pytest.fixture(scope="module")
def doc_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api_docs")
    write_inputs(root)
    namespace: dict = {"__name__": "api_md"}
    printed = []
    old = Path.cwd()
    os.chdir(root)
    try:
        for n, (code, expected) in enumerate(doc_blocks()):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                exec(compile(code, f"API.md python block {n + 1}", "exec"), namespace)
            printed.append((n + 1, out.getvalue(), expected))
    finally:
        os.chdir(old)
    return root, namespace, printed


@pytest.mark.slow
def test_every_example_prints_what_the_document_shows(doc_run):
    _, _, printed = doc_run
    for n, got, expected in printed:
        assert got == expected, f"API.md python block {n} printed:\n{got}\nthe document shows:\n{expected}"


@pytest.mark.slow
def test_recommendations_equal_the_cli_and_brute_force(doc_run, capsys, monkeypatch):
    from cinefuse.cli import main
    from cinefuse.evaluate.serving import choose_served
    from cinefuse.fuse.embed import load_embedded
    from cinefuse.fuse.workdir import Workdir

    root, ns, _ = doc_run
    monkeypatch.chdir(root)  # the command run as the document's calls were, from that folder
    workdir = Path("runs/a")
    # the item recommendations list what the command lists for the same workdir: the new film's,
    # and film 1's (asked before film 61 was added; the command now may list 61 among them)
    assert main(["recommend", "--workdir", str(workdir), "--item", "61", "-k", "5", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli == ns["new"].to_json()
    assert main(["recommend", "--workdir", str(workdir), "--item", "1", "-k", "5", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    listed = [r["id"] for r in cli["results"] if r["id"] != "61"]
    assert listed == ns["top"][:len(listed)] and len(listed) >= 4 and cli["model"] == ns["rec"].model
    assert [r["id"] for r in ns["rec"].results] == ns["top"]
    # the user's list is the brute-force ranking of the mean unit liked embedding (+ w * prior)
    served = choose_served(Workdir(workdir))
    m = load_embedded(workdir, served.model)
    before = m.ids.astype(str) != "61"  # the users' lists were asked before film 61 was added
    ids, emb, m.prior = m.ids.astype(str)[before], m.emb[before], m.prior[before]
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    prior = 0.0 if served.prior_weight is None else served.prior_weight * m.prior  # the served row's rule
    liked = np.isin(ids, ["1", "5", "9"])
    score = unit @ unit[liked].mean(axis=0) + prior
    order = sorted((i for i in range(len(ids)) if not liked[i]), key=lambda i: (-score[i], int(ids[i])))
    assert [r["id"] for r in ns["liked"].results] == [ids[i] for i in order[:5]]
    assert np.allclose([r["score"] for r in ns["liked"].results], score[order[:5]], atol=1e-5)
    # user 3's history is their liked films; the candidates the cold ones they did not rate
    ratings = np.loadtxt(root / "ml" / "ratings.csv", delimiter=",", skiprows=1)
    mine = ratings[ratings[:, 0] == 3]
    liked = np.isin(ids, [str(int(i)) for i in mine[mine[:, 2] >= 4, 1]])
    score = unit @ unit[liked].mean(axis=0) + prior
    allowed = [i for i in range(len(ids)) if ids[i] in set(ns["cold"]) and int(ids[i]) not in set(mine[:, 1])]
    order = sorted(allowed, key=lambda i: (-score[i], int(ids[i])))
    assert [r["id"] for r in ns["for_user"].results] == [ids[i] for i in order[:3]]


@pytest.mark.slow
def test_embeddings_and_tables_are_what_evaluate_wrote(doc_run):
    from cinefuse.evaluate.fused import safe_set_name
    from cinefuse.store import open_store

    root, ns, _ = doc_run
    embedded = ns["embedded"]
    fused = open_store(root / "runs" / "a" / "embeddings").load_feature_set(safe_set_name(embedded.name))
    # evaluate wrote the 60 films; film 61 came after, and the model embeds it as well
    row = {i: r for r, i in enumerate(embedded.ids.astype(str).tolist())}
    assert sorted(row) == sorted([*np.asarray(fused.ids, str).tolist(), "61"])
    rows = [row[i] for i in np.asarray(fused.ids, str).tolist()]
    assert np.allclose(np.asarray(fused.data, np.float32), embedded.emb[rows], atol=1e-5)
    written = json.loads((root / "runs" / "a" / "evaluation" / "cold-item" / "results.json").read_text())
    assert [r["name"] for r in written["rows"]] == [r.name for r in ns["i2i"].rows]
    assert written["user-to-item"]["verdict"]["best_model"] == ns["verdict"]["best_model"]
    # the seeded workdir's models were trained once per seed, the grid's once per modality set
    assert sorted(os.listdir(root / "runs" / "seeds" / "runs")) == ns["seeded"]["models"]
