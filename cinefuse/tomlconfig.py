"""The one TOML loader of the stages' configs (extract and fuse): reading the file and the type
rules of its values, with one wording for what goes wrong (ground floor: stdlib only).

``read_toml(path, what)`` returns the file's tables or says in one line why it cannot:
``{what} config file {path} not found: pass an existing TOML file to --config`` or
``{what} config file {path} is not valid TOML: {why}``.

``check_value(field, value, what, key, where)`` applies the type rules of a dataclass field
(its annotation, a string under ``from __future__ import annotations`` or a type):
``bool`` takes true or false only; ``int`` an integer (not a boolean); ``float`` any number (not a
boolean), stored as a float; ``str`` a string; ``list[str]`` a list (its entries made strings) or
one comma-separated string; ``X | None`` also takes None. Other annotations (``list``, ``dict``,
``Any``) pass the value on for the config's own ``validate`` to judge. A value that breaks its
rule is refused with
``{where}{what} config key {key!r} has the wrong type: {value!r} (expected {expected})`` (``where``:
a prefix naming the file, or empty).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import tomllib

from cinefuse.errors import CinefuseError

EXPECTED = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
            "list[str]": "a list of strings"}


def read_toml(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The tables of the TOML file ``path`` of the ``what`` stage ("extract", "fuse")."""
    file = Path(path)
    if not file.is_file():
        raise CinefuseError(f"{what} config file {file} not found: pass an existing TOML file to --config")
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CinefuseError(f"{what} config file {file} is not valid TOML: {exc}") from exc


def annotation(spec: dataclasses.Field) -> tuple[str, bool]:
    """(base type name, None allowed) of a dataclass field's annotation."""
    t = spec.type
    kind = t if isinstance(t, str) else t.__name__ if t in (bool, int, float, str, list, dict) else str(t)
    parts = [p.strip() for p in kind.split("|")]
    optional = "None" in parts
    base = [p for p in parts if p != "None"]
    return (base[0] if len(base) == 1 else kind), optional


def check_value(spec: dataclasses.Field, value: Any, what: str, key: str, where: str) -> Any:
    """``value`` for the field ``spec`` under the type rules (module docstring), or the one error."""
    kind, optional = annotation(spec)
    if value is None and optional:
        return None
    ok = True
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "list[str]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        ok = isinstance(value, list)
        value = [str(v) for v in value] if ok else value
    if not ok:
        expected = EXPECTED[kind] + (" or nothing" if optional else "")
        raise CinefuseError(f"{where}{what} config key {key!r} has the wrong type: {value!r} (expected {expected})")
    return value


def known_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}
