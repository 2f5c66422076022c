"""cinefuse.choices is the one home of every choice name: the stages that act on a choice accept
exactly the names it lists, and the old protocols module is gone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cinefuse import choices
from cinefuse.errors import CinefuseError


def test_the_stages_accept_exactly_the_listed_names():
    from cinefuse.datasets.download import RELEASES
    from cinefuse.datasets.ratings_file import ON_BAD_RATINGS
    from cinefuse.evaluate.tasks import TASKS
    from cinefuse.metrics.ties import TIE_BREAKS

    assert choices.EVAL_TASKS == tuple(TASKS)
    assert choices.TIE_BREAKS == TIE_BREAKS
    assert choices.ON_BAD_RATINGS == ON_BAD_RATINGS
    assert set(choices.DATASET_VERSIONS) == set(RELEASES)


def test_frame_samplings_are_checked_against_the_list():
    from cinefuse.extract.config import ExtractConfig

    for mode in choices.FRAME_SAMPLINGS:
        assert ExtractConfig(frame_sampling=mode).frame_sampling == mode
    with pytest.raises(CinefuseError, match="frame_sampling must be 'keyframe' or 'exact', got 'fast'"):
        ExtractConfig(frame_sampling="fast")


def test_every_index_kind_builds_and_another_is_refused():
    pytest.importorskip("faiss")
    from cinefuse.evaluate.index import build_index

    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    for kind in choices.INDEX_KINDS:
        index, _ = build_index(x, kind)
        assert index.ntotal == 300
    with pytest.raises(CinefuseError, match="index kind 'lsh' is unknown; choose one of auto, flat, hnsw, ivf"):
        build_index(x, "lsh")


def test_the_protocols_module_is_gone():
    assert not Path(choices.__file__).with_name("protocols.py").exists()
