"""What a report says, independent of its format: tables (header + rows of text) and figures (PNG bytes).

Built from an experiment directory alone; a report never trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from deepfit.experiments.stats import compare_to_reference, crossed, describe, higher_is_better, seeds_needed_text
from deepfit.experiments.tables import ExperimentResult, load_experiment_dir
from deepfit.experiments.variance import decompose_table
from deepfit.report import figures

TEST_NOTE = (
    "Comparisons pair each variant with the reference on the same seeds (same initial weights, same data order) "
    "and test the per-seed differences with the test the experiment file chose before any data (default: the "
    "paired t-test, whose interval is the one shown; 'wilcoxon': the signed-rank test, whose smallest p-value "
    "with n seeds is 2/2^n, 0.0625 at 5 seeds, so below 6 seeds it can never reach 95%). When every seed moved "
    "by exactly the same amount the t statistic is undefined: the exact sign test is used (p = 2·0.5^n). In a "
    "crossed experiment (init × order seeds) the cells share seeds, so the mean difference is tested with the "
    "crossed model (variance (MS_init + MS_order − MS_resid)/(IJ), Satterthwaite degrees of freedom). "
    "p (Holm): Holm's step-down adjustment over all the comparisons of the table; verdicts use it. "
    "Effect size d_z = mean difference / its standard deviation. Seeds needed: the seeds a paired t-test would "
    "need for 80% power at α = 0.05/m (two-sided; m comparisons in the table, the strictest level Holm may "
    "apply) if the true d_z were the observed one: "
    "a rough guide (the observed effect is noisy); above 100 the effect is too small for more seeds to settle it. "
    "In a crossed comparison d_z uses the sd of one cell's difference and seeds needed counts plain seeds (a "
    "fresh init and order each): a grid's mean averages over only I init and J order seeds, so it needs about "
    "that many of each when the init or order variance dominates."
)
INTERVAL_NOTE = (
    "95% CI: Student-t interval of the mean; an interval that crossed the metric's range (accuracy in [0, 1], "
    "losses ≥ 0) is clipped there and marked *. With fewer than 3 seeds no interval is meaningful and none is "
    "given. Diverged runs have no metrics (their weights are NaN): they are excluded from the statistics and "
    "counted in 'diverged'."
)
CROSSED_INTERVAL_NOTE = (
    " Crossed cells share init and order seeds, so they are not independent draws: the interval of a variant's "
    "mean comes from the crossed model (variance (MS_init + MS_order − MS_resid)/(IJ), Satterthwaite degrees of "
    "freedom), wider than treating the cells as independent seeds would give. With only 2 init (or order) seeds "
    "that variance has 1 degree of freedom and the interval is very wide: use at least 3 of each (5 × 5 is better)."
)
VARIANCE_NOTE = (
    "Each variant's final metric over the init × order grid, split as y_ij = μ + a_i (init) + b_j (order) + e_ij "
    "(residual, which also holds the init × order interaction: one run per cell cannot separate them). "
    "Estimator: two-way random-effects ANOVA (method of moments, expected mean squares): σ²_init = "
    "(MS_init − MS_resid)/J, σ²_order = (MS_order − MS_resid)/I, σ²_resid = MS_resid; a negative estimate is "
    "truncated at 0 (marked *). p: F test of 'no init (order) variance', MS/MS_resid. Init seeds with a diverged "
    "cell are left out whole (the estimator needs a complete grid)."
)


def interval_text(ci_low: float, ci_high: float, clipped: bool = False, note: str = "") -> str:
    if ci_low != ci_low:  # NaN: say why instead of printing nothing
        return f"none ({note})" if note else "n/a"
    return f"[{fmt(ci_low)}, {fmt(ci_high)}]{'*' if clipped else ''}"


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


def seeds_text(exp) -> str:
    if exp.is_crossed:
        spec = exp.seeds_spec()
        return (f"init seeds {', '.join(map(str, spec['init']))} × order seeds {', '.join(map(str, spec['order']))} "
                f"({len(exp.seeds)} cells; dropout follows the order seed)")
    return ", ".join(map(str, exp.seeds))


def needed_text(verdict: str, needed: float, test: str = "") -> str:
    return seeds_needed_text(needed, test == "crossed t") if verdict.startswith("not distinguishable") else "—"


def variance_section(finals, metric: str, order: list[str]) -> ReportContent | None:
    """Init / order / residual variance of each variant's final metric (crossed experiments only)."""
    decs = {}
    for v in order:
        rows = finals[finals["variant"] == v]
        if metric in rows and crossed(rows):
            d = decompose_table(rows, metric)
            if d is not None:
                decs[v] = d
    if not decs:
        return None

    def sd(d, part):
        return f"{fmt(getattr(d, f'var_{part}') ** 0.5)}{'*' if part in d.truncated else ''}"

    sec = ReportContent(f"Where the spread comes from: init vs data order ({metric})", [])
    sec.tables.append(Table(
        f"Variance decomposition of final {metric} (standard deviations and shares of the variance)",
        ["variant", "grid (init × order)", "mean", "sd init", "sd order", "sd residual", "init %", "order %",
         "residual %", "p (init)", "p (order)"],
        [[v, f"{d.n_init} × {d.n_order}" + (f" ({d.dropped} cells left out)" if d.dropped else ""), fmt(d.mean),
          sd(d, "init"), sd(d, "order"), sd(d, "resid"), fmt(100 * d.share("init"), 0), fmt(100 * d.share("order"), 0),
          fmt(100 * d.share("resid"), 0), fmt_p(d.p_init), fmt_p(d.p_order)] for v, d in decs.items()],
        VARIANCE_NOTE))
    sec.figures.append(Figure(f"variance_{metric}", f"Variance of final {metric}: init, order and residual "
                              "components (ANOVA estimator)", figures.variance_components(decs)))
    return sec


