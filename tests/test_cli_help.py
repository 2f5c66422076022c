"""The help of every subcommand, parsed: each real default shown once, never "(default: None)",
fuse's defaults taken from the config dataclasses; one name for one thing across subcommands,
the old spellings still accepted but hidden."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cinefuse.cli import build_parser, main  # noqa: E402


def all_parsers():
    """(command path, parser) for the top level and every subcommand, nested ones included."""
    out = []

    def walk(path, parser):
        out.append((path, parser))
        for action in parser._actions:  # argparse has no public way to list subparsers
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(f"{path} {name}", sub)

    walk("cinefuse", build_parser())
    return out


def option_entries(help_text: str) -> dict[str, str]:
    """First option string -> its help, whitespace joined, from a formatted help text."""
    entries, current = {}, None
    for line in help_text.splitlines():
        m = re.match(r"^  (-{1,2}[\w-]+|[a-z][\w-]*)(.*)$", line)
        if m and not line.startswith("   "):
            current = m.group(1)
            entries[current] = m.group(2)
        elif line.startswith("   ") and current is not None:
            entries[current] += " " + line.strip()
        elif not line.strip() or not line.startswith(" "):
            current = None
    return {k: " ".join(v.split()) for k, v in entries.items()}


PARSERS = all_parsers()


def test_every_subcommand_is_walked():
    names = {path for path, _ in PARSERS}
    assert {"cinefuse fuse", "cinefuse evaluate", "cinefuse recommend", "cinefuse extract", "cinefuse demo",
            "cinefuse store info", "cinefuse store push", "cinefuse data movielens"} <= names


@pytest.mark.parametrize("path,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_help_never_shows_none_and_each_default_once(path, parser):
    text = parser.format_help()
    assert "(default: None)" not in text
    entries = option_entries(text)
    required = {a.option_strings[0] for a in parser._actions if a.required and a.option_strings}
    for option, help_text in entries.items():
        assert help_text.lower().count("default") <= 1, (path, option, help_text)
        if option in required:
            assert "default" not in help_text.lower(), (path, option, help_text)


def test_fuse_help_shows_the_config_defaults_and_the_steps_rule():
    from cinefuse.fuse.config import SECTIONS

    fuse = dict(PARSERS)["cinefuse fuse"]
    entries = option_entries(fuse.format_help())
    keys = {"--loss": "loss.kind", "--distance": "loss.distance", "--mining": "loss.mining", "--head": "model.head",
            "--modalities": "model.modalities", "--protocol": "split.protocol", "--steps": "train.steps",
            "--batch-size": "train.batch_size", "--seed": "train.seed"}
    for option, key in keys.items():
        section, name = key.split(".")
        default = getattr(SECTIONS[section](), name)
        assert entries[option].endswith(f"(default: {default})"), (option, entries[option])
        assert key in entries[option]
    per_call = SECTIONS["train"]().steps_per_call
    assert f"a multiple of train.steps_per_call ({per_call})" in entries["--steps"]
    assert "--no-progress" in entries


def test_one_canonical_spelling_in_help_old_ones_hidden():
    helps = {path: parser.format_help() for path, parser in PARSERS}
    for command in ("evaluate", "recommend"):
        entries = option_entries(helps[f"cinefuse {command}"])
        assert "-k" in entries and "--k" not in entries
        assert not re.search(r"--k\b", helps[f"cinefuse {command}"])
    for command in ("extract", "fuse", "evaluate", "demo"):
        assert "--no-progress" in option_entries(helps[f"cinefuse {command}"]), command
    assert "--quiet" not in helps["cinefuse evaluate"]


@pytest.mark.parametrize("argv,key,value", [
    (["evaluate", "--workdir", "w", "-k", "5,10"], "k", "5,10"),
    (["evaluate", "--workdir", "w", "--k", "5,10"], "k", "5,10"),
    (["evaluate", "--workdir", "w"], "k", "1,3,5,10"),
    (["recommend", "--workdir", "w", "--item", "1", "-k", "3"], "k", 3),
    (["recommend", "--workdir", "w", "--item", "1", "--k", "3"], "k", 3),
    (["recommend", "--workdir", "w", "--item", "1"], "k", 10),
    (["evaluate", "--workdir", "w", "--no-progress"], "progress", False),
    (["evaluate", "--workdir", "w", "--quiet"], "progress", False),
    (["evaluate", "--workdir", "w"], "progress", True),
    (["fuse", "--workdir", "w", "--no-progress"], "progress", False),
    (["fuse", "--workdir", "w"], "progress", True),
    (["demo", "--no-progress"], "progress", False),
    (["extract", "--no-progress"], "progress", False),
])
def test_both_spellings_parse_to_the_same_value(argv, key, value):
    assert getattr(build_parser().parse_args(argv), key) == value


def test_modalities_option_takes_a_list_of_feature_sets(tmp_path, capsys):
    from fuse_fixtures import write_synthetic_store

    from cinefuse.fuse.cli import modalities_option

    assert modalities_option("text/minilm,meta/year") == ["text/minilm", "meta/year"]
    assert modalities_option("text/minilm") == ["text/minilm"]
    assert modalities_option("visual+audio") == "visual+audio"
    env = write_synthetic_store(tmp_path, n_items=20, n_users=10, dims={"text/minilm": 4, "meta/year": 2}, shards=1)
    code = main(["fuse", "--store", env["store"], "--ratings", env["ratings"], "--movies", env["movies"],
                 "--workdir", str(tmp_path / "w"), "--modalities", "text/minilm,audio/hubert", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    # the list reached the loader set by set: the first set it lacks is named
    assert err.startswith(f"cinefuse fuse: error: feature set 'audio/hubert' is not in store {env['store']} "
                          "(it has: meta/year, text/minilm)")
