"""fuse/step.py and the objectives it dispatches on (fuse/objectives.py): the registry's rules,
each objective's batch drawn from the step alone and from its own targets, and the run names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cinefuse.choices import OBJECTIVES
from cinefuse.fuse import objectives
from cinefuse.fuse.config import ObjectiveConfig
from cinefuse.fuse.step import DeviceData, sample_batch

N = 12          # resident rows; the training items are rows 2..9
TRAIN_ROWS = np.arange(2, 10, dtype=np.int32)


def device_data(targets=None) -> DeviceData:
    feats = {"v/x": jnp.asarray(np.arange(N * 3, dtype=np.float32).reshape(N, 3))}
    triplets = jnp.asarray(np.array([[2, 3, 9], [4, 5, 8], [6, 7, 2]], np.int32))
    return DeviceData(feats, {}, jnp.asarray(np.arange(N, dtype=np.uint32)[:, None]), triplets,
                      jax.random.PRNGKey(0), None if targets is None else {k: jnp.asarray(v) for k, v in targets.items()})


def test_the_registry_names_every_choice_and_says_who_trains_through_loss():
    assert tuple(objectives.REGISTRY) == OBJECTIVES and objectives.of(None).name == "thesis"
    through = {kind: objectives.of(ObjectiveConfig(kind=kind)).through_loss(ObjectiveConfig(kind=kind))
               for kind in OBJECTIVES}
    assert through == {"thesis": True, "co-like": False, "history": False, "distill": False}
    colike_loss = ObjectiveConfig(kind="co-like", co_like_loss="loss")
    assert objectives.of(colike_loss).through_loss(colike_loss)
    assert objectives.of(ObjectiveConfig(kind="distill", teacher="svd")).target_parts(
        ObjectiveConfig(kind="distill", teacher="svd")) == ("teacher",)
    assert objectives.of(ObjectiveConfig(kind="distill")).target_parts(ObjectiveConfig()) == ("teacher", "ease")
    assert not objectives.REGISTRY["thesis"].allows(["visual/x", "meta/genres"])
    assert objectives.REGISTRY["history"].allows(["visual/x", "meta/genres"])


@pytest.mark.parametrize("args, name", [
    (("triplet", "cosine", "full", "concat-mlp"), "triplet-cosine-full-concat-mlp"),
    (("pair", "euclidean", ["visual/x", "text/y"], "gated", "thesis"), "pair-euclidean-visual_x,text_y-gated"),
    (("triplet", "cosine", "visual+audio", "concat-mlp", "distill"), "distill-visual+audio-concat-mlp"),
    (("triplet", "cosine", "full", "ln-linear", "co-like"), "co-like-full-ln-linear"),
    (("pair", "cosine", "full", "concat-mlp", "co-like", "loss"), "co-like-pair-cosine-full-concat-mlp"),
])
def test_run_names(args, name):
    assert objectives.model_name(*args) == name


def test_thesis_batch_depends_on_the_step_only_and_comes_from_the_triplets():
    data = device_data()
    a, b, c = (sample_batch(data, s, 4) for s in (5, 5, 6))
    assert np.array_equal(a.items, b.items) and not np.array_equal(a.items, c.items)
    stored = {tuple(t) for t in np.asarray(data.triplets).tolist()}
    assert all(tuple(t) in stored for t in np.asarray(a.items).tolist())
    assert np.array_equal(np.asarray(a.feats["v/x"]), np.asarray(data.feats["v/x"])[np.asarray(a.items).reshape(-1)])
    assert np.array_equal(np.asarray(a.words)[..., 0], np.asarray(a.items)) and a.extras is None


def test_co_like_batches_pair_anchors_with_their_partners():
    idx = np.array([[1, 2], [0, 0], [3, 3], [2, 2], [0, 0], [0, 0], [0, 0], [0, 0]], np.int32)
    mask = np.array([[True, True], [True, False], [True, False], [True, False]] + [[False, False]] * 4)
    targets = {"train_rows": TRAIN_ROWS, "anchors": np.array([0, 1, 2, 3], np.int32), "partner_idx": idx,
               "partner_weight": np.ones((8, 2), np.float32), "partner_mask": mask}
    cfg = ObjectiveConfig(kind="co-like", prior=False)
    batch = sample_batch(device_data(targets), 3, 6, objective=cfg)
    rows = np.asarray(batch.items)
    anchors, partners = rows[:6] - 2, rows[6:] - 2           # back to target indices
    allowed = {a: set(idx[a][mask[a]].tolist()) for a in range(4)}
    assert all(p in allowed[a] for a, p in zip(anchors.tolist(), partners.tolist()))
    assert batch.words is None and set(batch.extras) == {"positive", "exclude"}
    triplets = sample_batch(device_data(targets), 3, 6, objective=ObjectiveConfig(kind="co-like", co_like_loss="loss",
                                                                               prior=False))
    t = np.asarray(triplets.items) - 2
    assert t.shape == (6, 3) and all(p in allowed[a] for a, p in zip(t[:, 0].tolist(), t[:, 1].tolist()))
    assert triplets.words.shape == (6, 3, 1)


def test_history_slice_draws_2048_random_items_by_default():
    """The default slice (docs/OBJECTIVES.md: 2048 uniform training items beside the users' likes,
    chosen on ml-latest-small's validation user-to-item Recall@20): S = users x per_user + 2048
    slots, the random ones training rows, repeats masked."""
    assert ObjectiveConfig().history_random == 2048
    hist = {"train_rows": TRAIN_ROWS, "prior": np.zeros(N, np.float32), "user_pool": np.array([0, 1], np.int32),
            "hist_items": np.array([[0, 3, 8], [1, 2, 8]], np.int32), "hist_len": np.array([2, 2], np.int32)}
    b = sample_batch(device_data(hist), 1, 99, objective=ObjectiveConfig(kind="history", history_users=2,
                                                                         history_per_user=2))
    items, mask = np.asarray(b.items), np.asarray(b.extras["item_mask"])
    assert items.shape == (2 * 2 + 2048,) and b.extras["likes"].shape == (2, 2 * 2 + 2048)
    assert set(items.tolist()) <= set(TRAIN_ROWS.tolist()) and sorted(items[mask].tolist()) == sorted(TRAIN_ROWS.tolist())


def test_history_and_distill_batches_with_the_prior():
    prior = np.linspace(-1, 1, N).astype(np.float32)
    hist = {"train_rows": TRAIN_ROWS, "prior": prior, "user_pool": np.array([0, 1], np.int32),
            "hist_items": np.array([[0, 3, 8], [1, 2, 8]], np.int32), "hist_len": np.array([2, 2], np.int32)}
    cfg = ObjectiveConfig(kind="history", history_users=2, history_per_user=2, history_random=3)
    b = sample_batch(device_data(hist), 1, 99, objective=cfg)
    assert b.items.shape == (2 * 2 + 3,) and b.extras["likes"].shape == (2, 7)
    assert np.array_equal(np.asarray(b.extras["prior_target"]), prior[np.asarray(b.items)])
    assert np.array_equal(np.asarray(b.extras["prior_mask"]), np.asarray(b.extras["item_mask"]))
    teacher = np.eye(8, 4, dtype=np.float32)
    dist = {"train_rows": TRAIN_ROWS, "prior": prior, "liked_pool": np.array([1, 4, 6], np.int32), "teacher": teacher}
    cfg = ObjectiveConfig(kind="distill", teacher="svd")
    b = sample_batch(device_data(dist), 2, 5, objective=cfg)
    picked = np.asarray(b.extras["picked"])
    assert set(picked.tolist()) <= {1, 4, 6} and np.array_equal(np.asarray(b.items), TRAIN_ROWS[picked])
    assert np.array_equal(np.asarray(b.extras["teacher_vec"]), teacher[picked]) and b.extras["prior_mask"].all()
