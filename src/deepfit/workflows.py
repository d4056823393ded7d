"""The two verbs that end in a report: :func:`compare` and :func:`reproduce`.

Experiments train runs and tabulate them; reports only read what experiments
wrote. These functions put the two together, so that they are the one place
that knows both and the experiments never import the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepfit.errors import StorageError
from deepfit.experiments import reproduce as reproduction
from deepfit.experiments import runner
from deepfit.experiments.reproduce import Reproduction
from deepfit.experiments.tables import ExperimentResult
from deepfit.io import storage_error
from deepfit.report import write_report
from deepfit.report.chapter import write_chapter_report


def compare(experiment: Any, out: str | Path | None = None, *, report: bool = True,
            **options: Any) -> ExperimentResult:
    """Run every (variant, seed) of an experiment, write its tables and (``report``) its report.

    ``options`` are :func:`deepfit.experiments.runner.compare`'s: ``seeds``, ``overrides``,
    ``backend``, ``jobs``, ``address``, ``log``; from Python, ``data=`` and variants as functions
    ``seed -> compiled Keras model`` (:mod:`deepfit.experiments.python_api`). ``result.report()``
    displays the report inline in Jupyter.
    """
    result = runner.compare(experiment, out, **options)
    if report:
        try:
            result.report = Report(write_report(result.dir))
        except OSError as e:
            raise StorageError(f"{storage_error(e.filename or result.dir, e)}. Every finished run and the tables "
                               f"are kept in {result.dir}. Free some space, then run the same command again: "
                               "it trains nothing more, it only writes the report") from None
    return result


class Report(dict):
    """The report's files (``{"markdown": path, "html": path}``); calling it displays the report inline
    in Jupyter (``result.report()``), or gives the Markdown's text elsewhere."""

    def __call__(self) -> "ReportView":
        return ReportView(Path(self["html"]), Path(self["markdown"]))


class ReportView:
    def __init__(self, html: Path, markdown: Path):
        self.html, self.markdown = html, markdown

    def _repr_html_(self) -> str:
        return self.html.read_text(encoding="utf-8")

    def __repr__(self) -> str:
        return self.markdown.read_text(encoding="utf-8")


def reproduce(out: str | Path | None = None, *, report: bool = True, **options: Any) -> Reproduction:
    """Rerun the notebook's experiments over seeds, judge its claims and (``report``) write the chapter's report.

    ``options`` are :func:`deepfit.experiments.reproduce.reproduce`'s.
    """
    result = reproduction.reproduce(out, **options)
    if report:
        result.report = write_chapter_report(result)
    return result
