"""Statistics against scipy and against the formulas written out by hand, on hand-made numbers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepfit.experiments.stats import compare_to_reference, curves, describe, paired_test, t_interval, verdict

# Hand-made final accuracies of 5 seeds.
A = [0.861, 0.857, 0.866, 0.859, 0.863]
B = [0.842, 0.851, 0.845, 0.840, 0.848]


def test_t_interval_matches_scipy_and_the_formula():
    s = t_interval(A)
    x = np.array(A)
    lo, hi = stats.t.interval(0.95, df=4, loc=x.mean(), scale=stats.sem(x))
    assert s.n == 5
    assert s.mean == pytest.approx(x.mean(), abs=1e-15)
    assert s.std == pytest.approx(math.sqrt(((x - x.mean()) ** 2).sum() / 4), rel=1e-12)
    assert (s.ci_low, s.ci_high) == pytest.approx((lo, hi), rel=1e-12)
    # t_{0.975,4} = 2.776445105 (table value)
    assert s.half_width == pytest.approx(2.776445105 * s.std / math.sqrt(5), rel=1e-8)


def test_t_interval_one_seed_has_no_interval_and_nans_are_dropped():
    assert math.isnan(t_interval([0.8]).ci_low)
    s = t_interval([0.8, float("nan"), 0.9])
    assert s.n == 2 and s.mean == pytest.approx(0.85)


def test_paired_t_matches_scipy_ttest_rel():
    p = paired_test(A, B, metric="val_accuracy")
    ref = stats.ttest_rel(A, B)
    ci = ref.confidence_interval(0.95)
    d = np.array(A) - np.array(B)
    assert p.n == 5 and p.test == "t"
    assert p.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert p.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert (p.ci_low, p.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert p.mean_diff == pytest.approx(d.mean(), rel=1e-12)
    assert p.effect_size == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-12)
    assert p.verdict == "better"


def test_paired_direction_for_losses_and_worse():
    # Loss went up by a consistent amount: worse. Accuracy went down: worse.
    assert paired_test([0.50, 0.52, 0.49, 0.51], [0.40, 0.41, 0.40, 0.42], metric="val_loss").verdict == "worse"
    assert paired_test(B, A, metric="val_accuracy").verdict == "worse"
    assert paired_test([0.40, 0.41, 0.40, 0.42], [0.50, 0.52, 0.49, 0.51], metric="val_loss").verdict == "better"


def test_not_distinguishable_names_the_seed_count():
    a = [0.85, 0.86, 0.84, 0.87, 0.85]
    b = [0.86, 0.84, 0.85, 0.86, 0.855]
    p = paired_test(a, b)
    assert p.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert p.p_value > 0.05 and p.ci_low < 0 < p.ci_high
    assert p.verdict == "not distinguishable at 95% with 5 seeds"
    assert verdict(0.1, math.nan, 1, "val_accuracy") == "not distinguishable at 95% with 1 seed"


def test_wilcoxon_matches_scipy_and_cannot_reach_95_with_five_seeds():
    p = paired_test(A, B, test="wilcoxon")
    ref = stats.wilcoxon(A, B)
    assert p.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    # All 5 differences positive: exact two-sided p = 2 * (1/2^5) = 0.0625 > 0.05, by hand.
    assert p.p_value == pytest.approx(2 / 2**5)
    assert p.verdict == "not distinguishable at 95% with 5 seeds"
    # W+ = sum of ranks of positive differences = 1+2+3+4+5
    assert p.statistic == 15


def test_auto_picks_wilcoxon_only_for_many_clearly_non_normal_differences():
    rng = np.random.default_rng(0)
    base = rng.normal(0.85, 0.01, 12)
    normal_diff = base + rng.normal(0.01, 0.002, 12)
    assert paired_test(normal_diff, base, test="auto").test == "t"
    skewed = base + np.array([0.01] * 11 + [-0.5])  # one diverged seed
    assert stats.shapiro(skewed - base).pvalue < 0.05
    p = paired_test(skewed, base, test="auto")
    assert p.test == "wilcoxon"
    assert p.p_value == pytest.approx(stats.wilcoxon(skewed, base).pvalue, rel=1e-12)
    assert paired_test(A[:4], B[:4], test="auto").test == "t"


def test_constant_differences_and_identical_runs():
    same = paired_test(A, A)
    assert same.p_value == 1.0 and same.verdict.startswith("not distinguishable")
    shifted = paired_test([a + 0.01 for a in A], A)
    assert shifted.p_value == 0.0 and shifted.verdict == "better"


def test_tables_describe_curves_and_compare_to_reference():
    finals = pd.DataFrame({"variant": ["r"] * 5 + ["s"] * 5, "seed": list(range(5)) * 2,
                           "val_accuracy": B + A})
    d = describe(finals, "val_accuracy").set_index("variant")
    assert d.loc["s", "mean"] == pytest.approx(np.mean(A))
    assert d.loc["r", "ci_high"] == pytest.approx(stats.t.interval(0.95, 4, np.mean(B), stats.sem(B))[1])
    # Seeds in a different order must still pair seed with seed.
    shuffled = finals.sample(frac=1.0, random_state=1)
    c = compare_to_reference(shuffled, "val_accuracy", "r", test="t")
    assert list(c["variant"]) == ["s"]
    assert c.loc[0, "p_value"] == pytest.approx(stats.ttest_rel(A, B).pvalue, rel=1e-9)
    results = pd.DataFrame({"variant": ["r"] * 4, "seed": [0, 0, 1, 1], "epoch": [1, 2, 1, 2],
                            "val_accuracy": [0.5, 0.6, 0.7, 0.8]})
    cv = curves(results, "val_accuracy").set_index("epoch")
    assert cv.loc[2, "mean"] == pytest.approx(0.7)
    assert cv.loc[2, "ci_high"] == pytest.approx(0.7 + stats.t.ppf(0.975, 1) * np.std([0.6, 0.8], ddof=1) / np.sqrt(2))
