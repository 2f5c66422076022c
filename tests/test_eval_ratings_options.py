"""evaluate reads the ratings file as --ratings-sep, --ratings-columns and --on-bad-ratings say,
else as the workdir's config.json says (data.ratings_sep, data.ratings_columns,
data.on_bad_ratings): a tab-separated copy of the run's ratings under other column names, with
one bad row, evaluates exactly like the MovieLens file."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from cinefuse.cli import main as cli_main
from cinefuse.evaluate.job import RatingsSource, ratings_options
from test_eval_workdir import write_catalogue


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("ratingsopts")
    _, _, ml = write_catalogue(root)
    config = {
        "data": {"store": str(root / "store"), "ratings": str(ml), "movies": str(ml),
                 "modality_sets": {"text": ["text/minilm"], "meta": ["meta/year"]}},
        "model": {"modalities": "full", "token_dim": 16, "hidden": 32, "embed_dim": 8},
        "train": {"steps": 50, "steps_per_call": 50, "eval_every": 50, "checkpoint_every": 50,
                  "batch_size": 32, "patience": 0},
        "objective": {"kind": "thesis", "prior": False},
    }
    run_fuse(config, root / "wd", log=lambda msg: None)
    # the same ratings, tab-separated, under other names, plus one NaN rating of a new pair
    df = pd.read_csv(ml / "ratings.csv")
    tsv = root / "scores.tsv"
    bad = pd.DataFrame({"userId": [1], "movieId": [df.movieId.max() + 3], "rating": [float("nan")], "timestamp": [7]})
    pd.concat([df, bad]).rename(columns={"userId": "u", "movieId": "m", "rating": "score", "timestamp": "t"}).to_csv(
        tsv, sep="\t", index=False)
    return root / "wd", tsv


def evaluate_json(capsys, wd, *options) -> dict:
    assert cli_main(["evaluate", "--workdir", str(wd), "-k", "5", "--task", "item-to-item", "--json",
                     "--no-progress", *options]) == 0, capsys.readouterr().err
    out = capsys.readouterr()
    print(out.err)
    return json.loads(out.out)


def scores(results: dict) -> list:
    """Every row's name, metrics and intervals (not its timings)."""
    return [(r["name"], r["metrics"], r["ci"]) for r in results["rows"]]


def test_ratings_options_read_a_renamed_tab_separated_file_as_the_original(workdir, capsys):
    wd, tsv = workdir
    original = evaluate_json(capsys, wd)
    renamed = evaluate_json(capsys, wd, "--ratings", str(tsv), "--ratings-sep", "tab",
                            "--ratings-columns", "u,m,score,t", "--on-bad-ratings", "drop")
    assert scores(renamed) == scores(original) and renamed["counts"] == original["counts"]


def test_a_bad_row_stops_evaluate_in_one_line_unless_a_policy_is_chosen(workdir, capsys):
    wd, tsv = workdir
    assert cli_main(["evaluate", "--workdir", str(wd), "--ratings", str(tsv), "--ratings-sep", "tab",
                     "--ratings-columns", "u,m,score,t", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cinefuse evaluate: error: ") and err.count("\n") == 1 and "--on-bad-ratings" in err
    assert cli_main(["evaluate", "--workdir", str(wd), "--ratings", str(tsv), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--ratings-columns" in err
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "--workdir", str(wd), "--on-bad-ratings", "ignore"])
    assert "invalid choice: 'ignore'" in capsys.readouterr().err


def test_options_override_the_config_keys_which_override_the_loader_defaults():
    config = SimpleNamespace(data=SimpleNamespace(ratings_sep="tab", ratings_columns="", on_bad_ratings="drop"))
    assert ratings_options(config, RatingsSource()) == {"sep": "tab", "on_bad_ratings": "drop"}
    assert ratings_options(config, RatingsSource("r.csv", ",", "a,b,c", "keep-last")) == {
        "sep": ",", "columns": "a,b,c", "on_bad_ratings": "keep-last"}
    assert ratings_options(SimpleNamespace(data=SimpleNamespace()), RatingsSource(columns="u,m,score")) == {
        "columns": "u,m,score"}


def test_the_workdir_config_keys_are_the_defaults(workdir, capsys):
    from cinefuse.fuse.config import DataConfig

    if not {"ratings_sep", "ratings_columns", "on_bad_ratings"} <= set(DataConfig.__dataclass_fields__):
        pytest.skip("the fuse config has no data.ratings_sep / ratings_columns / on_bad_ratings keys yet")
    wd, tsv = workdir
    original = evaluate_json(capsys, wd)
    path = wd / "config.json"
    saved = path.read_text()
    record = json.loads(saved)
    record["data"].update(ratings=str(tsv), ratings_sep="tab", ratings_columns="u,m,score,t", on_bad_ratings="drop")
    path.write_text(json.dumps(record))
    try:
        from_config = evaluate_json(capsys, wd)
    finally:
        path.write_text(saved)
    assert scores(from_config) == scores(original) and from_config["counts"] == original["counts"]
