"""The one progress-bar factory: every long task's bar is made here (ground floor, no stage import).

``progress_bar(total, desc, unit, enabled)`` returns a tqdm bar on stderr. ``enabled=None`` is
tqdm's own rule (on where stderr is a terminal); ``False`` turns it off. Keyword arguments pass
through to tqdm (``initial``, ``unit_scale``, ``leave``, ``bar_format``, ``smoothing`` ...), so
every caller keeps the look it had while the defaults live in one place.
"""

from __future__ import annotations

import sys


def progress_bar(total=None, desc: str | None = None, unit: str = "it", enabled: bool | None = True, **kwargs):
    """A tqdm bar on stderr (see the module docstring)."""
    from tqdm import tqdm

    kwargs.setdefault("file", sys.stderr)
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled is None else not enabled, **kwargs)
