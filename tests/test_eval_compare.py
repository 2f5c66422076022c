"""cinefuse compare on two real runs (run_fuse on the catalogue of test_eval_workdir): every row's
figures are exactly those of evaluating that run alone over the shared items (a copy whose
split.json holds them as its test items; user-to-item: its per-user values over the shared
users); a constructed split disagreement (test items moved to training in one run) is dropped
and counted; the paired verdicts equal a paired bootstrap over the per-query file; runs over
different ratings or like thresholds are refused with one line naming the difference."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from test_eval_perquery import train_small

from cinefuse.errors import CinefuseError
from cinefuse.metrics.bootstrap import paired_bootstrap

MOVED = 3  # test items of run b moved to its training part
LONE = "9999"  # a user with a liked training item in run a only


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run a (full) and run b (text) trained on the same split, then b's split made to disagree:
    MOVED test items made training items, and the one training item user LONE likes made a
    validation item (LONE also likes a test item: a user with a history in run a only)."""
    from test_eval_workdir import write_catalogue

    root = tmp_path_factory.mktemp("compare")
    write_catalogue(root)
    a = train_small(root, "a", "full")
    b = train_small(root, "b", "text")
    split = json.loads((b / "split.json").read_text())
    moved = sorted(split["test"], key=int)[:MOVED]
    history = sorted(split["train"], key=int)[0]
    with open(root / "ml" / "ratings.csv", "a") as handle:  # both runs read this file when evaluated
        handle.write(f"{LONE},{history},5.0,5000\n{LONE},{sorted(split['test'], key=int)[-1]},5.0,5000\n")
    split["test"] = [i for i in split["test"] if i not in moved]
    split["train"] = [i for i in split["train"] if i != history] + moved
    split["val"] = split["val"] + [history]
    (b / "split.json").write_text(json.dumps(split))
    return root, a, b, moved


@pytest.fixture(scope="module")
def compared(runs):
    from cinefuse.evaluate.compare import compare_runs
    from cinefuse.evaluate.compare_report import write_comparisons

    root, a, b, _ = runs
    comps = compare_runs([a, b], progress=False)
    write_comparisons(comps, root / "out")
    return comps


def alone(root, wd, items, name):
    """The run evaluated by itself with split.json's test items = ``items`` (a copy)."""
    from cinefuse.evaluate.run import run_evaluate

    copy = root / f"alone-{name}"
    if not copy.exists():
        shutil.copytree(wd, copy, ignore=shutil.ignore_patterns("evaluation", "embeddings"))
        split = json.loads((copy / "split.json").read_text())
        split["test"] = sorted(items, key=int)
        (copy / "split.json").write_text(json.dumps(split))
        run_evaluate(copy, progress=False, task="both")
    return copy


def test_split_disagreement_is_dropped_and_counted(runs, compared):
    root, a, b, moved = runs
    test_a = json.loads((a / "split.json").read_text())["test"]
    shared = compared["item-to-item"].shared
    assert shared == {"runs": 2, "cold_in_some_run": len(test_a), "cold_in_every_run": len(test_a) - MOVED,
                      "dropped_not_cold_in_every_run": MOVED, "dropped_seen_in_training_by_another_run": MOVED,
                      "dropped_not_rankable": 0, "shared_items": len(test_a) - MOVED}
    es = compared["item-to-item"].es
    assert set(es.candidate_ids.tolist()) == set(test_a) - set(moved)
    assert any(f"{MOVED} items cold in some runs only were dropped ({MOVED} of them training or validation" in n
               for n in compared["item-to-item"].results.notes)


