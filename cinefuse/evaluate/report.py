"""Results tables of one evaluation, Cornac style: rows are models and baselines, columns are
metric@K plus train and eval seconds, four decimals.

Two views of the same rows. The compact table (:func:`compact_cells`: nDCG and HitRate at 10,
the task's verdict metric such as Recall@20, their 95% intervals, coverage@10 and train seconds)
is what ``cinefuse evaluate`` prints (:func:`format_compact`) and what ``results.md`` opens
with; the full table (:func:`format_table`, ``--full``) holds every metric at every K, the
beyond-accuracy block, the seeds and the strata. ``write_report`` writes both as Markdown
(``results.md``) and as one self-contained page (``results.html``, every figure inline), the
full table as CSV (``results.csv``) and JSON (``results.json``), and the figures of
``evaluate.plots``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from cinefuse.atomic import atomic_write
from cinefuse.evaluate.html import render_html
from cinefuse.evaluate.plots import plot_intervals, plot_metrics_at_k, plot_training_curves
from cinefuse.evaluate.results import headline_k, headline_metrics
from cinefuse.metrics.metrics import ACCURACY_METRICS, BEYOND_METRICS, METRIC_LABELS

TIME_COLUMNS = ("Train (s)", "Eval (s)")


def metric_columns(ks, metrics=ACCURACY_METRICS) -> list[str]:
    return [f"{m}@{k}" for m in metrics for k in ks]


def fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


def ci_columns(results) -> list[str]:
    """The metrics that carry a 95% interval (the same on every row)."""
    names: list[str] = []
    for row in results.rows:
        names += [m for m in getattr(row, "ci", {}) if m not in names]
    return names


def fmt_ci(ci) -> str:
    return "-" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def table_cells(results, metrics, with_ci: bool = False) -> tuple[list[str], list[list[str]]]:
    intervals = ci_columns(results) if with_ci else []
    header = ["Model"] + metric_columns(results.ks, metrics) + [f"{m} 95% CI" for m in intervals] + list(TIME_COLUMNS)
    body = []
    for row in results.rows:
        cells = [row.name] + [fmt(row.metrics.get(c)) for c in metric_columns(results.ks, metrics)]
        cells += [fmt_ci(row.ci.get(m)) for m in intervals]
        cells += [fmt(row.train_seconds), fmt(row.eval_seconds)]
        body.append(cells)
    return header, body


def verdict_line(verdict: dict | None) -> str:
    """The verdict under the table: does the model validation chose beat the best raw baseline?
    With the coverage@10 of both sides and the best test row, labelled "chosen on test"."""
    if verdict is None:
        return "verdict: none (needs a trained model and a raw-feature baseline)"
    v = verdict
    word = "beats" if v["beats"] else "does not beat"
    on = v.get("chosen_on", "test")
    who = f"model chosen on {on}" if "chosen_on" in v else "best model"
    several = v.get("seeds", 1) > 1
    seeds = f", mean of {v['seeds']} seeds" if several else ""
    over = (f"paired bootstrap over {v['seeds']} seeds, then {v['queries']} queries" if several
            else f"paired bootstrap over {v['queries']} queries")
    line = (f"verdict: {who} {v['best_model']}{seeds} {word} best raw baseline {v['best_baseline']} "
            f"by {v['diff']:+.4f} [{v['ci_low']:+.4f}, {v['ci_high']:+.4f}] {v['metric']} "
            f"({over}, 95%; P(better) {v['p_better']:.3f})")
    cov = v.get("coverage10") or {}
    if cov.get("model") is not None and cov.get("baseline") is not None:
        line += f"; coverage@10 {cov['model']:.1%} vs {cov['baseline']:.1%}"
    best = v.get("best_on_test")
    if best and on == "validation":
        line += f"; best test row {best['model']} {best['value']:.4f} (chosen on test)"
    return line


def tie_line(results) -> str:
    if getattr(results, "tie_break", "random") == "id":
        return "ties: broken by id order (--tie-break id, the old rule, for comparison)"
    return f"ties: broken by a seeded random candidate order (seed {results.tie_seed})"


def strata_cells(results) -> tuple[list[str], list[list[str]]] | None:
    """Rows x strata (item-to-item: head, tail) at the interval metrics (user-to-item: each
    stratum's own metrics, Recall for the item strata)."""
    if not results.strata:
        return None
    metrics = ci_columns(results) or [f"nDCG@{max(results.ks)}", f"HR@{max(results.ks)}"]
    cols = []
    for s in results.strata:
        held = set().union(*(set(v) for v in results.strata[s].values())) if results.strata[s] else set()
        cols += [(s, m) for m in (metrics if set(metrics) <= held else sorted(held, key=metric_order))]
    header = ["Model"] + [f"{m} {s}" for s, m in cols]
    body = [[row.name] + [fmt(results.strata[s].get(row.name, {}).get(m)) for s, m in cols] for row in results.rows]
    return header, body


def metric_order(name: str):
    metric, _, k = name.partition("@")
    return (int(k) if k.isdigit() else 0, metric)


def strata_line(results) -> str:
    c = results.strata_cut
    if "lines" in c:
        return "; ".join(c["lines"])
    return (f"queries split at the median of {c['by']}: "
            f"head {c['head']} ({c['head_queries']} queries), tail {c['tail']} ({c['tail_queries']} queries)")


SEEDS_LINE = ("each model's mean over its seeds, the spread (min, max, sd) and a 95% percentile bootstrap "
              "that resamples seeds, then queries")


def seed_cells(results) -> tuple[list[str], list[list[str]]] | None:
    """Model groups x (seeds, validation, mean, min, max, sd, 95% CI over seeds and queries)."""
    groups = getattr(results, "seed_groups", None)
    if not groups:
        return None
    metric = next(iter(groups.values()))["metric"]
    header = ["Model", "seeds", "validation", f"{metric} mean", "min", "max", "sd", "95% CI (seeds, queries)"]
    body = [[g, str(v["seeds"]), fmt(v["validation"]), fmt(v["value"]), fmt(v["min"]), fmt(v["max"]), fmt(v["sd"]),
             fmt_ci(v.get("ci"))] for g, v in groups.items()]
    return header, body


def task_words(results) -> str:
    task = getattr(results, "task", "item-to-item")
    return "" if task == "item-to-item" else f", {task} task"


def accuracy_names(results) -> tuple[str, ...]:
    return tuple(getattr(results, "metric_names", ACCURACY_METRICS))


def text_table(header, body) -> str:
    """Aligned plain-text columns: the first left-aligned, the rest right-aligned, a rule below the header."""
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    def line(cells):
        first = cells[0].ljust(widths[0])
        return " | ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])
    rule = " + ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in body])


def head_line(results) -> str:
    """The first line: the protocol (and task) and how many queries or users were scored."""
    c = results.counts
    if getattr(results, "task", "item-to-item") != "item-to-item":
        return (f"task {results.task}, protocol {results.protocol}: {c.get('users', 0)} users (each ranks the "
                f"{c.get('candidates', 0)} cold candidates from their liked training items), "
                f"{c.get('relevant_pairs', 0)} liked (user, candidate) pairs")
    return (
        f"protocol {results.protocol}: {c.get('queries', 0)} queries, {c.get('candidates', 0)} candidates, "
        f"{c.get('queries_with_relevant', 0)} queries with relevant items "
        f"({c.get('pairs', 0)} query-user pairs)"
    )


def format_table(results) -> str:
    """The full stdout table (``--full``): accuracy block, then beyond-accuracy block, then the legend."""
    return format_body(results, head_line(results))


def format_body(results, head: str) -> str:
    parts = [head, tie_line(results), "", "ACCURACY", text_table(*table_cells(results, accuracy_names(results), True)),
             verdict_line(results.verdict), "",
             "BEYOND ACCURACY", text_table(*table_cells(results, BEYOND_METRICS))]
    seeds = seed_cells(results)
    if seeds:
        parts += ["", "OVER SEEDS", SEEDS_LINE, text_table(*seeds)]
    strata = strata_cells(results)
    if strata:
        title = "BY POPULARITY STRATUM" if getattr(results, "task", "item-to-item") == "item-to-item" else "BY STRATUM"
        parts += ["", title, strata_line(results), text_table(*strata)]
    parts += ["", legend(results)]
    if results.notes:
        parts += [""] + [f"note: {n}" for n in results.notes]
    return "\n".join(parts)


def legend(results) -> str:
    labels = getattr(results, "labels", METRIC_LABELS)
    names = ", ".join(f"{m} = {labels.get(m, METRIC_LABELS.get(m, m))}" for m in accuracy_names(results) + BEYOND_METRICS)
    b = getattr(results, "bootstrap", {}) or {}
    intervals = (f" 95% CI: percentile bootstrap over queries ({b.get('resamples')} resamples, seed "
                 f"{b.get('seed')})." if ci_columns(results) else "")
    if getattr(results, "task", "item-to-item") != "item-to-item":
        c = results.counts
        return (f"{names}. Averaged over users; users left out: {c.get('users_without_history', 0)} without a "
                f"liked training item, {c.get('users_without_relevant', 0)} without a liked candidate."
                + intervals.replace("over queries", "over users"))
    return (
        f"{names}. Averaged per (query, user), then per query; queries without relevant candidates "
        f"({results.counts.get('queries_without_relevant', 0)}) are left out of accuracy metrics." + intervals
    )


COMPACT_TITLE = "ACCURACY (headline metrics and coverage; every metric at every K: --full, results.md, results.csv)"


def fmt_with_ci(value, ci) -> str:
    """``0.2600 [0.2000, 0.3000]``: the value and its 95% interval in one cell."""
    return fmt(value) if not ci else f"{fmt(value)} [{ci[0]:.4f}, {ci[1]:.4f}]"


def compact_cells(results) -> tuple[list[str], list[list[str]]]:
    """The compact table: Model, the headline metrics (``results.headline_metrics``; a metric
    with an interval as ``value [low, high]``), coverage at the headline K, train seconds."""
    metrics = headline_metrics(results)
    intervals = set(ci_columns(results))
    coverage = f"Cov@{headline_k(results)}"
    header = ["Model"] + [f"{m} [95% CI]" if m in intervals else m for m in metrics] + [coverage, TIME_COLUMNS[0]]
    body = [[row.name] + [fmt_with_ci(row.metrics.get(m), row.ci.get(m) if m in intervals else None)
                          for m in metrics]
            + [fmt(row.metrics.get(coverage)), fmt(row.train_seconds)] for row in results.rows]
    return header, body


def compact_legend(results) -> str:
    """What the compact table's columns mean, and how its intervals were drawn."""
    header, _ = compact_cells(results)
    labels = getattr(results, "labels", METRIC_LABELS)
    names = [h.removesuffix(" [95% CI]") for h in header[1:-1]]
    words = ", ".join(f"{n} = {labels.get(n.partition('@')[0], METRIC_LABELS.get(n.partition('@')[0], n))}"
                      for n in names)
    b = getattr(results, "bootstrap", {}) or {}
    over = "users" if getattr(results, "task", "item-to-item") != "item-to-item" else "queries"
    intervals = (f"; [95% CI]: percentile bootstrap over {over} ({b.get('resamples')} resamples, seed "
                 f"{b.get('seed')})" if ci_columns(results) else "")
    return f"{words}; Train (s) = training seconds (- where nothing is trained){intervals}."


def format_compact(results) -> str:
    """The table ``cinefuse evaluate`` prints: the counts, the compact table, the verdict, the
    legend and the notes."""
    parts = [head_line(results), tie_line(results), "", COMPACT_TITLE, text_table(*compact_cells(results)),
             verdict_line(results.verdict), "", compact_legend(results)]
    if results.notes:
        parts += [""] + [f"note: {n}" for n in results.notes]
    return "\n".join(parts)


def markdown_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


FIGURE_CAPTIONS = {
    "intervals": "Headline metrics per row with their 95% bootstrap intervals (baselines as open squares)",
    "bars": "Accuracy at each K, a line per row",
    "curves": "Training curves of the models (a marker per validation)",
}


def report_blocks(results, figures: dict[str, str] | None = None) -> list[tuple]:
    """The report as blocks both ``results.md`` and ``results.html`` render: ("title" | "heading"
    | "subheading" | "text" | "strong", text), ("table", header, body), ("list", items) and
    ("figure", file name, caption). ``figures``: key of :data:`FIGURE_CAPTIONS` -> file name."""
    c = results.counts
    counts = (f"{c.get('queries', 0)} queries, {c.get('candidates', 0)} candidates, "
              f"{c.get('queries_with_relevant', 0)} queries with relevant items, {c.get('pairs', 0)} query-user pairs"
              if getattr(results, "task", "item-to-item") == "item-to-item" else head_line(results))
    blocks = [("title", f"Evaluation: {results.protocol} protocol" + task_words(results)),
              ("text", f"{counts}; {tie_line(results)}."),
              ("heading", "Summary"), ("table", *compact_cells(results)),
              ("strong", verdict_line(results.verdict)), ("text", compact_legend(results)),
              ("heading", "All metrics"), ("subheading", "Accuracy"),
              ("table", *table_cells(results, accuracy_names(results), True)),
              ("subheading", "Beyond accuracy"), ("table", *table_cells(results, BEYOND_METRICS))]
    seeds = seed_cells(results)
    if seeds:
        blocks += [("subheading", "Over seeds"), ("text", SEEDS_LINE + "."), ("table", *seeds)]
    strata = strata_cells(results)
    if strata:
        title = "By popularity stratum" if getattr(results, "task", "item-to-item") == "item-to-item" else "By stratum"
        blocks += [("subheading", title), ("text", strata_line(results) + "."), ("table", *strata)]
    blocks.append(("text", legend(results)))
    notes = results.notes + [f"{r.name}: {r.note}" for r in results.rows if r.note]
    if notes:
        blocks += [("heading", "Notes"), ("list", notes)]
    if figures:
        blocks.append(("heading", "Figures"))
        blocks += [("figure", name, FIGURE_CAPTIONS[key]) for key, name in figures.items()]
    return blocks


def render_markdown(blocks: list[tuple]) -> str:
    marks = {"title": "# ", "heading": "## ", "subheading": "### ", "text": ""}
    out = []
    for kind, *rest in blocks:
        if kind in marks:
            out.append(marks[kind] + rest[0])
        elif kind == "strong":
            out.append(f"**{rest[0]}**")
        elif kind == "table":
            out.append(markdown_table(*rest))
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "figure":
            out.append(f"![{rest[1]}]({rest[0]})")
    return "\n\n".join(out) + "\n"


def format_markdown(results, figures: dict[str, str] | None = None) -> str:
    """``results.md``: the compact table and the verdict first, then every metric."""
    return render_markdown(report_blocks(results, figures))


def csv_text(results) -> str:
    columns = metric_columns(results.ks, accuracy_names(results) + BEYOND_METRICS)
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(["model", "kind"] + columns + ["train_seconds", "eval_seconds"])
    for row in results.rows:
        writer.writerow([row.name, row.kind] + [fmt(row.metrics.get(c)) for c in columns]
                        + [fmt(row.train_seconds), fmt(row.eval_seconds)])
    return handle.getvalue()


def write_report(results, out_dir: Path, workdir: Path | None = None) -> dict[str, Path]:
    """Markdown, CSV, JSON, the figures and the HTML page into ``out_dir``, each written whole or
    not at all; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "json": out_dir / "results.json",
             "html": out_dir / "results.html", "bars": out_dir / "metrics_at_k.png"}
    plot_metrics_at_k(results, paths["bars"])
    if plot_intervals(results, out_dir / "intervals.png"):
        paths["intervals"] = out_dir / "intervals.png"
    if workdir is not None:
        curves = out_dir / "training_curves.png"
        if plot_training_curves(Path(workdir), [r.name for r in results.rows if r.kind == "model"], curves):
            paths["curves"] = curves
    figures = {k: paths[k].name for k in FIGURE_CAPTIONS if k in paths}
    blocks = report_blocks(results, figures)
    atomic_write(paths["markdown"], render_markdown(blocks).encode())
    atomic_write(paths["csv"], csv_text(results).encode())
    atomic_write(paths["json"], json.dumps(results.to_json(), indent=2, default=float).encode())
    title = f"Evaluation: {results.protocol} protocol" + task_words(results)
    atomic_write(paths["html"], render_html(title, blocks, out_dir).encode())
    return paths
