"""The one tie order (cinefuse.metrics.ties): host orders of a set of ids and the validation's
device order, checked against the rules written out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cinefuse.errors import CinefuseError
from cinefuse.metrics.ties import (
    TIE_BREAKS,
    device_tie_order,
    tie_order,
    tie_permutation,
    validation_tie_key,
)

IDS = np.array(["10", "2", "33", "1", "b", "a", "7"])


def test_id_rule_is_numeric_then_text_order():
    assert tie_order(IDS, "id").tolist() == ["1", "2", "7", "10", "33", "a", "b"]
    assert IDS[tie_permutation(IDS, "id")].tolist() == ["1", "2", "7", "10", "33", "a", "b"]


def test_random_rule_is_a_seeded_permutation_of_the_id_order():
    by_id = np.array(["1", "2", "7", "10", "33", "a", "b"])
    expected = by_id[np.random.default_rng(5).permutation(len(by_id))]
    assert tie_order(IDS, "random", 5).tolist() == expected.tolist()
    assert IDS[tie_permutation(IDS, "random", 5)].tolist() == expected.tolist()
    assert tie_order(IDS[::-1], "random", 5).tolist() == expected.tolist()  # the input order does not matter


def test_unknown_rule_is_one_line_error():
    with pytest.raises(CinefuseError, match=r"^unknown tie-break 'alpha'; choose one of random, id$"):
        tie_order(IDS, "alpha")
    assert TIE_BREAKS == ("random", "id")


def test_validation_key_and_device_order():
    import jax

    for seed in (0, 3, 12345):
        key = validation_tie_key(seed)
        expected = jax.random.fold_in(jax.random.PRNGKey(seed), 0x7E5)
        assert np.array_equal(np.asarray(jax.random.key_data(key)), np.asarray(jax.random.key_data(expected)))
    perm = np.asarray(device_tie_order(validation_tie_key(0), 50))
    assert sorted(perm.tolist()) == list(range(50))
    assert np.array_equal(perm, np.asarray(jax.random.permutation(validation_tie_key(0), 50)))
