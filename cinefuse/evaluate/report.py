"""Results tables and plots of one evaluation, Cornac style: rows are models and baselines,
columns are metric@K plus train and eval seconds, four decimals.

``format_table`` gives the text table printed on stdout; ``write_report`` writes the same as
Markdown (``results.md``), CSV (``results.csv``) and JSON (``results.json``) plus PNG plots
(``metrics_at_k.png``: metric@K bars per model; ``training_curves.png``: metrics over training
steps from ``runs/<model>/metrics.jsonl``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from cinefuse.fuse.workdir import Workdir
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


def _text_table(header, body) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    def line(cells):
        first = cells[0].ljust(widths[0])
        return " | ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])
    rule = " + ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in body])


def format_table(results) -> str:
    """The stdout table: accuracy block, then beyond-accuracy block, then the legend."""
    c = results.counts
    if getattr(results, "task", "item-to-item") != "item-to-item":
        head = (f"task {results.task}, protocol {results.protocol}: {c.get('users', 0)} users (each ranks the "
                f"{c.get('candidates', 0)} cold candidates from their liked training items), "
                f"{c.get('relevant_pairs', 0)} liked (user, candidate) pairs")
        return format_body(results, head)
    head = (
        f"protocol {results.protocol}: {c.get('queries', 0)} queries, {c.get('candidates', 0)} candidates, "
        f"{c.get('queries_with_relevant', 0)} queries with relevant items "
        f"({c.get('pairs', 0)} query-user pairs)"
    )
    return format_body(results, head)


def format_body(results, head: str) -> str:
    parts = [head, tie_line(results), "", "ACCURACY", _text_table(*table_cells(results, accuracy_names(results), True)),
             verdict_line(results.verdict), "",
             "BEYOND ACCURACY", _text_table(*table_cells(results, BEYOND_METRICS))]
    seeds = seed_cells(results)
    if seeds:
        parts += ["", "OVER SEEDS", SEEDS_LINE, _text_table(*seeds)]
    strata = strata_cells(results)
    if strata:
        title = "BY POPULARITY STRATUM" if getattr(results, "task", "item-to-item") == "item-to-item" else "BY STRATUM"
        parts += ["", title, strata_line(results), _text_table(*strata)]
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


def markdown_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def format_markdown(results) -> str:
    c = results.counts
    parts = [
        f"# Evaluation: {results.protocol} protocol" + task_words(results),
        "",
        f"{c.get('queries', 0)} queries, {c.get('candidates', 0)} candidates, "
        f"{c.get('queries_with_relevant', 0)} queries with relevant items, {c.get('pairs', 0)} query-user pairs; "
        f"{tie_line(results)}.",
        "",
        "## Accuracy",
        "",
        markdown_table(*table_cells(results, accuracy_names(results), True)),
        "",
        f"**{verdict_line(results.verdict)}**",
        "",
        "## Beyond accuracy",
        "",
        markdown_table(*table_cells(results, BEYOND_METRICS)),
    ]
    seeds = seed_cells(results)
    if seeds:
        parts += ["", "## Over seeds", "", SEEDS_LINE + ".", "", markdown_table(*seeds)]
    strata = strata_cells(results)
    if strata:
        title = "By popularity stratum" if getattr(results, "task", "item-to-item") == "item-to-item" else "By stratum"
        parts += ["", f"## {title}", "", strata_line(results) + ".", "", markdown_table(*strata)]
    parts += ["", legend(results)]
    notes = results.notes + [f"{r.name}: {r.note}" for r in results.rows if r.note]
    if notes:
        parts += [""] + [f"- {n}" for n in notes]
    return "\n".join(parts) + "\n"


def write_csv(results, path: Path) -> None:
    columns = metric_columns(results.ks, accuracy_names(results) + BEYOND_METRICS)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "kind"] + columns + ["train_seconds", "eval_seconds"])
        for row in results.rows:
            writer.writerow(
                [row.name, row.kind] + [fmt(row.metrics.get(c)) for c in columns]
                + [fmt(row.train_seconds), fmt(row.eval_seconds)]
            )


def write_report(results, out_dir: Path, workdir: Path | None = None) -> dict[str, Path]:
    """Markdown, CSV, JSON and PNGs into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out_dir / "results.md",
        "csv": out_dir / "results.csv",
        "json": out_dir / "results.json",
        "bars": out_dir / "metrics_at_k.png",
    }
    paths["markdown"].write_text(format_markdown(results))
    write_csv(results, paths["csv"])
    paths["json"].write_text(json.dumps(results.to_json(), indent=2, default=float))
    plot_metrics_at_k(results, paths["bars"])
    if workdir is not None:
        curves = out_dir / "training_curves.png"
        if plot_training_curves(Path(workdir), [r.name for r in results.rows if r.kind == "model"], curves):
            paths["curves"] = curves
    return paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_metrics_at_k(results, path: Path) -> None:
    """One panel per accuracy metric: grouped bars, x = K, one bar per row of the table."""
    plt = _pyplot()
    metrics = accuracy_names(results)
    cols = 3
    rows_n = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
    n = len(results.rows)
    width = 0.8 / max(n, 1)
    # one distinct colour per row (tab20 has 20), baselines hatched so they read as references
    cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
    for ax, metric in zip(axes.flat, metrics):
        for i, row in enumerate(results.rows):
            values = [row.metrics.get(f"{metric}@{k}", float("nan")) for k in results.ks]
            xs = [j + (i - (n - 1) / 2) * width for j in range(len(results.ks))]
            ax.bar(xs, values, width=width, label=row.name, color=cmap(i % cmap.N),
                   hatch=None if row.kind == "model" else "//", edgecolor="white", linewidth=0)
        ax.set_xticks(range(len(results.ks)), [f"@{k}" for k in results.ks])
        ax.set_title(results.labels.get(metric, metric) if hasattr(results, "labels") else METRIC_LABELS[metric])
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(n, 1)), fontsize="small")
    fig.suptitle(f"{results.protocol} protocol")
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(n / 4), 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training_curves(workdir: Path, models: list[str], path: Path, max_panels: int = 6) -> bool:
    """Every numeric series of ``runs/<model>/metrics.jsonl`` against ``step``, one panel per
    series, one line per model. Returns False (and writes nothing) when no run logged any."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for model in models:
        for record in Workdir(workdir).metrics_lines(model):
            step = record.get("step")
            if not isinstance(step, (int, float)):
                continue
            for key, value in record.items():
                if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                xs, ys = series.setdefault(key, {}).setdefault(model, ([], []))
                xs.append(step)
                ys.append(value)
    if not series:
        return False
    keys = sorted(series, key=lambda k: (not k.startswith(("val", "loss", "train")), k))[:max_panels]
    plt = _pyplot()
    cols = min(3, len(keys))
    rows_n = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.4 * rows_n), squeeze=False)
    cmap = plt.get_cmap("tab20" if len(models) > 10 else "tab10")
    colour = {m: cmap(i % cmap.N) for i, m in enumerate(models)}
    for ax, key in zip(axes.flat, keys):
        for model, (xs, ys) in series[key].items():
            ax.plot(xs, ys, label=model, color=colour[model])
        ax.set_title(key)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    n_lines = math.ceil(len(labels) / 3)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small")
    fig.tight_layout(rect=(0, 0.03 + 0.035 * n_lines, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
