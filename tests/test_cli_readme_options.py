"""Every option the README shows with a command (`cinefuse <cmd> [<action>] ... --opt`, in code
blocks and inline code) exists on that command's parser, and the help shows the defaults that
the issue found hidden or wrong."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from cinefuse.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def subparsers_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def readme_commands() -> list[tuple[int, list[str]]]:
    """(line number, tokens after `cinefuse`) for every command the README shows: lines of code
    blocks (backslash continuations joined) and inline code spans."""
    lines = README.read_text().splitlines()
    out, in_block, number = [], False, 0
    while number < len(lines):
        line = lines[number]
        start = number + 1
        if line.startswith("```"):
            in_block = not in_block
            number += 1
            continue
        if in_block:
            while line.rstrip().endswith("\\") and number + 1 < len(lines):
                number += 1
                line = line.rstrip()[:-1] + " " + lines[number].strip()
            texts = [line.split("#", 1)[0]]
        else:
            texts = re.findall(r"`([^`]*)`", line)
        for text in texts:
            for match in re.finditer(r"(?:^|\s)cinefuse\s+(.*)", text):
                try:
                    tokens = shlex.split(match.group(1).replace("[", " ").replace("]", " "))
                except ValueError:
                    tokens = match.group(1).split()
                out.append((start, tokens))
        number += 1
    return out


def test_every_option_the_readme_shows_exists():
    commands = subparsers_of(build_parser())
    checked, missing = 0, []
    for line, tokens in readme_commands():
        if not tokens or tokens[0] not in commands:
            if tokens and not tokens[0].startswith("-"):
                missing.append(f"README line {line}: no command {tokens[0]!r}")
            continue
        parser = commands[tokens[0]]
        actions = subparsers_of(parser)
        if actions and len(tokens) > 1 and tokens[1] in actions:
            parser = actions[tokens[1]]
        known = {flag for action in parser._actions for flag in action.option_strings}
        for token in tokens[1:]:
            if token.startswith("--"):
                checked += 1
                if token.split("=", 1)[0] not in known:
                    missing.append(f"README line {line}: {parser.prog} has no {token.split('=', 1)[0]}")
    assert not missing, "\n".join(missing)
    assert checked >= 40  # the README shows many options; the parse found them


def test_help_shows_the_defaults_that_were_hidden_or_wrong():
    commands = subparsers_of(build_parser())
    extract = " ".join(commands["extract"].format_help().split())
    assert "items per store shard, the unit of commit and resume (default 1024)" in extract
    assert "default auto: cuda when torch sees a GPU, else cpu" in extract
    assert "exact: the exact frame (default keyframe)" in extract
    index_build = subparsers_of(commands["index"])["build"]
    assert "--json" in {flag for action in index_build._actions for flag in action.option_strings}
    from cinefuse.extract.config import ExtractConfig

    assert (ExtractConfig().shard_size, ExtractConfig().device, ExtractConfig().frame_sampling) == (
        1024, "auto", "keyframe")
