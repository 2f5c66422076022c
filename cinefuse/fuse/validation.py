"""Validation in both tasks (issue 20): what it reads, built once by ``prepare``, and the measures.

Item-to-item (the pinned nDCG@10): queries and candidates the split's validation items, relevance
their likes in the ratings (users with two or more liked validation items). User-to-item
(Recall@20, nDCG@10): users with at least one liked training item (among the ratings training may
see, ``fuse.pairs.training_ratings``, so no validation or test item is ever in a history) and at
least one liked validation item; candidates the validation items; score of c for u the mean over
u's liked training items h of cos(e_h, e_c) (``metrics.device_ranking``). Both on the device, in
bounded memory; above ``device_ranking.MAX_QUERIES`` queries (users) a seeded sample of them is
scored (``sampling`` in the model's summary.json says how many and the seed).

``SELECTION_METRIC`` names each task's selection metric (item-to-item nDCG@10, pinned;
user-to-item Recall@20): ``[selection] task`` picks the one that keeps the checkpoint and stops
early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cinefuse.choices import SELECTION_TASKS

I2I, U2I = SELECTION_TASKS
SELECTION_METRIC = {I2I: "ndcg10", U2I: "u2i_recall20"}


@dataclass
class ValidationSet:
    likes: object                    # (U, V) likes of the validation items, users with >= 2: dense or Likes
    queries: np.ndarray | None       # the scored query positions among the V items (None: all)
    hist_rows: np.ndarray            # (H,) rows (into the split's ids) of the training items in a history
    histories: object                # (U2, H) the user-to-item users' liked training items (device_ranking.Likes)
    relevant: object                 # (U2, V) their liked validation items (device_ranking.Likes)
    users: np.ndarray | None         # the scored user-to-item users (None: all)
    seed: int

    def sampling(self) -> dict:
        """What validation scored: the summary's record of any sample."""
        return {"i2i_queries": None if self.queries is None else int(len(self.queries)),
                "u2i_users": None if self.users is None else int(len(self.users)),
                "u2i_users_total": int(self.relevant.n_users), "seed": self.seed}


def build(ratings, seen, ids: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray, threshold: float,
          seed: int) -> ValidationSet:
    """The validation set of both tasks from ``ratings`` (all), ``seen`` (the ratings training
    may see) and the split's rows; None-free (the caller checks there is something to score)."""
    from cinefuse.metrics.device_ranking import DENSE_LIKES, Likes, sample_rows
    from cinefuse.metrics.likes import like_matrix

    val = like_matrix(ratings.user, ratings.item, ratings.rating, ids[val_rows], threshold)
    keep = np.asarray(val.X.sum(axis=1)).ravel() >= 2
    x = val.X[keep]
    likes = (x.toarray() > 0) if x.shape[0] * x.shape[1] <= DENSE_LIKES else Likes.of(x)
    hist = like_matrix(seen.user, seen.item, seen.rating, ids[train_rows], threshold)
    users = np.intersect1d(val.user_ids, hist.user_ids)
    rel = val.X[np.searchsorted(val.user_ids, users)]
    his = hist.X[np.searchsorted(hist.user_ids, users)]
    used = np.unique(his.indices)
    his = his[:, used]
    return ValidationSet(likes, sample_rows(len(val_rows), seed), train_rows[used], Likes.of(his), Likes.of(rel),
                         sample_rows(len(users), seed + 1), seed)


def scan_best(scan: dict) -> float:
    """The weight of a prior scan {w: value} with the best value (the smallest on ties)."""
    return max(scan, key=lambda w: (scan[w], -w))
