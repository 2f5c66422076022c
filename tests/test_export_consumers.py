"""The frameworks themselves load cinefuse exports: Cornac builds its evaluation method from the
lines the export prints and fits VBPR (which needs item features) on it; RecBole's own dataset
loader reads the atomic files. Each skips with a reason where its package is not installed
(RecBole 1.2.1 pins ray<=2.6.3, which this environment's ray 2.60 does not meet, so it is not a
dev dependency; `make test-all` installs it beside the venv without its pins and names the folder in
CINEFUSE_RECBOLE_SITE, which this module appends to the path)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
if os.environ.get("CINEFUSE_RECBOLE_SITE"):
    sys.path.append(os.environ["CINEFUSE_RECBOLE_SITE"])

from test_export import SETS, build_env, expected_parts, store_rows, usable_everywhere  # noqa: E402

PARTS = ("train", "val", "test")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("consumers"))


@pytest.mark.slow
def test_cornac_fits_vbpr_on_the_export_and_scores_cold_items(env, tmp_path):
    pytest.importorskip("cornac", reason="cornac not installed (pip install cornac)")
    import cornac

    from cinefuse.export.cornac import export_cornac

    result = export_cornac(tmp_path / "c", SETS, workdir=env["workdir"])
    readme = result.readme
    code = readme[readme.index("# Load into Cornac"):readme.index("\nLeft out")]
    namespace: dict = {}
    exec(code, namespace)  # the very lines the export printed
    method = namespace["method"]
    keep = usable_everywhere(env)
    expected = expected_parts(env, set(keep))
    assert method.train_set.num_ratings == len(expected["train"])
    assert method.test_set.num_ratings == len(expected["test"])
    assert method.total_items == len(keep)
    # the image modality holds each item's store row at Cornac's own index of that item
    image = method.train_set.item_image.features
    rows = store_rows(env)["visual/effnet"]
    for item, index in method.global_iid_map.items():
        assert np.array_equal(image[index], rows[item][0])
    model = cornac.models.VBPR(k=4, k2=4, n_epochs=3, batch_size=64, learning_rate=0.01, seed=0, verbose=False)
    model.fit(method.train_set, method.val_set)
    cold = [method.global_iid_map[i] for i in env["split"]["test"] if i in method.global_iid_map]
    assert cold and min(cold) >= method.train_set.num_items  # test items are unknown to training
    for user in range(3):
        scores = model.score(user)
        assert scores.shape == (len(keep),) and np.isfinite(scores).all()
        assert np.isfinite(scores[cold]).all() and np.ptp(scores[cold]) > 0  # features tell cold items apart


@pytest.mark.slow
def test_recbole_loads_the_export_with_its_dataset_loader(env, tmp_path, monkeypatch):
    pytest.importorskip("recbole", reason="recbole not installed (it pins ray<=2.6.3; see the module docstring)")
    # RecBole 1.2.1 aliases numpy names that NumPy 2 removed (np.float_ ...) when it builds a Config
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    monkeypatch.setattr(np, "complex_", np.complex128, raising=False)
    monkeypatch.setattr(np, "unicode_", np.str_, raising=False)
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ and saved/ into the working folder
    from recbole.config import Config
    from recbole.data import create_dataset

    from cinefuse.export.recbole import export_recbole

    export_recbole(tmp_path / "rb", SETS, workdir=env["workdir"], name="ml")
    config = Config(model="BPR", dataset="ml", config_file_list=[str(tmp_path / "rb" / "recbole.yaml")],
                    config_dict={"show_progress": False, "save_dataset": False})
    dataset = create_dataset(config)
    keep = usable_everywhere(env)
    expected = expected_parts(env, set(keep))
    assert dataset.inter_num == sum(len(expected[p]) for p in PARTS)
    assert dataset.file_size_list == [len(expected[p]) for p in PARTS]
    weight = dataset.get_preload_weight("iid")
    assert weight.shape == (len(keep) + 1, 24)  # RecBole's row 0 is its padding item
    tokens = dataset.field2id_token["item_id"].tolist()
    rows = store_rows(env)
    for item in keep:
        assert np.array_equal(weight[tokens.index(item)].astype(np.float32), rows["visual/effnet"][item][0])
