"""A report page as a list of blocks (headings, text, tables, code, figures), written out both as one
self-contained HTML file (inline CSS, figures as base64 PNG data URIs: it opens anywhere, offline, and
can be mailed as one file) and as Markdown beside its PNG files. One list, two renderings, so the two
say the same. Text may hold `code` spans, the one piece of inline Markdown both renderings share."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import List, Sequence

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0 auto;
       max-width: 1180px; padding: 12px 18px 40px; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 22px 0 6px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13.5px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 8px; text-align: left; }
th { background: #f2f2f4; } tr:nth-child(even) td { background: #fafafa; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: 3px; }
code { background: #f2f2f4; padding: 0 3px; border-radius: 3px; font-size: 90%; }
pre { background: #f6f6f8; border: 1px solid #e2e2e6; padding: 8px; font-size: 12.5px; max-height: 420px; overflow: auto; }
img { max-width: 100%; display: block; margin: 6px 0 2px; } figcaption { color: #555; font-size: 13px; }
.warn { background: #fff3cd; border: 1px solid #e6c65c; padding: 6px 10px; margin: 8px 0; }
"""
WARN = ' class="warn"'


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> List[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def pyplot():
    """matplotlib's pyplot on the Agg backend, which draws a page's PNG figures without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


class Page:
    """Blocks appended in reading order; `html()` and `markdown()` render them."""

    def __init__(self, title: str):
        self.title = title
        self.blocks: List[tuple] = []

    def heading(self, text: str) -> None:
        self.blocks.append(("heading", text))

    def text(self, text: str, warn: bool = False) -> None:
        self.blocks.append(("text", text, warn))

    def items(self, lines: Sequence[str], warn: bool = False) -> None:
        self.blocks.append(("items", list(lines), warn))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "") -> None:
        self.blocks.append(("table", list(header), [list(r) for r in rows], caption))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(("code", text, language))

    def figure(self, path: Path, caption: str) -> None:
        """A PNG already written beside the page (Markdown links it; HTML embeds its bytes)."""
        self.blocks.append(("figure", Path(path), caption))

    def html(self) -> str:
        body = [f"<h1>{_inline(self.title)}</h1>"]
        for kind, *rest in self.blocks:
            if kind == "heading":
                body.append(f"<h2>{_inline(rest[0])}</h2>")
            elif kind == "text":
                body.append(f"<p{WARN if rest[1] else ''}>{_inline(rest[0])}</p>")
            elif kind == "items":
                lis = "".join(f"<li>{_inline(line)}</li>" for line in rest[0])
                body.append(f"<ul{WARN if rest[1] else ''}>{lis}</ul>")
            elif kind == "table":
                header, rows, caption = rest
                body.append("<table>" + (f"<caption>{_inline(caption)}</caption>" if caption else "")
                            + "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header) + "</tr>"
                            + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
                            + "</table>")
            elif kind == "code":
                body.append(f"<pre>{html.escape(rest[0])}</pre>")
            else:
                path, caption = rest
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{_inline(caption)}</figcaption></figure>")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>\n<body>\n"
                + "\n".join(body) + "\n</body></html>\n")

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for kind, *rest in self.blocks:
            if kind == "heading":
                lines += [f"## {rest[0]}", ""]
            elif kind == "text":
                lines += [f"> **{rest[0]}**" if rest[1] else rest[0], ""]
            elif kind == "items":
                lines += [*(f"- {line}" for line in rest[0]), ""]
            elif kind == "table":
                header, rows, caption = rest
                lines += [*([caption, ""] if caption else []), *md_table(header, rows), ""]
            elif kind == "code":
                lines += [f"```{rest[1]}", rest[0].rstrip(), "```", ""]
            else:
                path, caption = rest
                lines += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]
        return "\n".join(lines)
