"""The figures of one evaluation, PNG files beside ``results.md``:

- ``intervals.png`` (:func:`plot_intervals`): the compact table's metrics, one panel each, a dot
  per row with its 95% bootstrap interval as a whisker; rows sorted by the verdict's metric,
  baselines drawn as open grey squares, the best raw baseline's value as a dashed line;
- ``metrics_at_k.png`` (:func:`plot_metrics_at_k`): each accuracy metric against K, a line per
  row; with many rows only the best models (by the verdict's metric) and every baseline, the
  figure saying how many were left out;
- ``training_curves.png`` (:func:`plot_training_curves`): the series of
  ``runs/<model>/metrics.jsonl`` against the training step, a marker at each validation.

Every row on one panel has its own colour (:func:`row_colours`): a colour never stands for two
rows.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from cinefuse.atomic import atomic_write
from cinefuse.evaluate.results import headline_metrics
from cinefuse.fuse.plots import CURVE_LABELS, curve_label
from cinefuse.fuse.workdir import Workdir
from cinefuse.metrics.metrics import ACCURACY_METRICS, METRIC_LABELS

MAX_MODEL_LINES = 8    # model rows drawn in metrics_at_k.png; every baseline is drawn as well
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
BASELINE_GREY = "0.45"
CURVE_SKIP = ("step", "seconds")   # metrics.jsonl fields that are no training curve


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(plt, fig, path: Path, dpi: int = 100) -> None:
    """The figure as a PNG at ``path``, written whole or not at all."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def row_colours(n: int) -> list:
    """``n`` distinct colours: tab10 up to 10, tab20 up to 20, else evenly spaced hues."""
    plt = pyplot()
    if n <= 20:
        cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
        return [cmap(i) for i in range(n)]
    cmap = plt.get_cmap("hsv")
    return [cmap(i / n) for i in range(n)]


def label_of(results, metric: str) -> str:
    name = metric.partition("@")[0]
    labels = getattr(results, "labels", METRIC_LABELS)
    return labels.get(name, METRIC_LABELS.get(name, name))


def ranking_metric(results) -> str | None:
    """The metric rows are sorted by: the verdict's, else the first of the compact table."""
    metrics = headline_metrics(results)
    metric = (results.verdict or {}).get("metric")
    return metric if metric in metrics else (metrics[0] if metrics else None)


def sorted_rows(results, metric: str | None) -> list:
    """Rows by ``metric``, best first; rows without a value last, in table order."""
    def key(row):
        value = row.metrics.get(metric) if metric else None
        return (0, -value) if isinstance(value, float) and not math.isnan(value) else (1, 0.0)
    return sorted(results.rows, key=key)


