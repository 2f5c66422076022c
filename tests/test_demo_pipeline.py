"""The demo end to end on a small instance: render -> extract -> fuse grid -> evaluate -> report.

The designed property: on cold (unseen) items, full fusion beats each single modality on nDCG@10.
"""

from __future__ import annotations

import json

import pytest

from cinefuse.demo.collection import CollectionConfig
from cinefuse.demo.pipeline import DemoConfig, run_demo


def small_demo() -> DemoConfig:
    config = DemoConfig(
        collection=CollectionConfig(items=120, users=150, seed=0, size=48, fps=4, seconds=2.0,
                                    ratings_per_user=(30, 60)),
        workers=0,
        progress=False,
    )
    config.extract = {**config.extract, "frames": 2, "image_size": 64, "batch_size": 32}
    config.fuse = {
        **config.fuse,
        "objective": {"kind": "thesis"},   # these tests read the thesis rows (named by loss)
        "train": {**config.fuse["train"], "steps": 200, "eval_every": 100, "checkpoint_every": 200,
                  "batch_size": 64},
        "grid": {"losses": ["triplet"], "distances": ["cosine"],
                 "modalities": ["visual", "audio", "text", "full"], "heads": []},
    }
    return config


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo-run")
    return run_demo(workdir, small_demo(), log=lambda msg: None)


def test_full_fusion_beats_every_single_modality_on_cold_items(demo):
    from cinefuse.metrics.bootstrap import paired_bootstrap

    v = demo.verdict
    assert v["metric"] == "nDCG@10"
    assert v["models"]["full"] == "triplet-cosine-full-concat-mlp"
    assert set(v["singles"]) == {"visual", "audio", "text"}
    assert list(v["paired"]) == ["visual", "audio", "text", "cosine all concatenated"]
    full = demo.results.row(v["models"]["full"])
    for name, p in v["paired"].items():
        rival = demo.results.row(p["rival"])
        assert p["diff"] == pytest.approx(full.metrics["nDCG@10"] - rival.metrics["nDCG@10"], abs=1e-12)
        iv = paired_bootstrap(full.per_query.of("nDCG@10"), rival.per_query.of("nDCG@10"), seed=0)
        assert (p["ci_low"], p["ci_high"], p["p_better"]) == (iv.low, iv.high, iv.share_above_zero)
        assert p["beats"] == (iv.low > 0)
    assert v["fusion_wins"] == all(p["ci_low"] > 0 for p in v["paired"].values())
    # the designed property, on the means: full fusion above each single modality, far from chance
    for modality, score in v["singles"].items():
        assert v["full"] > score, (modality, v)
    assert v["full"] > v["baselines"]["random"] + 0.05, v
    assert v["queries"] == demo.results.counts["queries_with_relevant"]


def test_report_and_records_are_written(demo):
    from cinefuse.demo.report import verdict_sentence

    w = demo.workdir
    report = demo.report.read_text()
    assert demo.report == w / "report.md"
    v = demo.verdict
    assert verdict_sentence(v) in report
    p = v["paired"]["text"]
    assert (f"| text | triplet-cosine-text-concat-mlp | {p['value']:.4f} | {p['diff']:+.4f} | "
            f"[{p['ci_low']:+.4f}, {p['ci_high']:+.4f}] | {p['p_better']:.3f} |") in report
    assert "| **full** | triplet-cosine-full-concat-mlp |" in report
    assert "score ties broken by a seeded random candidate order, seed 0" in report
    assert (w / "modalities.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((w / "demo.json").read_text())
    assert record["verdict"]["fusion_wins"] is v["fusion_wins"]
    assert set(record["seconds"]) == {"collection", "extract", "fuse", "evaluate", "total"}
    # every stage's output is where the pipeline says
    assert (w / "collection" / "ratings.csv").is_file()
    assert (w / "store" / "manifest.json").is_file()
    assert (w / "fuse" / "split.json").is_file()
    assert (w / "fuse" / "evaluation" / "cold-item" / "results.md").is_file()
    # the test items of the split are cold: no training pair touches them
    split = json.loads((w / "fuse" / "split.json").read_text())
    assert split["protocol"] == "cold-item"
    assert not set(split["test"]) & set(split["train"])


def made_results(full_shift: dict):
    """Results with a full model and its rivals: per-query nDCG@10 of the full model is the
    rival's plus ``full_shift[rival]`` (plus noise), over 60 queries."""
    import numpy as np

    from cinefuse.evaluate.results import Results, Row
    from cinefuse.metrics.metrics import PerQuery

    rng = np.random.default_rng(0)
    base = rng.random(60)
    scored = np.ones(60, bool)

    def row(name, kind, values):
        pq = PerQuery({"nDCG@10": values}, scored)
        return Row(name, kind, {"nDCG@10": float(values.mean())}, None, 0.0, per_query=pq)

    rows = [row("triplet-cosine-full-concat-mlp", "model", base)]
    for name, shift in full_shift.items():
        kind = "itemknn-cbf" if name.startswith("cosine") else "model"
        rows.append(row(name, kind, np.clip(base - shift + rng.normal(0, 0.01, 60), 0, None)))
    return Results("cold-item", (10,), rows)


@pytest.mark.parametrize("shifts, wins, point", [
    ((0.05, 0.05, 0.05, 0.05), True, True),     # every interval above 0
    ((0.05, 0.05, 0.0005, 0.05), False, True),  # above on the means, one interval across 0
    ((0.05, -0.05, 0.05, 0.05), False, False),  # behind audio
])
def test_verdict_branches_say_what_the_intervals_show(shifts, wins, point):
    from cinefuse.demo.pipeline import fusion_verdict
    from cinefuse.demo.report import verdict_sentence

    names = ["triplet-cosine-visual-concat-mlp", "triplet-cosine-audio-concat-mlp",
             "triplet-cosine-text-concat-mlp", "cosine all concatenated"]
    v = fusion_verdict(made_results(dict(zip(names, shifts))), small_demo())
    assert (v["fusion_wins"], v["beats_point"]) == (wins, point)
    sentence = verdict_sentence(v)
    if wins:
        assert sentence == ("**Full fusion beats every single modality and the raw concatenation** (visual, audio, "
                            "text, cosine all concatenated): every paired 95% interval of the difference lies above 0.")
    elif point:
        assert sentence.startswith("**Full fusion does NOT beat every rival with confidence**")
        assert "against text;" in sentence
    else:
        assert sentence == ("**Full fusion does NOT beat every rival**: it scores at or below audio; no paired "
                            "interval above 0 against audio.")


def test_offline_backbones_see_each_genre_in_its_own_modality_only(demo):
    """The extracted features (EfficientNet-Lite0 + low-level, log-mel, MiniLM) carry exactly the
    signal the collection planted: own genre nearly always, other modalities' genres near chance."""
    from test_demo_collection import loo_nearest_centroid

    from cinefuse.demo.collection import load_collection
    from cinefuse.store import open_store

    collection = load_collection(demo.workdir / "collection")
    sets = {"visual": "visual/effnet", "audio": "audio/logmel_stats", "text": "text/minilm"}
    table = open_store(demo.workdir / "store").load(list(sets.values()), ids=collection.ids)
    for modality, name in sets.items():
        x = table.features[name].astype("float64")
        assert table.valid[name].all()
        for genre in ("visual", "audio", "text"):
            accuracy = loo_nearest_centroid(x, collection.genres[genre])
            if genre == modality:
                assert accuracy >= 0.95, (name, genre, accuracy)
            else:
                assert accuracy <= 0.6, (name, genre, accuracy)
