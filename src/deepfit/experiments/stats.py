"""Statistics over seeds: means with t intervals, curves with bands, paired comparisons, verdicts.

Every number here answers "how sure are we?" for a handful of seeds.

* Per variant: mean, sample standard deviation (ddof=1) and the 95% Student-t
  confidence interval of the mean, ``mean ± t_{0.975, n-1} · s / √n``.
* Variant vs reference: the two were trained on the *same* seeds (same initial
  weights stream, same data order), so each seed gives a pair and the question
  is about the differences ``d_i = x_variant,i − x_reference,i``. Pairing removes
  the seed-to-seed spread both share, which is most of the spread here.
  - Paired t-test (default): ``t = d̄ / (s_d / √n)``, ``n − 1`` degrees of
    freedom; the difference's interval ``d̄ ± t_{0.975, n-1} · s_d / √n``.
    It assumes the differences are roughly normal; it is the only test with any
    power at 3–5 seeds.
  - Wilcoxon signed-rank (``test="wilcoxon"``, or ``"auto"`` when n ≥ 10 and a
    Shapiro–Wilk test rejects normal differences, e.g. one diverged seed):
    no normality assumption, but with n seeds its smallest two-sided p-value is
    ``2 / 2^n``: 0.0625 at 5 seeds, so it can never say "different at 95%"
    below 6 seeds. That is why the default is the t-test.
  - Effect size: Cohen's ``d_z = d̄ / s_d`` (the mean difference in units of its
    own spread; Lakens 2013, "Calculating and reporting effect sizes", eq. 6).
* Verdict: "better" / "worse" when the test rejects "no difference" at 95%
  (direction from the metric: losses lower is better, everything else higher),
  else "not distinguishable at 95% with N seeds".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

Test = Literal["t", "wilcoxon", "auto"]


def higher_is_better(metric: str) -> bool:
    """Losses (and anything named like one) go down; accuracies and the like go up."""
    return not ("loss" in metric or metric in ("seconds", "train_seconds", "error"))


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, std (ddof=1) and the Student-t interval of the mean; NaNs dropped; n=1 gives a NaN interval."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def describe(finals: pd.DataFrame, metric: str, confidence: float = 0.95) -> pd.DataFrame:
    """One row per variant (in table order): n, mean, std, ci_low, ci_high of a final metric."""
    rows = []
    for variant, group in finals.groupby("variant", sort=False):
        s = t_interval(group[metric], confidence) if metric in group else t_interval([])
        rows.append({"variant": variant, "metric": metric, **asdict(s)})
    return pd.DataFrame(rows, columns=["variant", "metric", "n", "mean", "std", "ci_low", "ci_high"])


def curves(results: pd.DataFrame, metric: str, confidence: float = 0.95) -> pd.DataFrame:
    """Per variant and epoch: mean and t interval over seeds (the bands of the learning curves)."""
    rows = []
    for (variant, epoch), group in results.groupby(["variant", "epoch"], sort=False):
        rows.append({"variant": variant, "epoch": int(epoch), **asdict(t_interval(group[metric], confidence))})
    return pd.DataFrame(rows, columns=["variant", "epoch", "n", "mean", "std", "ci_low", "ci_high"])


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
    effect_size: float  # Cohen's d_z
    verdict: str


def verdict(mean_diff: float, p_value: float, n: int, metric: str, alpha: float = 0.05) -> str:
    level = f"{100 * (1 - alpha):g}%"
    if not (p_value < alpha):  # NaN (too few seeds) lands here too
        return f"not distinguishable at {level} with {n} seed{'s' if n != 1 else ''}"
    up = mean_diff > 0
    return "better" if up == higher_is_better(metric) else "worse"


def paired_test(variant_values: Sequence[float], reference_values: Sequence[float], *, metric: str = "val_accuracy",
                variant: str = "variant", reference: str = "reference", test: Test = "t",
                confidence: float = 0.95) -> Paired:
    """Paired comparison of two equal-length sequences (same seeds, same order); see the module doc."""
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
    if test == "auto":
        test = "wilcoxon" if n >= 10 and sd > 0 and sps.shapiro(d).pvalue < 0.05 else "t"
    if sd == 0:
        # Every seed moved by exactly the same amount: no spread to test against.
        stat = math.copysign(math.inf, mean) if mean else 0.0
        p = 0.0 if mean else 1.0
        effect = math.copysign(math.inf, mean) if mean else 0.0
    elif test == "t":
        stat = mean / (sd / math.sqrt(n))
        p = float(2 * sps.t.sf(abs(stat), n - 1))
        effect = mean / sd
    elif test == "wilcoxon":
        nonzero = d[d != 0]
        ranks = sps.rankdata(np.abs(nonzero))
        # scipy's "auto": the exact null distribution for small n without ties, else the normal approximation.
        res = sps.wilcoxon(d, zero_method="wilcox")
        stat, p = float(ranks[nonzero > 0].sum()), float(res.pvalue)
        effect = mean / sd
    else:
        raise ValueError(f"test must be 't', 'wilcoxon' or 'auto', got {test!r}")
    return Paired(variant, reference, metric, n, mean, sd, ci[0], ci[1], float(stat), p, test, float(effect),
                  verdict(mean, p, n, metric, alpha))


def compare_to_reference(finals: pd.DataFrame, metric: str, reference: str, test: Test = "auto",
                         confidence: float = 0.95) -> pd.DataFrame:
    """Every other variant against ``reference`` on the seeds both have."""
    ref = finals[finals["variant"] == reference].set_index("seed")[metric]
    rows = []
    for variant, group in finals.groupby("variant", sort=False):
        if variant == reference:
            continue
        other = group.set_index("seed")[metric]
        shared = sorted(set(ref.index) & set(other.index))
        p = paired_test(other.loc[shared].to_numpy(), ref.loc[shared].to_numpy(), metric=metric,
                        variant=str(variant), reference=reference, test=test, confidence=confidence)
        rows.append(asdict(p))
    return pd.DataFrame(rows, columns=list(Paired.__dataclass_fields__))
