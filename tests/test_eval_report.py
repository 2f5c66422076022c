"""The results table (stdout, Markdown, CSV, JSON) and the plots, on hand-made results."""

from __future__ import annotations

import csv
import json

import numpy as np

from cinefuse.evaluate.results import Results, Row
from cinefuse.evaluate.report import format_markdown, format_table, plot_training_curves, write_report


def sample_results():
    def metrics(base):
        out = {}
        for m in ("P", "R", "HR", "nDCG", "MRR", "gnDCG", "Cov", "Div", "Nov"):
            for k in (1, 10):
                out[f"{m}@{k}"] = base + k / 1000
        out["Div@1"] = float("nan")
        return out

    ci = {"nDCG@10": [0.2, 0.3], "HR@10": [0.21, 0.31]}
    rows = [
        Row("concat-mlp", "model", metrics(0.25), 12.3456789, 0.5, ci=ci),
        Row("random", "random", metrics(0.01), 0.0, 0.123456, ci=ci),
        Row("popularity", "popularity", metrics(0.05), 0.0, 0.01, note="uses rating counts", ci=ci),
    ]
    verdict = {"metric": "nDCG@10", "best_model": "concat-mlp", "best_baseline": "cosine x", "model_value": 0.26,
               "baseline_value": 0.2, "diff": 0.06, "ci_low": 0.01, "ci_high": 0.11, "p_better": 0.99,
               "beats": True, "queries": 5}
    strata = {s: {r.name: {"nDCG@10": v, "HR@10": v + 0.5} for r in rows} for s, v in (("head", 0.4), ("tail", 0.1))}
    cut = {"by": "raters", "median": 3.0, "head": "raters > 3", "tail": "raters <= 3", "head_queries": 2,
           "tail_queries": 3}
    return Results("cold-item", (1, 10), rows, {"queries": 7, "candidates": 9, "queries_with_relevant": 5,
                                                "queries_without_relevant": 2, "pairs": 11}, ["a note"],
                   tie_break="random", tie_seed=5, verdict=verdict, strata=strata, strata_cut=cut)


def test_stdout_table_has_rows_metric_columns_four_decimals():
    text = format_table(sample_results())
    lines = text.splitlines()
    assert lines[0] == "protocol cold-item: 7 queries, 9 candidates, 5 queries with relevant items (11 query-user pairs)"
    assert lines[1] == "ties: broken by a seeded random candidate order (seed 5)"
    header = lines[4]
    assert [c.strip() for c in header.split("|")] == [
        "Model", "P@1", "P@10", "R@1", "R@10", "HR@1", "HR@10", "nDCG@1", "nDCG@10", "MRR@1", "MRR@10",
        "gnDCG@1", "gnDCG@10", "nDCG@10 95% CI", "HR@10 95% CI", "Train (s)", "Eval (s)"]
    model_line = [c.strip() for c in lines[6].split("|")]
    assert model_line[:3] == ["concat-mlp", "0.2510", "0.2600"]
    assert model_line[-4:] == ["[0.2000, 0.3000]", "[0.2100, 0.3100]", "12.3457", "0.5000"]
    assert lines[9] == ("verdict: best model concat-mlp beats best raw baseline cosine x by +0.0600 "
                        "[+0.0100, +0.1100] nDCG@10 (paired bootstrap over 5 queries, 95%; P(better) 0.990)")
    assert "BEYOND ACCURACY" in text
    beyond_header = [c.strip() for c in lines[12].split("|")]
    assert beyond_header[:4] == ["Model", "Cov@1", "Cov@10", "Div@1"]
    at = lines.index("BY POPULARITY STRATUM")
    assert lines[at + 1] == ("queries split at the median of raters: "
                             "head raters > 3 (2 queries), tail raters <= 3 (3 queries)")
    assert [c.strip() for c in lines[at + 2].split("|")] == ["Model", "nDCG@10 head", "HR@10 head",
                                                             "nDCG@10 tail", "HR@10 tail"]
    assert [c.strip() for c in lines[at + 4].split("|")] == ["concat-mlp", "0.4000", "0.9000", "0.1000", "0.6000"]
    losing = sample_results()
    losing.verdict = {**losing.verdict, "ci_low": -0.01, "beats": False}
    losing.tie_break = "id"
    text = format_table(losing)
    assert "verdict: best model concat-mlp does not beat best raw baseline cosine x by +0.0600 [-0.0100, +0.1100]" in text
    assert text.splitlines()[1] == "ties: broken by id order (--tie-break id, the old rule, for comparison)"
    assert "gnDCG = nDCG graded 2^r-1 (thesis)" in text
    assert "queries without relevant candidates (2) are left out" in text
    assert "note: a note" in text


def test_written_files_match(tmp_path):
    results = sample_results()
    paths = write_report(results, tmp_path / "out")
    md = paths["markdown"].read_text()
    assert md == format_markdown(results, {"intervals": "intervals.png", "bars": "metrics_at_k.png"})
    # the compact table and the verdict first, every metric after, the figures at the end
    assert md.index("## Summary\n\n| Model | nDCG@10 [95% CI] | HR@10 [95% CI] | Cov@10 | Train (s) |") \
        < md.index("**verdict: ") < md.index("## All metrics\n\n### Accuracy") < md.index("## Figures")
    assert "| concat-mlp | 0.2600 [0.2000, 0.3000] | 0.2600 [0.2100, 0.3100] | 0.2600 | 12.3457 |" in md
    assert md.endswith("![Accuracy at each K, a line per row](metrics_at_k.png)\n")
    assert sorted(paths) == ["bars", "csv", "html", "intervals", "json", "markdown"]
    assert "| concat-mlp | 0.2510 | 0.2600 |" in md
    assert "ties: broken by a seeded random candidate order (seed 5)." in md
    assert "**verdict: best model concat-mlp beats best raw baseline cosine x by +0.0600" in md
    assert "## By popularity stratum" in md and "| concat-mlp | 0.4000 | 0.9000 | 0.1000 | 0.6000 |" in md
    assert "- popularity: uses rating counts" in md
    with open(paths["csv"]) as handle:
        table = list(csv.DictReader(handle))
    assert [r["model"] for r in table] == ["concat-mlp", "random", "popularity"]
    assert table[1]["eval_seconds"] == "0.1235" and table[0]["Div@1"] == "-"
    data = json.loads(paths["json"].read_text())
    assert data["rows"][0]["metrics"]["nDCG@10"] == 0.26
    assert data["ks"] == [1, 10]
    assert (data["tie_break"], data["tie_seed"]) == ("random", 5)
    assert data["rows"][0]["ci"] == {"nDCG@10": [0.2, 0.3], "HR@10": [0.21, 0.31]}
    assert "per_query" not in data["rows"][0]
    assert data["verdict"]["diff"] == 0.06 and data["strata"]["tail"]["random"]["HR@10"] == 0.6
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
