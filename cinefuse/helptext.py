"""Help text for the subcommands: each real default shown once, never "(default: None)".

Imports only argparse, so ``cinefuse --help`` stays fast; a default that lives in a module with
heavy imports (the fuse config) is given as an object whose ``str`` looks it up, which happens
only when that command's help is printed.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; ``(default: X)`` after an option's help when X is a
    real value: ``action.shown_default`` when the option has one (an option whose default is None
    so that a config file can set it), else its default unless None, a flag's, or a required
    option's. Help that already says its default is left as it is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or action.required or "default" in text:
            return text
        shown = getattr(action, "shown_default", None)
        if shown is None:
            if action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0:
                return text
            shown = action.default
        shown = str(shown).replace("%", "%%")  # argparse %-formats the help afterwards
        return f"{text} (default: {shown})" if text else f"default: {shown}"


def hidden_alias(parser, flag: str, dest: str, **kwargs) -> argparse.Action:
    """An old spelling still accepted, left out of the help; it sets the same ``dest`` and never
    its default (the canonical option's default stays)."""
    return parser.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
