"""The results table (stdout, Markdown, CSV, JSON) and the plots, on hand-made results."""

from __future__ import annotations

import csv
import json

import numpy as np

from cinefuse.evaluate.score import Results, Row
from cinefuse.evaluate.report import format_markdown, format_table, plot_training_curves, write_report


def sample_results():
    def metrics(base):
        out = {}
        for m in ("P", "R", "HR", "nDCG", "MRR", "gnDCG", "Cov", "Div", "Nov"):
            for k in (1, 10):
                out[f"{m}@{k}"] = base + k / 1000
        out["Div@1"] = float("nan")
        return out

    rows = [
        Row("concat-mlp", "model", metrics(0.25), 12.3456789, 0.5),
        Row("random", "random", metrics(0.01), 0.0, 0.123456),
        Row("popularity", "popularity", metrics(0.05), 0.0, 0.01, note="uses rating counts"),
    ]
    return Results("cold-item", (1, 10), rows, {"queries": 7, "candidates": 9, "queries_with_relevant": 5,
                                                "queries_without_relevant": 2, "pairs": 11}, ["a note"])


def test_stdout_table_has_rows_metric_columns_four_decimals():
    text = format_table(sample_results())
    lines = text.splitlines()
    assert lines[0] == "protocol cold-item: 7 queries, 9 candidates, 5 queries with relevant items (11 query-user pairs)"
    header = lines[3]
    assert [c.strip() for c in header.split("|")] == [
        "Model", "P@1", "P@10", "R@1", "R@10", "HR@1", "HR@10", "nDCG@1", "nDCG@10", "MRR@1", "MRR@10",
        "gnDCG@1", "gnDCG@10", "Train (s)", "Eval (s)"]
    model_line = [c.strip() for c in lines[5].split("|")]
    assert model_line[:3] == ["concat-mlp", "0.2510", "0.2600"]
    assert model_line[-2:] == ["12.3457", "0.5000"]
    assert "BEYOND ACCURACY" in text
    beyond_header = [c.strip() for c in text.splitlines()[10].split("|")]
    assert beyond_header[:4] == ["Model", "Cov@1", "Cov@10", "Div@1"]
    assert "gnDCG = nDCG graded 2^r-1 (thesis)" in text
    assert "queries without relevant candidates (2) are left out" in text
    assert "note: a note" in text


def test_written_files_match(tmp_path):
    results = sample_results()
    paths = write_report(results, tmp_path / "out")
    md = paths["markdown"].read_text()
    assert md == format_markdown(results)
    assert "| concat-mlp | 0.2510 | 0.2600 |" in md
    assert "- popularity: uses rating counts" in md
    with open(paths["csv"]) as handle:
        table = list(csv.DictReader(handle))
    assert [r["model"] for r in table] == ["concat-mlp", "random", "popularity"]
    assert table[1]["eval_seconds"] == "0.1235" and table[0]["Div@1"] == "-"
    data = json.loads(paths["json"].read_text())
    assert data["rows"][0]["metrics"]["nDCG@10"] == 0.26
    assert data["ks"] == [1, 10]
    assert paths["bars"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_curves_from_metrics_jsonl(tmp_path):
    run = tmp_path / "runs" / "m1"
    run.mkdir(parents=True)
    lines = [json.dumps({"step": s, "loss": 1.0 / (s + 1), "val_loss": 2.0 / (s + 1), "phase": "train"}) for s in range(5)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"step\": 9, \"los")  # last line cut by a kill
    out = tmp_path / "curves.png"
    assert plot_training_curves(tmp_path, ["m1", "absent"], out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert not plot_training_curves(tmp_path, ["absent"], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
