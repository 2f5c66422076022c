"""The demo's report: the verdict (does full fusion beat every single modality?), the evaluate
table's headline (the model chosen on validation, with coverage@10), the timings,
the evaluate stage's full results table, and a plot of nDCG@10 per modality set."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path



def tie_words(verdict: dict) -> str:
    if verdict.get("tie_break") == "id":
        return "score ties broken by id order"
    return f"score ties broken by a seeded random candidate order, seed {verdict.get('tie_seed', 0)}"


def verdict_sentence(verdict: dict) -> str:
    """The claim the numbers support: a win needs every paired interval above 0."""
    rivals = ", ".join(verdict["paired"])
    if verdict["fusion_wins"]:
        return (f"**Full fusion beats every single modality and the raw concatenation** ({rivals}): every "
                "paired 95% interval of the difference lies above 0.")
    unsure = [n for n, p in verdict["paired"].items() if not p["beats"]]
    if verdict["beats_point"]:
        return (f"**Full fusion does NOT beat every rival with confidence**: its mean is higher than each "
                f"rival's, but the paired 95% interval includes 0 (or lies below it) against {', '.join(unsure)}; "
                f"more cold items would be needed to tell.")
    behind = [n for n, p in verdict["paired"].items() if p["diff"] <= 0]
    return (f"**Full fusion does NOT beat every rival**: it scores at or below {', '.join(behind)}; "
            f"no paired interval above 0 against {', '.join(unsure)}.")


def headline_line(verdict: dict) -> str:
    """The evaluate table's verdict: the model validation chose against the best raw baseline,
    with coverage@10 of both sides."""
    from cinefuse.evaluate.report import verdict_line

    return "Headline of the evaluate table: " + verdict_line(verdict.get("evaluate_verdict")).removeprefix("verdict: ")


def best_set_line(modality_set: str, b: dict, metric: str) -> str:
    chosen = b["model"] if b.get("chosen_on", "test") == "validation" else f"{b['model']} (no validation value)"
    test = b.get("best_on_test", {"model": b["model"], metric: b[metric]})
    return f"| {modality_set} | {chosen} | {b[metric]:.4f} | {test['model']} | {test[metric]:.4f} |"


def machine_line() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def plot_modalities(results, config, metric: str, path: Path) -> None:
    """Bars of ``metric`` per modality set of ``config`` (a ``DemoConfig``), one bar per
    loss-distance-head, baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, float]] = {}
    for row in results.rows:
        if row.kind != "model":
            continue
        mods = row.modalities  # the run record's modality set
        if mods not in config.modality_sets():
            continue
        variant = row.name.replace(f"-{mods}-", "-")
        groups.setdefault(variant, {})[mods] = float(row.metrics[metric])
    present = [m for m in config.modality_sets() if any(m in g for g in groups.values())]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(present) + 2) + 2.6, 4.2))
    width = 0.8 / max(len(groups), 1)
    for k, (variant, values) in enumerate(sorted(groups.items())):
        xs = [i + k * width for i, m in enumerate(present) if m in values]
        ax.bar(xs, [values[m] for m in present if m in values], width=width, label=variant)
    styles = iter(["--", ":", "-."])
    for row in results.rows:
        if row.kind in ("random", "popularity") or row.name == "cosine all concatenated":
            ax.axhline(float(row.metrics[metric]), color="grey", linestyle=next(styles, "--"), linewidth=1,
                       label=row.name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(present))], present)
    ax.set_ylabel(metric)
    ax.set_title(f"cold-item {metric} by modality set")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_demo_report(workdir: Path, config, collection, results, verdict: dict, seconds: dict) -> Path:
    workdir = Path(workdir)
    metric = verdict["metric"]
    plot = workdir / "modalities.png"
    plot_modalities(results, config, metric, plot)
    full = config.FULL
    eval_md = Path(results.outputs.get("markdown", "")) if getattr(results, "outputs", None) else None

    c = collection.config
    lines = [
        "# cinefuse demo report",
        "",
        f"Made {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine_line()}.",
        "",
        "## Verdict",
        "",
        f"Full fusion ({verdict['models'][full]}) against each single modality with the same objective, "
        f"loss, distance and head, and against the raw concatenated features, cold-item {metric}; the "
        f"difference is full minus the rival with its paired 95% bootstrap interval over the same "
        f"{verdict['queries']} cold queries ({tie_words(verdict)}):",
        "",
        "| rival | model | " + metric + " | full minus rival | paired 95% CI | P(full better) |",
        "|---|---|---:|---:|---|---:|",
        *(f"| {name} | {p['rival']} | {p['value']:.4f} | {p['diff']:+.4f} | [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] "
          f"| {p['p_better']:.3f} |" for name, p in verdict["paired"].items()),
        f"| **full** | {verdict['models'][full]} | **{verdict['full']:.4f}** | | | |",
        "",
        verdict_sentence(verdict),
        "",
        "For reference, the baselines on the same cold items: "
        + ", ".join(f"{name} {value:.4f}" for name, value in verdict["baselines"].items()) + ".",
        "",
        headline_line(verdict),
        "",
        "Model of each modality set over the whole grid, chosen on validation (the best test row beside it, "
        "chosen on test, for reference only):",
        "",
        "| modality set | chosen on validation | " + metric + " | best test row (chosen on test) | " + metric + " |",
        "|---|---|---:|---|---:|",
        *(best_set_line(m, b, metric) for m, b in verdict["best_per_modality_set"].items()),
        "",
        f"![{metric} by modality set](modalities.png)",
        "",
        "## The collection",
        "",
        f"{c.items} procedural films ({c.seconds:g} s, {c.size}x{c.size} px at {c.fps} fps, AAC "
        f"{c.sample_rate} Hz mono), {c.users} simulated users, seed {c.seed}. Each film has one latent "
        f"genre per modality ({c.genres_per_modality} each): the visual genre shows only in palette, "
        "texture and motion, the audio genre only in pitch, rhythm and noise colour, the text genre "
        "only in the blurb's vocabulary. Each user has a favourite genre in every modality and rates "
        "by all three, so only a model that sees all three can rank what they like first. "
        f"Files: `{collection.root}` (movies.csv and ratings.csv in MovieLens format, manifest.csv, "
        "genres.csv with the ground truth).",
        "",
        "## Time",
        "",
        "| stage | seconds |",
        "|---|---:|",
        *(f"| {name} | {s:.1f} |" for name, s in seconds.items()),
        "",
        "## All results (cold-item)",
        "",
    ]
    if eval_md is not None and eval_md.is_file():
        lines += [eval_md.read_text().strip(), "",
                  f"Tables as CSV and JSON and more plots: `{eval_md.parent}`."]
    else:
        lines += ["(the evaluate stage wrote no Markdown table)"]
    lines += ["", "## Reproduce", "", "```", f"cinefuse demo --workdir {workdir} --items {c.items} "
              f"--users {c.users} --seed {c.seed}", "```", ""]
    report = workdir / "report.md"
    report.write_text("\n".join(lines))
    (workdir / "demo.json").write_text(json.dumps(
        {"config": config.to_json(), "verdict": verdict, "seconds": seconds, "machine": machine_line()},
        indent=2) + "\n")
    return report
