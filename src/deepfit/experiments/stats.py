"""Statistics over seeds: means with intervals, curves with bands, paired comparisons, power, Holm, verdicts.

Every number here answers "how sure are we?" for a handful of seeds.

* Per variant: mean, sample standard deviation (ddof=1) and the 95% Student-t
  confidence interval of the mean, ``mean ± t_{0.975, n-1} · s / √n``. Below 3
  seeds no interval is given (two points fix a t interval with t_{0.975,1} =
  12.7: a number that says nothing). A metric bounded by nature (accuracy,
  ECE in [0, 1]; losses ≥ 0) gets its interval clipped to those bounds, and
  ``Summary.clipped`` says so: a clipped interval covers at least as often as
  the t interval it came from, but its ends are no longer symmetric.
  In a crossed experiment (init × order seeds) the cells are not independent:
  the interval comes from the crossed model (:mod:`deepfit.experiments.variance`).
* Variant vs reference: the two were trained on the *same* seeds (same initial
  weights, same data order), so each seed gives a pair and the question is
  about the differences ``d_i = x_variant,i − x_reference,i``.
  - The test is chosen before the data are seen, never from them: the paired
    t-test unless the experiment file says ``test = "wilcoxon"``. (A
    normality pre-test on the same data, as an "auto" choice would do, makes a
    two-stage procedure whose error rate is no longer the nominal 5%.)
  - Paired t-test: ``t = d̄ / (s_d / √n)``, ``n − 1`` degrees of freedom; the
    difference's interval ``d̄ ± t_{0.975, n-1} · s_d / √n``.
  - Wilcoxon signed-rank: no normality assumption, but with n seeds its
    smallest two-sided p-value is ``2 / 2^n``: 0.0625 at 5 seeds, so it can
    never say "different at 95%" below 6 seeds.
  - Exact ties (``s_d = 0``: every seed moved by exactly the same amount,
    plausible when accuracies move in steps of 1/5000). With no spread the
    t statistic is undefined, not infinite. Identical runs (``d = 0``
    everywhere) give p = 1. Otherwise the exact two-sided sign test is used,
    ``p = 2 · 0.5^n``, which assumes nothing about the spread: 0.0625 at
    5 seeds, 0.5 at 2. (The rule is fixed in advance, so it is no data-driven choice.)
  - Effect size: Cohen's ``d_z = d̄ / s_d`` (Lakens 2013, "Calculating and
    reporting effect sizes", eq. 6).
  - Seeds needed: the smallest n at which a two-sided paired t-test at α
    (α/m in a family of m comparisons, the strictest level Holm may apply)
    reaches 80% power if the true ``d_z`` were the observed one. Power is
    ``P(|T| > t_{1−α/2, n−1})`` with ``T`` noncentral t, ``n − 1`` degrees of
    freedom, noncentrality ``d_z √n`` (Cohen 1988, ch. 2). The observed effect
    is a noisy, usually inflated estimate, so this is a rough guide; above
    :data:`USEFUL_SEEDS` it only says that the effect is too small for more
    seeds to be a sensible way to settle the question.
* Many comparisons at once: Holm's step-down adjustment (Holm 1979) of the
  family's p-values, ``p̃_(k) = max_{j ≤ k} min(1, (m − j + 1) p_(j))``,
  controls the family-wise error rate at α without any assumption on how the
  tests depend on each other. Verdicts use the adjusted p-values.
* Verdict: "better" / "worse" when the (adjusted) test rejects "no difference"
  at 95% (direction from the metric: losses lower is better, everything else
  higher), else "not distinguishable at 95% with N seeds".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from deepfit.experiments.variance import crossed_mean, grid

Test = Literal["t", "wilcoxon"]
TESTS = ("t", "wilcoxon")
DEFAULT_TEST: Test = "t"
MIN_SEEDS_FOR_INTERVAL = 3
NO_INTERVAL_NOTE = f"fewer than {MIN_SEEDS_FOR_INTERVAL} seeds: no interval is meaningful"
POWER = 0.8
# Past this many seeds the answer "run more seeds" stops being useful advice.
USEFUL_SEEDS = 100
TIE_TOLERANCE = 1e-9


def higher_is_better(metric: str) -> bool:
    """Losses (and anything named like one) go down; accuracies and the like go up."""
    return not ("loss" in metric or metric in ("seconds", "train_seconds", "error") or metric.endswith(("nll", "ece")))


def bounds(metric: str) -> tuple[float, float]:
    """The values a metric can take: accuracies and ECE in [0, 1], losses and NLL ≥ 0, else unbounded."""
    if "accuracy" in metric or metric.endswith("ece"):
        return 0.0, 1.0
    if "loss" in metric or metric.endswith("nll") or "seconds" in metric:
        return 0.0, math.inf
    return -math.inf, math.inf


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
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
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
    half = float(sps.t.ppf(0.5 + confidence / 2, m.df)) * m.se
    s = _clip(m.mean, m.mean - half, m.mean + half, float(y.std(ddof=1)), y.size, limits or (-math.inf, math.inf))
    note = f"{dropped} cell(s) left out to complete the init × order grid" if dropped else ""
    return replace(s, note=note)


def describe(finals: pd.DataFrame, metric: str, confidence: float = 0.95) -> pd.DataFrame:
    """One row per variant (in table order): n, mean, std, ci_low, ci_high, clipped, note of a final metric."""
    rows = []
    for variant, group in finals.groupby("variant", sort=False):
        if metric not in group:
            s = t_interval([])
        elif crossed(group):
            s = crossed_interval(group, metric, confidence, bounds(metric))
        else:
            s = t_interval(group[metric], confidence, bounds(metric))
        rows.append({"variant": variant, "metric": metric, **asdict(s)})
    return pd.DataFrame(rows, columns=["variant", "metric", "n", "mean", "std", "ci_low", "ci_high", "clipped",
                                       "note"])


def curves(results: pd.DataFrame, metric: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per variant and epoch: mean and interval over seeds (the bands of the learning curves; crossed-aware)."""
    rows = []
    for (variant, epoch), group in results.groupby(["variant", "epoch"], sort=False):
        s = (crossed_interval(group, metric, confidence, bounds(metric)) if crossed(group)
             else t_interval(group[metric], confidence, bounds(metric)))
        rows.append({"variant": variant, "epoch": int(epoch), **asdict(s)})
    return pd.DataFrame(rows, columns=["variant", "epoch", "n", "mean", "std", "ci_low", "ci_high", "clipped",
                                       "note"])


