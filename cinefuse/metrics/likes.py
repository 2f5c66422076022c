"""Who liked what: the binary user x item like matrix from raw ratings.

One definition for training targets (fuse) and for relevance (metrics): a (user, item) rating
counts as a like when it is >= ``threshold``; a repeated (user, item) keeps its last rating, as
``build_relevance`` does. Only the ``item_ids`` asked for are columns (in that order); rows are the
users with at least one like among them, in ascending user order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class LikeMatrix:
    X: sp.csr_matrix       # (U, I) float32 with 1.0 where the user liked the item, sorted indices
    user_ids: np.ndarray   # (U,) the raw user of each row
    item_ids: np.ndarray   # (I,) str, the columns

    @property
    def like_counts(self) -> np.ndarray:
        """(I,) users who liked each item."""
        return np.asarray(self.X.sum(axis=0)).ravel().astype(np.int64)


def like_matrix(users, items, ratings, item_ids, threshold: float = 4.0) -> LikeMatrix:
    """Likes of ``item_ids`` from ratings ``users`` (n,), ``items`` (n,) str, ``ratings`` (n,)."""
    users = np.asarray(users)
    items = np.asarray(items, dtype=object)
    ratings = np.asarray(ratings, dtype=np.float32)
    item_ids = np.asarray(item_ids, dtype=object)
    col = pd.Index(item_ids).get_indexer(items)
    keep = col >= 0
    users, col, ratings = users[keep], col[keep], ratings[keep]
    user_ids, user_code = np.unique(users, return_inverse=True)
    # last rating of a repeated (user, item) wins: first occurrence in the reversed order
    code = user_code.astype(np.int64) * len(item_ids) + col
    _, first = np.unique(code[::-1], return_index=True)
    last = len(code) - 1 - first
    liked = last[ratings[last] >= threshold]
    liked_users = np.unique(user_code[liked])
    row = np.searchsorted(liked_users, user_code[liked])
    X = sp.csr_matrix((np.ones(len(liked), np.float32), (row, col[liked])),
                      shape=(len(liked_users), len(item_ids)))
    X.sort_indices()
    return LikeMatrix(X, user_ids[liked_users], item_ids)
