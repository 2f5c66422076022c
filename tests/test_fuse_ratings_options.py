"""fuse reads a ratings file in another layout through [data] ratings_sep / ratings_columns /
on_bad_ratings (and the CLI options of the same names): the same split as the MovieLens CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fuse_fixtures import small_config, write_synthetic_store

from cinefuse.errors import CinefuseError
from cinefuse.fuse.cli import register
from cinefuse.fuse.config import as_config


def tab_separated_copy(ratings_csv: Path, dest: Path) -> Path:
    """The ratings as a headed TSV with other column names and no timestamp column."""
    with open(ratings_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(dest, "w") as fh:
        fh.write("who\twhat\tscore\n")
        for r in rows:
            fh.write(f"{r['userId']}\t{r['movieId']}\t{r['rating']}\n")
    return dest


def test_a_tsv_with_other_column_names_trains_the_same_split(tmp_path):
    from cinefuse.fuse.train import run_fuse

    env = write_synthetic_store(tmp_path / "data")
    tsv = tab_separated_copy(Path(env["ratings"]), tmp_path / "scores.tsv")
    steps = {"train": {"steps": 40, "eval_every": 40, "checkpoint_every": 40}}
    run_fuse(small_config(env, **steps), tmp_path / "csv", progress=False, log=lambda m: None)
    run_fuse(small_config(env, data={"ratings": str(tsv), "ratings_columns": "who,what,score"}, **steps),
             tmp_path / "tsv", progress=False, log=lambda m: None)
    assert (tmp_path / "tsv" / "split.json").read_bytes() == (tmp_path / "csv" / "split.json").read_bytes()


def test_bad_policy_is_refused_in_one_line():
    with pytest.raises(CinefuseError) as err:
        as_config({"data": {"on_bad_ratings": "ignore"}})
    assert str(err.value) == "data.on_bad_ratings = 'ignore' is not one of 'error', 'drop', 'keep-last'"


def test_the_cli_options_reach_the_config():
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["fuse", "--workdir", "w", "--ratings-sep", "tab", "--ratings-columns",
                              "user,item,rating", "--on-bad-ratings", "drop"])
    assert (args.ratings_sep, args.ratings_columns, args.on_bad_ratings) == ("tab", "user,item,rating", "drop")
