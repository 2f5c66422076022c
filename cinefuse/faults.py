"""The one fault-injection hook for crash tests (ground floor: no stage import).

``CINEFUSE_FAULT=POINT[:ACTION[:N]]`` acts the N-th time (default 1) this process reaches
POINT. Before acting it prints ``fault POINT`` on stdout (flushed): a test reading stdout then
knows the process was alive at that point. ACTION is one of

- ``kill`` (the default): SIGKILL the process, as a crash there would;
- ``stop``: SIGSTOP the process, so a test can look at the disk at a known moment (it waits for
  the stop with ``waitpid(..., WUNTRACED)``) and then kill it;
- ``pause``: wait for a line on stdin, so a test can act next to a live process.

Without the variable, reaching a point costs one environment lookup. Points, by room:

- store (in commit order): ``shard-temp-written`` (the shard's temp file is complete and fsynced,
  no lock taken), ``shard-renamed`` (under the lock, shard files renamed into place, the manifest
  not yet written), ``manifest.json-temp-written`` (the new manifest's temp file is complete, not
  yet renamed over the old one);
- extract: ``forward`` (after a forward batch), ``before-commit`` (a chunk computed, nothing of it
  written), ``after-commit`` (a chunk's shard committed to the manifest).
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "CINEFUSE_FAULT"
ACTIONS = ("kill", "stop", "pause")
_reached: dict[str, int] = {}


def fault_spec(point: str, action: str = "kill", nth: int = 1) -> str:
    """The value of :data:`ENV` that acts the ``nth`` time the process reaches ``point``."""
    if action not in ACTIONS:
        raise ValueError(f"fault action {action!r}: expected one of {', '.join(ACTIONS)}")
    return f"{point}:{action}:{nth}"


def fault_point(point: str) -> None:
    """Mark ``point``: act here if :data:`ENV` names it (see the module docstring)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != point:
        return
    action, _, nth = rest.partition(":")
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] != int(nth or 1):
        return
    print(f"fault {point}", flush=True)
    if action == "pause":
        sys.stdin.readline()
    elif action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        os.kill(os.getpid(), signal.SIGKILL)
