"""fuse's validation table labels what it shows (genre AUC for the thesis objective only, the
user-to-item column, early stops), says when and why a model stopped early, and --patience /
--json reach the run."""

from __future__ import annotations

import argparse

from fuse_fixtures import small_config, write_synthetic_store

from cinefuse.fuse.cli import register
from cinefuse.fuse.train import results_table


def summary(model, objective, auc=0.61, early=False):
    return {"model": model, "objective": objective, "val_ndcg10": 0.2, "val_auc": auc, "val_u2i_recall20": 0.3,
            "best_step": 40, "train_seconds": 1.5, "stopped_early": early}


def test_the_genre_auc_is_shown_for_the_thesis_objective_only():
    lines = results_table([summary("thesis-m", "thesis"), summary("distill-m", "distill", auc=0.495, early=True)])
    lines = lines.splitlines()
    assert lines[0].split() == ["model", "val", "nDCG@10", "+prior", "w", "u2i", "R@20", "genre", "AUC", "best",
                                "step", "train", "s"]
    thesis = next(x for x in lines if x.startswith("thesis-m"))
    distill = next(x for x in lines if x.startswith("distill-m"))
    assert thesis.split()[1:6] == ["0.2000", "-", "-", "0.3000", "0.6100"]
    assert distill.split()[1:6] == ["0.2000", "-", "-", "0.3000", "-"]
    assert distill.endswith(" early") and not thesis.endswith(" early")
    assert lines[-1].startswith("val: the validation cold items")


def test_patience_stops_early_and_says_so(tmp_path):
    from cinefuse.fuse.train import run_fuse

    env = write_synthetic_store(tmp_path / "data")
    messages = []
    config = small_config(env, train={"steps": 400, "eval_every": 20, "checkpoint_every": 20, "patience": 1})
    out = run_fuse(config, tmp_path / "w", progress=False, log=messages.append)
    (run,) = out["runs"]
    assert run["stopped_early"] and run["steps"] < 400
    said = [m for m in messages if "stopped early" in m]
    assert said == [f"{run['model']}: stopped early at step {run['steps']} of 400: validation nDCG@10 did not "
                    f"improve for 1 evaluations (train.patience, --patience); kept step {run['best_step']}"]


def test_patience_and_json_options_parse():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["fuse", "--workdir", "w", "--patience", "3", "--json"])
    assert (args.patience, args.json) == (3, True)
