"""Statistics over seeds: means with intervals, curves with bands, paired comparisons, verdicts, error bars.

Every number here answers "how sure are we?" for a handful of seeds.

* What a column is comes from the run records, never from its name: each run's
  ``final.json`` holds, per logged value, the direction and the range its Keras
  metric or loss declares (:meth:`deepfit.train.objective.Objective.columns`);
  :class:`Column` carries them here. A value with no known direction gets no
  "better" / "worse" (only "higher" / "lower", and the fix: ``direction`` in the
  experiment file); an interval is clipped only at a bound known from what the
  value is (accuracy-family metrics in [0, 1]; a loss at 0 only when its Keras
  loss and every penalty are known to be non-negative).
* One rule below :data:`MIN_SEEDS_FOR_INTERVAL` (3) seeds, stated once
  (:data:`FEW_SEEDS_NOTE`): no interval, no test, no verdict (two points fix a t
  interval with t_{0.975,1} = 12.7, a number that says nothing).
* Per variant: mean, sample standard deviation (ddof=1) and the 95% Student-t
  confidence interval of the mean, ``mean ± t_{0.975, n-1} · s / √n``, clipped to
  the column's known range (``Summary.clipped`` says so: a clipped interval covers
  at least as often as the t interval it came from, but its ends are no longer
  symmetric). In a crossed experiment (init × order seeds) the cells are not
  independent: the interval comes from the crossed model
  (:mod:`deepfit.experiments.variance`).
* Variant vs reference: the two were trained on the *same* seeds, so each seed
  gives a pair and the question is about ``d_i = x_variant,i − x_reference,i``.
  - **The verdict** is the sequential rule's (:mod:`deepfit.experiments.sequential`):
    an anytime-valid confidence sequence for the mean difference at level
    1 − 0.05/m (m comparisons in the family), read at the first look from 3
    seeds on where it is all above 0, all below 0 or all inside ±δ (the
    comparison's equivalence margin): "better" / "worse" (by the column's
    direction), "equivalent within ±δ", else "undecided at N seeds". Adding
    seeds and looking again never inflates its error. A crossed grid is judged
    at its fixed size by the crossed-t interval at 1 − 0.05/m, read the same way.
  - **Descriptive, fixed n** (beside the verdict, not deciding it): the test the
    experiment file chose before any data, the paired t-test unless it says
    ``test = "wilcoxon"`` (a normality pre-test on the same data would make a
    two-stage procedure whose error rate is no longer the nominal 5%).
    Paired t: ``t = d̄ / (s_d / √n)``, ``n − 1`` degrees of freedom, interval
    ``d̄ ± t_{0.975, n-1} · s_d / √n``. Wilcoxon signed-rank: its smallest
    two-sided p-value is ``2 / 2^n`` (0.0625 at 5 seeds). Exact ties (``s_d =
    0``: every seed moved by the same amount, plausible when accuracies move in
    steps of 1/5000) leave t undefined: identical runs give p = 1, otherwise the
    exact sign test ``p = 2 · 0.5^n``. Holm's step-down (Holm 1979),
    ``p̃_(k) = max_{j ≤ k} min(1, (m − j + 1) p_(j))``, over the family.
  - Effect size: Cohen's ``d_z = d̄ / s_d`` (Lakens 2013, eq. 6), and beside it
    :func:`superiority`: P(A > B), the chance that a fresh seed of A beats a fresh
    seed of B, with a bootstrap interval over seeds.
  - Error bars that say what they cover: the seed interval covers what a seed
    changes (initialization, data order, dropout masks) on *these* validation
    images; :func:`images_interval` also covers the choice of the images (each
    run keeps its per-image correctness), from the crossed seeds × images model.
* Power (kept for planning a fixed design): the smallest n at which a two-sided
  paired t-test at α reaches 80% power if the true ``d_z`` were the observed one,
  ``P(|T| > t_{1−α/2, n−1})`` with ``T`` noncentral t, ``n − 1`` degrees of
  freedom, noncentrality ``d_z √n`` (Cohen 1988, ch. 2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy  # scipy.stats loads on first use (a second of every process start otherwise)

from deepfit.experiments.variance import crossed_mean, grid

from deepfit.experiments.sequential import MIN_SEEDS, judge_sequence

Test = Literal["t", "wilcoxon"]
TESTS = ("t", "wilcoxon")
DEFAULT_TEST: Test = "t"
MIN_SEEDS_FOR_INTERVAL = MIN_SEEDS  # one rule: intervals, tests and verdicts all start here
FEW_SEEDS_NOTE = f"fewer than {MIN_SEEDS_FOR_INTERVAL} seeds: no interval, test or verdict is meaningful"
NO_INTERVAL_NOTE = FEW_SEEDS_NOTE
POWER = 0.8
# Past this many seeds the answer "run more seeds" stops being useful advice.
USEFUL_SEEDS = 100
TIE_TOLERANCE = 1e-9
# The default smallest effect of interest (equivalence margin): one point of a proportion-valued metric (an
# accuracy on the 5,000 validation images has a 95% margin of error of about ±0.009, so a smaller difference
# is one no single evaluation there could show), and 0.01 nat of a crossentropy (the geometric-mean
# probability given to the right answer moves by 1%). Other quantities have no natural scale: none.
PROPORTION_MARGIN = 0.01
CROSSENTROPY_MARGIN = 0.01
IMAGE_SPLITS = {"val_accuracy": "val", "test_accuracy": "test"}  # columns whose per-image correctness runs keep


@dataclass(frozen=True)
class Column:
    """What a result column is: the way it should go and the values it can take (from the run records)."""

    name: str
    direction: str | None = None  # "max", "min", or None: unknown
    low: float = -math.inf
    high: float = math.inf
    kind: str | None = None  # "crossentropy" for a crossentropy loss

    @property
    def limits(self) -> tuple[float, float]:
        return self.low, self.high

    @property
    def span(self) -> float:
        """The largest possible difference of two values (inf unless both bounds are known)."""
        return self.high - self.low

    @property
    def margin(self) -> float | None:
        """The default equivalence margin (see :data:`PROPORTION_MARGIN`); None where none is reasoned."""
        if (self.low, self.high) == (0.0, 1.0):
            return PROPORTION_MARGIN
        if self.kind == "crossentropy":
            return CROSSENTROPY_MARGIN
        return None

    @classmethod
    def from_record(cls, name: str, record: Mapping[str, Any]) -> "Column":
        lo, hi = (list(record.get("range") or [None, None]) + [None, None])[:2]
        return cls(name, record.get("direction"), -math.inf if lo is None else float(lo),
                   math.inf if hi is None else float(hi), record.get("kind"))

    def to_record(self) -> dict[str, Any]:
        return {"direction": self.direction, "range": [self.low if math.isfinite(self.low) else None,
                                                       self.high if math.isfinite(self.high) else None],
                **({"kind": self.kind} if self.kind else {})}

    def renamed(self, name: str) -> "Column":
        return replace(self, name=name)


# Columns deepfit itself defines (not Keras metrics): what they are is known by construction.
OWN_COLUMNS = {"train_seconds": Column("train_seconds", "min", 0.0, math.inf)}


def merge_columns(records: Iterable[Mapping[str, Any]]) -> dict[str, Column]:
    """The columns of several runs' ``final.json`` "columns"; where runs disagree, the direction is unknown."""
    out: dict[str, Column] = dict(OWN_COLUMNS)
    seen: dict[str, Column] = {}
    for record in records:
        for name, rec in (record or {}).items():
            c = Column.from_record(name, rec)
            if name in seen and seen[name] != c:
                c = Column(name)
            seen[name] = c
    return {**out, **seen}


