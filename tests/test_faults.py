"""cinefuse/faults.py: the one crash-test hook. A child process marks points; ``CINEFUSE_FAULT``
says where it is killed, stopped or paused, and on which pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from cinefuse.faults import ENV, fault_spec

CHILD = """
import sys
from cinefuse.faults import fault_point
for k in range(3):
    print(f"before {k}", flush=True)
    fault_point("loop")
    fault_point("other")
print("end", flush=True)
"""


def child(spec: str | None, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if spec is not None:
        env[ENV] = spec
    return subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                            text=True, **kwargs)


def test_without_the_variable_nothing_happens():
    out, _ = child(None).communicate(timeout=60)
    assert out == "before 0\nbefore 1\nbefore 2\nend\n"


@pytest.mark.parametrize("spec", ["loop", "loop:kill", "loop:kill:2", fault_spec("loop", "kill", 3)])
def test_kill_at_the_nth_pass(spec):
    nth = int(spec.split(":")[2]) if spec.count(":") == 2 else 1
    process = child(spec)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert out == "".join(f"before {k}\n" for k in range(nth)) + "fault loop\n"


def test_stop_leaves_the_process_alive_at_the_point():
    process = child(fault_spec("loop", "stop", 2))
    try:
        _, status = os.waitpid(process.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and process.poll() is None
        os.kill(process.pid, signal.SIGCONT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and out == "before 0\nbefore 1\nfault loop\nbefore 2\nend\n"


def test_pause_waits_for_a_line_on_stdin():
    process = child(fault_spec("other", "pause", 1))
    assert process.stdout.readline() == "before 0\n"
    assert process.stdout.readline() == "fault other\n"
    out, _ = process.communicate("\n", timeout=60)
    assert process.returncode == 0 and out == "before 1\nbefore 2\nend\n"


def test_an_unknown_action_is_refused_when_the_spec_is_made():
    with pytest.raises(ValueError, match=r"^fault action 'explode': expected one of kill, stop, pause$"):
        fault_spec("loop", "explode")
