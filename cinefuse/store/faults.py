"""A test hook: stop a store operation at a named point, to check what a crash there leaves.

``CINEFUSE_STORE_FAULT=POINT[:ACTION[:N]]`` acts the N-th time (default 1) this process
reaches POINT. ACTION ``kill`` (the default) SIGKILLs the process; ``pause`` waits for a line on
stdin, so a test can act next to a live writer. Before acting it prints ``fault POINT`` on stdout
(flushed): the test then knows the process was alive at that point. Without the variable,
reaching a point costs one environment lookup.

Points (in commit order): ``shard-temp-written`` (the shard's temp file is complete and
fsynced, no lock taken), ``shard-renamed`` (under the lock, shard files renamed into place, the
manifest not yet written), ``manifest.json-temp-written`` (the new manifest's temp file is
complete, not yet renamed over the old one).
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "CINEFUSE_STORE_FAULT"
POINTS = ("shard-temp-written", "shard-renamed", "manifest.json-temp-written")
_reached: dict[str, int] = {}


def fault_point(point: str) -> None:
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
        return
    os.kill(os.getpid(), signal.SIGKILL)
