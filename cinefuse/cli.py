"""The ``cinefuse`` command: a thin shell over the stages.

Each stage owns a small ``cli`` module with ``register(subparsers)``; those modules import only
argparse at top level, so ``cinefuse --help`` stays fast and never loads torch or jax. The heavy
imports happen inside each command's handler.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import re
import sys
from pathlib import Path

from cinefuse.version import __version__
from cinefuse.errors import CinefuseError

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "cinefuse.extract.cli",
    "cinefuse.fuse.cli",
    "cinefuse.evaluate.cli",
    "cinefuse.evaluate.index_cli",
    "cinefuse.store.cli",
    "cinefuse.export.cli",
    "cinefuse.demo.cli",
    "cinefuse.datasets.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cinefuse",
        description=(
            "Content-based movie and video recommendation from what a film looks like, sounds "
            "like and says. extract runs frozen backbones once into an HDF5 store; fuse trains "
            "intermodal fusion Siamese networks over it; evaluate scores cold-start "
            "recommendations against real ratings."
        ),
    )
    parser.add_argument("--version", action="version", version=f"cinefuse {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):  # stage not built yet
                continue
            raise
        module.register(subparsers)
    return parser


# errno values that mean "this user may not write (or read) there": a read-only store, workdir or
# demo folder is a user's mistake, told in one line wherever in a stage it is first noticed
DENIED = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable (or readable) by this user",
          errno.EPERM: "is not writable by this user"}
# h5py's wording of an OSError without errno set: "... (unable to open file: name = 'x', errno = 30, ...)"
H5_ERRNO = re.compile(r"name = '([^']*)', errno = (\d+)")
SIGPIPE_EXIT = 128 + 13  # what a shell tool killed by SIGPIPE exits with (`yes | head`)


def denied_message(exc: OSError) -> str | None:
    """One line for an OSError meaning "read-only or not allowed here", naming the path; None for
    any other OSError (a bug or a damaged file, reported as it is)."""
    code, path = exc.errno, exc.filename
    if code is None:
        match = H5_ERRNO.search(str(exc))
        if match:
            path, code = match.group(1), int(match.group(2))
    if code not in DENIED:
        return None
    where = (Path(path) if Path(path).is_dir() else Path(path).parent) if path else None  # the folder
    return (f"{where or 'a path this command writes'} {DENIED[code]}: run with a store, workdir or output "
            "folder you can write to (or fix its permissions)")


def closed_pipe() -> int:
    """stdout's reader went away (``cinefuse store info | head``): stop quietly, as shell tools
    do. stdout is pointed at /dev/null so the interpreter's last flush does not fail again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return SIGPIPE_EXIT


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["cinefuse", *(sys.argv[1:] if argv is None else argv)]  # the command line a run log records
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        return closed_pipe()
    except CinefuseError as exc:
        print(f"cinefuse {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        message = denied_message(exc)
        if message is None:
            raise
        print(f"cinefuse {args.command}: error: {message}", file=sys.stderr)
        return CinefuseError.exit_code
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
