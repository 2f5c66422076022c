"""evaluate/results.py: the row and table types and their JSON form."""

from __future__ import annotations

import json

import numpy as np

from cinefuse.evaluate.results import Results, Row, finite_or_none, verdict_k
from cinefuse.metrics.metrics import PerQuery


def test_json_holds_every_row_field_but_the_in_memory_ones_and_nan_is_null():
    pq = PerQuery({"nDCG@10": np.array([0.5, 0.0])}, np.array([True, False]))
    row = Row("m", "model", {"nDCG@10": 0.5, "Div@1": float("nan")}, 1.5, 0.25, note="n",
              ci={"nDCG@10": [0.1, 0.9]}, per_query=pq, modalities="text+meta", objective="distill")
    record = Results("cold-item", (1, 10), [row]).to_json()
    assert record["rows"] == [{"name": "m", "kind": "model", "metrics": {"nDCG@10": 0.5, "Div@1": None},
                               "train_seconds": 1.5, "eval_seconds": 0.25, "note": "n",
                               "ci": {"nDCG@10": [0.1, 0.9]}}]
    assert list(record) == ["protocol", "ks", "tie_break", "tie_seed", "counts", "notes", "labels", "rows",
                            "verdict", "strata", "strata_cut", "bootstrap"]
    json.dumps(record, allow_nan=False)  # strict JSON


def test_finite_or_none_and_verdict_k():
    assert finite_or_none({"a": [1.0, float("inf"), (float("nan"), 2)]}) == {"a": [1.0, None, [None, 2]]}
    assert verdict_k((1, 5, 10, 20)) == 10 and verdict_k((1, 5)) == 5


def test_row_lookup_by_name():
    rows = [Row("a", "random", {}, None, 0.0), Row("b", "model", {}, 1.0, 0.0)]
    results = Results("thesis", (10,), rows)
    assert results.row("b") is rows[1]
    try:
        results.row("c")
    except KeyError as exc:
        assert exc.args == ("c",)
    else:
        raise AssertionError("no KeyError")
