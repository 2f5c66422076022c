"""fuse/selection.py alone: the early-stopping rule and the kept parameters, against a reference
written out by hand, and the checkpoint record round trip."""

from __future__ import annotations

import numpy as np

from cinefuse.fuse.selection import MIN_GAIN, Selection, keep


def test_first_evaluation_always_improves_then_gains_must_beat_min_gain():
    s = Selection.start(2, patience=0)
    s, improved = s.update([0.1, -5.0], 40)          # first evaluation: both improve, whatever the value
    assert improved.tolist() == [True, True] and s.best_step == (40, 40) and s.best_ndcg10 == (0.1, -5.0)
    s, improved = s.update([0.1 + MIN_GAIN / 2, -4.0], 80)  # a gain under MIN_GAIN is no improvement
    assert improved.tolist() == [False, True]
    assert s.best_ndcg10 == (0.1, -4.0) and s.best_step == (40, 80) and s.bad == (1, 0)
    assert s.stopped == (False, False)               # patience 0: never stops


def test_patience_stops_a_member_and_a_stopped_member_is_left_alone():
    s = Selection.start(2, patience=2)
    s, _ = s.update([0.5, 0.5], 10)
    s, _ = s.update([0.4, 0.6], 20)
    s, imp = s.update([0.3, 0.7], 30)
    assert s.stopped == (True, False) and s.bad == (2, 0) and imp.tolist() == [False, True] and not s.all_stopped
    s, imp = s.update([0.9, 0.1], 40)                 # member 0 stopped: its 0.9 does not count
    assert imp.tolist() == [False, False] and s.best_ndcg10 == (0.5, 0.7) and s.bad == (2, 1)
    s, _ = s.update([0.9, 0.1], 50)
    assert s.all_stopped and s.best_step == (10, 30)


def test_meta_round_trip_is_the_checkpoint_layout():
    s, _ = Selection.start(3, patience=4).update([0.2, 0.3, 0.1], 200)
    meta = s.meta(12.5, False)
    assert meta == {"best_ndcg10": [0.2, 0.3, 0.1], "bad": [0, 0, 0], "best_step": [200, 200, 200],
                    "stopped": [False, False, False], "elapsed": 12.5, "done": False}
    assert Selection.from_meta(meta, 4) == s


def test_keep_takes_the_improved_members_rows_only():
    kept = {"w": np.zeros((3, 2, 2), np.float32), "b": np.zeros((3,), np.float32)}
    params = {"w": np.arange(12, dtype=np.float32).reshape(3, 2, 2), "b": np.array([7, 8, 9], np.float32)}
    out = keep(kept, params, np.array([False, True, False]))
    assert out["w"][1].tolist() == [[4, 5], [6, 7]] and not out["w"][[0, 2]].any()
    assert out["b"].tolist() == [0, 8, 0]
    assert keep(kept, params, np.zeros(3, bool)) is kept
