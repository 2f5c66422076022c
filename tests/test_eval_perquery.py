"""evaluate saves every row's per-query values (per_query.parquet and its CSV twin) beside
results.json, in both tasks: the mean over a file's queries is the table's figure for every row,
metric and K; the query ids are the real item and user ids; the intervals and the paired verdict
recomputed from the file are the ones results.json holds."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cinefuse.metrics.bootstrap import bootstrap_interval, paired_bootstrap


def train_small(root, name, modalities="full", seed=0, steps=50, prior=False):
    """A run trained by run_fuse on the catalogue of test_eval_workdir (4 planted genre groups)."""
    from cinefuse.fuse.train import run_fuse

    config = {
        "data": {"store": str(root / "store"), "ratings": str(root / "ml"), "movies": str(root / "ml"),
                 "modality_sets": {"text": ["text/minilm"], "meta": ["meta/year"]}},
        "model": {"modalities": modalities, "token_dim": 16, "hidden": 32, "embed_dim": 8},
        "train": {"steps": steps, "steps_per_call": steps, "eval_every": steps, "checkpoint_every": steps,
                  "batch_size": 32, "patience": 0, "seed": seed},
        "objective": {"kind": "thesis", "prior": prior},
    }
    run_fuse(config, root / name, log=lambda msg: None)
    return root / name


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from test_eval_workdir import write_catalogue

    from cinefuse.evaluate.run import evaluate_runs, write_all

    root = tmp_path_factory.mktemp("perquery")
    write_catalogue(root)
    wd = train_small(root, "wd", prior=True)  # a prior head: its +prior rows and fused/<model>.prior too
    evs = evaluate_runs(wd, progress=False, tasks=["item-to-item", "user-to-item"])
    write_all(evs)
    return wd, evs


def read_both(folder):
    parquet = pd.read_parquet(folder / "per_query.parquet")
    csv = pd.read_csv(folder / "per_query.csv.gz", dtype={"query_id": str})
    return parquet, csv


@pytest.mark.parametrize("task", ["item-to-item", "user-to-item"])
def test_file_means_are_the_tables_figures_and_ids_are_real(evaluated, task):
    wd, evs = evaluated
    ev = evs[task]
    folder = wd / "evaluation" / "cold-item" / ("" if task == "item-to-item" else task)
    df, csv = read_both(folder)
    assert list(df.columns) == ["task", "row", "kind", "query_id", "metric", "k", "value"]
    assert set(df.task) == {task}
    assert ev.results.outputs["per_query"] == str(folder / "per_query.parquet")
    # the CSV twin holds the same lines, values bit for bit
    assert df.astype({"task": object, "row": object, "kind": object, "query_id": object, "metric": object}).equals(
        csv.astype({"task": object, "row": object, "kind": object, "query_id": object, "metric": object}))
    split = json.loads((wd / "split.json").read_text())
    ratings = pd.read_csv(wd.parent / "ml" / "ratings.csv")
    real = set(split["test"]) if task == "item-to-item" else set(ratings.userId.astype(str))
    assert set(df.query_id) <= real
    checked = 0
    for row in ev.results.rows:
        mine = df[df.row == row.name]
        assert set(mine.kind) == {row.kind}
        scored = row.per_query.scored
        for name in row.per_query.values:
            metric, _, k = name.partition("@")
            part = mine[(mine.metric == metric) & (mine.k == int(k))]
            # the queries averaged, in the table's order, and their mean is the table's figure
            assert part.query_id.tolist() == ev.es.query_ids[scored].tolist()
            assert abs(part.value.mean() - row.metrics[name]) <= 1e-12, (row.name, name)
            checked += 1
    assert checked == len(ev.results.rows) * len(ev.results.rows[0].per_query.values)
    if task == "item-to-item":  # queries without a relevant candidate are not averaged, nor in the file
        assert df.query_id.nunique() == ev.results.counts["queries_with_relevant"] < ev.results.counts["queries"]
    else:
        assert df.query_id.nunique() == ev.results.counts["users"]


@pytest.mark.parametrize("task", ["item-to-item", "user-to-item"])
def test_intervals_and_the_paired_verdict_recomputed_from_the_file(evaluated, task):
    wd, evs = evaluated
    out = wd / "evaluation" / "cold-item"
    record = json.loads((out / "results.json").read_text())
    record = record if task == "item-to-item" else record["user-to-item"]
    df = pd.read_parquet(out / ("per_query.parquet" if task == "item-to-item" else f"{task}/per_query.parquet"))

    def values(row, metric_at_k):
        metric, _, k = metric_at_k.partition("@")
        return df[(df.row == row) & (df.metric == metric) & (df.k == int(k))].value.to_numpy()

    for row in record["rows"]:
        for metric, (low, high) in row["ci"].items():
            iv = bootstrap_interval(values(row["name"], metric), seed=record["bootstrap"]["seed"])
            assert (iv.low, iv.high) == pytest.approx((low, high), abs=1e-12)
    v = record["verdict"]
    assert v["seeds"] == 1 and v["interval"] == "paired bootstrap over queries"
    iv = paired_bootstrap(values(v["best_model"], v["metric"]), values(v["best_baseline"], v["metric"]),
                          seed=record["bootstrap"]["seed"])
    assert (iv.mean, iv.low, iv.high, iv.share_above_zero) == pytest.approx(
        (v["diff"], v["ci_low"], v["ci_high"], v["p_better"]), abs=1e-12)


def test_past_the_csv_limit_the_parquet_file_alone_and_a_note(evaluated, tmp_path, monkeypatch):
    from cinefuse.evaluate import perquery

    wd, evs = evaluated
    ev = evs["item-to-item"]
    (tmp_path / "per_query.csv.gz").write_bytes(b"an older twin")
    lines = len(pd.read_parquet(wd / "evaluation" / "cold-item" / "per_query.parquet"))
    monkeypatch.setattr(perquery, "CSV_MAX_LINES", lines - 1)
    notes = list(ev.results.notes)
    try:
        paths = perquery.write_per_query(ev.results, ev.es, tmp_path)
        assert ev.results.notes[len(notes):] == [
            f"per-query values: {lines:,} lines, in per_query.parquet only (the CSV twin is written up to "
            f"{lines - 1:,} lines)"]
    finally:
        ev.results.notes[:] = notes
    assert set(paths) == {"per_query"} and sorted(p.name for p in tmp_path.iterdir()) == ["per_query.parquet"]
    assert len(pd.read_parquet(paths["per_query"])) == lines


def test_the_prior_rows_are_reproducible_from_the_fused_store_alone(evaluated):
    """W/embeddings holds fused/<model>.prior beside fused/<model>, with the weight each task
    chose: ranking with only those arrays gives the +prior row's figures exactly."""
    import numpy as np

    from cinefuse.evaluate.rows import score_row
    from cinefuse.store import open_store

    wd, evs = evaluated
    store = open_store(wd / "embeddings")
    (model,) = evs["item-to-item"].models
    emb, prior = store.load_feature_set(f"fused/{model}"), store.load_feature_set(f"fused/{model}.prior")
    assert prior.data.shape == (len(emb.ids), 1) and list(prior.ids) == list(emb.ids)
    m = evs["item-to-item"].models[model]
    position = {i: n for n, i in enumerate(m.ids.tolist())}
    order = [position[i] for i in emb.ids.tolist()]
    np.testing.assert_array_equal(prior.data[:, 0], m.prior[order])
    for task, ev in evs.items():
        weight = prior.attrs[f"prior_weight_{task.replace('-', '_')}"]
        assert weight == ev.results.validation[model]["weight"] is not None
        k = max(ev.results.ks)
        topk = ev.task.rank(ev.es, emb.ids, emb.data, k, prior=prior.data[:, 0], weight=weight)
        row = score_row(f"{model}+prior", "model", topk, ev.es, ev.results.ks, None, 0.0, task=ev.task)
        np.testing.assert_equal(row.metrics, ev.results.row(f"{model}+prior").metrics)  # NaN (Div@1) equal too
