"""``cinefuse recommend --user ID`` / ``--liked ID1,ID2``: the list is the numpy brute force of
evaluate's user-to-item score (cosine to the mean unit history vector, + w * prior with the
run's user-to-item weight ``prior_weight_u2i``, ties by id), nothing the user liked or rated is
listed, ``--among`` restricts the candidates, and mistakes are one line with exit status 2."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

from cinefuse.cli import main as cli_main  # noqa: E402

I2I_WEIGHT, U2I_WEIGHT = 0.4, 0.2  # recorded apart, so a list scored with the wrong one shows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained workdir whose summary records distinct prior weights per task, and
    validation figures under which item-to-item chooses the plain model, user-to-item +prior."""
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("recommend_user")
    env = write_synthetic_store(root, n_items=80, n_users=60)
    config = small_config(env, train={"steps": 40, "eval_every": 20, "checkpoint_every": 20})
    model = run_fuse(config, root / "wd", log=lambda m: None)["models"][0]
    path = root / "wd" / "runs" / model / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(prior_weight=I2I_WEIGHT, prior_weight_u2i=U2I_WEIGHT, val_ndcg10=0.7, val_ndcg10_prior=0.6,
                   val_u2i_recall20=0.5, val_u2i_recall20_prior=0.55)
    path.write_text(json.dumps(summary))
    with open(env["ratings"], newline="") as f:
        ratings = [(int(r["userId"]), r["movieId"], float(r["rating"])) for r in csv.DictReader(f)]
    return root / "wd", model, ratings


def brute_force(workdir: Path, model: str, liked, excluded, k: int, weight: float | None, among=None):
    """(ids, scores): unit(e_c) . mean of the unit liked vectors (+ weight * prior) over every
    embedded item not in ``excluded`` (and in ``among``), best first, ties by numeric id."""
    from cinefuse.fuse.embed import load_embedded

    m = load_embedded(workdir, model)
    ids = np.asarray(m.ids, dtype=str)
    unit = m.emb / np.linalg.norm(m.emb, axis=1, keepdims=True)
    scores = unit.astype(np.float64) @ unit[np.isin(ids, list(liked))].astype(np.float64).mean(axis=0)
    if weight is not None:
        scores = scores + weight * np.asarray(m.prior, np.float64)
    pool = [j for j in range(len(ids)) if ids[j] not in set(excluded) and (among is None or ids[j] in set(among))]
    order = sorted(pool, key=lambda j: (-scores[j], int(ids[j])))[:k]
    return [str(ids[j]) for j in order], scores[order]


def user_items(ratings, user: int):
    """(liked ids, rated ids) of ``user``: liked at the run's like threshold 4."""
    mine = [(item, rating) for u, item, rating in ratings if u == user]
    return {i for i, r in mine if r >= 4.0}, {i for i, _ in mine}


