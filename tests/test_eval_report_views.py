"""The views a person reads (issue 23): the compact table printed by ``cinefuse evaluate``, the
self-contained ``results.html`` and the figures, on a realistic user-to-item table of 21 rows
(grid models, their +prior rows, seeds, every baseline), checked against ``results.json``."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from cinefuse.evaluate.plots import lines_shown, plot_intervals, row_colours
from cinefuse.evaluate.report import format_compact, format_table, verdict_line, write_report
from cinefuse.evaluate.results import Results, Row
from cinefuse.metrics.metrics import BEYOND_METRICS
from cinefuse.metrics.user_metrics import USER_ACCURACY_METRICS, USER_METRIC_LABELS

PNG = b"\x89PNG\r\n\x1a\n"
KS = (1, 3, 5, 10, 20, 50, 100)
MODELS = ["triplet-cosine-full-concat-mlp", "triplet-cosine-full-concat-mlp+prior",
          "triplet-cosine-text+meta-concat-mlp", "triplet-cosine-visual+audio-concat-mlp",
          "distill-full-concat-mlp", "distill-full-concat-mlp+prior", "distill-full-gated-mlp",
          "co-like-triplet-cosine-full-concat-mlp", "triplet-cosine-text+meta-gated-mlp",
          "distill-full-concat-mlp@seed1", "distill-full-concat-mlp@seed2", "triplet-cosine-full-gated-mlp",
          "triplet-cosine-text-concat-mlp", "triplet-cosine-meta-concat-mlp"]
BASELINES = [("random", "random"), ("popularity (oracle)", "popularity"),
             ("cosine text/minilm", "itemknn-cbf"), ("cosine visual/mmtf-aesthetic", "itemknn-cbf"),
             ("cosine audio/mmtf-ivector", "itemknn-cbf"), ("cosine meta/genres", "itemknn-cbf"),
             ("cosine all concatenated", "itemknn-cbf")]


def realistic_results() -> Results:
    """21 rows of a user-to-item table with seeded values and intervals around them."""
    rng = np.random.default_rng(7)
    rows = []
    for name, kind in [(m, "model") for m in MODELS] + BASELINES:
        base = rng.uniform(0.02, 0.2)
        metrics = {f"{m}@{k}": float(base * (1 + 0.3 * np.log(k)) * rng.uniform(0.8, 1.2))
                   for m in USER_ACCURACY_METRICS + BEYOND_METRICS for k in KS}
        ci = {m: [metrics[m] - rng.uniform(0.005, 0.03), metrics[m] + rng.uniform(0.005, 0.03)]
              for m in ("R@20", "nDCG@10")}
        train = float(rng.uniform(10, 900)) if kind == "model" else None
        rows.append(Row(name, kind, metrics, train, float(rng.uniform(0.1, 3)), ci=ci))
    best_model = max(rows[:len(MODELS)], key=lambda r: r.metrics["R@20"]).name
    verdict = {"metric": "R@20", "best_model": best_model, "best_baseline": "cosine text/minilm",
               "model_value": 0.3, "baseline_value": 0.2, "diff": 0.1, "ci_low": 0.05, "ci_high": 0.15,
               "p_better": 1.0, "beats": True, "queries": 600}
    results = Results("cold-item", KS, rows, {"users": 600, "candidates": 970, "relevant_pairs": 5000},
                      ["fused embeddings written to W/embeddings"], verdict=verdict, task="user-to-item",
                      metric_names=USER_ACCURACY_METRICS,
                      bootstrap={"level": 0.95, "resamples": 1000, "seed": 0})
    results.labels.update(USER_METRIC_LABELS)
    return results


def table_rows(text: str, title: str) -> list[list[str]]:
    """The cells of the text table under ``title`` (header first, the rule left out)."""
    lines = text.splitlines()
    at = lines.index(title) + 1
    out = []
    for line in lines[at:]:
        if set(line) <= set("-+ ") and line:
            continue
        if "|" not in line:
            break
        out.append([c.strip() for c in line.split(" | ")])
    return out


def formatted(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def with_ci(value, ci) -> str:
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"


def expected_compact(data: dict) -> list[list[str]]:
    """The compact table rebuilt from results.json alone."""
    body = [["Model", "nDCG@10 [95% CI]", "HR@10", "R@20 [95% CI]", "Cov@10", "Train (s)"]]
    for r in data["rows"]:
        m = r["metrics"]
        body.append([r["name"], with_ci(m["nDCG@10"], r["ci"]["nDCG@10"]), formatted(m["HR@10"]),
                     with_ci(m["R@20"], r["ci"]["R@20"]), formatted(m["Cov@10"]), formatted(r["train_seconds"])])
    return body


def test_compact_table_holds_the_headline_of_results_json_within_120_characters(tmp_path):
    results = realistic_results()
    write_report(results, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    text = format_compact(results)
    title = next(line for line in text.splitlines() if line.startswith("ACCURACY"))
    assert table_rows(text, title) == expected_compact(data)
    lines = text.splitlines()
    table = lines[lines.index(title) + 1: lines.index(title) + 2 + 1 + len(results.rows)]
    # names up to 38 characters (co-like-triplet-cosine-full-concat-mlp) fit in 120; a longer one
    # widens the table by its extra characters
    assert max(len(line) for line in table) == 38 + 82 == 120
    results.rows[0].name = "co-like-triplet-cosine-full-concat-mlp+prior"
    assert max(len(line) for line in format_compact(results).splitlines()[4:8]) == 44 + 82
    assert "P@1" not in text and "BEYOND ACCURACY" not in text  # every metric is --full's
    assert lines[lines.index(title) + len(results.rows) + 3] == verdict_line(results.verdict)
    assert ("nDCG@10 = nDCG (binary), HR@10 = HitRate, R@20 = Recall, Cov@10 = catalogue coverage; "
            "Train (s) = training seconds (- where nothing is trained); [95% CI]: percentile bootstrap over users "
            "(1000 resamples, seed 0).") in lines
    full = format_table(results)
    assert "BEYOND ACCURACY" in full and "cR@100" in full


def test_compact_table_of_item_to_item_at_k_5_and_without_intervals():
    results = realistic_results()
    results.task, results.ks, results.verdict = "item-to-item", (1, 5), None
    for row in results.rows:
        row.ci = {}
    text = format_compact(results)
    header = table_rows(text, next(x for x in text.splitlines() if x.startswith("ACCURACY")))[0]
    assert header == ["Model", "nDCG@5", "HR@5", "Cov@5", "Train (s)"]


class Page(HTMLParser):
    """Every tag's attributes, the text of every table cell by table, the images' sources."""

    def __init__(self):
        super().__init__()
        self.attrs, self.tables, self.cell, self.headings = [], [], None, []
        self.in_heading = False

    def handle_starttag(self, tag, attrs):
        self.attrs.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""
        self.in_heading = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.in_heading:
            self.headings.append(data)
            self.in_heading = False


def test_html_report_is_self_contained_and_its_cells_are_results_json(tmp_path):
    import matplotlib.image

    results = realistic_results()
    paths = write_report(results, tmp_path)
    data = json.loads(paths["json"].read_text())
    page = Page()
    page.feed(paths["html"].read_text())
    images = [a["src"] for tag, a in page.attrs if tag == "img"]
    assert len(images) == 2  # intervals.png, metrics_at_k.png (no workdir: no training curves)
    for src, name in zip(images, ("intervals.png", "metrics_at_k.png")):
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
        assert raw.startswith(PNG) and raw == (tmp_path / name).read_bytes()
        height, width, _ = matplotlib.image.imread(io.BytesIO(raw), format="png").shape
        assert height > 200 and width > 300
    links = [(tag, key, value) for tag, a in page.attrs for key, value in a.items() if key in ("src", "href")]
    assert all(key == "src" and value.startswith("data:") for _, key, value in links), links
    assert not [tag for tag, _ in page.attrs if tag in ("script", "link", "iframe")]
    compact, accuracy, beyond = page.tables[:3]
    assert compact == expected_compact(data)
    columns = [f"{m}@{k}" for m in USER_ACCURACY_METRICS for k in KS]
    assert accuracy[0] == ["Model", *columns, "R@20 95% CI", "nDCG@10 95% CI", "Train (s)", "Eval (s)"]
    for cells, r in zip(accuracy[1:], data["rows"], strict=True):
        assert cells == ([r["name"]] + [formatted(r["metrics"][c]) for c in columns]
                         + [f"[{lo:.4f}, {hi:.4f}]" for lo, hi in (r["ci"]["R@20"], r["ci"]["nDCG@10"])]
                         + [formatted(r["train_seconds"]), formatted(r["eval_seconds"])])
    assert [row[0] for row in beyond[1:]] == [r["name"] for r in data["rows"]]
    assert page.headings[:4] == ["Evaluation: cold-item protocol, user-to-item task", "Summary", "All metrics",
                                 "Accuracy"]
    text = paths["html"].read_text()
    assert "<strong>verdict: model" not in text  # no chosen_on: "best model"
    assert f"<strong>verdict: best model {data['verdict']['best_model']} beats" in text
    assert "<li>fused embeddings written to W/embeddings</li>" in text
    assert ("<p>task user-to-item, protocol cold-item: 600 users (each ranks the 970 cold candidates from their "
            "liked training items), 5000 liked (user, candidate) pairs; ties: broken by a seeded random candidate "
            "order (seed 0).</p>") in text


def test_html_escapes_row_names(tmp_path):
    results = realistic_results()
    results.rows[0].name = "<script>alert(1)</script>&"
    paths = write_report(results, tmp_path)
    text = paths["html"].read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;" in text


def test_metrics_at_k_draws_the_best_models_and_every_baseline_in_distinct_colours():
    results = realistic_results()
    shown, left_out = lines_shown(results, max_models=10)
    models = sorted((r for r in results.rows if r.kind == "model"), key=lambda r: -r.metrics["R@20"])
    assert [r.name for r in shown if r.kind == "model"] == [r.name for r in models[:10]]
    assert {r.name for r in shown if r.kind != "model"} == {name for name, _ in BASELINES}
    assert left_out == len(MODELS) - 10
    for n in (3, 10, 17, 20, 21, 40):
        assert len(set(row_colours(n))) == n


def test_interval_plot_needs_a_headline_metric(tmp_path):
    results = realistic_results()
    assert plot_intervals(results, tmp_path / "i.png") and (tmp_path / "i.png").read_bytes()[:8] == PNG
    results.rows = []
    assert not plot_intervals(results, tmp_path / "none.png") and not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("bad", ["missing", "not-png"])
def test_a_figure_that_is_not_a_png_is_a_one_line_error(tmp_path, bad):
    from cinefuse.errors import CinefuseError
    from cinefuse.evaluate.html import render_html

    if bad == "not-png":
        (tmp_path / "x.png").write_text("<html>")
    with pytest.raises(CinefuseError, match=r"^cannot inline figure .*x\.png: "):
        render_html("t", [("figure", "x.png", "caption")], tmp_path)


def validation_lines(steps) -> list[dict]:
    """metrics.jsonl records as training writes them: the batch's measures, val_record's, seconds."""
    from cinefuse.fuse.train import val_record

    out = []
    for i, step in enumerate(steps):
        val = {"ndcg10": 0.1 + i / 100, "hr10": 0.3, "u2i_recall20": 0.2 + i / 50, "u2i_ndcg10": 0.1,
               "auc": 0.6 + i / 100, "d_pos": 0.3, "d_neg": 0.7}
        out.append({"step": step, "loss": 1.0 / (i + 1), "d_pos": 0.4, "d_neg": 0.9, "grad_norm": 2.0,
                    **val_record(val), "seconds": 1.5 * i})
    return out


def closed_figures(monkeypatch) -> list:
    """The figures pyplot closes (each after it was saved), to read their axes."""
    import matplotlib.pyplot as plt

    seen = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (seen.append(fig), close(fig)))
    return seen


def test_run_curves_label_their_axes_and_mark_every_validation(tmp_path, monkeypatch):
    from cinefuse.fuse.plots import plot_run

    figures = closed_figures(monkeypatch)
    lines = validation_lines([50, 100, 150, 200, 250])
    plot_run(tmp_path, lines, {})   # no validation pairs: curves.png only
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG and not (tmp_path / "distances.png").exists()
    (fig,) = figures
    loss, val = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["training loss", "validation measures (higher is better)"]
    assert loss.get_ylabel() == "loss (the objective; lower is better)"
    assert {ax.get_xlabel() for ax in fig.axes} == {"training step (a marker per validation)"}
    assert [line.get_label() for line in val.lines] == ["nDCG@10, item-to-item", "Recall@20, user-to-item",
                                                        "genre-pair AUC"]
    for ax, key in ((loss, "loss"), (val, "val_ndcg10")):
        line = ax.lines[0]
        assert line.get_marker() != "None"
        assert list(line.get_xdata()) == [50, 100, 150, 200, 250]
        assert list(line.get_ydata()) == [x[key] for x in lines]


def test_evaluation_training_curves_title_and_label_every_logged_series(tmp_path, monkeypatch):
    from cinefuse.evaluate.plots import plot_training_curves
    from cinefuse.fuse.plots import CURVE_LABELS

    for i, model in enumerate(("m1", "m2")):
        run = tmp_path / "runs" / model
        run.mkdir(parents=True)
        records = validation_lines(range(10, 40 + i * 10, 10))
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in records))
    assert set(validation_lines([1])[0]) - {"step", "seconds"} <= set(CURVE_LABELS)  # every series training logs
    figures = closed_figures(monkeypatch)
    assert plot_training_curves(tmp_path, ["m1", "m2", "m1+prior"], tmp_path / "curves.png", max_panels=6)
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG
    (fig,) = figures
    drawn = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in drawn] == [CURVE_LABELS[k][0] for k in list(CURVE_LABELS)[:6]]
    assert [ax.get_ylabel() for ax in drawn] == [CURVE_LABELS[k][1] for k in list(CURVE_LABELS)[:6]]
    for ax in drawn:
        m1, m2 = ax.lines
        assert (list(m1.get_xdata()), list(m2.get_xdata())) == ([10, 20, 30], [10, 20, 30, 40])
        assert m1.get_marker() != m2.get_marker() and m1.get_color() != m2.get_color()
