"""The report as Markdown, with its figures as PNG files beside it."""

from __future__ import annotations

from pathlib import Path

from deepfit.io import write_atomic
from deepfit.report.content import ReportContent


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def render(content: ReportContent, figure_dir: str = "figures", level: int = 1) -> str:
    h = "#" * level
    parts = [f"{h} {content.title}", "", *[f"{p}  " for p in content.intro], ""]
    for t in content.tables:
        parts += [f"{h}# {t.title}", "", table_md(t.header, t.rows), ""]
        if t.note:
            parts += [t.note, ""]
    for f in content.figures:
        parts += [f"{h}# {f.caption}", "", f"![{f.caption}]({figure_dir}/{f.name}.png)", ""]
    for section in content.sections:
        parts += [render(section, figure_dir, level + 1)]
    return "\n".join(parts)


def all_figures(content: ReportContent):
    yield from content.figures
    for section in content.sections:
        yield from all_figures(section)


def write(content: ReportContent, directory: Path) -> Path:
    (directory / "figures").mkdir(parents=True, exist_ok=True)
    for f in all_figures(content):
        write_atomic(directory / "figures" / f"{f.name}.png", f.png)
    path = directory / "report.md"
    write_atomic(path, render(content))
    return path