def test_item_to_item_rows_equal_each_run_evaluated_alone_on_the_shared_items(runs, compared):
    root, a, b, _ = runs
    comp = compared["item-to-item"]
    items = comp.es.candidate_ids.tolist()
    names = [r.name for r in comp.results.rows]
    matched = set()
    for run, wd in (("a", a), ("b", b)):
        own = json.loads((alone(root, wd, items, run) / "evaluation" / "cold-item" / "results.json").read_text())
        assert own["counts"]["queries"] == len(items)
        for row in own["rows"]:
            name = row["name"] if row["kind"] in ("random", "popularity") else f"{run}/{row['name']}"
            if name not in names:  # a raw-feature row equal to run a's is shown once, as a's
                assert row["kind"] == "itemknn-cbf" and f"a/{row['name']}" in names
                name = f"a/{row['name']}"
            got = comp.results.row(name)
            matched.add(name)
            for metric, value in row["metrics"].items():
                if value is not None:
                    assert got.metrics[metric] == pytest.approx(value, abs=1e-12), (name, metric)
            assert set(got.ci) == set(row["ci"])
            for metric, interval in row["ci"].items():
                assert got.ci[metric] == pytest.approx(interval, abs=1e-12), (name, metric)
    assert matched == set(names)


def test_user_to_item_rows_equal_each_run_alone_over_the_shared_users(runs, compared):
    root, a, b, _ = runs
    comp = compared["user-to-item"]
    users = comp.es.query_ids.tolist()
    assert comp.shared["shared_users"] == len(users) > 0 and comp.shared["dropped_users"] == 1
    assert LONE not in users
    items = comp.es.candidate_ids.tolist()
    for run, wd in (("a", a), ("b", b)):
        folder = alone(root, wd, items, run) / "evaluation" / "cold-item" / "user-to-item"
        per_user = pd.read_parquet(folder / "per_query.parquet")
        assert set(users) <= set(per_user.query_id)
        assert (LONE in set(per_user.query_id)) == (run == "a")  # scored by run a alone, so left out here
        names = {r.name for r in comp.results.rows}
        # every row of the run is in the table; the raw-feature rows of b too (its histories differ from a's)
        assert {f"{run}/{n}" for n in set(per_user.row) if not n.startswith(("random", "popularity"))} <= names
        per_user = per_user[per_user.query_id.isin(users)]
        for row in comp.results.rows:
            if not row.name.startswith(f"{run}/"):
                continue
            own = per_user[per_user.row == row.name.split("/", 1)[1]]
            for metric, value in row.metrics.items():
                if "@" in metric and metric.split("@")[0] in ("P", "R", "cR", "HR", "nDCG", "MRR"):
                    m, k = metric.split("@")
                    mean = own[(own.metric == m) & (own.k == int(k))].value.mean()
                    assert value == pytest.approx(mean, abs=1e-12), (row.name, metric)


def test_pairs_equal_a_paired_bootstrap_over_the_per_query_file(runs, compared):
    root, *_ = runs
    for task, folder in (("item-to-item", root / "out"), ("user-to-item", root / "out" / "user-to-item")):
        record = json.loads((folder / "compare.json").read_text())
        df = pd.read_parquet(folder / "per_query.parquet")
        chosen = [record["runs"][0]["chosen"]["model"], record["runs"][1]["chosen"]["model"]]
        assert chosen == [f"a/{record['runs'][0]['models'][0]}", f"b/{record['runs'][1]['models'][0]}"]
        pairs = record["pairs"]
        assert [(p["a"], p["b"]) for p in pairs][:1] == [(chosen[1], chosen[0])]
        assert len(pairs) == 3 and all(p["b"].split("/", 1)[1].startswith("cosine") for p in pairs[1:])
        for p in pairs:
            metric, k = p["metric"].split("@")

            def values(row):
                return df[(df.row == row) & (df.metric == metric) & (df.k == int(k))].value.to_numpy()

            iv = paired_bootstrap(values(p["a"]), values(p["b"]), seed=0)
            assert (iv.mean, iv.low, iv.high) == pytest.approx((p["diff"], p["ci_low"], p["ci_high"]), abs=1e-12)
            assert p["beats"] == (iv.low > 0) and p["queries"] == len(values(p["a"]))
        for name in ("compare.md", "compare.csv", "per_query.csv.gz"):
            assert (folder / name).is_file()
        assert record["shared"]["shared_items"] == record["table"]["counts"]["candidates"]


