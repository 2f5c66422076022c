"""The one order score ties follow, for every ranking cinefuse makes.

Every ranking keeps the lower position among equal scores (``top_k_cosine``, ``top_k_by_score``,
``lax.top_k``, the faiss index re-sort), so the order candidates are held in *is* the tie rule.
Two rules exist, and this module holds both:

- ``"random"`` (evaluate's default): a permutation seeded by ``tie_seed`` of the id order.
  MovieLens ids follow the catalogue's age and popularity, so id order would hand a feature
  with many ties (release year) a score it did not earn.
- ``"id"``: the id order itself (``id_sort_key``): ``recommend`` and the ``index`` answer in it,
  and ``evaluate --tie-break id`` uses it for comparison.

On the host, :func:`tie_permutation` / :func:`tie_order` give the order of a set of ids. On the
device (validation during training), :func:`device_tie_order` permutes the N validation items
with a JAX key, and :func:`validation_tie_key` derives that key from the training seed.
"""

from __future__ import annotations

import numpy as np

from cinefuse.choices import TIE_BREAKS
from cinefuse.errors import CinefuseError
from cinefuse.metrics.ranking import id_sort_key

TIE_STREAM = 0x7E5  # folded into the training seed: the validation's random tie order


def check_tie_break(tie_break: str) -> None:
    if tie_break not in TIE_BREAKS:
        raise CinefuseError(f"unknown tie-break {tie_break!r}; choose one of {', '.join(TIE_BREAKS)}")


def tie_permutation(ids, tie_break: str = "random", tie_seed: int = 0) -> np.ndarray:
    """Indices that put ``ids`` in the order score ties follow. The permutation is drawn over the
    id-sorted ids, so the same set of ids gets the same order whatever order it came in."""
    check_tie_break(tie_break)
    by_id = id_sort_key(np.asarray(ids, dtype=str))
    if tie_break == "id":
        return by_id
    return by_id[np.random.default_rng(tie_seed).permutation(by_id.size)]


def tie_order(candidate_ids, tie_break: str = "random", tie_seed: int = 0) -> np.ndarray:
    """``candidate_ids`` (str) in the order score ties follow (see :func:`tie_permutation`)."""
    candidate_ids = np.asarray(candidate_ids, dtype=str)
    return candidate_ids[tie_permutation(candidate_ids, tie_break, tie_seed)]


def validation_tie_key(seed: int):
    """The JAX key of the validation's random tie order for a run trained with ``seed``."""
    import jax

    return jax.random.fold_in(jax.random.PRNGKey(seed), TIE_STREAM)


def device_tie_order(key, n: int):
    """The seeded candidate order ties follow on the device: position p of the ranking pass
    holds item perm[p]."""
    import jax

    return jax.random.permutation(key, n)
