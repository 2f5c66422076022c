"""docs/CONFIG.md is what ``python -m cinefuse.docs_config`` writes from the config dataclasses
now: every section and key, with its default, documented; a stale file fails the check."""

from __future__ import annotations

import dataclasses
import json
import re

from cinefuse import docs_config
from cinefuse.extract.config import ExtractConfig
from cinefuse.fuse.config import SECTIONS

ROW = re.compile(r"^\| `([a-z_]+)` \| `([^`]*)` \| (`.*?`|\*unset\*) \| (`--[a-z-]+`)? \|")


def test_the_committed_reference_is_what_the_script_writes_now():
    assert docs_config.DOC.read_text(encoding="utf-8") == docs_config.render(), (
        "docs/CONFIG.md is out of date: run `python -m cinefuse.docs_config` and commit it")


def rows_under(text: str, heading: str, until: str | None) -> dict[str, str]:
    """key -> its default cell, for the table rows between ``heading`` and ``until``."""
    part = text.split(heading, 1)[1]
    part = part.split(until, 1)[0] if until else part
    return {m.group(1): m.group(3) for m in map(ROW.match, part.splitlines()) if m}


def default_cell(spec: dataclasses.Field) -> str:
    value = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    return "*unset*" if value is None else f"`{json.dumps(value)}`"


def test_every_section_and_key_is_documented_with_its_default():
    text = docs_config.render()
    names = list(SECTIONS)
    for i, (section, cls) in enumerate(SECTIONS.items()):
        until = f"### [{names[i + 1]}]" if i + 1 < len(names) else "## extract"
        rows = rows_under(text, f"### [{section}]\n", until)
        assert rows == {f.name: default_cell(f) for f in dataclasses.fields(cls)}, section
    rows = rows_under(text, "## extract", None)
    assert rows == {f.name: default_cell(f) for f in dataclasses.fields(ExtractConfig)}
    # the comment beside a field in the source, and an option's choices, are its description
    assert "| `patience` | `int` | `5` | `--patience` | evaluations without improvement before stopping; 0: never stop early |" in text
    assert "| `protocol` | `str` | `\"cold-item\"` | `--protocol` | one of: cold-item, cold-item-time, pair |" in text
    assert "### runtime (not part of the config hash)" in text


def test_check_fails_on_a_stale_file_and_passes_once_written(tmp_path, capsys):
    out = tmp_path / "CONFIG.md"
    out.write_text(docs_config.render().replace("`2000`", "`1000`"), encoding="utf-8")
    assert docs_config.main(["--check", "--out", str(out)]) == 1
    assert "is out of date: run `python -m cinefuse.docs_config`" in capsys.readouterr().err
    assert docs_config.main(["--out", str(out)]) == 0
    assert docs_config.main(["--check", "--out", str(out)]) == 0