def test_the_command_prints_the_table_and_takes_names_and_pairs(runs, tmp_path, capsys):
    from cinefuse.cli import main

    root, a, b, _ = runs
    models_a = sorted(p.name for p in (a / "runs").iterdir())
    models_b = sorted(p.name for p in (b / "runs").iterdir())
    argv = ["compare", str(a), str(b), "--names", "full,text", "--task", "item-to-item", "--out", str(tmp_path),
            "--pair", f"text/{models_b[0]}", f"full/{models_a[0]}", "--pair", f"full/{models_a[0]}", "random",
            "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("compare item-to-item over 2 runs (full, text): ")
    assert any(line.startswith(f"full/{models_a[0]} ") for line in lines)
    pairs = [line for line in lines if line.startswith("pair: ")]
    assert len(pairs) == 2 and pairs[0].startswith(f"pair: text/{models_b[0]} ")
    assert pairs[1].startswith(f"pair: full/{models_a[0]} ") and " random: " in pairs[1]
    record = json.loads((tmp_path / "compare.json").read_text())
    assert [(p["a"], p["b"]) for p in record["pairs"]] == [(f"text/{models_b[0]}", f"full/{models_a[0]}"),
                                                          (f"full/{models_a[0]}", "random")]
    assert not (tmp_path / "user-to-item").exists()


def test_different_ratings_or_thresholds_are_refused_in_one_line(runs, capsys):
    from cinefuse.cli import main
    from cinefuse.evaluate.compare import compare_runs

    root, a, b, _ = runs
    other = root / "ml-other"
    shutil.copytree(root / "ml", other)
    lines = (other / "ratings.csv").read_text().splitlines()
    user, movie, rating, stamp = lines[1].split(",")
    lines[1] = ",".join([user, movie, "1.0" if float(rating) >= 3 else "5.0", stamp])
    (other / "ratings.csv").write_text("\n".join(lines) + "\n")
    c = root / "c"
    shutil.copytree(b, c, ignore=shutil.ignore_patterns("evaluation", "embeddings"))
    config = json.loads((c / "config.json").read_text())
    config["data"]["ratings"] = str(other)
    (c / "config.json").write_text(json.dumps(config))
    with pytest.raises(CinefuseError) as err:
        compare_runs([a, c], progress=False)
    assert str(err.value) == (
        f"runs a and c use different ratings ({root / 'ml'}: {len(lines) - 1} ratings; {other}: {len(lines) - 1}); "
        f"compare needs runs over the same ratings")
    assert main(["compare", str(a), str(c), "--no-progress", "--out", str(root / "refused")]) != 0
    assert capsys.readouterr().err.strip().splitlines() == [f"cinefuse compare: error: {err.value}"]
    assert not (root / "refused").exists()

    d = root / "d"
    shutil.copytree(b, d, ignore=shutil.ignore_patterns("evaluation", "embeddings"))
    config = json.loads((d / "config.json").read_text())
    config["pairs"]["like_threshold"] = 3.5
    (d / "config.json").write_text(json.dumps(config))
    with pytest.raises(CinefuseError) as err:
        compare_runs([a, d], progress=False)
    assert str(err.value) == ("runs a and d use different like thresholds (4 and 3.5, pairs.like_threshold of their "
                              "config.json); compare needs the same")


def test_names_must_be_one_per_run_and_distinct(runs):
    from cinefuse.evaluate.compare import run_names

    root, a, b, _ = runs
    assert run_names([a, b]) == ["a", "b"]
    with pytest.raises(CinefuseError, match=r"^--names gives 1 names for 2 workdirs; give one per workdir$"):
        run_names([a, b], "x")
    with pytest.raises(CinefuseError, match=r"^two runs are named 'a'; pass --names with one name per workdir$"):
        run_names([a, a])
    assert np.array_equal(run_names([a, a], "x,y"), ["x", "y"])
