"""One document, two renderings: GitHub-flavoured markdown (charts linked as files) and one self-contained
HTML file (charts embedded as base64 PNGs, styles and a small script inline, nothing fetched: it opens from
an e-mail attachment). The HTML has a table of contents with unique anchors, sortable tables (click a
header), charts that enlarge on click and show their values on hover (each chart's data inline as JSON),
and a layout that reads at 390 px."""

from __future__ import annotations

import base64
import html
import json
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
    hover: list[dict] | None = None  # [{"label", "value"}]: what the HTML shows on hover (values as printed)


@dataclass
class Card:
    """A verdict card: a boxed title, an intro line and bullet items (markdown inline)."""

    title: str
    intro: str
    items: list[str]


@dataclass
class Details:
    """Blocks folded away: <details> in both renderings (GitHub renders it too)."""

    summary: str
    blocks: list


Block = Heading | Paragraph | Bullets | Table | Image | Card | Details


# --- markdown ----------------------------------------------------------------------------------------------


def to_markdown(blocks: list[Block], base_dir: Path) -> str:
    """`base_dir`: where report.md lives, so chart links are relative and the folder can move."""
    parts = []
    for b in blocks:
        if isinstance(b, Card):
            parts += [f"### {b.title}", b.intro, "\n".join(f"- {item}" for item in b.items)]
            continue
        if isinstance(b, Details):
            parts.append(
                f"<details><summary>{html.escape(b.summary)}</summary>\n\n"
                + to_markdown(b.blocks, base_dir).rstrip("\n")
                + "\n\n</details>"
            )
            continue
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
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1em auto; max-width: 1800px;
       padding: 0 1em; color: #1f2328; line-height: 1.45; }