def column_of(columns: Mapping[str, Column] | None, name: str) -> Column:
    """``columns[name]``, or a column of which nothing is known."""
    return (columns or {}).get(name) or OWN_COLUMNS.get(name) or Column(name)


def check_test(test: str) -> Test:
    if test not in TESTS:
        raise ValueError(f"test must be one of {', '.join(map(repr, TESTS))} (chosen before seeing the data); "
                         f"got {test!r}")
    return test  # type: ignore[return-value]


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    clipped: bool = False  # the t interval crossed the metric's bounds and was cut there
    note: str = ""

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def _clip(mean: float, lo: float, hi: float, std: float, n: int, limits: tuple[float, float]) -> Summary:
    a, b = max(lo, limits[0]), min(hi, limits[1])
    return Summary(n, mean, std, a, b, clipped=(a, b) != (lo, hi))


def t_interval(values: Sequence[float], confidence: float = 0.95, limits: tuple[float, float] | None = None,
               min_n: int = MIN_SEEDS_FOR_INTERVAL) -> Summary:
    """Mean, std (ddof=1) and the Student-t interval of the mean, clipped to ``limits``; NaNs dropped.

    Below ``min_n`` finite values the interval is NaN and ``note`` says why.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, note="no finite value")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    if n < max(min_n, 2):
        return Summary(n, mean, std, math.nan, math.nan, note=NO_INTERVAL_NOTE)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return _clip(mean, mean - half, mean + half, std, n, limits or (-math.inf, math.inf))


def crossed(table: pd.DataFrame) -> bool:
    """Whether rows come from a crossed design: at least 2 init seeds and 2 order seeds, not in lockstep."""
    if not {"init_seed", "order_seed"} <= set(table.columns) or table.empty:
        return False
    return (table["init_seed"].nunique() >= 2 and table["order_seed"].nunique() >= 2
            and bool((table["init_seed"] != table["order_seed"]).any()))


def crossed_interval(table: pd.DataFrame, metric: str, confidence: float = 0.95,
                     limits: tuple[float, float] | None = None) -> Summary:
    """Mean of a variant's (init × order) grid with the crossed model's interval (Satterthwaite df)."""
    y, dropped = grid(table, metric)
    if min(y.shape, default=0) < 2:
        return t_interval(table[metric], confidence, limits)
    m = crossed_mean(y)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, m.df)) * m.se
    s = _clip(m.mean, m.mean - half, m.mean + half, float(y.std(ddof=1)), y.size, limits or (-math.inf, math.inf))
    note = f"{dropped} cell(s) left out to complete the init × order grid" if dropped else ""
    return replace(s, note=note)


def describe(finals: pd.DataFrame, metric: str, confidence: float = 0.95,
             column: Column | None = None) -> pd.DataFrame:
    """One row per variant (in table order): n, mean, std, ci_low, ci_high, clipped, note of a final metric,
    clipped to ``column``'s known range (none known: not clipped)."""
    limits = (column or Column(metric)).limits
    rows = []
    for variant, group in finals.groupby("variant", sort=False):
        if metric not in group:
            s = t_interval([])
        elif crossed(group):
            s = crossed_interval(group, metric, confidence, limits)
        else:
            s = t_interval(group[metric], confidence, limits)
        rows.append({"variant": variant, "metric": metric, **asdict(s)})
    return pd.DataFrame(rows, columns=["variant", "metric", "n", "mean", "std", "ci_low", "ci_high", "clipped",
                                       "note"])


