"""recommend and index build serve NAME+prior (cos + w * prior, exact), plain recommend serves
what validation chose and says so, and the errors name the real cause: a film the model left out,
a store passed as a workdir, a fuse stopped before it finished."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

from cinefuse.cli import main as cli_main  # noqa: E402
from cinefuse.errors import CinefuseError  # noqa: E402

DROPPED = 6  # row of item "7": its text/minilm row is invalid, so the model leaves it out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("serving")
    env = write_synthetic_store(root, n_items=120, bad_rows={"text/minilm": {"invalid": [DROPPED]}})
    # require = "all": a model that needs every set leaves item 7 out (under "any" it embeds it from the rest)
    config = small_config(env, data={"require": "all"},
                          train={"steps": 40, "eval_every": 20, "checkpoint_every": 20, "modality_dropout": 0.0})
    summary = run_fuse(config, root / "wd", log=lambda m: None)
    return root, root / "wd", summary["models"][0]


def brute_force(workdir: Path, model: str, item: str, k: int, weight: float | None):
    """cos + weight * prior over every embedded item, the item left out, ties by id order."""
    from cinefuse.fuse.embed import load_embedded

    loaded = load_embedded(workdir, model)
    ids = np.asarray(loaded.ids, dtype=str)
    emb = loaded.emb / np.linalg.norm(loaded.emb, axis=1, keepdims=True)
    row = ids.tolist().index(item)
    scores = (emb @ emb[row]).astype(np.float64)
    if weight is not None:
        scores = scores + weight * loaded.prior
    order = [j for j in sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j])) if j != row][:k]
    return [str(ids[j]) for j in order], scores[order]


def test_plain_recommend_serves_validation_choice_and_says_which(trained, capsys):
    _, workdir, model = trained
    summary = json.loads((workdir / "runs" / model / "summary.json").read_text())
    with_prior = summary["val_ndcg10_prior"] > summary["val_ndcg10"]
    name = model + ("+prior" if with_prior else "")
    value = max(summary["val_ndcg10_prior"], summary["val_ndcg10"])
    assert cli_main(["recommend", "--workdir", str(workdir), "--item", "5", "-k", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"[model {name}]")
    what = f" with its prior at weight {summary['prior_weight']:g}" if with_prior else ""
    assert lines[1] == (f"  (chosen by validation: nDCG@10 {value:.4f}{what}, the best of 2 candidate(s) in "
                        f"{workdir}/runs)")


@pytest.mark.parametrize("suffix", ["", "+prior"])
def test_served_model_ranks_by_cosine_plus_weighted_prior(trained, suffix, tmp_path):
    from cinefuse.evaluate.recommend import recommend

    _, trained_workdir, model = trained
    # a copy whose recorded weight is 0.4, whatever validation chose for the tiny fixture (it may
    # choose 0, where +prior and plain would rank alike): the served score must follow the record
    workdir = tmp_path / "wd"
    shutil.copytree(trained_workdir, workdir, ignore=shutil.ignore_patterns("index", "evaluation"))
    path = workdir / "runs" / model / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "prior_weight": 0.4}))
    weight = 0.4 if suffix else None
    for item in ("1", "40", "120"):
        rec = recommend(workdir, item, k=8, model=model + suffix, use_index=False)
        ids, scores = brute_force(workdir, model, item, 8, weight)
        assert rec.model == model + suffix and [r["id"] for r in rec.results] == ids
        np.testing.assert_allclose([r["score"] for r in rec.results], scores, atol=2e-6)
    plain = recommend(workdir, "1", k=8, model=model, use_index=False)
    prior = recommend(workdir, "1", k=8, model=model + "+prior", use_index=False)
    assert [r["id"] for r in plain.results] != [r["id"] for r in prior.results] or suffix == ""


def test_index_of_a_prior_model_is_exact_with_the_prior_as_an_extra_dimension(trained, capsys):
    from cinefuse.evaluate.recommend import recommend

    _, workdir, model = trained
    assert cli_main(["index", "build", "--workdir", str(workdir), "--model", model + "+prior", "--kind", "flat",
                     "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["model"], record["kind"], record["dim"]) == (model + "+prior", "flat", 17)  # 16-d + the prior
    assert record["path"] == str(workdir / "index" / f"{model}+prior")
    summary = json.loads((workdir / "runs" / model / "summary.json").read_text())
    assert record["prior_weight"] == summary["prior_weight"]
    for item in ("2", "77"):
        through = recommend(workdir, item, k=10, model=model + "+prior")
        exact = recommend(workdir, item, k=10, model=model + "+prior", use_index=False)
        assert through.index is not None and exact.index is None
        assert [r["id"] for r in through.results] == [r["id"] for r in exact.results]
        np.testing.assert_allclose([r["score"] for r in through.results], [r["score"] for r in exact.results],
                                   atol=2e-6)


def test_a_film_the_model_left_out_names_the_set_and_its_status(trained):
    from cinefuse.evaluate.recommend import recommend

    root, workdir, model = trained
    with pytest.raises(CinefuseError) as err:
        recommend(workdir, "7", k=3, model=model)
    assert str(err.value) == (
        f"item '7' is in store {root / 'store'}, but model {model} leaves it out: it needs a valid row of every one "
        "of its feature sets (visual/effnet, visual/lowlevel, audio/logmel_stats, text/minilm) and this item's "
        "text/minilm (decode error: synthetic) is not; fix the item's data and extract it again, or serve a model "
        "trained without that set (`cinefuse fuse --modalities ...`)")


def test_a_store_passed_as_workdir_says_so(trained, capsys):
    root, _, _ = trained
    assert cli_main(["recommend", "--workdir", str(root / "store"), "--item", "1"]) == 2
    assert capsys.readouterr().err == (
        f"cinefuse recommend: error: {root / 'store'} is a feature store, not a fuse workdir: pass the --workdir "
        f"that `cinefuse fuse --store {root / 'store'} --workdir W` trained into\n")


def test_a_stopped_fuse_says_rerun_to_resume(trained, tmp_path, capsys):
    _, workdir, model = trained
    stopped = tmp_path / "wd"
    shutil.copytree(workdir, stopped)
    shutil.rmtree(stopped / "runs" / model / "params")  # as a Ctrl-C before the final parameters
    assert (stopped / "runs" / model / "checkpoints").is_dir()
    assert cli_main(["recommend", "--workdir", str(stopped), "--item", "1"]) == 2
    assert capsys.readouterr().err == (
        f"cinefuse recommend: error: {stopped} holds no finished model yet, but checkpoints exist ({model}): fuse "
        "was stopped before it finished; rerun the same `cinefuse fuse` command to resume\n")
    with pytest.raises(CinefuseError, match=r"model .* has no prior head|is not in"):
        from cinefuse.evaluate.recommend import recommend

        recommend(workdir, "1", model="nope+prior")
