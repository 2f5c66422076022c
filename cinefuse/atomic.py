"""Files written whole or not at all, created where they belong and never through a link.

Every temporary file is created in the folder of its target (so the final ``rename`` stays on
one filesystem) with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a name someone planted there, a file or
a symbolic link pointing elsewhere, makes the create fail and another random name is tried, so
no byte is ever written outside the folder. The rename replaces a link at the target name
itself, never what it points to.

A full disk is a user's problem with a user's fix: :func:`disk_full` turns ``ENOSPC`` into one
line naming the folder and the bytes needed; the half-written temporary file is removed first.

Ground floor: imports nothing of cinefuse but the errors.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable

from cinefuse.errors import CinefuseError

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(CinefuseError):
    """A write ran out of space (or quota) in a folder."""


def create_exclusive(folder: str | os.PathLike, prefix: str, suffix: str = "", *,
                     attempts: int = 16) -> tuple[Path, int]:
    """A new, empty file ``folder/<prefix><random><suffix>`` and a descriptor open for writing.
    Created exclusively without following links, mode 0666 less the umask; a taken name (a
    file, or a link planted there) is passed over for another random one."""
    folder = Path(folder)
    for _ in range(attempts):
        path = folder / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            return path, os.open(path, CREATE_FLAGS, 0o666)
        except FileExistsError:
            continue
    raise CinefuseError(f"cannot create a temporary file in {folder}: {attempts} random names were all taken")


def fd_path(fd: int, path: Path) -> str:
    """A name that opens the very file behind ``fd`` (``/proc/self/fd/N``), for libraries that
    take a name (h5py): whatever replaces ``path`` meanwhile, they write the file we created.
    Where ``/proc`` is absent, ``path`` itself."""
    proc = f"/proc/self/fd/{fd}"
    return proc if os.path.exists(proc) else str(path)


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


def disk_full(folder: str | os.PathLike, needed: int | None, what: str) -> DiskFullError:
    """The one line for a write that ran out of space: the folder, the bytes ``what`` needs
    (when known), the bytes free now."""
    try:
        free = f"{shutil.disk_usage(folder).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    need = f"needs {needed:,} bytes" if needed else "needs more than that"
    return DiskFullError(f"no space left in {folder}: {what} {need} ({free}); "
                         "free some space or write somewhere else, then run the command again")


def require_free(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Refuse before writing anything when ``folder`` lacks ``needed`` bytes."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed:
        raise disk_full(folder, needed, what)


def atomic_write(path: str | os.PathLike, content: bytes | Callable[[BinaryIO], None], *,
                 before_rename: Callable[[], None] | None = None) -> None:
    """Write ``path`` so that a reader sees the old file or the new one, never half: ``content``
    (bytes, or a function writing to a binary file) goes to an exclusive temporary file next to
    ``path``, which is fsynced and renamed over it; then the folder is fsynced. Killed or failing
    at any point, ``path`` is as it was and the temporary file is removed (unless killed).
    ``before_rename`` runs with the temporary file complete (a test's crash point)."""
    path = Path(path)
    tmp, fd = create_exclusive(path.parent, f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_disk_full(exc):
            size = len(content) if isinstance(content, (bytes, bytearray)) else None
            raise disk_full(path.parent, size, f"writing {path.name}") from exc
        raise
    fsync_dir(path.parent)
