"""Issue 24 item 1 (fuse side): one fuse per workdir. A second `cinefuse fuse` on a workdir another
live process is recording stops at once with one line naming the holder, and its failure removes
nothing the first run wrote; a lock left by a killed run is taken over; the recorded configs never
hold an endpoint URL's password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import small_config, write_synthetic_store  # noqa: E402

CINEFUSE = Path(sys.executable).with_name("cinefuse")

# a first "fuse" that records the workdir as run_fuse does, writes a split and waits for stdin to close
HOLDER = """
import sys
from cinefuse.fuse.config import FuseConfig
from cinefuse.fuse.workdir import Workdir, write_json
wd = Workdir(sys.argv[1])
with wd.recording(FuseConfig(), grid=False):
    write_json(wd.split_path, {"train": [], "val": [], "test": []})
    print("ready", flush=True)
    sys.stdin.read()
"""


def start_holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_fuse_stops_at_once_naming_the_holder_and_removes_nothing(tmp_path):
    env = write_synthetic_store(tmp_path, n_items=60, n_users=40)
    root = tmp_path / "w"
    holder = start_holder(root)
    try:
        before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
        assert {"config.json", "split.json", ".cinefuse.lock"} <= set(before)
        t0 = time.monotonic()
        done = subprocess.run([str(CINEFUSE), "fuse", "--store", env["store"], "--ratings", env["ratings"],
                               "--movies", env["movies"], "--workdir", str(root), "--objective", "thesis",
                               "--no-progress"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "JAX_PLATFORMS": "cpu"})
        assert done.returncode != 0
        lines = [x for x in done.stderr.splitlines() if "error" in x]
        assert len(lines) == 1, done.stderr
        assert f"{root} is in use by cinefuse fuse (pid {holder.pid} on " in lines[0]
        assert "Traceback" not in done.stderr
        assert time.monotonic() - t0 < 60
        # nothing the holder wrote was touched
        after = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
        assert after == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert not (root / ".cinefuse.lock").exists() and (root / "config.json").is_file()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    from cinefuse.fuse.config import FuseConfig
    from cinefuse.fuse.workdir import Workdir

    root = tmp_path / "w"
    holder = start_holder(root)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert (root / ".cinefuse.lock").exists()
    with Workdir(root).recording(FuseConfig(), grid=False):
        assert json.loads((root / ".cinefuse.lock").read_text())["pid"] == os.getpid()
    assert not (root / ".cinefuse.lock").exists()


def test_a_failed_start_removes_only_what_it_created(tmp_path):
    from cinefuse.fuse.config import FuseConfig
    from cinefuse.fuse.workdir import Workdir

    root = tmp_path / "w"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with Workdir(root).recording(FuseConfig(), grid=False) as wd:
            wd.split_path.write_text("{}")
            raise RuntimeError("failed before training")
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]


def test_recorded_configs_hold_no_endpoint_password(tmp_path):
    from cinefuse.fuse.config import as_config
    from cinefuse.fuse.plan import plan_runs
    from cinefuse.fuse.workdir import Workdir

    env = {"store": "s3://bucket/store", "ratings": "r.csv", "movies": "m.csv"}
    config = as_config(small_config(env, data={"endpoint_url": "http://alice:s3cret@127.0.0.1:9000"},
                                    model={"modalities": ["visual/x"]}))
    wd = Workdir(tmp_path / "w")
    with wd.recording(config, grid=False):
        run = plan_runs(config, grid=False)[0][0]
        wd.save_run_record(run.name, run.record(config))
    for path in (wd.config_path, wd.run_dir(run.name) / "config.json"):
        text = path.read_text()
        assert "s3cret" not in text and "alice" not in text and "http://***@127.0.0.1:9000" in text
    # the same config again is the same record (a resume is not refused)
    with wd.recording(config, grid=False):
        wd.save_run_record(run.name, run.record(config))
