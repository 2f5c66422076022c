"""The demo's headline lines: each modality set's model is the one validation chose, the best
test row shown beside it labelled "chosen on test", and the evaluate table's verdict line."""

from __future__ import annotations

import numpy as np

from cinefuse.demo.pipeline import DemoConfig, best_per_modality_set
from cinefuse.demo.report import best_set_line, headline_line
from cinefuse.evaluate.results import Results, Row
from cinefuse.metrics.metrics import PerQuery


def row(name, modalities, value):
    v = np.full(20, value)
    r = Row(name, "model", {"nDCG@10": value}, None, 0.0, per_query=PerQuery({"nDCG@10": v}, np.ones(20, bool)))
    r.modalities = modalities
    return r


def test_each_modality_set_names_the_validation_winner_and_shows_the_test_winner_apart():
    config = DemoConfig()
    config.fuse = {**config.fuse, "grid": {"modalities": ["text", "full"]}}
    rows = [row("a-text", "text", 0.5), row("a-text+prior", "text", 0.6), row("b-text", "text", 0.4),
            row("a-full", "full", 0.7)]
    results = Results("cold-item", (10,), rows)
    results.validation = {"a-text": {"plain": 0.1, "prior": 0.12}, "b-text": {"plain": 0.3, "prior": None}}
    best = best_per_modality_set(results, config, "nDCG@10")
    assert best["text"]["model"] == "b-text" and best["text"]["chosen_on"] == "validation"
    assert best["text"]["best_on_test"] == {"model": "a-text+prior", "nDCG@10": 0.6}
    assert best["full"]["model"] == "a-full" and best["full"]["chosen_on"] == "test"  # no validation value
    assert best_set_line("text", best["text"], "nDCG@10") == "| text | b-text | 0.4000 | a-text+prior | 0.6000 |"
    assert "(no validation value)" in best_set_line("full", best["full"], "nDCG@10")
    verdict = {"evaluate_verdict": {"metric": "nDCG@10", "best_model": "b-text", "best_baseline": "cosine x",
                                    "model_value": 0.4, "baseline_value": 0.3, "diff": 0.1, "ci_low": 0.05,
                                    "ci_high": 0.15, "p_better": 0.99, "beats": True, "queries": 20,
                                    "chosen_on": "validation", "seeds": 1,
                                    "coverage10": {"model": 0.15, "baseline": 0.98},
                                    "best_on_test": {"model": "a-full", "value": 0.7}}}
    line = headline_line(verdict)
    assert line.startswith("Headline of the evaluate table: model chosen on validation b-text beats")
    assert "coverage@10 15.0% vs 98.0%" in line and "best test row a-full 0.7000 (chosen on test)" in line
