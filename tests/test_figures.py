"""Every tagged figure in README.md, benchmarks/RESULTS.md and docs/OBJECTIVES.md equals the value
of the committed JSON it names, to its printed precision (issue 24, item 10).

The markup: an HTML comment right after the number it backs (invisible when rendered),

    **1.208** <!-- figure: benchmarks/results/store.json#ratio_store_vs_npload -->
    129.8 ms <!-- figure: benchmarks/results/store.json#layouts.default.store_seconds_median*1000 -->
    0.3259 <!-- figure: benchmarks/results/demo.json#verdict.baselines."cosine all concatenated" -->

The path after ``#`` walks the JSON: keys separated by ``.``, a key holding ``.``, spaces or
brackets in double quotes, list positions as ``[i]``; an optional ``*N`` scales the value (seconds
printed as ms, shares as percent). The figure is the last number before the comment on its line
(``**``, ``x``, units, ``,`` thousands separators and a leading ``+`` allowed); it must equal the
JSON value rounded to as many decimals as it is printed with. A figure a document quotes without
a JSON behind it is removed or marked as pending a rerun, not tagged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "benchmarks/RESULTS.md", "docs/OBJECTIVES.md")
TAG = re.compile(r"<!--\s*figure:\s*(?P<file>[^#\s]+)#(?P<path>.+?)(?:\*(?P<scale>[0-9.e+-]+))?\s*-->")
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
RERUNNING: set[str] = set()
SEGMENT = re.compile(r'"(?P<quoted>[^"]*)"|\[(?P<index>\d+)\]|(?P<plain>[^.\[\]"]+)')


def walk(value, path: str):
    """The value at ``path`` (module docstring) of a parsed JSON document."""
    rest = path
    while rest:
        m = SEGMENT.match(rest)
        if m is None:
            raise ValueError(f"bad figure path {path!r} at {rest!r}")
        if m.group("index") is not None:
            value = value[int(m.group("index"))]
        else:
            value = value[m.group("quoted") if m.group("quoted") is not None else m.group("plain")]
        rest = rest[m.end():]
        rest = rest.removeprefix(".")
    return value


def tagged_figures(text: str) -> list[tuple[int, str, str, str, float]]:
    """(line number, printed figure, JSON file, path, scale) for every tag of ``text``."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for tag in TAG.finditer(line):
            before = TAG.sub("", line[:tag.start()])
            numbers = NUMBER.findall(before)
            assert numbers, f"line {lineno}: a figure tag with no number before it: {line.strip()}"
            out.append((lineno, numbers[-1], tag.group("file"), tag.group("path").strip(),
                        float(tag.group("scale") or 1)))
    return out


def matches(printed: str, value: float) -> bool:
    """``printed`` (as written: sign, thousands separators) equals ``value`` rounded to its decimals."""
    text = printed.replace(",", "").lstrip("+")
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return round(float(value), decimals) == pytest.approx(float(text), abs=10 ** -(decimals + 3))


def test_the_checker_reads_the_markup():
    text = ('| **1.208** <!-- figure: a.json#x --> | 129.8 ms <!-- figure: a.json#l.s*1000 --> |\n'
            'from 344 s to +12.6 s <!-- figure: b.json#"k one"[1].v --> and 9,313 <!-- figure: a.json#n -->')
    assert tagged_figures(text) == [(1, "1.208", "a.json", "x", 1.0), (1, "129.8", "a.json", "l.s", 1000.0),
                                    (2, "+12.6", "b.json", '"k one"[1].v', 1.0), (2, "9,313", "a.json", "n", 1.0)]
    assert walk({"k one": [0, {"v": 3}]}, '"k one"[1].v') == 3
    assert walk({"a": {"b.c": 2}}, 'a."b.c"') == 2
    assert matches("1.208", 1.2084295) and not matches("1.083", 1.2084295)
    assert matches("129.8", 0.12981550 * 1000) and matches("9,313", 9313.4) and matches("+0.0546", 0.05462)
    assert not matches("0.24", 0.2451)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_tagged_figure_equals_its_json(document):
    text = (REPO / document).read_text()
    wrong = []
    for lineno, printed, file, path, scale in tagged_figures(text):
        source = REPO / file
        assert source.is_file(), f"{document}:{lineno}: {file} is not in the repository"
        try:
            value = walk(json.loads(source.read_text()), path)
        except (KeyError, IndexError, TypeError) as exc:
            raise AssertionError(f"{document}:{lineno}: {file} has no {path} ({exc!r})") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            wrong.append(f"{document}:{lineno}: {file}#{path} is {value!r}, not a number")
        elif not matches(printed, value * scale):
            wrong.append(f"{document}:{lineno}: printed {printed}, {file}#{path} is {value * scale!r}")
    assert not wrong, "\n".join(wrong)


def test_the_documents_tag_their_benchmark_figures():
    """The headline tables are backed: each document carries tags, and the RESULTS summary table
    tags every row it does not mark as pending a rerun."""
    counts = {d: len(tagged_figures((REPO / d).read_text())) for d in DOCUMENTS[:2]}
    assert all(n >= 5 for n in counts.values()), counts
    text = (REPO / "benchmarks/RESULTS.md").read_text()
    summary = text.split("\n\n")[2]
    rows = [r for r in summary.splitlines() if r.startswith("| ") and not r.startswith("| issue")]
    untagged = [r for r in rows if "<!-- figure:" not in r and "pending a rerun" not in r
                and r.split("|")[1].strip() not in RERUNNING]
    assert rows and not untagged, "\n".join(untagged)
