"""A log file per command run in its workdir: ``W/logs/<command>-<UTC time>.log``.

``fuse``, ``evaluate``, ``recommend`` and ``index`` wrap their handler in :class:`RunLog` (the
:func:`logged` decorator): the log holds the command line and its parsed options, the versions
of cinefuse, Python, NumPy and JAX (and torch, when the run imported it), the host, the start and
end time, everything the command printed to stdout and stderr (a tee: the terminal sees what it
always saw), and the exit status with the one-line error a failing command ended with (the line
``cinefuse.cli.main`` prints; a bug's traceback instead).

A progress bar's carriage-return updates are collapsed to the state the bar ended in, so the log
holds one line per bar. Each whole line is appended with one ``write`` to a file opened
``O_APPEND``, so a killed run leaves a readable log that stops at the last line printed (no
end time, no status: that is how a killed run reads). Only what Python prints is caught: native
libraries writing straight to file descriptor 2 are not.

Where it goes: a workdir that holds a fuse record (``config.json``); ``fuse`` creates its workdir
first (``creates_workdir``). A command that ends without a record there (a fuse that failed
before anything trained, which takes its record away; an evaluate pointed at a folder that is
no workdir) takes its log away again, with the ``logs/`` folder and the workdir when it made
them, so a failed start still leaves no workdir behind. A workdir this user cannot write gets no
log and no extra line (the command itself says what it could not write). Logging never fails
the command: a write that fails stops the log, silently.

Ground floor: imports nothing of cinefuse but the errors and the version, and, when it needs
them, ``store.location.redact_url`` (no endpoint password in a log) and ``cinefuse.cli``'s
reading of a refused write (the exit status it gives).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from cinefuse.errors import CinefuseError

LOGS_DIR = "logs"
RECORD = "config.json"          # what makes a folder a fuse workdir (cinefuse.fuse.workdir)
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
VERSIONED = ("numpy", "jax", "jaxlib")
_ACTIVE: list = []              # the open log: a command run inside another's adds no second one


def logged(command: str, creates_workdir: bool = False):
    """Decorator for a command's handler ``handler(args) -> int`` with ``args.workdir``: the
    handler runs inside a :class:`RunLog` of ``command``."""
    def wrap(handler):
        @functools.wraps(handler)
        def run(args):
            with RunLog(command, args.workdir, args, creates_workdir) as log:
                return log.exit(handler(args))
        return run
    return wrap


class LogFile:
    """Whole lines appended to an open file descriptor, one ``write`` per batch of lines."""

    def __init__(self, fd: int):
        self.fd, self.lock = fd, threading.Lock()

    def write_lines(self, lines: list[str]) -> None:
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode("utf-8", "replace")
        with self.lock:
            try:
                while data and self.fd is not None:
                    data = data[os.write(self.fd, data):]
            except OSError:
                self.fd = None  # a full disk or a vanished folder ends the log, never the command

    def close(self) -> None:
        with self.lock:
            fd, self.fd = self.fd, None     # a bar closed later writes nowhere
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class LineSink:
    """One stream's text into a :class:`LogFile`: whole lines, carriage-return updates collapsed
    (each stream keeps its own unfinished line, so a bar on stderr never joins a line of stdout)."""

    def __init__(self, file: LogFile):
        self.file, self.pending, self.lock = file, "", threading.Lock()

    def feed(self, text: str) -> None:
        with self.lock:
            *lines, self.pending = (self.pending + text).split("\n")
            cut = self.pending.rstrip("\r").rfind("\r")
            if cut > 0:         # a bar redrawn in place: only its newest state can matter
                self.pending = self.pending[cut:]
            self.file.write_lines([collapsed(line) for line in lines])

    def finish(self) -> None:
        with self.lock:
            if collapsed(self.pending):
                self.file.write_lines([collapsed(self.pending)])
            self.pending = ""


def collapsed(line: str) -> str:
    """What a terminal shows of ``line`` written with carriage returns: the text after the last."""
    body = line.rstrip("\r")
    return body[body.rfind("\r") + 1:].rstrip()


class Tee:
    """A text stream that writes through to ``stream`` and feeds ``sink``; everything else
    (``fileno``, ``isatty``, ``encoding``) is the stream's."""

    def __init__(self, stream, sink: LineSink):
        self.stream, self.sink = stream, sink

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        self.sink.feed(text)
        return written

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self.stream, name)


