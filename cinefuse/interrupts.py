"""Ctrl-C that lands between units of work, never inside one.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when SIGINT arrives.
During training that is often inside a callback of jax's runtime (its gc hook swallows the
exception with "Exception ignored in: _xla_gc_callback" and the run goes on) or inside orbax's
asynchronous checkpoint save (whose threads then print tracebacks at exit). ``DeferredInterrupt``
records the signal instead, and the loop asks ``raise_if_pending()`` at a point where stopping is
clean: after the step call returned and any checkpoint in flight has finished.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable


class DeferredInterrupt:
    """``with DeferredInterrupt() as stop: ... stop.raise_if_pending(before=flush)``.

    Outside the main thread (where signal handlers cannot be installed) it does nothing and the
    default behaviour stays. A second Ctrl-C while one is pending interrupts at once, so a loop that
    never reaches its check can still be stopped.
    """

    def __init__(self) -> None:
        self.pending = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def raise_if_pending(self, before: Callable[[], None] | None = None) -> None:
        """Raise ``KeyboardInterrupt`` when Ctrl-C arrived; ``before`` runs first (e.g. waiting for
        a checkpoint save to finish)."""
        if self.pending:
            if before is not None:
                before()
            raise KeyboardInterrupt
