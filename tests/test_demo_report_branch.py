"""The demo as a user runs it: `cinefuse demo` with its defaults (several minutes on 2 quiet cores,
more than 15 on the shared machine under load, so it is marked slow: `make test-all` runs it;
`make test` keeps test_demo_pipeline's small demo), and the report's "does NOT beat" branch on a
tiny collection whose ratings carry no taste at all (in `make test`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from cinefuse.demo.collection import CollectionConfig
from cinefuse.demo.pipeline import DemoConfig, run_demo
from cinefuse.demo.report import verdict_sentence

FULL, SINGLE_MODALITIES = DemoConfig.FULL, DemoConfig.SINGLE_MODALITIES


def scores_from_results(workdir, verdict) -> dict:
    """nDCG@10 of the verdict's models as the evaluate stage wrote them (results.json)."""
    results = json.loads((workdir / "fuse" / "evaluation" / "cold-item" / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    return {m: float(rows[name]["metrics"]["nDCG@10"]) for m, name in verdict["models"].items()}


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_default_demo_run(tmp_path):
    workdir = tmp_path / "demo"
    out = subprocess.run([sys.executable, "-m", "cinefuse", "demo", "--workdir", str(workdir)],
                         capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((workdir / "demo.json").read_text())
    v = record["verdict"]
    assert record["config"]["collection"]["items"] == 400 and record["config"]["collection"]["users"] == 400
    scores = scores_from_results(workdir, v)
    assert all(abs(scores[m] - v["singles"][m]) < 1e-12 for m in SINGLE_MODALITIES) and scores[FULL] == v["full"]
    # each rival's paired difference is full minus that rival, and a win needs every interval above 0
    for name, p in v["paired"].items():
        assert abs(p["diff"] - (v["full"] - p["value"])) < 1e-9, (name, p)
    assert v["fusion_wins"] == all(p["ci_low"] > 0 for p in v["paired"].values())
    word = "beats" if v["fusion_wins"] else "does NOT beat"
    assert out.stdout.splitlines()[0].startswith(f"full fusion nDCG@10 {v['full']:.4f} {word} every single modality")
    assert re.fullmatch(r"demo finished in [0-9.]+ s; report: " + re.escape(str(workdir / "report.md")),
                        out.stdout.splitlines()[1])
    assert verdict_sentence(v) in (workdir / "report.md").read_text()


def tasteless_demo(seed: int) -> DemoConfig:
    config = DemoConfig(collection=CollectionConfig(items=60, users=80, seed=seed, size=48, fps=4, seconds=2.0,
                                                    ratings_per_user=(20, 40), taste_weight=0.0),
                        workers=0, progress=False)
    config.extract = {**config.extract, "frames": 2, "image_size": 64, "batch_size": 32}
    config.fuse = {**config.fuse, "split": {"fractions": [0.5, 0.2, 0.3]},   # enough validation items to rank
                   "train": {**config.fuse["train"], "steps": 100, "eval_every": 100, "checkpoint_every": 100,
                             "batch_size": 32},
                   "grid": {"losses": ["triplet"], "distances": ["cosine"],
                            "modalities": [*SINGLE_MODALITIES, FULL], "heads": []}}
    return config


@pytest.mark.slow  # ~31 s (a whole demo run); make test-all runs it
def test_report_says_does_not_beat_when_fusion_loses(tmp_path):
    """With taste_weight 0 the ratings are noise: no modality can predict them, and for this seed
    the full model ranks below a single one. The verdict and the report must say so."""
    result = run_demo(tmp_path / "demo", tasteless_demo(seed=1), log=lambda m: None)
    v = result.verdict
    scores = scores_from_results(result.workdir, v)
    best_single = max(scores[m] for m in SINGLE_MODALITIES)
    assert scores[FULL] <= best_single, f"fusion won on noise for this seed ({scores}); pick another seed"
    assert v["fusion_wins"] is False and abs(v["margin"] - (scores[FULL] - best_single)) < 1e-12
    report = result.report.read_text()
    behind = [n for n, p in v["paired"].items() if p["diff"] <= 0]
    assert behind and all(abs(v["paired"][m]["diff"] - (scores[FULL] - scores[m])) < 1e-9 for m in SINGLE_MODALITIES)
    assert verdict_sentence(v) in report and "**Full fusion does NOT beat every rival**" in report
    assert "**Full fusion beats every single modality" not in report
    assert json.loads((result.workdir / "demo.json").read_text())["verdict"]["fusion_wins"] is False
    assert f"| **full** | {v['models'][FULL]} | **{scores[FULL]:.4f}** |" in report
