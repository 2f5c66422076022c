"""runlog.py: every fuse / evaluate / recommend / index run leaves W/logs/<command>-<UTC time>.log
with its command line, versions, host, times, what it printed and its exit status; progress
bars collapsed to their last state; a killed run leaves a readable log; a failed start leaves no
workdir; a TensorBoard folder that cannot be written costs one warning line, not the run."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import write_synthetic_store  # noqa: E402

from cinefuse.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = """\
[model]
token_dim = 16
hidden = 32
embed_dim = 16
[train]
batch_size = 32
steps = 40
steps_per_call = 20
eval_every = 40
checkpoint_every = 40
warmup_steps = 20
patience = 0
[pairs]
min_pairs_per_item = 2
[objective]
kind = "thesis"
"""
STAMP = r"\d{8}T\d{6}Z(-\d+)?"
MODEL = "triplet-cosine-full-concat-mlp"


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cinefuse ARGV`` in process, with sys.argv as the console script sets it."""
    saved = sys.argv
    sys.argv = [str(Path(sys.executable).parent / "cinefuse"), *argv]
    try:
        code = main(argv)
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    return code, out, err


def logs(workdir: Path, command: str) -> list[Path]:
    found = sorted((workdir / "logs").glob(f"{command}-*.log"))
    assert all(re.fullmatch(f"{command}-{STAMP}.log", p.name) for p in found), found
    return found


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """A tiny fuse run through the CLI, its TensorBoard folder blocked by a file."""
    root = tmp_path_factory.mktemp("runlog")
    env = write_synthetic_store(root, n_items=60, n_users=40, dims={"text/minilm": 6}, shards=1)
    (root / "tiny.toml").write_text(TINY)
    (root / "blocked").write_text("not a folder")
    argv = ["fuse", "--store", env["store"], "--ratings", env["ratings"], "--movies", env["movies"], "--config",
            str(root / "tiny.toml"), "--workdir", str(root / "w"), "--tensorboard", str(root / "blocked"),
            "--no-progress"]
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [str(Path(sys.executable).parent / "cinefuse"), *argv])
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        code = main(argv)
    return root, argv, code, out.getvalue(), err.getvalue()


def test_the_fuse_log_holds_the_command_versions_output_and_status(fused):
    import jax
    import jaxlib

    root, argv, code, out, err = fused
    assert code == 0
    (path,) = logs(root / "w", "fuse")
    lines = path.read_text().splitlines()
    assert lines[0] == "cinefuse fuse: log of one run"
    assert lines[1] == f"command line: {shlex.join(['cinefuse', *argv])}"
    assert f'"tensorboard": "{root / "blocked"}"' in lines[2] and lines[2].startswith("options: {")
    assert lines[3] == (f"versions: cinefuse 0.1.0, python {sys.version.split()[0]}, numpy {np.__version__}, "
                        f"jax {jax.__version__}, jaxlib {jaxlib.__version__}")
    assert lines[4].startswith(f"host: {os.uname().nodename}, pid {os.getpid()}, cwd ")
    assert re.fullmatch(r"started: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", lines[5])
    body = lines[lines.index("---- output (stdout and stderr)") + 1:lines.index("---- end")]
    # everything printed, stdout and stderr, is there (a tee keeps their order between the two)
    printed = out.splitlines() + err.splitlines()
    assert sorted(body) == sorted(printed) and out.splitlines()[0].startswith("model ")
    assert out.splitlines() == [x for x in body if x in out.splitlines()]
    warnings = [x for x in body if x.startswith("warning: TensorBoard")]
    assert warnings == [f"warning: TensorBoard events not written to {root / 'blocked' / MODEL} "
                        f"([Errno 20] Not a directory: '{root / 'blocked' / MODEL}'); training goes on without "
                        "them (--no-tensorboard turns them off)"]
    assert re.fullmatch(r"ended: \S+Z \(\d+\.\d s\)", lines[-2]) and lines[-1] == "exit status: 0"
    assert (root / "w" / "runs" / MODEL / "summary.json").is_file()        # trained all the same



def test_a_failing_evaluate_logs_its_one_line_error_and_status(fused, capsys):
    root, *_ = fused
    code, out, err = run_cli(["evaluate", "--workdir", str(root / "w"), "-k", "a"], capsys)
    assert code == 2 and out == ""
    (path,) = logs(root / "w", "evaluate")
    lines = path.read_text().splitlines()
    assert lines[1].endswith(f"cinefuse evaluate --workdir {root / 'w'} -k a")
    assert err == "cinefuse evaluate: error: --k 'a' must be comma-separated positive integers, e.g. 1,3,5,10\n"
    end = lines.index("---- end")
    assert lines[end + 1] == err.rstrip("\n") and lines[-1] == "exit status: 2"


def test_recommend_logs_its_result_lines(fused, capsys):
    root, *_ = fused
    code, out, _ = run_cli(["recommend", "--workdir", str(root / "w"), "--item", "7", "-k", "3"], capsys)
    assert code == 0
    (path,) = logs(root / "w", "recommend")
    text = path.read_text()
    assert all(line in text.splitlines() for line in out.splitlines()) and out.strip()
    assert text.endswith("exit status: 0\n")


def test_a_failed_fuse_start_leaves_no_workdir(fused, tmp_path, capsys):
    root, argv, *_ = fused
    fresh = tmp_path / "new"
    code, _, err = run_cli([*argv[:argv.index("--workdir")], "--workdir", str(fresh), "--steps", "30"], capsys)
    assert code == 2 and err.startswith("cinefuse fuse: error: train.steps (30) must be a multiple")
    assert not fresh.exists()


KILLED = """
import os, signal, sys
from types import SimpleNamespace
from cinefuse.runlog import RunLog
with RunLog("evaluate", sys.argv[1], SimpleNamespace(workdir=sys.argv[1])):
    print("ranking", flush=True)
    sys.stderr.write("bar:   0%\\rbar:  50%\\rbar: 100%\\n")
    sys.stderr.write("bar2: 10%\\rbar2: 20%")
    print("héllo, world")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_leaves_a_readable_log_with_bars_collapsed(tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    (w / "config.json").write_text("{}")
    done = subprocess.run([sys.executable, "-c", KILLED, str(w)], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, timeout=120)
    assert done.returncode == -9
    (path,) = logs(w, "evaluate")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[lines.index("---- output (stdout and stderr)") + 1:] == ["ranking", "bar: 100%", "héllo, world"]
    assert done.stderr.startswith(b"bar:   0%\rbar:  50%\rbar: 100%\n")   # the terminal saw every update


def test_no_log_in_a_folder_that_is_no_workdir_and_none_nested(tmp_path, capsys):
    from types import SimpleNamespace

    from cinefuse.runlog import RunLog

    plain = tmp_path / "plain"
    plain.mkdir()
    with RunLog("evaluate", plain, SimpleNamespace(workdir=plain)):
        print("x")
    assert list(plain.iterdir()) == []
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text("{}")
    with RunLog("index", tmp_path / "w") as outer:
        with RunLog("recommend", tmp_path / "w"):
            print("inner")
        outer.exit(0)
    (path,) = logs(tmp_path / "w", "index")
    assert "inner" in path.read_text().splitlines() and not logs(tmp_path / "w", "recommend")
    assert capsys.readouterr().out == "x\ninner\n"
