"""The extraction progress bar and the throughput it shows: one clock, one set of counters.

The bar's ``items/s, frames/s`` and the run summary's ``items_per_second`` and
``frames_per_second`` are read from the same :class:`Throughput`, so the figure a user watches
and the figure the summary prints are the same number. The clock starts when the bar is made
(after the models are loaded, just before the extraction loop) and stops in :meth:`close`.
tqdm's own smoothed rate is left out of the bar: it would be a second, different items/s.
"""

from __future__ import annotations

import time

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def rate_text(items: int, frames: int, seconds: float) -> str:
    """``"3.51 items/s, 56.2 frames/s"``: the bar's postfix and the summary's rate line."""
    seconds = max(seconds, 1e-9)
    return f"{items / seconds:.2f} items/s, {frames / seconds:.1f} frames/s"


class Throughput:
    """Counts items and frames done since it was made, and shows them on a tqdm bar on stderr
    (``enabled=False``: counts only)."""

    def __init__(self, total: int, enabled: bool, desc: str = "extract"):
        from cinefuse.progress import progress_bar

        self.items = 0
        self.frames = 0
        self._stopped: float | None = None
        self.bar = progress_bar(total, desc, "item", enabled=bool(enabled), dynamic_ncols=True, mininterval=0.5,
                                smoothing=0, bar_format=BAR_FORMAT)
        self._started = time.perf_counter()

    @property
    def seconds(self) -> float:
        end = self._stopped if self._stopped is not None else time.perf_counter()
        return end - self._started

    def text(self) -> str:
        return rate_text(self.items, self.frames, self.seconds)

    def add(self, items: int, frames: int) -> None:
        self.items += items
        self.frames += frames
        self.bar.set_postfix_str(self.text(), refresh=False)
        self.bar.update(items)

    def close(self) -> None:
        """Stop the clock and draw the bar a last time with the final figures."""
        if self._stopped is None:
            self._stopped = time.perf_counter()
            self.bar.set_postfix_str(self.text(), refresh=False)
        self.bar.close()

    def summary(self) -> dict:
        """The summary's throughput fields, from the stopped clock (call after :meth:`close`)."""
        seconds = max(self.seconds, 1e-9)
        return {"extract_seconds": self.seconds, "items_per_second": self.items / seconds,
                "frames_per_second": self.frames / seconds}
