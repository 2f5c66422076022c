"""The ``cinefuse`` command: a thin shell over the stages.

Each stage owns a small ``cli`` module with ``register(subparsers)``; those modules import only
argparse at top level, so ``cinefuse --help`` stays fast and never loads torch or jax. The heavy
imports happen inside each command's handler.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cinefuse import __version__
from cinefuse.errors import CinefuseError

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "cinefuse.extract.cli",
    "cinefuse.fuse.cli",
    "cinefuse.evaluate.cli",
    "cinefuse.evaluate.index_cli",
    "cinefuse.store.cli",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        code = handler(args)
    except CinefuseError as exc:
        print(f"cinefuse {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