def run_json(capsys, *argv) -> dict:
    assert cli_main(["recommend", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("suffix", [None, "", "+prior"])
def test_user_list_is_the_user_to_item_brute_force(trained, capsys, suffix):
    workdir, model, ratings = trained
    liked, rated = user_items(ratings, 7)
    model_args = [] if suffix is None else ["--model", model + suffix]
    # k past the catalogue: the whole list, so a rated item left in would show
    got = run_json(capsys, "--workdir", str(workdir), "--user", "7", "-k", "100", *model_args)
    # no --model: user-to-item validation chose +prior (its figures above), at the user-to-item weight
    weight = None if suffix == "" else U2I_WEIGHT
    ids, scores = brute_force(workdir, model, liked, rated, 100, weight)
    assert [r["id"] for r in got["results"]] == ids and len(ids) == 80 - len(rated)
    assert np.allclose([r["score"] for r in got["results"]], scores, atol=1e-5)
    assert not rated & {r["id"] for r in got["results"]}
    served = model + ("" if suffix == "" else "+prior")
    assert (got["item"], got["history"], got["model"]) == ("user 7", len(liked), served)
    if suffix is None:
        assert got["why"] == (f"chosen by user-to-item validation: Recall@20 0.5500 with its prior at weight "
                              f"{U2I_WEIGHT:g}, the best of 2 candidate(s) in {workdir}/runs")


def test_liked_list_text_names_the_history_and_matches_the_brute_force(trained, capsys):
    workdir, model, _ = trained
    assert cli_main(["recommend", "--workdir", str(workdir), "--liked", "3, 17,40,unknown", "-k", "5",
                     "--model", model]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"top 5 items for 4 liked item(s) (history: 3 liked item(s) the model embeds)  [model {model}]"
    assert lines[1] == f"{'rank':>4}  {'id':>8}  {'score':>7}  title"
    ids, scores = brute_force(workdir, model, {"3", "17", "40"}, {"3", "17", "40"}, 5, None)
    rows = [line.split(None, 3) for line in lines[2:]]
    assert [r[1] for r in rows] == ids and [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r[2] for r in rows] == [f"{s:.4f}" for s in scores]
    assert rows[0][3] == f"Film {ids[0]} ({1980 + (int(ids[0]) - 1) % 40})"


def test_among_restricts_to_the_test_items_or_a_file(trained, capsys, tmp_path):
    from cinefuse import api

    workdir, model, ratings = trained
    test = json.loads((workdir / "split.json").read_text())["test"]
    liked, rated = user_items(ratings, 12)
    got = run_json(capsys, "--workdir", str(workdir), "--user", "12", "--among", "test", "-k", "50")
    ids, _ = brute_force(workdir, model, liked, rated, 50, U2I_WEIGHT, among=test)
    assert [r["id"] for r in got["results"]] == ids
    assert set(ids) == set(test) - rated and len(ids) < len(test) + 1
    # a file of ids (commas, spaces and newlines), and the API with the same list: the same answer
    chosen = sorted(test)[:6] + ["21", "22"]
    (tmp_path / "ids.txt").write_text(", ".join(chosen[:4]) + "\n" + " ".join(chosen[4:]) + "\n")
    got = run_json(capsys, "--workdir", str(workdir), "--liked", "1,2", "--among", str(tmp_path / "ids.txt"))
    ids, _ = brute_force(workdir, model, {"1", "2"}, {"1", "2"}, 10, U2I_WEIGHT, among=chosen)
    assert [r["id"] for r in got["results"]] == ids
    assert api.recommend_for_user(workdir=workdir, liked=["1", "2"], among=chosen).to_json() == got


@pytest.mark.parametrize("argv,message", [
    (["--user", "999"], "user 999 has no rating in {ratings}; for a new user give the items they liked instead "
                        "(--liked ID1,ID2 or liked=[ids])"),
    (["--liked", "900,901"], "none of the 2 liked item(s) given is among the 80 items model "
                             "{model}+prior embeds; pass item ids (MovieLens movieIds)"),
    (["--user", "3", "--item", "1"], "--item and --user cannot be combined: --item ID lists the items like one "
                                     "item, --user ID the items for a user of the ratings, --liked ID1,ID2 for a "
                                     "new user"),
    ([], "give one of --item, --user or --liked: --item ID lists the items like one item, --user ID the items "
         "for a user of the ratings, --liked ID1,ID2 for a new user"),
    (["--item", "1", "--among", "test"], "--among restricts a user's list (--user or --liked), not --item's"),
    (["--user", "3", "--among", "nowhere.txt"], "--among nowhere.txt: no such file; pass 'test' (the split's "
                                                "cold test items) or a file of item ids"),
])
def test_mistakes_are_one_line_with_status_2(trained, capsys, argv, message):
    workdir, model, _ = trained
    ratings = json.loads((workdir / "config.json").read_text())["data"]["ratings"]
    assert cli_main(["recommend", "--workdir", str(workdir), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"cinefuse recommend: error: {message.format(ratings=ratings, model=model)}\n"


def test_a_summary_without_user_to_item_figures_falls_back_and_says_so(trained, capsys):
    workdir, model, ratings = trained
    path = workdir / "runs" / model / "summary.json"
    kept = path.read_text()
    summary = json.loads(kept)
    for key in ("prior_weight_u2i", "val_u2i_recall20", "val_u2i_recall20_prior"):
        summary.pop(key)
    path.write_text(json.dumps(summary))
    try:
        liked, rated = user_items(ratings, 5)
        # no --model: item-to-item validation's choice (plain, its figures above)
        got = run_json(capsys, "--workdir", str(workdir), "--user", "5", "-k", "6")
        assert got["model"] == model
        assert got["why"] == (f"chosen by validation: nDCG@10 0.7000, the best of 2 candidate(s) in {workdir}/runs "
                              "(no val_u2i_recall20 in any summary.json: the item-to-item choice)")
        assert [r["id"] for r in got["results"]] == brute_force(workdir, model, liked, rated, 6, None)[0]
        # NAME+prior: the item-to-item weight, named
        got = run_json(capsys, "--workdir", str(workdir), "--user", "5", "-k", "6", "--model", model + "+prior")
        assert got["why"] == f"asked for; its summary.json has no prior_weight_u2i: the item-to-item weight {I2I_WEIGHT:g}"
        ids, scores = brute_force(workdir, model, liked, rated, 6, I2I_WEIGHT)
        assert [r["id"] for r in got["results"]] == ids
        assert np.allclose([r["score"] for r in got["results"]], scores, atol=1e-5)
    finally:
        path.write_text(kept)
