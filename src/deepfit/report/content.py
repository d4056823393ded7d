"""What a report says, independent of its format: tables (header + rows of text) and figures (PNG bytes).

Built from an experiment directory alone; a report never trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from deepfit.experiments.stats import compare_to_reference, describe, higher_is_better
from deepfit.experiments.tables import ExperimentResult, load_experiment_dir
from deepfit.report import figures

TEST_NOTE = (
    "Comparisons pair each variant with the reference on the same seeds (same initial-weight stream and data "
    "order) and test the per-seed differences: a paired t-test, whose interval is the one shown; a Wilcoxon "
    "signed-rank test instead when there are at least 10 seeds and the differences are clearly not normal "
    "(its smallest p-value with n seeds is 2/2^n, 0.0625 at 5 seeds, so below 6 seeds it can never reach 95%). "
    "Effect size d_z = mean difference / its standard deviation."
)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    name: str
    caption: str
    png: bytes


@dataclass
class ReportContent:
    title: str
    intro: list[str]
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    sections: list["ReportContent"] = field(default_factory=list)  # rendered after, one heading level down


def fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _metrics(result: ExperimentResult) -> list[str]:
    head = result.experiment.metric
    known = ["val_accuracy", "val_loss", "test_accuracy", "test_loss", "accuracy", "loss"]
    present = [m for m in known if m in result.finals.columns]
    return [head] + [m for m in present if m != head]


def build(exp_dir: str | Path) -> ReportContent:
    result = load_experiment_dir(exp_dir)
    exp, finals, results = result.experiment, result.finals, result.results
    order = [v.name for v in exp.variants]
    intro = [
        f"Variants: {', '.join(order)}; reference: {exp.reference}. Seeds: {', '.join(map(str, exp.seeds))}.",
        f"Finished runs: {len(finals)} of {len(exp.variants) * len(exp.seeds)}."
        + (f" Missing: {', '.join(f'{v} seed {s}' for v, s in result.missing)}." if result.missing else ""),
    ]
    diverged = finals[finals["status"] == "diverged"] if "status" in finals else finals.iloc[0:0]
    if len(diverged):
        intro.append(f"Diverged runs (kept, their metrics are NaN and dropped from the statistics): "
                     f"{', '.join(f'{r.variant} seed {r.seed}' for r in diverged.itertuples())}.")
    content = ReportContent(f"Experiment {exp.name}", intro)
    if finals.empty:
        content.intro.append("No finished runs yet: run `deepfit compare` on this experiment first.")
        return content
    for m in _metrics(result):
        d = describe(finals, m)
        d = d.set_index("variant").loc[[v for v in order if v in set(d["variant"])]].reset_index()
        better = "higher" if higher_is_better(m) else "lower"
        content.tables.append(Table(
            f"Final {m} ({better} is better)",
            ["variant", "seeds", "mean", "std", "95% CI"],
            [[r.variant, str(r.n), fmt(r.mean), fmt(r.std), f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]"]
             for r in d.itertuples()]))
    metric = exp.metric
    comp = compare_to_reference(finals, metric, exp.reference)
    content.tables.insert(1, Table(
        f"Each variant against {exp.reference} ({metric}, difference = variant − {exp.reference})",
        ["variant", "seeds", "mean difference", "95% CI", "test", "p", "d_z", "verdict"],
        [[r.variant, str(r.n), fmt(r.mean_diff), f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]", r.test,
          fmt_p(r.p_value), fmt(r.effect_size, 2), r.verdict] for r in comp.itertuples()],
        TEST_NOTE))
    for m in [metric] + [x for x in ("val_loss", "loss") if x != metric and x in results.columns]:
        if m in results.columns:
            content.figures.append(Figure(f"curves_{m}", f"Learning curves: {m} per epoch, mean over seeds with "
                                          f"95% t band", figures.learning_curves(results, m, order)))
    content.figures.append(Figure(f"final_{metric}", f"Final {metric} per variant: seeds, mean and 95% t interval",
                                  figures.final_metric(finals, metric, order)))
    return content