def build(exp_dir: str | Path) -> ReportContent:
    result = load_experiment_dir(exp_dir)
    exp, finals, results = result.experiment, result.finals, result.results
    order = [v.name for v in exp.variants]
    intro = [
        f"Variants: {', '.join(order)}; reference: {exp.reference}. Seeds: {seeds_text(exp)}.",
        f"Finished runs: {len(finals)} of {len(exp.variants) * len(exp.seeds)}."
        + (f" Missing: {', '.join(f'{v} seed {s}' for v, s in result.missing)}." if result.missing else ""),
    ]
    diverged = finals[finals["status"] == "diverged"] if "status" in finals else finals.iloc[0:0]
    if len(diverged):
        intro.append(f"{len(diverged)} diverged run(s), kept on disk but excluded from the statistics (no metrics: "
                     f"their weights are NaN): {', '.join(f'{r.variant} seed {r.seed}' for r in diverged.itertuples())}.")
    content = ReportContent(f"Experiment {exp.name}", intro)
    if finals.empty:
        content.intro.append("No finished runs yet: run `deepfit compare` on this experiment first.")
        return content
    n_diverged = diverged.groupby("variant").size().to_dict() if len(diverged) else {}
    for m in _metrics(result):
        d = describe(finals, m)
        d = d.set_index("variant").loc[[v for v in order if v in set(d["variant"])]].reset_index()
        better = "higher" if higher_is_better(m) else "lower"
        content.tables.append(Table(
            f"Final {m} ({better} is better)",
            ["variant", "seeds", "diverged", "mean", "std", "95% CI"],
            [[r.variant, str(r.n), str(n_diverged.get(r.variant, 0)), fmt(r.mean), fmt(r.std),
              interval_text(r.ci_low, r.ci_high, r.clipped, r.note)] for r in d.itertuples()],
            "" if content.tables else INTERVAL_NOTE + (CROSSED_INTERVAL_NOTE if exp.is_crossed else "")))
    metric = exp.metric
    comp = compare_to_reference(finals, metric, exp.reference, test=exp.test)
    content.tables.insert(1, Table(
        f"Each variant against {exp.reference} ({metric}, difference = variant − {exp.reference})",
        ["variant", "seeds", "mean difference", "95% CI", "test", "p", "p (Holm)", "d_z", "seeds needed (80% power)",
         "verdict"],
        [[r.variant, str(r.n), fmt(r.mean_diff), f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]", r.test,
          fmt_p(r.p_value), fmt_p(r.p_holm), fmt(r.effect_size, 2), needed_text(r.verdict, r.seeds_needed, r.test),
          r.verdict]
         for r in comp.itertuples()],
        TEST_NOTE))
    section = variance_section(finals, metric, order)
    if section is not None:
        content.sections.append(section)
    for m in [metric] + [x for x in ("val_loss", "loss") if x != metric and x in results.columns]:
        if m in results.columns:
            content.figures.append(Figure(f"curves_{m}", f"Learning curves: {m} per epoch, mean over seeds with "
                                          f"95% t band", figures.learning_curves(results, m, order)))
    content.figures.append(Figure(f"final_{metric}", f"Final {metric} per variant: seeds, mean and 95% interval",
                                  figures.final_metric(finals, metric, order)))
    return content