def plot_intervals(results, path: Path) -> bool:
    """Dot-and-whisker panels of the compact table's metrics; False (nothing written) when no
    row holds one."""
    metrics = headline_metrics(results)
    if not metrics or not results.rows:
        return False
    plt = pyplot()
    rows = sorted_rows(results, ranking_metric(results))[::-1]   # best on top
    cols = len(metrics)
    fig, axes = plt.subplots(1, cols, figsize=(3.6 * cols + 2.4, 1.3 + 0.3 * len(rows)), squeeze=False,
                             sharey=True)
    over = "users" if getattr(results, "task", "item-to-item") != "item-to-item" else "queries"
    best_baseline = (results.verdict or {}).get("best_baseline")
    for ax, metric in zip(axes.flat, metrics):
        for y, row in enumerate(rows):
            value = row.metrics.get(metric, float("nan"))
            model = row.kind == "model"
            ci = row.ci.get(metric)
            if ci:
                ax.plot(ci, [y, y], color="C0" if model else BASELINE_GREY, linewidth=1.6,
                        linestyle="-" if model else "--")
            ax.plot([value], [y], marker="o" if model else "s", markersize=6, linestyle="none",
                    color="C0" if model else BASELINE_GREY, markerfacecolor="C0" if model else "white")
            if row.name == best_baseline:
                ax.axvline(value, color=BASELINE_GREY, linestyle=":", linewidth=1)
        ax.set_title(f"{metric}: {label_of(results, metric)}", fontsize=9)
        ax.set_xlabel(f"{metric}, mean over {over}\n(bar: 95% bootstrap interval)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes.flat[0].set_yticks(range(len(rows)), [r.name for r in rows], fontsize=8)
    axes.flat[0].set_ylim(-0.7, len(rows) - 0.3)
    handles = [plt.Line2D([], [], marker="o", color="C0", label="trained model"),
               plt.Line2D([], [], marker="s", color=BASELINE_GREY, markerfacecolor="white", linestyle="--",
                          label="baseline")]
    if best_baseline:
        handles.append(plt.Line2D([], [], color=BASELINE_GREY, linestyle=":", label=f"best raw baseline "
                                  f"({best_baseline})"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    save(plt, fig, path)
    return True


def lines_shown(results, max_models: int = MAX_MODEL_LINES) -> tuple[list, int]:
    """(rows drawn in metrics_at_k.png, model rows left out): the best ``max_models`` models by
    the ranking metric, then every baseline, best first."""
    ranked = sorted_rows(results, ranking_metric(results))
    models = [r for r in ranked if r.kind == "model"]
    shown = models[:max_models] + [r for r in ranked if r.kind != "model"]
    return shown, len(models) - min(len(models), max_models)


def plot_metrics_at_k(results, path: Path, max_models: int = MAX_MODEL_LINES) -> None:
    """One panel per accuracy metric: the metric against K, one line per row drawn (models solid
    with filled markers, baselines dashed with open ones), every row its own colour."""
    plt = pyplot()
    metrics = tuple(getattr(results, "metric_names", ACCURACY_METRICS))
    rows, left_out = lines_shown(results, max_models)
    cols = min(3, len(metrics))
    rows_n = math.ceil(len(metrics) / cols)
    ncol = min(3, max(len(rows), 1))
    legend_h = 0.2 * math.ceil(len(rows) / ncol) + 0.3
    height = 3.1 * rows_n + legend_h + 0.7
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, height), squeeze=False)
    colours = row_colours(len(rows))
    xs = list(range(len(results.ks)))
    for ax, metric in zip(axes.flat, metrics):
        for i, row in enumerate(rows):
            model = row.kind == "model"
            values = [row.metrics.get(f"{metric}@{k}", float("nan")) for k in results.ks]
            ax.plot(xs, values, label=row.name, color=colours[i], marker=MARKERS[i % len(MARKERS)],
                    markersize=5, linestyle="-" if model else "--",
                    markerfacecolor=colours[i] if model else "white")
        ax.set_xticks(xs, [str(k) for k in results.ks])
        ax.set_xlabel("K (list length)", fontsize=8)
        ax.set_ylabel(f"{metric}@K", fontsize=8)
        ax.set_title(f"{metric}: {label_of(results, metric)}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize="small", frameon=False)
    title = f"{results.protocol} protocol, {getattr(results, 'task', 'item-to-item')}: accuracy at each K"
    if left_out:
        title += (f"\n{max_models} best of {max_models + left_out} models by {ranking_metric(results)} "
                  f"and every baseline; all rows in results.csv")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, legend_h / height, 1, 1 - (0.6 if left_out else 0.35) / height))
    save(plt, fig, path)


def curve_series(workdir: Path, models: list[str]) -> dict[str, dict[str, tuple[list, list]]]:
    """key -> model -> (steps, values) of every numeric series the runs logged."""
    series: dict[str, dict[str, tuple[list, list]]] = {}
    for model in models:
        for record in Workdir(workdir).metrics_lines(model):
            step = record.get("step")
            if not isinstance(step, (int, float)):
                continue
            for key, value in record.items():
                if key in CURVE_SKIP or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                xs, ys = series.setdefault(key, {}).setdefault(model, ([], []))
                xs.append(step)
                ys.append(value)
    return series


def plot_training_curves(workdir: Path, models: list[str], path: Path, max_panels: int = 6) -> bool:
    """The series of ``runs/<model>/metrics.jsonl`` against ``step`` (the known ones first: loss,
    then the validation measures), one panel per series titled and labelled with what it
    measures, one line per model with a marker at each validation. Returns False (and writes
    nothing) when no run logged any."""
    series = curve_series(workdir, models)
    if not series:
        return False
    known = list(CURVE_LABELS)
    keys = sorted(series, key=lambda k: (known.index(k) if k in known else len(known), k))[:max_panels]
    plt = pyplot()
    cols = min(3, len(keys))
    rows_n = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.8 * cols, 3.4 * rows_n), squeeze=False)
    drawn = [m for m in models if any(m in series[k] for k in keys)]
    colour = dict(zip(drawn, row_colours(len(drawn))))
    for ax, key in zip(axes.flat, keys):
        title, ylabel = curve_label(key)
        for model, (xs, ys) in series[key].items():
            ax.plot(xs, ys, label=model, color=colour[model], marker=MARKERS[drawn.index(model) % len(MARKERS)],
                    markersize=4)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training step (a marker per validation)", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colour[m], marker=MARKERS[i % len(MARKERS)], label=m)
               for i, m in enumerate(drawn)]
    ncol = min(3, len(drawn))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize="small", frameon=False)
    legend_in = (0.3 * math.ceil(len(drawn) / ncol) + 0.2) / fig.get_figheight()
    fig.tight_layout(rect=(0, legend_in, 1, 1))
    save(plt, fig, path)
    return True
