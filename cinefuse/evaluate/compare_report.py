"""The table of ``cinefuse compare``: printed compact (the verdict K, intervals, the pairs), and
written whole as ``compare.md``, ``compare.csv``, ``compare.json`` and the per-query values
(``perquery``: ``per_query.parquet``, ``per_query.csv.gz``). Cells are formatted by ``report``,
the table evaluate writes, so the two read alike."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

from cinefuse.atomic import atomic_write
from cinefuse.evaluate.compare import SHARED_KINDS, Comparison
from cinefuse.evaluate.perquery import write_per_query
from cinefuse.evaluate.report import (
    accuracy_names,
    ci_columns,
    fmt,
    legend,
    markdown_table,
    metric_columns,
    table_cells,
    text_table,
    tie_line,
)
from cinefuse.evaluate.results import finite_or_none
from cinefuse.evaluate.tasks import TASKS
from cinefuse.metrics.metrics import BEYOND_METRICS

TIME_CELLS = 2  # table_cells ends every row with train and eval seconds


def head_line(comp: Comparison) -> str:
    c, s = comp.results.counts, comp.shared
    runs = ", ".join(comp.runs)
    if comp.task == "item-to-item":
        what = (f"{c.get('queries', 0)} shared cold items as queries and candidates, "
                f"{c.get('queries_with_relevant', 0)} with relevant items")
    else:
        what = f"{s.get('shared_users', 0)} shared users ranking {c.get('candidates', 0)} shared cold items"
    return f"compare {comp.task} over {s['runs']} runs ({runs}): {what}"


def pair_line(p: dict) -> str:
    word = "beats" if p["beats"] else "is beaten by" if p["worse"] else "shows no clear difference from"
    return (f"{p['a']} {word} {p['b']}: {p['diff']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] {p['metric']} "
            f"({p['a_value']:.4f} vs {p['b_value']:.4f}; {p['interval']}, {p['queries']} queries, 95%; "
            f"P(better) {p['p_better']:.3f})")


def chosen_line(comp: Comparison) -> str:
    return "chosen per run: " + "; ".join(
        f"{run}: {c['model']} (on {c['on']})" if c["model"] else f"{run}: none" for run, c in comp.chosen.items())


def format_compare(comp: Comparison) -> str:
    """The compact table printed on stdout: the accuracy metrics at the verdict's K with their
    95% intervals, the model each run chose, the paired verdicts and the notes."""
    r = comp.results
    k = int(TASKS[comp.task].verdict_metric(r.ks).split("@")[1])
    header, body = table_cells(replace(r, ks=(k,)), accuracy_names(r), True)
    parts = [head_line(comp), tie_line(r), "", text_table(header[:-TIME_CELLS], [b[:-TIME_CELLS] for b in body]),
             "", chosen_line(comp)]
    parts += [f"pair: {pair_line(p)}" for p in comp.pairs]
    parts += [""] + [f"note: {n}" for n in r.notes]
    return "\n".join(parts)


def format_markdown(comp: Comparison) -> str:
    r = comp.results
    parts = [f"# Compare: {comp.task}", "", head_line(comp) + f"; {tie_line(r)}.", "", "## Accuracy", "",
             markdown_table(*table_cells(r, accuracy_names(r), True)), "", "## Paired verdicts", "",
             chosen_line(comp) + ".", ""]
    parts += [f"- {pair_line(p)}" for p in comp.pairs] or ["- none"]
    parts += ["", "## Beyond accuracy", "", markdown_table(*table_cells(r, BEYOND_METRICS)), "", legend(r)]
    notes = r.notes + [f"{row.name}: {row.note}" for row in r.rows if row.note]
    parts += [""] + [f"- {n}" for n in notes] + ["", "## Each run's own notes", ""]
    parts += [f"- {name}: {n}" for name, ev in comp.runs.items() for n in ev.results.notes]
    return "\n".join(parts) + "\n"


def csv_text(comp: Comparison) -> str:
    """One line per row: its run and model, every metric at every K, the intervals, the seconds."""
    r = comp.results
    columns = metric_columns(r.ks, accuracy_names(r) + BEYOND_METRICS)
    intervals = ci_columns(r)
    handle = io.StringIO()
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(["row", "run", "model", "kind"] + columns
                    + [f"{m} ci_{side}" for m in intervals for side in ("low", "high")]
                    + ["train_seconds", "eval_seconds"])
    for row in r.rows:
        run, model = ("", row.name) if row.kind in SHARED_KINDS else row.name.split("/", 1)
        ci = [fmt(row.ci[m][i]) if m in row.ci else "-" for m in intervals for i in (0, 1)]
        writer.writerow([row.name, run, model, row.kind] + [fmt(row.metrics.get(c)) for c in columns] + ci
                        + [fmt(row.train_seconds), fmt(row.eval_seconds)])
    return handle.getvalue()


def compare_json(comp: Comparison) -> dict:
    runs = [{"name": name, "workdir": str(ev.job.wd.root), "models": list(ev.job.models),
             "chosen": comp.chosen[name], "verdict": ev.results.verdict, "notes": ev.results.notes}
            for name, ev in comp.runs.items()]
    return finite_or_none({"task": comp.task, "shared": comp.shared, "runs": runs, "pairs": comp.pairs,
                           "table": comp.results.to_json()})


def write_compare(comp: Comparison, out_dir) -> dict[str, Path]:
    """``compare.md``, ``compare.csv``, ``compare.json`` and the per-query files in ``out_dir``
    (each written atomically); records and returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_query = write_per_query(comp.results, comp.es, out_dir)  # first: a note it adds reaches the tables
    paths = {"markdown": out_dir / "compare.md", "csv": out_dir / "compare.csv", "json": out_dir / "compare.json"}
    atomic_write(paths["markdown"], format_markdown(comp).encode())
    atomic_write(paths["csv"], csv_text(comp).encode())
    atomic_write(paths["json"], json.dumps(compare_json(comp), indent=2, default=float).encode())
    paths.update(per_query)
    comp.outputs = {key: str(path) for key, path in paths.items()}
    return paths


def write_comparisons(comps: dict[str, Comparison], out_dir) -> None:
    """Each task's files: item-to-item in ``out_dir``, user-to-item in its ``user-to-item/``
    folder (as evaluate lays them out)."""
    for task, comp in comps.items():
        write_compare(comp, Path(out_dir) if task == "item-to-item" else Path(out_dir) / task)
