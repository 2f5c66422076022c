"""The training curves and the validation distances of a run, as PNG files in its folder
(``curves.png``: the training loss and the validation measures by step, a marker at each
validation; ``distances.png``: the validation pairs' distances, positives against negatives).

:data:`CURVE_LABELS` says what each ``metrics.jsonl`` series measures (a panel's title and its
y axis); evaluate's ``training_curves.png`` uses the same words.
"""

from __future__ import annotations

from pathlib import Path

CURVE_LABELS = {   # metrics.jsonl key -> (panel title, y axis label); the order panels are drawn in
    "loss": ("training loss", "loss (the objective; lower is better)"),
    "val_ndcg10": ("validation nDCG@10, item-to-item", "nDCG@10 over validation items"),
    "val_u2i_recall20": ("validation Recall@20, user-to-item", "Recall@20 of users' liked validation items"),
    "val_hr10": ("validation HitRate@10, item-to-item", "HitRate@10 over validation items"),
    "val_u2i_ndcg10": ("validation nDCG@10, user-to-item", "nDCG@10 over users"),
    "val_auc": ("validation genre-pair AUC", "ROC AUC (positive pairs closer)"),
    "val_d_pos": ("validation positive-pair distance", "mean distance, positive pairs"),
    "val_d_neg": ("validation negative-pair distance", "mean distance, negative pairs"),
    "d_pos": ("training positive-pair distance", "mean distance in the batch"),
    "d_neg": ("training negative-pair distance", "mean distance in the batch"),
    "prior_loss": ("popularity prior loss", "squared error of the prior head"),
    "distill_info_nce": ("distillation InfoNCE", "InfoNCE term of the loss"),
    "similarity_kl": ("teacher similarity KL", "KL term of the loss"),
    "grad_norm": ("gradient norm", "global L2 norm of the gradient"),
}
VALIDATION_CURVES = ("val_ndcg10", "val_u2i_recall20", "val_auc")  # curves.png's right panel, one scale (0-1)
STEP_LABEL = "training step (a marker per validation)"


def curve_label(key: str) -> tuple[str, str]:
    """(title, y label) of a metrics.jsonl series; an unknown key names itself."""
    return CURVE_LABELS.get(key, (key, key))


def plot_run(run_dir: Path, lines: list[dict], val: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if lines:
        plot_curves(plt, run_dir, lines)
    if "distances" not in val:  # no validation pairs (a co-preference split without them)
        return
    fig, ax = plt.subplots(figsize=(5, 3.2))
    d, y = val["distances"], val["labels"]
    ax.hist(d[y == 1], bins=40, alpha=0.6, label="positive pairs", density=True)
    ax.hist(d[y == 0], bins=40, alpha=0.6, label="negative pairs", density=True)
    ax.set_xlabel("distance (validation pairs)")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title(f"{run_dir.name}: AUC {val['auc']:.3f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / "distances.png", dpi=80)
    plt.close(fig)


def plot_curves(plt, run_dir: Path, lines: list[dict]) -> None:
    """``curves.png``: the training loss (left) and the validation measures logged (right), a
    point per validation, both panels titled and their axes labelled."""
    steps = [x["step"] for x in lines]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    title, ylabel = curve_label("loss")
    axes[0].plot(steps, [x["loss"] for x in lines], marker="o", markersize=4, color="C0")
    axes[0].set_title(title, fontsize=9)
    axes[0].set_ylabel(ylabel, fontsize=8)
    for i, key in enumerate(k for k in VALIDATION_CURVES if all(k in x for x in lines)):
        axes[1].plot(steps, [x[key] for x in lines], marker="osD"[i], markersize=4, color=f"C{i + 1}",
                     label=curve_label(key)[0].removeprefix("validation "))
    axes[1].set_title("validation measures (higher is better)", fontsize=9)
    axes[1].set_ylabel("score on the validation split", fontsize=8)
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel(STEP_LABEL, fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name, fontsize=10)
    fig.tight_layout()
    fig.savefig(run_dir / "curves.png", dpi=80)
    plt.close(fig)