class RunLog:
    """The log of one command run in ``workdir`` (see the module docstring). ``exit(code)``
    records the handler's return; an exception leaving the block records its exit status."""

    def __init__(self, command: str, workdir, args=None, creates_workdir: bool = False):
        self.command, self.root, self.args = command, Path(workdir), args
        self.creates_workdir, self.path, self.file, self.status = creates_workdir, None, None, None
        self.made: list[Path] = []

    def __enter__(self) -> RunLog:
        if _ACTIVE:
            return self
        self.t0, self.started = time.monotonic(), time.time()
        self.path, fd = self._open()
        if fd is None:
            return self
        self.file = LogFile(fd)
        _ACTIVE.append(self)
        self.file.write_lines(self._header())
        self.tees = Tee(sys.stdout, LineSink(self.file)), Tee(sys.stderr, LineSink(self.file))
        sys.stdout, sys.stderr = self.tees
        return self

    def exit(self, code):
        self.status = int(code or 0)
        return code

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.file is None:
            return
        for name, tee in zip(("stdout", "stderr"), self.tees):
            tee.sink.finish()
            if getattr(sys, name) is tee:
                setattr(sys, name, tee.stream)
        _ACTIVE.remove(self)
        status, lines = (self.status or 0, []) if exc is None else exit_status(self.command, exc)
        self.file.write_lines(["---- end", *lines, *self._footer(), f"exit status: {status}"])
        self.file.close()
        if not (self.root / RECORD).is_file():
            self._take_away()

    # -- the file --------------------------------------------------------------------------------
    def _open(self) -> tuple[Path | None, int | None]:
        """(path, descriptor) of a new log file, (None, None) where there is to be none."""
        if not (self.creates_workdir or (self.root / RECORD).is_file()):
            return None, None
        folder = self.root / LOGS_DIR
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.started))
        try:
            for path in (self.root, folder):
                if not path.is_dir():
                    path.mkdir(parents=True)
                    self.made.append(path)
            for n in range(1, 100):
                path = folder / f"{self.command}-{stamp}{'' if n == 1 else f'-{n}'}.log"
                with contextlib.suppress(FileExistsError):
                    return path, os.open(path, FLAGS, 0o666)
        except OSError:
            pass
        self._take_away()
        return None, None

    def _take_away(self) -> None:
        """Removes this log, then the folders it made when they are empty."""
        with contextlib.suppress(OSError):
            if self.path is not None:
                self.path.unlink()
        for folder in reversed(self.made):
            with contextlib.suppress(OSError):
                folder.rmdir()

    # -- what it says ----------------------------------------------------------------------------
    def _header(self) -> list[str]:
        from cinefuse.store.location import redact_url   # an endpoint's user and password never reach a log

        options = {k: v for k, v in vars(self.args).items() if k not in ("handler", "argv")} if self.args is not None else {}
        argv = getattr(self.args, "argv", None) or sys.argv
        return [f"cinefuse {self.command}: log of one run",
                f"command line: {redact_url(shlex.join(argv))}",
                f"options: {redact_url(json.dumps(options, sort_keys=True, default=str))}",
                f"versions: {versions()}",
                f"host: {socket.gethostname()}, pid {os.getpid()}, cwd {os.getcwd()}",
                f"started: {utc(self.started)}",
                "---- output (stdout and stderr)"]

    def _footer(self) -> list[str]:
        lines = []
        torch = sys.modules.get("torch")
        if torch is not None:
            lines.append(f"torch: {getattr(torch, '__version__', 'unknown')} (imported by this run)")
        return [*lines, f"ended: {utc(time.time())} ({time.monotonic() - self.t0:.1f} s)"]


def versions() -> str:
    """cinefuse, Python and the numeric libraries' versions, read without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    from cinefuse.version import __version__

    out = [f"cinefuse {__version__}", f"python {sys.version.split()[0]}"]
    for name in VERSIONED:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} not installed")
    return ", ".join(out)


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


def exit_status(command: str, exc: BaseException) -> tuple[int, list[str]]:
    """The exit status ``cinefuse.cli.main`` gives a command that raised ``exc``, and the lines
    it prints (a traceback for a bug, which main lets through)."""
    if isinstance(exc, CinefuseError):
        return exc.exit_code, [f"cinefuse {command}: error: {exc}"]
    if isinstance(exc, KeyboardInterrupt):
        return 130, ["interrupted"]
    if isinstance(exc, SystemExit):
        code = exc.code
        return (code or 0) if code is None or isinstance(code, int) else 1, []
    if isinstance(exc, OSError):
        from cinefuse.cli import SIGPIPE_EXIT, denied_message

        if isinstance(exc, BrokenPipeError):
            return SIGPIPE_EXIT, ["stdout closed by its reader"]
        message = denied_message(exc)
        if message is not None:
            return CinefuseError.exit_code, [f"cinefuse {command}: error: {message}"]
    return 1, "".join(traceback.format_exception(exc)).splitlines()