def curves(results: pd.DataFrame, metric: str, confidence: float = 0.95,
           column: Column | None = None) -> pd.DataFrame:
    """Per variant and epoch: mean and interval over seeds (the bands of the learning curves; crossed-aware)."""
    limits = (column or Column(metric)).limits
    rows = []
    for (variant, epoch), group in results.groupby(["variant", "epoch"], sort=False):
        s = (crossed_interval(group, metric, confidence, limits) if crossed(group)
             else t_interval(group[metric], confidence, limits))
        rows.append({"variant": variant, "epoch": int(epoch), **asdict(s)})
    return pd.DataFrame(rows, columns=["variant", "epoch", "n", "mean", "std", "ci_low", "ci_high", "clipped",
                                       "note"])


# -- power ---------------------------------------------------------------------------------------------------------

def paired_t_power(n: int, effect_size: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs when the true ``d_z`` is ``effect_size``."""
    if n < 2:
        return math.nan
    df, nc = n - 1, abs(effect_size) * math.sqrt(n)
    crit = float(scipy.stats.t.ppf(1 - alpha / 2, df))
    return float(scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.cdf(-crit, df, nc))


def seeds_needed(effect_size: float, power: float = POWER, alpha: float = 0.05, limit: int = 100_000) -> float:
    """Smallest n with :func:`paired_t_power` ≥ ``power``; ``inf`` for a zero effect or past ``limit``."""
    if not math.isfinite(effect_size):
        return math.nan
    if effect_size == 0 or paired_t_power(limit, effect_size, alpha) < power:
        return math.inf
    lo, hi = 2, 2
    while paired_t_power(hi, effect_size, alpha) < power:  # power grows with n: double, then bisect
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if paired_t_power(mid, effect_size, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def seeds_needed_text(n: float, crossed: bool = False) -> str:
    """How the report words :func:`seeds_needed` (in a crossed comparison it counts plain seeds)."""
    if math.isnan(n):
        return "n/a"
    if n > USEFUL_SEEDS:
        return f"> {USEFUL_SEEDS}: effect too small to settle with more seeds"
    return f"{int(n)} plain seeds" if crossed else f"{int(n)}"


# -- paired comparisons --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Paired:
    """A variant against the reference on their shared seeds (difference = variant − reference)."""

    variant: str
    reference: str
    metric: str
    n: int  # the seeds the verdict rests on (where it was decided, or all shared seeds)
    mean_diff: float
    std_diff: float
    ci_low: float  # 95% t interval over seeds at n (fixed n: descriptive)
    ci_high: float
    statistic: float
    p_value: float  # the chosen fixed-n test (descriptive)
    test: str
    effect_size: float  # Cohen's d_z (crossed: d̄ over the sd of one cell's difference)
    verdict: str
    to_decide: float = math.nan  # rough seeds that would decide an undecided comparison (sequential.seeds_to_decide)
    p_holm: float = math.nan  # Holm-adjusted fixed-n p over the family (descriptive)
    family: int = 1  # how many comparisons the family held
    df: float = math.nan
    decision: str = "open"  # "up" / "down" / "equivalent" / "open" (see deepfit.experiments.sequential)
    cs_low: float = math.nan  # the verdict's interval: anytime-valid, level 1 − 0.05/family (crossed: fixed crossed t)
    cs_high: float = math.nan
    p_anytime: float = math.nan  # anytime-valid p of "no difference", Bonferroni-adjusted over the family
    delta: float = math.nan  # the equivalence margin (NaN: none, so no "equivalent" verdict)
    direction: str | None = None  # of the metric: "max", "min" or None
    available: int = 0  # shared seeds there were (≥ n)
    se: float = math.nan  # standard error of the mean difference at n
    images_low: float = math.nan  # 95% interval that also covers the validation images (images_interval)
    images_high: float = math.nan
    p_superior: float = math.nan  # P(a fresh seed of the variant beats a fresh seed of the reference)
    p_superior_low: float = math.nan
    p_superior_high: float = math.nan
    crossed: bool = False  # a crossed grid, judged at its fixed size
    span: float = math.inf  # the largest possible |difference| (high − low of a bounded metric): intervals stay inside
    pairs: tuple[tuple[float, float], ...] = field(default=(), repr=False)  # (variant, reference) per shared seed

    @property
    def decided(self) -> bool:
        return self.decision != "open"


def verdict_text(decision: str, n: int, direction: str | None, delta: float = math.nan,
                 fixed: str | None = None) -> str:
    """The words of a comparison's verdict (a claim in the catalog words its own: confirmed, ...).

    ``fixed``: the size of a design judged at a fixed size (a crossed grid), named when undecided.
    """
    if decision == "equivalent":
        return f"equivalent within ±{delta:g}"
    if decision in ("up", "down"):
        up = decision == "up"
        if direction not in ("max", "min"):
            return "higher (direction unknown)" if up else "lower (direction unknown)"
        return "better" if up == (direction == "max") else "worse"
    if n < MIN_SEEDS_FOR_INTERVAL:
        return f"undecided at {n} seed{'s' if n != 1 else ''} ({FEW_SEEDS_NOTE})"
    return f"undecided at {fixed or f'{n} seeds'}"


def _margin(delta: float | None) -> float:
    return math.nan if delta is None else float(delta)


def paired_test(variant_values: Sequence[float], reference_values: Sequence[float], *, metric: str = "val_accuracy",
                variant: str = "variant", reference: str = "reference", test: Test = DEFAULT_TEST,
                confidence: float = 0.95, direction: str | None = None, delta: float | None = None,
                family: int = 1, span: float = math.inf) -> Paired:
    """Paired comparison of two equal-length sequences (same seeds, in seed order); see the module doc.

    The verdict is the sequential rule's over a family of ``family`` comparisons; the
    fixed-n test, its interval and p are descriptive. Below :data:`MIN_SEEDS_FOR_INTERVAL`
    pairs there is no interval, no p and no verdict.
    """
    test = check_test(test)
    a = np.asarray(variant_values, dtype=np.float64)
    b = np.asarray(reference_values, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same seeds: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    seq = judge_sequence(a[keep] - b[keep], delta=delta, family=family, alpha=1 - confidence)
    n = seq.n  # the verdict's seeds: everything below describes the same pairs
    d, av, bv = (a[keep] - b[keep])[:n], a[keep][:n], b[keep][:n]
    alpha = 1 - confidence
    mean = float(d.mean()) if n else math.nan
    # A difference of two values in [low, high] lies in [low − high, high − low]: no interval reaches past it.
    cs = (max(seq.cs_low, -span), min(seq.cs_high, span))
    if n < MIN_SEEDS_FOR_INTERVAL or np.ptp(d) == 0:
        # No look yet, or every look skipped (no spread, sequential.py): what is left is the whole span (or
        # ±inf), which says nothing. "No interval" is what the rule has; the verdict names the fact
        # (fewer than 3 seeds; identical on every seed).
        cs = (math.nan, math.nan)
    common = dict(decision=seq.decision, cs_low=cs[0], cs_high=cs[1],
                  p_anytime=seq.p_anytime, delta=_margin(delta), direction=direction, available=seq.available,
                  pairs=tuple(zip(a.tolist(), b.tolist())), family=family, span=span)
    if n < MIN_SEEDS_FOR_INTERVAL:
        return Paired(variant, reference, metric, n, mean, float(d.std(ddof=1)) if n > 1 else math.nan, math.nan,
                      math.nan, math.nan, math.nan, "none", math.nan,
                      verdict_text("open", n, direction), math.nan, math.nan, **common)
    sd = float(d.std(ddof=1))
    tcrit = float(scipy.stats.t.ppf(1 - alpha / 2, n - 1))
    ci = (max(mean - tcrit * sd / math.sqrt(n), -span), min(mean + tcrit * sd / math.sqrt(n), span))
    test, stat, p, effect, sd = fixed_n_test(av, bv, test)
    prob, lo, hi = superiority(av, bv)
    return Paired(variant, reference, metric, n, mean, sd, ci[0], ci[1], float(stat), p, test, float(effect),
                  verdict_text(seq.decision, n, direction, _margin(delta)), seq.to_decide, p, df=float(n - 1),
                  se=sd / math.sqrt(n), p_superior=prob, p_superior_low=lo, p_superior_high=hi, **common)


def fixed_n_test(a: np.ndarray, b: np.ndarray, test: str = DEFAULT_TEST) -> tuple[str, float, float, float, float]:
    """The fixed-n paired test of the module doc on all pairs ``a − b`` (finite, at least 2):
    (test used, statistic, two-sided p, d_z, sd of the differences; 0 for a spread at rounding level)."""
    d = a - b
    n = len(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    # Accuracies are counts over a test set: equal moves can differ in the last float bits (0.8612 − 0.8610
    # vs 0.8592 − 0.8590), which would give sd ≈ 1e-17, t ≈ 1e13 and p ≈ 0. Spread at rounding level is none.
    if np.ptp(d) <= TIE_TOLERANCE * max(1.0, float(np.abs(np.r_[a, b]).max())):
        sd = 0.0
    if sd == 0:
        # No spread: the t statistic is 0/0 or d/0, undefined either way (see the module doc).
        if mean == 0:
            return test, math.nan, 1.0, math.nan, sd
        return "sign", float((d > 0).sum()), float(scipy.stats.binomtest(int((d > 0).sum()), n, 0.5).pvalue), math.nan, sd
    if test == "t":
        stat = mean / (sd / math.sqrt(n))
        return test, stat, float(2 * scipy.stats.t.sf(abs(stat), n - 1)), mean / sd, sd
    nonzero = d[d != 0]
    ranks = scipy.stats.rankdata(np.abs(nonzero))
    # scipy's "auto": the exact null distribution for small n without ties, else the normal approximation.
    res = scipy.stats.wilcoxon(d, zero_method="wilcox")
    return test, float(ranks[nonzero > 0].sum()), float(res.pvalue), mean / sd, sd


def crossed_paired_test(variant: pd.DataFrame, reference: pd.DataFrame, *, metric: str, variant_name: str = "variant",
                        reference_name: str = "reference", confidence: float = 0.95, direction: str | None = None,
                        delta: float | None = None, family: int = 1) -> Paired:
    """Variant − reference on their shared (init, order) cells, with the crossed model's t (Satterthwaite df).

    ``n`` is the number of cells; ``d_z`` divides the mean difference by the sd
    of one cell's difference (init + order + residual components). A grid is
    judged at its fixed size: its verdict reads the crossed-t interval at level
    1 − α/family (Bonferroni, as the sequential rule) the same way.
    """
    keys = ["init_seed", "order_seed"]
    both = variant[keys + [metric]].merge(reference[keys + [metric]], on=keys, suffixes=("_v", "_r"))
    both["d"] = both[f"{metric}_v"] - both[f"{metric}_r"]
    d, _ = grid(both, "d")
    alpha = 1 - confidence
    if min(d.shape, default=0) < 2:
        return paired_test(both[f"{metric}_v"], both[f"{metric}_r"], metric=metric, variant=variant_name,
                           reference=reference_name, confidence=confidence, direction=direction, delta=delta,
                           family=family)
    m = crossed_mean(d)
    grid_text = f"the {d.shape[0]} × {d.shape[1]} grid"
    if m.se == 0:
        flat = d.ravel()
        p = 1.0 if m.mean == 0 else float(scipy.stats.binomtest(int((flat > 0).sum()), flat.size, 0.5).pvalue)
        decision = "open" if m.mean == 0 else ("up" if m.mean > 0 else "down")
        return Paired(variant_name, reference_name, metric, m.n, m.mean, 0.0, m.mean, m.mean, math.nan, p,
                      "sign" if m.mean else "crossed t", math.nan,
                      verdict_text(decision, m.n, direction, _margin(delta), grid_text), math.nan, p, family, m.df,
                      decision=decision, cs_low=m.mean, cs_high=m.mean, delta=_margin(delta), direction=direction,
                      available=m.n, se=0.0, crossed=True)
    stat = m.mean / m.se
    p = float(2 * scipy.stats.t.sf(abs(stat), m.df))
    half = float(scipy.stats.t.ppf(1 - alpha / 2, m.df)) * m.se
    effect = m.mean / m.total_sd if m.total_sd > 0 else math.nan
    wide = float(scipy.stats.t.ppf(1 - alpha / (2 * family), m.df)) * m.se
    decision = _read(m.mean - wide, m.mean + wide, delta)
    return Paired(variant_name, reference_name, metric, m.n, m.mean, float(d.std(ddof=1)), m.mean - half,
                  m.mean + half, stat, p, "crossed t", effect,
                  verdict_text(decision, m.n, direction, _margin(delta), grid_text), math.nan, p, family, m.df,
                  decision=decision, cs_low=m.mean - wide, cs_high=m.mean + wide, delta=_margin(delta),
                  direction=direction, available=m.n, se=m.se, crossed=True)


def _read(lo: float, hi: float, delta: float | None) -> str:
    """The verdict an interval gives (the sequential rule's reading, for a fixed design)."""
    if lo > 0:
        return "up"
    if hi < 0:
        return "down"
    if delta is not None and -delta < lo and hi < delta:
        return "equivalent"
    return "open"


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values (see the module doc); NaNs stay NaN and do not count in the family."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def adjust(comparisons: Sequence[Paired], confidence: float = 0.95, family: int | None = None) -> list[Paired]:
    """A family of comparisons judged together: each verdict at level α/m (m = ``family``, default the number
    of comparisons, fixed before any data), then Holm over the fixed-n p-values (descriptive)."""
    m = family or len(comparisons)
    alpha = 1 - confidence
    out = []
    for c in comparisons:
        delta = None if math.isnan(c.delta) else c.delta
        if not c.crossed:
            a, b = (list(x) for x in zip(*c.pairs)) if c.pairs else ([], [])
            out.append(paired_test(a, b, metric=c.metric, variant=c.variant, reference=c.reference,
                                   test=c.test if c.test in TESTS else DEFAULT_TEST, confidence=confidence,
                                   direction=c.direction, delta=delta, family=m, span=c.span))
            continue
        lo, hi, decision = c.cs_low, c.cs_high, c.decision
        if math.isfinite(c.se) and c.se > 0:
            wide = float(scipy.stats.t.ppf(1 - alpha / (2 * m), c.df)) * c.se
            lo, hi = c.mean_diff - wide, c.mean_diff + wide
            decision = _read(lo, hi, delta)
        size = c.verdict.removeprefix("undecided at ") if c.verdict.startswith("undecided at the") else None
        out.append(replace(c, family=m, cs_low=lo, cs_high=hi, decision=decision,
                           verdict=verdict_text(decision, c.n, c.direction, c.delta, size)))
    adjusted = holm([c.p_value for c in out])
    return [replace(c, p_holm=float(ph)) for c, ph in zip(out, adjusted)]


# -- error bars beyond the seeds --------------------------------------------------------------------------------------

def images_interval(variant: np.ndarray, reference: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """An interval for the mean accuracy difference that covers the seeds *and* the validation images.

    ``variant``, ``reference``: (seeds × images) per-image correctness on shared seeds and the same
    images. The difference of one image on one seed, ``c_si = a_si − b_si``, follows the crossed
    random-effects model ``c_si = μ + s_s + i_i + e_si`` (seeds and images both drawn at random), so
    ``Var(c̄) = σ²_seed/S + σ²_image/I + σ²_resid/(SI)``, estimated by ``(MS_seed + MS_image −
    MS_resid)/(SI)`` with Satterthwaite degrees of freedom (:func:`deepfit.experiments.variance.crossed_mean`;
    a delta-method-free, moment formula). The seed interval's variance is ``MS_seed/(SI)``: the image
    term is what this one adds.
    """
    c = np.asarray(variant, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < MIN_SEEDS_FOR_INTERVAL or c.shape[1] < 2:
        return math.nan, math.nan
    m = crossed_mean(c)
    if not (m.se > 0 and math.isfinite(m.df)):
        return m.mean, m.mean
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, m.df)) * m.se
    return m.mean - half, m.mean + half


def superiority(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, resamples: int = 4000,
                seed: int = 0) -> tuple[float, float, float]:
    """P(A > B): the chance that a fresh seed of A beats a fresh seed of B (ties count half).

    Estimate: over every pair of seeds (i, j), ``mean(1[a_i > b_j] + ½·1[a_i = b_j])`` (the
    Mann–Whitney form, as rliable's probability of improvement, Agarwal et al. 2021). Interval:
    percentile bootstrap resampling *seeds* (the pairs (a_s, b_s) together, the axis the uncertainty
    is on; rliable issue #20), seeded so a report is the same every time.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(a)
    if n < MIN_SEEDS_FOR_INTERVAL or len(b) != n:
        return math.nan, math.nan, math.nan

    def prob(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-1, -2))
        eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-1, -2))
        return gt + 0.5 * eq

    idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
    boot = prob(a[idx], b[idx])
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(prob(a, b)), float(lo), float(hi)


def compare_to_reference(finals: pd.DataFrame, metric: str, reference: str, test: Test = DEFAULT_TEST,
                         confidence: float = 0.95, column: Column | None = None, delta: float | None = None,
                         images: Callable[[str, list], np.ndarray | None] | None = None) -> pd.DataFrame:
    """Every other variant against ``reference`` on the seeds (cells) both have, judged as one family.

    ``column``: what the metric is (direction, range); ``delta``: the equivalence margin (default:
    the column's, :attr:`Column.margin`); ``images(variant, seeds)``: the (seeds × images)
    per-image correctness of a variant, for :func:`images_interval`.
    """
    test = check_test(test)
    column = column or Column(metric)
    delta = column.margin if delta is None else delta
    ref_rows = finals[finals["variant"] == reference]
    ref = ref_rows.set_index("seed")[metric]
    out, seeds_of = [], {}
    for variant, group in finals.groupby("variant", sort=False):
        if variant == reference:
            continue
        if crossed(group) and crossed(ref_rows):
            out.append(crossed_paired_test(group, ref_rows, metric=metric, variant_name=str(variant),
                                           reference_name=reference, confidence=confidence,
                                           direction=column.direction, delta=delta))
            continue
        other = group.set_index("seed")[metric]
        shared = [s for s in ref.index if s in set(other.index)]
        seeds_of[str(variant)] = shared
        out.append(paired_test(other.loc[shared].to_numpy(), ref.loc[shared].to_numpy(), metric=metric,
                               variant=str(variant), reference=reference, test=test, confidence=confidence,
                               direction=column.direction, delta=delta, span=column.span))
    judged = adjust(out, confidence)
    if images is not None and metric in IMAGE_SPLITS:
        judged = [_with_images(c, images, seeds_of.get(c.variant), confidence) for c in judged]
    rows = [{k: v for k, v in asdict(c).items() if k != "pairs"} for c in judged]
    return pd.DataFrame(rows, columns=[k for k in Paired.__dataclass_fields__ if k != "pairs"])


def _with_images(c: Paired, images: Callable, seeds: list | None, confidence: float) -> Paired:
    """``c`` with the interval that also covers the images, on the finite pairs its verdict rests on."""
    if not seeds or c.n < MIN_SEEDS_FOR_INTERVAL:
        return c
    finite = [s for s, (a, b) in zip(seeds, c.pairs) if math.isfinite(a) and math.isfinite(b)][: c.n]
    a, b = images(c.variant, finite), images(c.reference, finite)
    if a is None or b is None or a.shape != b.shape:
        return c
    lo, hi = images_interval(a, b, confidence)
    return replace(c, images_low=lo, images_high=hi)
