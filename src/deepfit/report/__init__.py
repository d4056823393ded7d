"""Reports from experiment directories: Markdown with PNG figures, and one standalone HTML file."""

from __future__ import annotations

from pathlib import Path

from deepfit.errors import ConfigError


def write_report(exp_dir: str | Path, out: str | Path | None = None) -> dict[str, Path]:
    """Write ``report.md`` (+ ``figures/``) and ``report.html`` for an experiment directory.

    ``out`` defaults to the experiment directory itself. Reads runs only; never trains.
    """
    from deepfit.report import html, markdown
    from deepfit.report.content import build

    d = Path(exp_dir)
    if not (d / "experiment.json").is_file():
        raise ConfigError(f"{str(d)!r} is not an experiment directory (no experiment.json); "
                          f"make one with deepfit compare EXPERIMENT --out {d}")
    target = Path(out) if out is not None else d
    target.mkdir(parents=True, exist_ok=True)
    content = build(d)
    return {"markdown": markdown.write(content, target), "html": html.write(content, target)}


__all__ = ["write_report"]