# -- power ---------------------------------------------------------------------------------------------------------

def paired_t_power(n: int, effect_size: float, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs when the true ``d_z`` is ``effect_size``."""
    if n < 2:
        return math.nan
    df, nc = n - 1, abs(effect_size) * math.sqrt(n)
    crit = float(sps.t.ppf(1 - alpha / 2, df))
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


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
    n: int
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    test: str
    effect_size: float  # Cohen's d_z (crossed: d̄ over the sd of one cell's difference)
    verdict: str
    seeds_needed: float = math.nan  # paired t, 80% power at the observed d_z (inf: zero effect)
    p_holm: float = math.nan  # Holm-adjusted over the family it was judged in
    family: int = 1  # how many comparisons that family held
    df: float = math.nan


def verdict(mean_diff: float, p_value: float, n: int, metric: str, alpha: float = 0.05) -> str:
    level = f"{100 * (1 - alpha):g}%"
    if not (p_value < alpha):  # NaN (too few seeds) lands here too
        return f"not distinguishable at {level} with {n} seed{'s' if n != 1 else ''}"
    up = mean_diff > 0
    return "better" if up == higher_is_better(metric) else "worse"


def paired_test(variant_values: Sequence[float], reference_values: Sequence[float], *, metric: str = "val_accuracy",
                variant: str = "variant", reference: str = "reference", test: Test = DEFAULT_TEST,
                confidence: float = 0.95) -> Paired:
    """Paired comparison of two equal-length sequences (same seeds, same order); see the module doc."""
    test = check_test(test)
    a = np.asarray(variant_values, dtype=np.float64)
    b = np.asarray(reference_values, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same seeds: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = len(d)
    alpha = 1 - confidence
    if n < 2:
        mean = float(d.mean()) if n else math.nan
        return Paired(variant, reference, metric, n, mean, math.nan, math.nan, math.nan, math.nan, math.nan,
                      "none", math.nan, verdict(mean, math.nan, n, metric, alpha))
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    tcrit = float(sps.t.ppf(1 - alpha / 2, n - 1))
    ci = (mean - tcrit * sd / math.sqrt(n), mean + tcrit * sd / math.sqrt(n))
    needed = math.nan
    # Accuracies are counts over a test set: equal moves can differ in the last float bits (0.8612 − 0.8610
    # vs 0.8592 − 0.8590), which would give sd ≈ 1e-17, t ≈ 1e13 and p ≈ 0. Spread at rounding level is none.
    if np.ptp(d) <= TIE_TOLERANCE * max(1.0, float(np.abs(np.r_[a[keep], b[keep]]).max())):
        sd = 0.0
    if sd == 0:
        # No spread: the t statistic is 0/0 or d/0, undefined either way (see the module doc).
        stat, effect = math.nan, math.nan
        if mean == 0:
            p = 1.0
        else:
            test, stat = "sign", float((d > 0).sum())
            p = float(sps.binomtest(int((d > 0).sum()), n, 0.5).pvalue)
    elif test == "t":
        stat = mean / (sd / math.sqrt(n))
        p = float(2 * sps.t.sf(abs(stat), n - 1))
        effect = mean / sd
    else:
        nonzero = d[d != 0]
        ranks = sps.rankdata(np.abs(nonzero))
        # scipy's "auto": the exact null distribution for small n without ties, else the normal approximation.
        res = sps.wilcoxon(d, zero_method="wilcox")
        stat, p = float(ranks[nonzero > 0].sum()), float(res.pvalue)
        effect = mean / sd
    if math.isfinite(effect):
        needed = seeds_needed(effect, alpha=alpha)
    return Paired(variant, reference, metric, n, mean, sd, ci[0], ci[1], float(stat), p, test, float(effect),
                  verdict(mean, p, n, metric, alpha), needed, p, 1, float(n - 1))


def crossed_paired_test(variant: pd.DataFrame, reference: pd.DataFrame, *, metric: str, variant_name: str = "variant",
                        reference_name: str = "reference", confidence: float = 0.95) -> Paired:
    """Variant − reference on their shared (init, order) cells, with the crossed model's t (Satterthwaite df).

    ``n`` is the number of cells; ``d_z`` divides the mean difference by the sd
    of one cell's difference (init + order + residual components), so seeds
    needed counts fresh (init, order) pairs, as plain seeds.
    """
    keys = ["init_seed", "order_seed"]
    both = variant[keys + [metric]].merge(reference[keys + [metric]], on=keys, suffixes=("_v", "_r"))
    both["d"] = both[f"{metric}_v"] - both[f"{metric}_r"]
    d, _ = grid(both, "d")
    alpha = 1 - confidence
    if min(d.shape, default=0) < 2:
        return paired_test(both[f"{metric}_v"], both[f"{metric}_r"], metric=metric, variant=variant_name,
                           reference=reference_name, confidence=confidence)
    m = crossed_mean(d)
    if m.se == 0:
        flat = d.ravel()
        p = 1.0 if m.mean == 0 else float(sps.binomtest(int((flat > 0).sum()), flat.size, 0.5).pvalue)
        return Paired(variant_name, reference_name, metric, m.n, m.mean, 0.0, m.mean, m.mean, math.nan, p,
                      "sign" if m.mean else "crossed t", math.nan, verdict(m.mean, p, m.n, metric, alpha),
                      math.nan, p, 1, m.df)
    stat = m.mean / m.se
    p = float(2 * sps.t.sf(abs(stat), m.df))
    half = float(sps.t.ppf(1 - alpha / 2, m.df)) * m.se
    effect = m.mean / m.total_sd if m.total_sd > 0 else math.nan
    needed = seeds_needed(effect, alpha=alpha) if math.isfinite(effect) else math.nan
    return Paired(variant_name, reference_name, metric, m.n, m.mean, float(d.std(ddof=1)), m.mean - half,
                  m.mean + half, stat, p, "crossed t", effect, verdict(m.mean, p, m.n, metric, alpha), needed, p, 1,
                  m.df)


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


def adjust(comparisons: Sequence[Paired], confidence: float = 0.95) -> list[Paired]:
    """Holm over a family of comparisons: each gets ``p_holm``, a verdict based on it, and seeds needed at α/m.

    Holm tests a comparison at a level between α/m (the smallest p) and α (the
    largest); planning for α/m (Bonferroni) gives enough seeds whatever the
    other comparisons turn out to be.
    """
    adjusted = holm([c.p_value for c in comparisons])
    m = int(np.isfinite([c.p_value for c in comparisons]).sum())
    alpha = 1 - confidence
    out = []
    for c, ph in zip(comparisons, adjusted):
        needed = seeds_needed(c.effect_size, alpha=alpha / max(m, 1)) if math.isfinite(c.effect_size) else math.nan
        out.append(replace(c, p_holm=float(ph), family=m, verdict=verdict(c.mean_diff, ph, c.n, c.metric, alpha),
                           seeds_needed=needed))
    return out


def compare_to_reference(finals: pd.DataFrame, metric: str, reference: str, test: Test = DEFAULT_TEST,
                         confidence: float = 0.95) -> pd.DataFrame:
    """Every other variant against ``reference`` on the seeds (cells) both have; Holm over the variants."""
    test = check_test(test)
    ref_rows = finals[finals["variant"] == reference]
    ref = ref_rows.set_index("seed")[metric]
    out = []
    for variant, group in finals.groupby("variant", sort=False):
        if variant == reference:
            continue
        if crossed(group) and crossed(ref_rows):
            out.append(crossed_paired_test(group, ref_rows, metric=metric, variant_name=str(variant),
                                           reference_name=reference, confidence=confidence))
            continue
        other = group.set_index("seed")[metric]
        shared = [s for s in ref.index if s in set(other.index)]
        out.append(paired_test(other.loc[shared].to_numpy(), ref.loc[shared].to_numpy(), metric=metric,
                               variant=str(variant), reference=reference, test=test, confidence=confidence))
    rows = [asdict(c) for c in adjust(out, confidence)]
    return pd.DataFrame(rows, columns=list(Paired.__dataclass_fields__))
