"""The report as one standalone HTML file: tables as HTML, figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from deepfit.io import write_atomic
from deepfit.report.content import ReportContent

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1rem 0 2rem; }
figcaption { color: #555; font-size: 0.9rem; }
p.note { color: #555; font-size: 0.9rem; }
"""


def render(content: ReportContent, level: int = 1) -> str:
    e = html.escape
    h, sub = f"h{min(level, 6)}", f"h{min(level + 1, 6)}"
    out = [] if level > 1 else ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                                f"<title>{e(content.title)}</title>", f"<style>{STYLE}</style></head><body>"]
    out.append(f"<{h}>{e(content.title)}</{h}>")
    out += [f"<p>{e(p)}</p>" for p in content.intro]
    for t in content.tables:
        out.append(f'<{sub}>{e(t.title)}</{sub}><table class="results"><thead><tr>'
                   + "".join(f"<th>{e(c)}</th>" for c in t.header) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in t.rows]
        out.append("</tbody></table>")
        if t.note:
            out.append(f'<p class="note">{e(t.note)}</p>')
    for f in content.figures:
        data = base64.b64encode(f.png).decode("ascii")
        out.append(f'<figure id="fig-{e(f.name)}"><img alt="{e(f.caption)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{e(f.caption)}</figcaption></figure>")
    out += [render(section, level + 1) for section in content.sections]
    if level == 1:
        out.append("</body></html>")
    return "\n".join(out)


def write(content: ReportContent, directory: Path) -> Path:
    path = directory / "report.html"
    write_atomic(path, render(content))
    return path
