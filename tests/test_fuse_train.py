"""Training end to end on a store with a planted signal: held-out separation, masking counts,
embeddings for evaluate, the workdir layout, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

from cinefuse.errors import CinefuseError, StoreError  # noqa: E402

BAD = {"text/minilm": {"invalid": [3]}, "visual/effnet": {"nan": [5]}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("fuse")
    env = write_synthetic_store(root, bad_rows=BAD)
    summary = run_fuse(small_config(env), root / "w", log=lambda m: None)
    return env, root / "w", summary


def test_trained_model_separates_held_out_items(trained):
    from cinefuse.fuse.embed import embed_items, list_models

    env, workdir, summary = trained
    assert list_models(workdir) == ["triplet-cosine-full-concat-mlp"]
    ids, emb = embed_items(workdir, "triplet-cosine-full-concat-mlp")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    split = json.loads((workdir / "split.json").read_text())
    assert split["protocol"] == "cold-item"
    train, test = set(split["train"]), set(split["test"])
    assert not train & test and len(test) > 10
    with np.load(workdir / "pairs.npz") as z:
        split_ids, pairs, labels = z["ids"], z["test_pairs"], z["test_labels"]
    row = {i: k for k, i in enumerate(ids.tolist())}
    a = emb[[row[i] for i in split_ids[pairs[:, 0]]]]
    b = emb[[row[i] for i in split_ids[pairs[:, 1]]]]
    d = 1.0 - np.sum(a * b, axis=1)
    # test items were never seen in training; their pairs are judged by the planted genre clusters
    d_pos, d_neg = d[labels == 1].mean(), d[labels == 0].mean()
    assert d_neg - d_pos > 0.5, (d_pos, d_neg)
    from cinefuse.fuse.train import _auc
    assert _auc(d, labels) > 0.95


def test_bad_rows_are_masked_and_counted(trained):
    env, workdir, summary = trained
    counts = summary["feature_counts"]
    assert counts["items"] == 160 and counts["kept"] == 158 and counts["excluded_missing_modality"] == 2
    assert counts["per_feature_set"]["text/minilm"] == {"invalid": 1, "nonfinite": 0, "masked": 1}
    assert counts["per_feature_set"]["visual/effnet"] == {"invalid": 0, "nonfinite": 1, "masked": 1}
    split = json.loads((workdir / "split.json").read_text())
    everything = set(split["train"]) | set(split["val"]) | set(split["test"])
    assert "4" not in everything and "6" not in everything and len(everything) == 158
    from cinefuse.fuse.embed import embed_items, last_embed_counts
    ids, _ = embed_items(workdir, "triplet-cosine-full-concat-mlp")
    assert last_embed_counts == {"items": 160, "embedded": 158, "left_out": 2}
    assert "4" not in ids.tolist()


def test_workdir_layout_and_records(trained):
    env, workdir, summary = trained
    run = workdir / "runs" / "triplet-cosine-full-concat-mlp"
    for name in ("config.json", "metrics.jsonl", "curves.png", "distances.png", "summary.json", "feature_stats.npz"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints").is_dir() and (run / "params").is_dir()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [40, 80, 120, 160, 200]
    assert lines[-1]["val_auc"] > 0.9
    record = json.loads((workdir / "config.json").read_text())
    assert record["train"]["steps"] == 200 and record["loss"]["kind"] == "triplet"
    assert json.loads((run / "summary.json").read_text())["train_seconds"] > 0
    # the same command again: nothing retrained, same summary
    from cinefuse.fuse.train import run_fuse
    again = run_fuse(small_config(env), workdir, log=lambda m: None)
    assert again["runs"][0]["val_auc"] == summary["runs"][0]["val_auc"]
    with pytest.raises(CinefuseError, match="different fuse config"):
        run_fuse(small_config(env, train={"seed": 7}), workdir, log=lambda m: None)


def test_missing_feature_set_is_a_clear_error(trained, tmp_path):
    from cinefuse.fuse.train import run_fuse

    env, _, _ = trained
    with pytest.raises(StoreError, match=r"feature set 'audio/hubert' is not in store .* run `cinefuse extract`"):
        run_fuse(small_config(env, model={"modalities": ["visual/effnet", "audio/hubert"]}), tmp_path / "w",
                 log=lambda m: None)


def test_config_validation(tmp_path):
    from cinefuse.fuse.config import load_config

    path = tmp_path / "fuse.toml"
    path.write_text('[loss]\nkind = "triplet"\ndistnce = "cosine"\n')
    with pytest.raises(CinefuseError, match="unknown key 'distnce' in \\[loss\\]"):
        load_config(path)
    path.write_text('[model]\nhead = "transformer"\n')
    with pytest.raises(CinefuseError, match="model.head = 'transformer' is not one of"):
        load_config(path)
    path.write_text('[model]\nmodalities = "visual+smell"\n')
    from cinefuse.fuse.config import resolve_modalities  # modality names are checked against the store
    with pytest.raises(CinefuseError, match="modality 'smell'"):
        resolve_modalities(load_config(path), {"visual/effnet": True})
    path.write_text('[train]\nsteps = 110\nsteps_per_call = 50\n')
    with pytest.raises(CinefuseError, match="train.steps \\(110\\) must be a multiple"):
        load_config(path)
    cfg = load_config(None, {"loss": {"kind": "pair", "distance": "euclidean"}})
    assert cfg.loss.resolved_margin() == 1.0


def test_grid_trains_configurations_as_one_program(trained, tmp_path):
    from cinefuse.fuse.train import run_fuse

    env, _, _ = trained
    cfg = small_config(env, grid={"losses": ["pair", "triplet"], "distances": ["cosine"],
                                  "modalities": ["visual", "full"], "heads": []},
                       train={"steps": 100, "eval_every": 100, "checkpoint_every": 100})
    summary = run_fuse(cfg, tmp_path / "g", grid=True, log=lambda m: None)
    assert sorted(summary["models"]) == ["pair-cosine-full-concat-mlp", "pair-cosine-visual-concat-mlp",
                                         "triplet-cosine-full-concat-mlp", "triplet-cosine-visual-concat-mlp"]
    # one program per modality set: {pair, triplet} x {cosine} vmapped together
    assert all(r["group_size"] == 2 for r in summary["runs"])
    assert all(r["val_auc"] > 0.9 for r in summary["runs"]), summary["table"]
    assert summary["table"].splitlines()[0].startswith("model")
    record = json.loads((tmp_path / "g" / "runs" / "pair-cosine-visual-concat-mlp" / "config.json").read_text())
    # a visual member's tower holds only the visual encoders: nothing computed for audio or text
    assert record["feature_sets"] == ["visual/effnet", "visual/lowlevel"] and record["token_mask"] == [1, 1]
    assert sorted(p.name for p in (tmp_path / "g" / "grid").iterdir()) == ["full-concat-mlp", "visual-concat-mlp"]
    from cinefuse.fuse.embed import embed_items
    ids, emb = embed_items(tmp_path / "g", "pair-cosine-visual-concat-mlp")
    assert emb.shape == (159, 16)  # item 4 lacks only text/minilm, which a visual model does not need


def test_grid_programs_vmap_and_unrolled_agree(trained, tmp_path):
    """The two ways of making a group one program train the same members to the same parameters."""
    import jax

    from cinefuse.fuse.embed import load_model
    from cinefuse.fuse.train import run_fuse

    env, _, _ = trained
    leaves = {}
    for program in ("vmap", "unrolled"):
        cfg = small_config(env, grid={"losses": ["pair", "triplet"], "distances": ["euclidean"],
                                      "modalities": ["visual"], "heads": []},
                           train={"steps": 40, "eval_every": 40, "checkpoint_every": 40, "grid_program": program})
        summary = run_fuse(cfg, tmp_path / program, grid=True, log=lambda m: None)
        assert [r["program"] for r in summary["runs"]] == [program, program]
        leaves[program] = {m: jax.tree.leaves(load_model(tmp_path / program, m)[1]) for m in summary["models"]}
    assert sorted(leaves["vmap"]) == ["pair-euclidean-visual-concat-mlp", "triplet-euclidean-visual-concat-mlp"]
    for model, ref in leaves["vmap"].items():
        for a, b in zip(ref, leaves["unrolled"][model], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
