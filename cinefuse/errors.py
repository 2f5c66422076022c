"""The one exception type for mistakes a user can cause and fix.

The CLI prints its message (no traceback) and exits with ``exit_code``. Library callers catch it
like any exception. Messages name the thing that is wrong and say how to fix it.
"""


class CinefuseError(Exception):
    """A user-facing error: bad path, unknown backbone, missing feature set, damaged store."""

    exit_code = 2


class StoreError(CinefuseError):
    """The store is missing, damaged, or lacks what was asked of it."""
