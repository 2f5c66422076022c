"""Decoding workers end with the process that started them.

A DataLoader worker whose main process is killed (SIGKILL, the OOM killer) would otherwise go on
decoding its item: PyTorch's own watchdog looks at the parent only between items, and a worker
busy with a long video or blocked on a full queue can outlive it by minutes, holding its memory.
``exit_with_parent`` (called first thing in each worker) starts a daemon thread that polls
``os.getppid()`` and ends the worker with ``os._exit`` as soon as the parent is no longer the one
that started it (an orphan is re-parented to init or a subreaper).

A thread rather than Linux's ``prctl(PR_SET_PDEATHSIG)``: that signal fires when the *thread*
that created the child ends, not its process, so a loader iterated from a short-lived thread
would lose its workers while the run goes on; the poll is one cheap system call per interval and
works on every platform.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

POLL_SECONDS = 0.2
EXIT_CODE = 70  # the worker's status when its parent died (EX_SOFTWARE); nobody is left to read it


def _watch(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(EXIT_CODE)


def exit_with_parent(interval: float = POLL_SECONDS) -> threading.Thread:
    """End this process within ``interval`` seconds of its parent's death (a daemon thread). The
    parent is the process that started this one (``multiprocessing.parent_process()``), so a
    parent that died before this call is caught too."""
    started_by = multiprocessing.parent_process()
    parent = started_by.pid if started_by is not None and started_by.pid else os.getppid()
    thread = threading.Thread(target=_watch, args=(parent, interval), name="cinefuse-parent-watch", daemon=True)
    thread.start()
    return thread
