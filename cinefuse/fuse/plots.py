"""The training curves and the validation distances of a run, as PNG files in its folder
(``curves.png``: train loss and validation nDCG@10 / pair AUC by step; ``distances.png``: the
validation pairs' distances, positives against negatives)."""

from __future__ import annotations

from pathlib import Path


def plot_run(run_dir: Path, lines: list[dict], val: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if lines:
        steps = [x["step"] for x in lines]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        axes[0].plot(steps, [x["loss"] for x in lines], label="train loss")
        axes[0].set_xlabel("step")
        axes[0].legend()
        axes[1].plot(steps, [x["val_ndcg10"] for x in lines], label="val nDCG@10", color="C1")
        if all("val_auc" in x for x in lines):
            axes[1].plot(steps, [x["val_auc"] for x in lines], label="val pair AUC", color="C2")
        axes[1].set_xlabel("step")
        axes[1].legend()
        fig.suptitle(run_dir.name)
        fig.tight_layout()
        fig.savefig(run_dir / "curves.png", dpi=80)
        plt.close(fig)
    if "distances" not in val:  # no validation pairs (a co-preference split without them)
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    d, y = val["distances"], val["labels"]
    ax.hist(d[y == 1], bins=40, alpha=0.6, label="positive pairs", density=True)
    ax.hist(d[y == 0], bins=40, alpha=0.6, label="negative pairs", density=True)
    ax.set_xlabel("distance (validation pairs)")
    ax.legend()
    ax.set_title(f"{run_dir.name}: AUC {val['auc']:.3f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "distances.png", dpi=80)
    plt.close(fig)
