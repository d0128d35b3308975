"""One document, two renderings: GitHub-flavoured markdown (charts linked as files) and one self-contained
HTML file (charts embedded as base64 PNGs, styles inline; it opens from an e-mail attachment)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from bench.report.tables import INVALID, Table

CELL_LIMIT = 240  # characters of a markdown table cell


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str  # markdown inline: `code` and **bold**, rendered as such in HTML too


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Image:
    path: Path
    title: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | Image


# --- markdown ----------------------------------------------------------------------------------------------

def to_markdown(blocks: list[Block], base_dir: Path) -> str:
    """`base_dir`: where report.md lives, so chart links are relative and the folder can move."""
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Paragraph):
            parts.append(b.text)
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            parts.append(_md_table(b))
        elif isinstance(b, Image):
            link = b.path.relative_to(base_dir).as_posix()
            parts.append(f"![{b.title}]({link})\n\n*{b.caption}*")
    return "\n\n".join(parts) + "\n"


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    text = "\n".join(lines)
    if t.notes:
        text += "\n\n" + "\n".join(f"*{note}*" for note in t.notes)
    return text


def _md_cell(text: str) -> str:
    # A long error would stretch a PR's table off the screen: clip it here (the HTML and results.csv keep it).
    text = " ".join(str(text).split())
    if len(text) > CELL_LIMIT:
        text = text[: CELL_LIMIT - 1] + "…"
    return text.replace("|", "\\|")


# --- HTML --------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1800px;
       padding: 0 1em; color: #1f2328; line-height: 1.45; }
h1, h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
.scroll { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fbfbfc; }
td.note { white-space: normal; min-width: 24em; max-width: 40em; }
td.warn { background: #fff8c5 !important; }
td.bad { background: #ffebe9 !important; }
td.muted { color: #57606a; }
p.note { font-size: 13px; color: #57606a; font-style: italic; margin: .3em 0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { font-size: 13px; color: #57606a; }
code { background: #f6f8fa; padding: 0 .3em; border-radius: 4px; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level} id=\"{_anchor(b.text)}\">{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b.items) + "</ul>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
        elif isinstance(b, Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            body.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(b.title)}\">"
                        f"<figcaption>{_inline(b.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _html_table(t: Table) -> str:
    note_col = t.columns.index("note") if "note" in t.columns else -1
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    rows = []
    for row in t.rows:
        cells = []
        for i, c in enumerate(row):
            cls = "note" if i == note_col else _CELL_CLASS.get(c) or ("warn" if INVALID in c else "")
            cells.append(f"<td class=\"{cls}\">{html.escape(c)}</td>" if cls else f"<td>{html.escape(c)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = "".join(f"<p class=\"note\">{_inline(n)}</p>" for n in t.notes)
    return (f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"</div>{notes}")


# Statuses a reader should not miss when scanning a wide table.
_CELL_CLASS = {"failed": "bad", "timeout": "bad", "unsupported": "muted", "not run": "muted"}


def _inline(text: str) -> str:
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
