"""cinefuse.locks: one holder per folder, named to whoever comes second; stale locks of dead
processes taken over by exactly one process; never a write through a link. Real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from cinefuse.errors import CinefuseError
from cinefuse.locks import GUARD_NAME, LOCK_NAME, Holder, LockedError, hold

HOLDER = """
import sys, time
from cinefuse.locks import hold
with hold(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""

# Several processes started together, each trying once to take a folder and holding it a while.
RACER = """
import sys, time
from cinefuse.locks import LockedError, hold
time.sleep(float(sys.argv[2]) - time.time())  # start together
try:
    with hold(sys.argv[1], "racer"):
        print("won", flush=True)
        time.sleep(1.5)
except LockedError as exc:
    print("lost", exc, flush=True)
"""


def start_holder(folder, what="cinefuse fuse"):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), what], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "held\n", child.stderr.read()
    return child


def stop(child):
    if child.poll() is None:
        child.kill()
    child.wait()


def lock_json(folder):
    return json.loads((folder / LOCK_NAME).read_text())


def test_second_holder_stops_at_once_naming_the_first(tmp_path):
    child = start_holder(tmp_path)
    try:
        held = lock_json(tmp_path)
        assert held["pid"] == child.pid and held["host"] == socket.gethostname() and held["what"] == "cinefuse fuse"
        started = time.monotonic()
        with pytest.raises(LockedError) as err:
            with hold(tmp_path, "cinefuse fuse"):
                pass
        assert time.monotonic() - started < 2
        assert str(err.value) == (f"{tmp_path} is in use by cinefuse fuse (pid {child.pid} on {socket.gethostname()}, "
                                  f"since {held['started']}); wait for it to finish or stop it, then run this again")
        assert lock_json(tmp_path) == held  # the refused process left the holder's lock alone
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "released\n"
        assert child.wait(timeout=30) == 0
    finally:
        stop(child)
    assert not (tmp_path / LOCK_NAME).exists()
    with hold(tmp_path, "the next run") as lock:  # free again
        assert lock_json(tmp_path)["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []  # the folder is its own guard: released, nothing is left


def test_lock_of_a_sigkilled_holder_is_taken_over(tmp_path):
    child = start_holder(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert lock_json(tmp_path)["pid"] == child.pid  # left behind
    with hold(tmp_path, "after the crash"):
        assert lock_json(tmp_path)["pid"] == os.getpid() and lock_json(tmp_path)["what"] == "after the crash"


def write_lock(folder, **fields):
    me = Holder.me("someone")
    raw = {"pid": me.pid, "host": me.host, "started": "2026-01-01T00:00:00Z", "what": "someone", "boot": me.boot,
           "ticks": me.ticks}
    raw.update(fields)
    (folder / LOCK_NAME).write_text(json.dumps(raw))


def test_a_reused_pid_a_reboot_and_an_empty_lock_file_are_stale(tmp_path):
    parent = os.getppid()  # alive, but not the process that wrote the lock: its start time differs
    for stale in ({"pid": parent, "ticks": 1}, {"pid": parent, "boot": "another-boot"}):
        write_lock(tmp_path, **stale)
        with hold(tmp_path, "mine"):
            assert lock_json(tmp_path)["pid"] == os.getpid()
    (tmp_path / LOCK_NAME).write_bytes(b"")  # a holder killed between create and write
    with hold(tmp_path, "mine"):
        assert lock_json(tmp_path)["pid"] == os.getpid()


def test_a_live_pid_with_its_start_time_holds(tmp_path):
    parent = os.getppid()
    text = open(f"/proc/{parent}/stat").read()
    ticks = int(text[text.rindex(")") + 2:].split()[19])  # proc(5): field 22, starttime
    write_lock(tmp_path, pid=parent, ticks=ticks, what="cinefuse store merge")
    with pytest.raises(LockedError, match=f"^{tmp_path} is in use by cinefuse store merge \\(pid {parent} on "):
        hold(tmp_path, "mine").acquire()


def test_holder_on_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, host="node-7", pid=12345)
    with pytest.raises(LockedError) as err:
        hold(tmp_path, "mine").acquire()
    assert str(err.value) == (
        f"{tmp_path} is in use by someone (pid 12345 on node-7, since 2026-01-01T00:00:00Z); it runs on another "
        f"host: if it is gone, delete {tmp_path / LOCK_NAME}; wait for it to finish or stop it, then run this again")
    assert lock_json(tmp_path)["host"] == "node-7"


def test_nested_hold_in_one_process_is_a_no_op(tmp_path):
    with hold(tmp_path, "outer"):
        with hold(tmp_path, "inner"):
            assert lock_json(tmp_path)["what"] == "outer"
        assert lock_json(tmp_path)["what"] == "outer"  # the inner exit did not release the outer hold
    assert not (tmp_path / LOCK_NAME).exists()


def test_racers_on_a_stale_lock_exactly_one_wins(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path, pid=dead.pid, what="a killed run")
    at = time.time() + 2.0
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(at)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(5)]
    outs = [r.communicate(timeout=60)[0] for r in racers]
    assert all(r.returncode == 0 for r in racers), outs
    won = [o for o in outs if o == "won\n"]
    lost = [o for o in outs if o.startswith("lost ")]
    assert len(won) == 1 and len(lost) == 4, outs
    assert all("is in use by racer (pid" in o for o in lost)


def test_links_at_the_lock_or_guard_name_are_refused_and_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "work"
    folder.mkdir()
    for name in (LOCK_NAME, GUARD_NAME):
        target = outside / f"target-of-{name}"
        (folder / name).symlink_to(target)
        with pytest.raises(CinefuseError, match="is a symbolic link"):
            hold(folder, "mine", guard_name=GUARD_NAME).acquire()  # a guard file, as on NFS
        assert not target.exists()  # never created through the link
        for left in folder.iterdir():
            left.unlink()
    assert list(outside.iterdir()) == []


def test_judging_and_creating_happen_under_the_guard(tmp_path):
    """While the guard is held (here by the test), another process can neither judge a stale lock
    nor create its own: it waits, then wins once the guard is free."""
    from cinefuse.locks import folder_guard

    write_lock(tmp_path, pid=999_999_999, what="a killed run")
    with folder_guard(tmp_path):
        child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "waiter"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(timeout=2)
            assert lock_json(tmp_path)["what"] == "a killed run"  # neither removed nor replaced meanwhile
        except BaseException:
            stop(child)
            raise
    try:
        assert child.stdout.readline() == "held\n"
        assert lock_json(tmp_path)["what"] == "waiter"
    finally:
        stop(child)
