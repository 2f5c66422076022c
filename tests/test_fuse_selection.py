"""Model selection: early stopping with patience > 0 stops where the rule says, the kept model is
the best validation checkpoint (not the last state), and grid members stop each on their own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402
from fuse_judge import pair_distances  # noqa: E402

PATIENCE = 2
# long enough that validation AUC saturates and stops improving well before the last step
TRAIN = {"steps": 600, "steps_per_call": 20, "eval_every": 20, "checkpoint_every": 20, "patience": PATIENCE,
         "learning_rate": 1e-2, "warmup_steps": 10}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("selection"))


def expected_stop(lines: list[dict], patience: int) -> tuple[int, int]:
    """(best step, last evaluated step) under the documented rule: an evaluation improves when its
    validation nDCG@10 (the selection metric) beats the best so far by more than 1e-6; ``patience``
    evaluations in a row without improvement stop the run."""
    best_ndcg, best_step, bad = -1.0, 0, 0
    for x in lines:
        if x["val_ndcg10"] > best_ndcg + 1e-6 or best_step == 0:
            best_ndcg, best_step, bad = x["val_ndcg10"], x["step"], 0
        else:
            bad += 1
            if bad >= patience:
                return best_step, x["step"]
    return best_step, lines[-1]["step"]


def val_means(workdir: Path, model: str, distance: str) -> tuple[float, float]:
    """(mean d(pos), mean d(neg)) of the saved model on the validation pairs, in the distance the
    run logs (cosine distance, or Euclidean between the unit embeddings)."""
    d, labels = pair_distances(workdir, model, "val")
    if distance == "euclidean":
        d = np.sqrt(np.maximum(2.0 * d, 0.0))   # |a - b| = sqrt(2 - 2 cos) for unit vectors
    return float(d[labels == 1].mean()), float(d[labels == 0].mean())


def check_member(workdir: Path, summary_run: dict, distance: str) -> int:
    model = summary_run["model"]
    lines = [json.loads(x) for x in (workdir / "runs" / model / "metrics.jsonl").read_text().splitlines()]
    best_step, stop_step = expected_stop(lines, PATIENCE)
    assert stop_step < TRAIN["steps"], f"{model} never stopped early; the scenario no longer tests stopping"
    # the member's log ends where it stopped; the summary names the best step
    assert lines[-1]["step"] == stop_step and summary_run["best_step"] == best_step, (model, best_step, stop_step)
    best = next(x for x in lines if x["step"] == best_step)
    last = lines[-1]
    d_pos, d_neg = val_means(workdir, model, distance)
    # the saved parameters are the best checkpoint's: their validation distances are the ones
    # logged at the best step, not those of the last state
    gap = max(abs(best["val_d_pos"] - last["val_d_pos"]), abs(best["val_d_neg"] - last["val_d_neg"]),
              abs(best["val_ndcg10"] - last["val_ndcg10"]))
    # (selection by nDCG@10 stops near a plateau, so the two states are close: the saved model's
    # distances are matched to 2e-5, five times finer than the gap required between the states)
    assert gap > 1e-4, f"{model}: best and last states too alike to tell apart ({gap})"
    assert abs(d_pos - best["val_d_pos"]) < 2e-5 and abs(d_neg - best["val_d_neg"]) < 2e-5, (model, d_pos, d_neg, best)
    assert abs(summary_run["val_auc"] - best["val_auc"]) < 1e-6
    assert abs(summary_run["val_ndcg10"] - best["val_ndcg10"]) < 1e-6
    return stop_step


def test_early_stopping_keeps_the_best_checkpoint(env, tmp_path):
    from cinefuse.fuse.train import run_fuse

    summary = run_fuse(small_config(env, train=TRAIN), tmp_path / "w", log=lambda m: None)
    run = summary["runs"][0]
    stop = check_member(tmp_path / "w", run, "cosine")
    assert run["stopped_early"] is True and run["steps"] == stop


def test_grid_members_stop_at_their_own_steps(env, tmp_path):
    from cinefuse.fuse.train import run_fuse

    cfg = small_config(env, train=TRAIN, grid={"losses": ["pair", "triplet"], "distances": ["cosine", "euclidean"],
                                               "modalities": ["full"], "heads": []})
    summary = run_fuse(cfg, tmp_path / "g", grid=True, log=lambda m: None)
    assert len(summary["runs"]) == 4 and all(r["group_size"] == 4 for r in summary["runs"])
    stops = {r["model"]: check_member(tmp_path / "g", r, r["model"].split("-")[1]) for r in summary["runs"]}
    # the group runs until its last member stops; the others stopped before it
    assert len(set(stops.values())) >= 2, stops
    assert all(r["steps"] == max(stops.values()) for r in summary["runs"])
