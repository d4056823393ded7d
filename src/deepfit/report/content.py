"""What a report says, independent of its format: tables (header + rows of text) and figures (PNG bytes).

Built from an experiment directory alone; a report never trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from deepfit.experiments.stats import FEW_SEEDS_NOTE, crossed, describe
from deepfit.experiments.tables import ExperimentResult, load_experiment_dir
from deepfit.experiments.variance import decompose_table
from deepfit.report import figures

VERDICT_NOTE = (
    "Verdicts survive looking. Each comparison pairs the two on the same seeds (same initial weights, same data "
    "order) and reads its verdict off an anytime-valid confidence sequence for the mean difference (the safe "
    "t-test of Pérez-Ortiz, Lardy, de Heide and Grünwald 2024, Cauchy prior of scale 1 on the standardized "
    "effect; see docs/verdicts.md), at level 1 − 0.05/m for a family of m comparisons: all m intervals hold at "
    "once with 95% probability, however many times seeds were added and looked at. The verdict is taken at the "
    "first look, from 3 seeds on, where the interval lies above 0, below 0, or inside ±δ (δ: the smallest "
    "difference of interest, one point of an accuracy unless the experiment file sets equivalence): better / "
    "worse (or confirmed / the opposite holds for a claim), equivalent within ±δ, else undecided at N seeds, "
    "with the seeds that would decide it at the observed mean and spread (rough). What each interval covers: "
    "the verdict's interval and the 95% t interval vary what a seed changes (initial weights, data order, "
    "dropout masks) on these validation images; 'seeds + images' also varies the validation images (a fresh "
    "sample of as many from the same distribution), from each run's per-image correctness and the crossed "
    "seeds × images model (variance (MS_seed + MS_image − MS_resid)/(S·I), Satterthwaite df); it is wider "
    "when the images, not the seeds, dominate. P(A > B): the chance that a fresh seed of the first beats a "
    "fresh seed of the second (ties half), with a 95% bootstrap interval over seeds. Beside the verdict, for "
    "reference only, the fixed-n test the experiment chose (paired t by default; 'wilcoxon' cannot reach 95% "
    "below 6 seeds; exact ties use the sign test) and its Holm-adjusted p: they do not decide, because a "
    "fixed-n test repeated as seeds are added is wrong more often than it says. In a crossed experiment "
    "(init × order seeds) the grid is judged at its fixed size: its interval is the crossed model's "
    "(variance (MS_init + MS_order − MS_resid)/(IJ), Satterthwaite df) at level 1 − 0.05/m, read the same way."
)
TEST_NOTE = VERDICT_NOTE
INTERVAL_NOTE = (
    "95% CI: Student-t interval of the mean over seeds (what a seed changes, on these validation images); an "
    "interval that crossed a bound the metric is known to have (from its Keras object: an accuracy in [0, 1], "
    "a loss ≥ 0 only when the loss and every penalty are known non-negative) is clipped there and marked *. "
    f"One rule for few seeds: {FEW_SEEDS_NOTE}. Diverged runs have no metrics (their weights are NaN): they "
    "are excluded from the statistics and counted in 'diverged'."
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
    """The seeds that would decide an undecided comparison (rough), or a dash."""
    if not verdict.startswith("undecided") or test == "crossed t":
        return "—"
    if needed != needed:
        return "n/a"
    return "more than 1000" if math.isinf(needed) else f"about {int(needed)}"


def direction_text(column) -> str:
    if column.direction == "max":
        return "higher is better"
    if column.direction == "min":
        return "lower is better"
    return "direction unknown: its Keras metric declares none; set direction = 'max' or 'min' in the experiment file"


def pair_text(lo: float, hi: float) -> str:
    return "n/a" if lo != lo else f"[{fmt(lo)}, {fmt(hi)}]"


def outside_note(mean: float, lo: float, hi: float) -> str:
    """A warning when the mean has left the verdict's interval (else ""). That interval is the running
    intersection of the looks' intervals: it excludes the mean only when a later seed moved the mean far from
    the earlier ones, i.e. an outlying seed (a run that collapsed) that a normal model of the differences does
    not expect. The verdict stays valid but is slow to decide; the seeds say more."""
    if lo == lo and mean == mean and not lo <= mean <= hi:
        return " (the mean is outside: an outlying seed, the differences are not normal; read the seeds)"
    return ""


def verdict_interval_text(mean: float, lo: float, hi: float) -> str:
    return pair_text(lo, hi) + outside_note(mean, lo, hi)


def superior_text(p: float, lo: float, hi: float) -> str:
    return "n/a" if p != p else f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


def comparison_rows(comp) -> list[list[str]]:
    """The rows of a comparison table (compare's and the report's)."""
    return [[r.variant, f"{r.n}" + (f" of {r.available}" if r.available > r.n else ""), fmt(r.mean_diff),
             pair_text(r.cs_low, r.cs_high), pair_text(r.ci_low, r.ci_high), pair_text(r.images_low, r.images_high),
             fmt(r.effect_size, 2), superior_text(r.p_superior, r.p_superior_low, r.p_superior_high),
             "none" if r.delta != r.delta else f"±{r.delta:g}", r.verdict, needed_text(r.verdict, r.to_decide, r.test),
             f"{r.test} p={fmt_p(r.p_value)}, Holm {fmt_p(r.p_holm)}"]
            for r in comp.itertuples()]


COMPARISON_HEADER = ["variant", "seeds", "mean difference", "verdict's interval (anytime)", "95% CI (seeds)",
                     "95% CI (seeds + images)", "d_z", "P(variant > reference)", "δ", "verdict",
                     "seeds to decide", "fixed-n test (not deciding)"]


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
        d = describe(finals, m, column=result.column(m))
        d = d.set_index("variant").loc[[v for v in order if v in set(d["variant"])]].reset_index()
        content.tables.append(Table(
            f"Final {m} ({direction_text(result.column(m))})",
            ["variant", "seeds", "diverged", "mean", "std", "95% CI"],
            [[r.variant, str(r.n), str(n_diverged.get(r.variant, 0)), fmt(r.mean), fmt(r.std),
              interval_text(r.ci_low, r.ci_high, r.clipped, r.note)] for r in d.itertuples()],
            "" if content.tables else INTERVAL_NOTE + (CROSSED_INTERVAL_NOTE if exp.is_crossed else "")))
    metric = exp.metric
    comp = result.comparisons(metric)
    content.tables.insert(1, Table(
        f"Each variant against {exp.reference} ({metric}, difference = variant − {exp.reference})",
        COMPARISON_HEADER, comparison_rows(comp), VERDICT_NOTE))
    if result.rounds or (Path(exp_dir) / "rounds.txt").is_file():
        lines = result.rounds or (Path(exp_dir) / "rounds.txt").read_text(encoding="utf-8").splitlines()
        content.intro.append("Seeds until decided: " + "; ".join(lines) + ".")
    section = variance_section(finals, metric, order)
    if section is not None:
        content.sections.append(section)
    for m in [metric] + [x for x in ("val_loss", "loss") if x != metric and x in results.columns]:
        if m in results.columns:
            content.figures.append(Figure(f"curves_{m}", f"Learning curves: {m} per epoch, mean over seeds with "
                                          f"95% t band", figures.learning_curves(results, m, order,
                                                                                 result.column(m))))
    content.figures.append(Figure(f"final_{metric}", f"Final {metric} per variant: seeds, mean and 95% interval",
                                  figures.final_metric(finals, metric, order, result.column(metric))))
    return content


# A table of claims (the notebook's, the chapter tables', the last page's): one row per verdict.
CLAIM_HEADER = ["claim", "first − second", "metric", "verdict", "seeds", "mean difference",
                "verdict's interval (anytime)", "95% CI (seeds)", "95% CI (seeds + images)", "d_z",
                "P(first > second)", "δ", "seeds to decide", "fixed-n t-test (not deciding)"]


def claim_rows(verdicts) -> list[list[str]]:
    rows = []
    for v in verdicts:
        p = v.paired
        seeds = f"{p.n}" + (f" of {p.available}" if p.available > p.n else "")
        rows.append([v.claim.text, f"{v.claim.better} − {v.claim.worse}", v.claim.metric, v.verdict, seeds,
                     fmt(p.mean_diff), verdict_interval_text(p.mean_diff, p.cs_low, p.cs_high),
                     pair_text(p.ci_low, p.ci_high),
                     pair_text(p.images_low, p.images_high), fmt(p.effect_size, 2),
                     superior_text(p.p_superior, p.p_superior_low, p.p_superior_high),
                     "none" if p.delta != p.delta else f"±{p.delta:g}", needed_text(v.verdict, p.to_decide),
                     f"p={fmt_p(p.p_value)}, Holm {fmt_p(p.p_holm)}"])
    return rows


def family_note(verdicts) -> str:
    m = max((v.paired.family for v in verdicts), default=0)
    if not m:
        return ""
    return (f" The claims are judged in families: each interval is at level 1 − 0.05/m for a family of m claims "
            f"(here up to {m}), so the chance that any verdict of a family is wrong stays at 5%. For a loss the "
            "claimed direction is the first one lower.")
