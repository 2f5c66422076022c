"""One lock per folder being written (a store, a workdir): a lock file naming its holder.

The lock is a file ``.cinefuse.lock`` in the folder holding the holder's pid, host, boot id,
process start time and what it is doing (JSON). It is created with ``O_CREAT | O_EXCL |
O_NOFOLLOW``, so two processes can never both create it and a link planted at its name is never
followed. A second process finds it and stops at once with one line naming the holder::

    with hold(workdir, "cinefuse fuse"):
        ...

A lock whose holder is gone (this host, same boot, and no live process with that pid and start
time; or a file left empty by a process killed while creating it) is stale: the next process
removes it and takes the folder. A holder on another host cannot be checked from here and is
treated as alive; the message says which file to delete if that process is gone.

Every check and create happens under an ``flock`` of a guard (the folder itself, or the file
``.cinefuse.lock.guard`` where the filesystem cannot lock a folder, or the store's
``.manifest.lock``), so a stale lock is taken over by one process only and a holder is never
judged while another is being created. A guard file is opened without following links and never
written; with the folder as its guard, a released lock leaves the folder as it found it.

A folder may have holders that keep no lock file (the store's writers, which add shards side by
side and are known by their temp files): ``others`` names a live one, checked under the guard,
and such a holder checks :func:`live_holder` under the same guard before it starts. Nested use
in one process (a holder taking the same folder again) is a no-op.

Ground floor: imports nothing of cinefuse but the errors.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from cinefuse.errors import CinefuseError

LOCK_NAME = ".cinefuse.lock"
GUARD_NAME = ".cinefuse.lock.guard"
_MAX_LOCK_BYTES = 4096


class LockedError(CinefuseError):
    """Another process holds the folder."""


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22): with the
    pid, it names one process even after the pid is reused."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: written into the lock file, read back by the next process."""

    pid: int
    host: str
    started: str
    what: str
    boot: str = ""
    ticks: int | None = None

    @classmethod
    def me(cls, what: str) -> "Holder":
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   what, _boot_id(), _start_ticks(os.getpid()))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Holder | None":
        try:
            raw = json.loads(data.decode("utf-8"))
            return cls(int(raw["pid"]), str(raw["host"]), str(raw["started"]), str(raw.get("what", "")),
                       str(raw.get("boot", "")), None if raw.get("ticks") is None else int(raw["ticks"]))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            return None

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode("utf-8")

    def is_me(self) -> bool:
        return self.host == socket.gethostname() and self.pid == os.getpid()

    def alive(self) -> bool:
        """False only when this host can tell the process is gone."""
        if self.host != socket.gethostname():
            return True
        if self.boot and self.boot != _boot_id():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        now = _start_ticks(self.pid)
        return self.ticks is None or now is None or now == self.ticks

    def describe(self) -> str:
        return f"{self.what or 'a cinefuse process'} (pid {self.pid} on {self.host}, since {self.started})"


@contextlib.contextmanager
def guard(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if absent, 0666 less the umask, never written,
    never through a link), released on exit or when the process dies."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CinefuseError(f"{path} is a symbolic link, not a lock file cinefuse made; "
                                "remove it (cinefuse never writes through links)") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CinefuseError(f"{path} is not a regular file; remove it")
        with _flocked(fd):
            yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _flocked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def folder_guard(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` of the folder itself, so the folder gets no file beyond the lock
    while it is held; where the filesystem refuses a lock on a folder (NFS emulates ``flock``
    with write locks, which a folder cannot take), the file ``.cinefuse.lock.guard`` instead."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                raise
        else:
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return
    finally:
        os.close(fd)
    with guard(folder / GUARD_NAME):
        yield


def read_holder(path: Path) -> tuple[Holder | None, os.stat_result | None]:
    """The holder a lock file names (None for an empty or garbled file), and the file's identity
    (None when it is gone). A link or anything but a regular file at a lock name is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LockedError(f"{path} is a symbolic link, not a lock cinefuse made; remove it") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LockedError(f"{path} is not a regular file, not a lock cinefuse made; remove it")
        return Holder.from_bytes(os.read(fd, _MAX_LOCK_BYTES)), info
    finally:
        os.close(fd)


def locked_error(folder: Path, holder: Holder, path: Path | None = None) -> "LockedError":
    where = "" if holder.host == socket.gethostname() or path is None else (
        f"; it runs on another host: if it is gone, delete {path}")
    return LockedError(f"{folder} is in use by {holder.describe()}{where}; "
                       "wait for it to finish or stop it, then run this again")


def live_holder(folder: str | os.PathLike, name: str = LOCK_NAME, *, take_stale: bool = True) -> Holder | None:
    """The live holder of ``folder``'s lock other than this process, or None. Call it under the
    folder's guard; a stale lock file found is removed (unless ``take_stale`` is False)."""
    path = Path(folder) / name
    holder, info = read_holder(path)
    if info is None:
        return None
    if holder is None or not holder.alive():
        if take_stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # under the guard: nobody else judges or creates meanwhile
        return None
    return None if holder.is_me() else holder


@dataclass
class FolderLock:
    """The lock on one folder; use :func:`hold`."""

    folder: Path
    what: str
    name: str = LOCK_NAME
    guard_name: str | None = None  # None: the folder itself (see folder_guard)
    others: Callable[[], Holder | None] | None = None  # a live holder keeping no lock file
    path: Path | None = None  # our lock file while held (None: not held, or nested in our own)

    def acquire(self) -> "FolderLock":
        with guard(self.folder / self.guard_name) if self.guard_name else folder_guard(self.folder):
            path = self.folder / self.name
            holder = live_holder(self.folder, self.name)
            if holder is not None:
                raise locked_error(self.folder, holder, path)
            if path.exists():  # ours, taken further up this process's stack
                return self
            other = self.others() if self.others is not None else None
            if other is not None:
                raise locked_error(self.folder, other)
            mine = Holder.me(self.what)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            try:
                os.write(fd, mine.to_bytes())
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                os.unlink(path)
                raise
            os.close(fd)
            self.path = path
        return self

    def release(self) -> None:
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def hold(folder: str | os.PathLike, what: str, *, guard_name: str | None = None,
         others: Callable[[], Holder | None] | None = None) -> FolderLock:
    """The lock on ``folder`` (which must exist), taken on ``with``: ``what`` is the line the
    next process reads (e.g. ``"cinefuse fuse"``). Raises :class:`LockedError` naming the holder
    when another live process holds it."""
    return FolderLock(Path(folder), what, guard_name=guard_name, others=others)
