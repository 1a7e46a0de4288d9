"""A tiny document model rendered twice: Markdown (report.md) and a self-contained HTML
page (report.html, figures embedded as base64, no external files, viewable offline).
Writing the content once keeps the two reports identical in substance."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

MAX_ROWS = 60  # longer tables are cut in the page; the CSV beside it holds them whole

_MIME = {"png": "image/png", "svg": "image/svg+xml"}
_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em}figure{margin:1em 0}
img{max-width:100%;height:auto}figcaption{font-size:.9em;color:#444}.note{color:#666;font-size:.9em}
"""


@dataclass
class Document:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def table(self, frame: pd.DataFrame, csv_name: str | None = None) -> None:
        self.blocks.append(("table", frame, csv_name))

    def figure(self, title: str, file_name: str, caption: str, image: bytes, image_fmt: str) -> None:
        self.blocks.append(("figure", title, file_name, caption, image, image_fmt))

    # -- rendering ------------------------------------------------------------------
    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += ["#" * block[1] + " " + block[2], ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "code":
                out += ["```yaml", block[1].rstrip("\n"), "```", ""]
            elif kind == "table":
                notes = _cut_note(block[1], block[2])
                out += _markdown_table(block[1]) + [""] + ([" ".join(notes), ""] if notes else [])
            elif kind == "figure":
                _, title, file_name, caption, _, _ = block
                out += [f"![{title}]({file_name})", "", f"*{caption}*", ""]
        return "\n".join(out).rstrip("\n") + "\n"

    def html(self) -> str:
        out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
               f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_e(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"<h{block[1]}>{_e(block[2])}</h{block[1]}>")
            elif kind == "p":
                out.append(f"<p>{_e(block[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "code":
                out.append(f"<pre><code>{_e(block[1])}</code></pre>")
            elif kind == "table":
                out.append(_html_table(block[1]))
                out += [f'<p class="note">{_e(line)}</p>' for line in _cut_note(block[1], block[2])]
            elif kind == "figure":
                _, title, file_name, caption, image, image_fmt = block
                data = base64.b64encode(image).decode("ascii")
                out.append(f'<figure id="{_e(Path(file_name).stem)}"><img alt="{_e(title)}" '
                           f'src="data:{_MIME[image_fmt]};base64,{data}"><figcaption>{_e(caption)} '
                           f'(file: <code>{_e(file_name)}</code>)</figcaption></figure>')
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def cell(value: object) -> str:
    """One table cell: floats to 4 significant digits, missing values as a dash."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    shown = frame.head(MAX_ROWS)
    header = "| " + " | ".join(str(c) for c in shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    rows = ["| " + " | ".join(cell(v).replace("|", "\\|") for v in row) + " |"
            for row in shown.itertuples(index=False)]
    return [header, rule, *rows]


def _html_table(frame: pd.DataFrame) -> str:
    shown = frame.head(MAX_ROWS)
    head = "".join(f"<th>{_e(c)}</th>" for c in shown.columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell(v))}</td>" for v in row) + "</tr>"
                   for row in shown.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cut_note(frame: pd.DataFrame, csv_name: str | None) -> list[str]:
    lines = []
    if len(frame) > MAX_ROWS:
        lines.append(f"First {MAX_ROWS} of {len(frame)} rows.")
    if csv_name:
        lines.append(f"CSV: tables/{csv_name}")
    return lines