h1, h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h1 { margin-top: .2em; }
.scroll { overflow-x: auto; margin: 1em 0; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
tr:nth-child(even) td { background: #fbfbfc; }
td.note { white-space: normal; min-width: 24em; max-width: 40em; }
td.warn { background: #fff8c5 !important; }
td.bad { background: #ffebe9 !important; }
td.muted { color: #57606a; }
p.note { font-size: 13px; color: #57606a; font-style: italic; margin: .3em 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 34em), 1fr)); gap: 1em; }
.card { border: 2px solid #0969da; border-radius: 8px; padding: .2em 1em .5em; background: #f6faff; }
.card h3 { margin: .5em 0 .2em; font-size: 1.05em; }
.card p { margin: .2em 0; font-size: 13px; color: #57606a; }
.card ul { margin: .3em 0; padding-left: 1.2em; font-size: 14px; }
nav.toc { font-size: 13px; border: 1px solid #d0d7de; border-radius: 6px; padding: .3em 1em; margin: 1em 0; }
nav.toc ul { margin: .2em 0; padding-left: 1.2em; }
details { margin: .8em 0; } summary { cursor: pointer; color: #0969da; }
figure { margin: 1.5em 0; position: relative; }
figure img { max-width: 100%; border: 1px solid #d0d7de; cursor: zoom-in; }
figure.big { position: fixed; inset: 0; margin: 0; background: rgba(255,255,255,.97); z-index: 10; overflow: auto;
             padding: 1em; }
figure.big img { max-width: none; width: auto; cursor: zoom-out; }
figcaption { font-size: 13px; color: #57606a; }
.hover { font-size: 12px; margin: .3em 0; display: flex; flex-wrap: wrap; gap: .3em; }
.hover span { border: 1px solid #d0d7de; border-radius: 4px; padding: 0 .4em; background: #fff; }
.hover span.on { background: #fff8c5; }
code { background: #f6f8fa; padding: 0 .3em; border-radius: 4px; }
@media (max-width: 700px) {
  body { padding: 0 .5em; font-size: 15px; } h1 { font-size: 1.5em; }
  td.note { min-width: 14em; }
  .card ul { font-size: 13px; }
}
"""

# Sorting: numbers compare as numbers (the leading number of "12.3 ms", "2.50×", "1.39 GB/s"; units and
# decimal prefixes scaled), "-" and other text after them.
SCRIPT = r"""
(function () {
  var SCALE = {"us": 1e-6, "ms": 1e-3, "s": 1, "B": 1, "KiB": 1024, "MiB": 1048576, "GiB": 1073741824,
               "TiB": 1099511627776, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15};
  function key(text) {
    var m = /^\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)\s*(us|ms|s\b|[KMGT]iB|B|[kMGTP](?=[A-Za-z]))?/
      .exec(text);
    if (!m) return null;
    return parseFloat(m[1]) * (m[2] ? SCALE[m[2]] : 1);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].textContent, y = b.cells[col].textContent, kx = key(x), ky = key(y);
          if (kx !== null && ky !== null) return asc ? kx - ky : ky - kx;
          if (kx !== null) return -1;
          if (ky !== null) return 1;
          return asc ? x.localeCompare(y) : y.localeCompare(x);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll("figure img").forEach(function (img) {
    img.addEventListener("click", function () { img.parentNode.classList.toggle("big"); });
  });
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    document.querySelectorAll("figure.big").forEach(function (f) { f.classList.remove("big"); });
  });
  // Hover values: each chart's values are inline JSON; the entry nearest the pointer's x is highlighted
  // and shown as the image's title.
  document.querySelectorAll("figure[data-values]").forEach(function (fig) {
    var values = JSON.parse(fig.getAttribute("data-values")), img = fig.querySelector("img");
    var list = fig.querySelector(".hover"), spans = list ? list.querySelectorAll("span") : [];
    img.addEventListener("mousemove", function (e) {
      var r = img.getBoundingClientRect(), i = Math.min(values.length - 1,
        Math.max(0, Math.floor((e.clientX - r.left) / r.width * values.length)));
      img.title = values[i].label + ": " + values[i].value;
      spans.forEach(function (s, j) { s.classList.toggle("on", j === i); });
    });
  });
  var card = document.querySelector(".card");
  if (card) {  // where the first verdict card sits on the first screen (read back by the report's test)
    var b = card.getBoundingClientRect();
    document.body.setAttribute("data-card-box", [b.left, b.top, b.width, b.height, window.innerWidth,
                                                 window.innerHeight].map(Math.round).join(","));
  }
})();
"""


def to_html(blocks: list[Block], title: str) -> str:
    anchors: dict[str, int] = {}
    body = _html_blocks(blocks, anchors, toc := [])
    nav = _toc(toc)
    # after the verdict (it comes first), before the first section
    h2 = [i for i, part in enumerate(body) if part.startswith("<h2")]
    at = h2[1] if len(h2) > 1 else len(body)
    body = body[:at] + [nav] + body[at:]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def _html_blocks(blocks: list[Block], anchors: dict[str, int], toc: list[tuple[int, str, str]]) -> list[str]:
    body: list[str] = []
    cards: list[str] = []

    def flush() -> None:
        if cards:
            body.append('<div class="cards">' + "".join(cards) + "</div>")
            cards.clear()

    for b in blocks:
        if not isinstance(b, Card):
            flush()
        if isinstance(b, Heading):
            anchor = _unique_anchor(b.text, anchors)
            if b.level in (2, 3):
                toc.append((b.level, anchor, b.text))
            body.append(f'<h{b.level} id="{anchor}">{_inline(b.text)}</h{b.level}>')
        elif isinstance(b, Card):
            anchor = _unique_anchor("verdict " + b.title, anchors)
            cards.append(
                f'<section class="card" id="{anchor}"><h3>{_inline(b.title)}</h3>'
                f"<p>{_inline(b.intro)}</p><ul>"
                + "".join(f"<li>{_inline(i)}</li>" for i in b.items)
                + "</ul></section>"
            )
        elif isinstance(b, Details):
            body.append(
                f"<details><summary>{html.escape(b.summary)}</summary>"
                + "\n".join(_html_blocks(b.blocks, anchors, []))
                + "</details>"
            )
        elif isinstance(b, Paragraph):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in b.items) + "</ul>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
        elif isinstance(b, Image):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            values = ""
            hover = ""
            if b.hover:
                values = f' data-values="{html.escape(json.dumps(b.hover))}"'
                hover = (
                    '<div class="hover">'
                    + "".join(f"<span>{html.escape(h['label'])}: {html.escape(h['value'])}</span>" for h in b.hover)
                    + "</div>"
                )
            body.append(
                f'<figure{values}><img src="data:image/png;base64,{data}" alt="{html.escape(b.title)}" '
                f'title="click to enlarge">{hover}<figcaption>{_inline(b.caption)}</figcaption></figure>'
            )
    flush()
    return body


def _toc(entries: list[tuple[int, str, str]]) -> str:
    items = []
    for level, anchor, text in entries:
        if level == 2:
            items.append(f'<li><a href="#{anchor}">{_inline(text)}</a></li>')
    return '<nav class="toc"><strong>Contents</strong><ul>' + "".join(items) + "</ul></nav>"


def _unique_anchor(text: str, anchors: dict[str, int]) -> str:
    base = _anchor(text) or "section"
    n = anchors.get(base, 0)
    anchors[base] = n + 1
    return base if n == 0 else f"{base}-{n + 1}"


def _html_table(t: Table) -> str:
    note_col = t.columns.index("note") if "note" in t.columns else -1
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    rows = []
    for row in t.rows:
        cells = []
        for i, c in enumerate(row):
            cls = "note" if i == note_col else _CELL_CLASS.get(c) or ("warn" if INVALID in c else "")
            cells.append(f'<td class="{cls}">{html.escape(c)}</td>' if cls else f"<td>{html.escape(c)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    notes = "".join(f'<p class="note">{_inline(n)}</p>' for n in t.notes)
    return (
        f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"</div>{notes}"
    )


# Statuses a reader should not miss when scanning a wide table.
_CELL_CLASS = {"failed": "bad", "timeout": "bad", "unsupported": "muted", "not run": "muted"}


def _inline(text: str) -> str:
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def _anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
