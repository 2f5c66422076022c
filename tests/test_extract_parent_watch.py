"""Decoding workers end when extract's main process is killed (issue 24, item 6).

A real DataLoader from ``cinefuse.extract.reader.make_loader`` (its worker initializer, 2 worker
processes, forked, or spawned as they are once JAX is loaded) over a dataset whose items take five
minutes to decode; the main process is SIGKILLed while both workers are inside an item, and both
must be gone within seconds (PyTorch's own watchdog would only notice between items).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cinefuse.extract.parent_watch import exit_with_parent

REPO = Path(__file__).resolve().parents[1]

DATASET = '''
import os, time
from pathlib import Path

class Item:
    video = "slow.mp4"

class SlowDataset:
    """Each item announces the worker decoding it, then takes five minutes."""

    def __init__(self, n, marks):
        self.items, self.marks = [Item() for _ in range(n)], marks

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        Path(self.marks, f"worker-{os.getpid()}").touch()
        time.sleep(300)
        return index
'''

RUNNER = '''
import sys

if __name__ == "__main__":  # spawned workers import this file again
    marks, context = sys.argv[1], sys.argv[2]
    if context == "spawn":
        import jax  # noqa: F401  (make_loader spawns its workers once JAX is loaded)
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.reader import make_loader
    from slow_dataset import SlowDataset

    loader = make_loader(ExtractConfig(workers=2, batch_size=1, device="cpu"), SlowDataset(8, marks))
    ctx = loader.multiprocessing_context
    assert (ctx.get_start_method() if ctx is not None else "fork") == context
    next(iter(loader))  # blocks: every item takes five minutes
'''


def alive(pid: int) -> bool:
    """Running (a zombie left for init to reap counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_decode_workers_exit_when_the_main_process_is_killed(tmp_path, context):
    (tmp_path / "slow_dataset.py").write_text(textwrap.dedent(DATASET))
    (tmp_path / "runner.py").write_text(textwrap.dedent(RUNNER))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]), "JAX_PLATFORMS": "cpu"}
    main = subprocess.Popen([sys.executable, str(tmp_path / "runner.py"), str(marks), context], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and main.poll() is None:
            time.sleep(0.2)
            workers = sorted(int(p.name.split("-")[1]) for p in marks.iterdir())
        assert len(workers) == 2, f"workers never started decoding: {main.communicate(timeout=30)[0]!r}"
        assert all(alive(pid) for pid in workers)
        os.kill(main.pid, signal.SIGKILL)
        main.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in workers if alive(pid)] == [], "decode workers outlived the killed main process"
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
        for pid in workers:  # only the workers this test started
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_watch_leaves_a_live_parent_alone():
    thread = exit_with_parent(interval=0.01)
    time.sleep(0.1)
    assert thread.is_alive() and thread.daemon and thread.name == "cinefuse-parent-watch"
