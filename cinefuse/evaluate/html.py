"""One self-contained HTML page from the report's blocks (``report.report_blocks``): headings,
paragraphs, tables, a list of notes and the figures, each PNG inlined as a base64 ``data:`` URI.
The page loads nothing: no external file, stylesheet, font or script, so it can be mailed or
archived as one file and opened anywhere.

Standard library only: every text goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from cinefuse.errors import CinefuseError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { text-align: left; border-bottom: 2px solid #888; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:hover { background: #f4f4f8; }
.verdict { font-size: 1.05em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


def data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` of the PNG at ``path``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CinefuseError(f"cannot inline figure {path}: {exc.strerror or exc}") from None
    if not raw.startswith(PNG_SIGNATURE):
        raise CinefuseError(f"cannot inline figure {path}: not a PNG file")
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def table_html(header: list[str], body: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    rows = ["<tr>" + "".join(f"<td>{esc(c)}</td>" if i == 0 else f'<td class="num">{esc(c)}</td>'
                             for i, c in enumerate(r)) + "</tr>" for r in body]
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


def block_html(block: tuple, folder: Path) -> str:
    kind, *rest = block
    esc = html.escape
    if kind == "title":
        return f"<h1>{esc(rest[0])}</h1>"
    if kind == "heading":
        return f"<h2>{esc(rest[0])}</h2>"
    if kind == "subheading":
        return f"<h3>{esc(rest[0])}</h3>"
    if kind == "text":
        return f"<p>{esc(rest[0])}</p>"
    if kind == "strong":
        return f'<p class="verdict"><strong>{esc(rest[0])}</strong></p>'
    if kind == "table":
        return table_html(*rest)
    if kind == "list":
        return "<ul>\n" + "\n".join(f"<li>{esc(item)}</li>" for item in rest[0]) + "\n</ul>"
    if kind == "figure":
        name, caption = rest
        return (f'<figure><img src="{data_uri(folder / name)}" alt="{esc(caption)}">'
                f"<figcaption>{esc(caption)} ({esc(name)})</figcaption></figure>")
    raise ValueError(f"unknown report block {kind!r}")


def render_html(title: str, blocks: list[tuple], folder: Path) -> str:
    """The page of ``blocks``; figure blocks name PNG files in ``folder``."""
    body = "\n".join(block_html(b, Path(folder)) for b in blocks)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
