"""Statistics against scipy and against the formulas written out by hand, on hand-made numbers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepfit.experiments.stats import (adjust, compare_to_reference, curves, describe, holm, paired_t_power,
                                     paired_test, seeds_needed, seeds_needed_text, t_interval, verdict)

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


def test_t_interval_below_three_seeds_has_no_interval_and_nans_are_dropped():
    assert math.isnan(t_interval([0.8]).ci_low)
    s = t_interval([0.8, float("nan"), 0.9])
    assert s.n == 2 and s.mean == pytest.approx(0.85)
    assert math.isnan(s.ci_low) and math.isnan(s.ci_high) and "no interval is meaningful" in s.note
    assert t_interval([0.8, 0.85, 0.9]).n == 3 and not t_interval([0.8, 0.85, 0.9]).note


def test_accuracy_interval_stays_inside_zero_one():
    x = [0.99, 0.999, 0.9, 0.998]  # the t interval reaches past 1
    lo, hi = stats.t.interval(0.95, 3, np.mean(x), stats.sem(x))
    assert hi > 1
    s = t_interval(x, limits=(0.0, 1.0))
    assert s.clipped and s.ci_high == 1.0 and s.ci_low == pytest.approx(lo, rel=1e-12)
    finals = pd.DataFrame({"variant": ["v"] * 4, "seed": range(4), "val_accuracy": x, "val_loss": x})
    assert describe(finals, "val_accuracy").loc[0, "ci_high"] == 1.0
    assert describe(finals, "val_loss").loc[0, "ci_high"] == pytest.approx(hi, rel=1e-12)  # losses have no top
    inside = t_interval(A, limits=(0.0, 1.0))
    assert not inside.clipped and inside.ci_high == pytest.approx(t_interval(A).ci_high)


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


def test_no_data_dependent_test_choice():
    # Regression: test = "auto" picked Wilcoxon after a Shapiro pre-test on the same differences.
    rng = np.random.default_rng(0)
    base = rng.normal(0.85, 0.01, 12)
    skewed = base + np.array([0.01] * 11 + [-0.5])  # one diverged-looking seed: Shapiro rejects normality
    assert stats.shapiro(skewed - base).pvalue < 0.05
    p = paired_test(skewed, base)  # the documented default stays the t-test whatever the data look like
    assert p.test == "t" and p.p_value == pytest.approx(stats.ttest_rel(skewed, base).pvalue, rel=1e-10)
    with pytest.raises(ValueError, match="before seeing the data"):
        paired_test(A, B, test="auto")


def test_sd_zero_gives_no_p_zero_or_better():
    # Regression: when every seed moved by exactly the same amount, p was 0 and the verdict "better",
    # even for Wilcoxon at 5 seeds (smallest possible p 0.0625) and for 2 seeds.
    same = paired_test(A, A)
    assert same.p_value == 1.0 and same.verdict.startswith("not distinguishable")
    correct = np.array([4306, 4286, 4331, 4296, 4316])  # of 5,000 validation images
    step, base = (correct + 1) / 5000, correct / 5000  # one more image right on every seed
    assert np.std(step - base, ddof=1) > 0  # equal up to the last float bits: t was ~1e13 and p = 0
    shifted = paired_test(step, base)
    assert shifted.test == "sign" and shifted.statistic == 5 and math.isnan(shifted.effect_size)
    assert shifted.p_value == pytest.approx(2 / 2**5)  # exact sign test, by hand
    assert shifted.p_value == pytest.approx(stats.binomtest(5, 5).pvalue)
    assert shifted.verdict == "not distinguishable at 95% with 5 seeds"
    two = paired_test([0.9, 0.8], [0.8, 0.7])
    assert two.p_value == pytest.approx(0.5) and two.verdict.startswith("not distinguishable")
    w = paired_test(step, base, test="wilcoxon")
    assert w.p_value == pytest.approx(0.0625) and w.verdict.startswith("not distinguishable")
    seven = paired_test([0.5 + 0.01] * 7, [0.5] * 7)
    assert seven.p_value == pytest.approx(2 / 2**7) and seven.verdict == "better"


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
    results = pd.DataFrame({"variant": ["r"] * 6, "seed": [0, 0, 1, 1, 2, 2], "epoch": [1, 2] * 3,
                            "val_accuracy": [0.5, 0.6, 0.7, 0.8, 0.6, 0.7]})
    cv = curves(results, "val_accuracy").set_index("epoch")
    assert cv.loc[2, "mean"] == pytest.approx(0.7)
    sd = np.std([0.6, 0.8, 0.7], ddof=1)
    assert cv.loc[2, "ci_high"] == pytest.approx(0.7 + stats.t.ppf(0.975, 2) * sd / np.sqrt(3))


def test_holm_by_hand_and_verdicts_use_it():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running max: 0.02, 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, math.nan, 0.01])  # NaN neither counts nor moves
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.2, 0.02])
    # Two comparisons with raw p 0.03 and 0.2: alone the first is "better", under Holm (0.06) it is not.
    a, b = [0.50, 0.52, 0.51, 0.53, 0.50], [0.49, 0.51, 0.50, 0.50, 0.495]
    single = paired_test(a, b)
    assert 0.025 < single.p_value < 0.05 and single.verdict == "better"  # 0.0406
    noise = paired_test([0.5, 0.52, 0.49, 0.51, 0.5], [0.51, 0.5, 0.5, 0.5, 0.5])
    first, second = adjust([single, noise])
    assert first.p_holm == pytest.approx(min(1, 2 * single.p_value)) and first.family == 2
    assert first.verdict == "not distinguishable at 95% with 5 seeds"
    assert second.p_holm == pytest.approx(max(first.p_holm, noise.p_value))


def test_compare_to_reference_adjusts_across_variants():
    finals = pd.DataFrame({"variant": ["r"] * 5 + ["s"] * 5 + ["t"] * 5, "seed": list(range(5)) * 3,
                           "val_accuracy": B + A + [b + 0.001 * (i % 2) for i, b in enumerate(B)]})
    c = compare_to_reference(finals, "val_accuracy", "r").set_index("variant")
    raw = [stats.ttest_rel(A, B).pvalue, c.loc["t", "p_value"]]
    assert c.loc["s", "p_holm"] == pytest.approx(holm(raw)[0], rel=1e-12)
    assert c.loc["s", "p_holm"] == pytest.approx(2 * raw[0], rel=1e-12)  # the smaller one, times m = 2
    assert (c["family"] == 2).all() and c.loc["s", "verdict"] == "better"


def test_power_and_seeds_needed_match_the_noncentral_t():
    # Power by hand from the noncentral t: n = 10, d_z = 1, alpha = 0.05 two-sided.
    crit = stats.t.ppf(0.975, 9)
    by_hand = stats.nct.sf(crit, 9, math.sqrt(10)) + stats.nct.cdf(-crit, 9, math.sqrt(10))
    assert paired_t_power(10, 1.0) == pytest.approx(by_hand, rel=1e-12)
    # G*Power's table for the paired t (two-sided, alpha 0.05, power 0.8): d_z 0.5 -> 34, 0.8 -> 15.
    assert seeds_needed(0.5) == 34 and seeds_needed(-0.8) == 15
    n = seeds_needed(0.3)
    assert paired_t_power(int(n), 0.3) >= 0.8 > paired_t_power(int(n) - 1, 0.3)
    assert seeds_needed(0.0) == math.inf and seeds_needed_text(math.inf).startswith("> 100")
    assert seeds_needed_text(34.0) == "34" and seeds_needed_text(8.0, crossed=True) == "8 plain seeds"


def test_seeds_needed_matches_statsmodels_and_uses_alpha_over_m_in_a_family():
    power = pytest.importorskip("statsmodels.stats.power")
    for dz, alpha in ((0.5, 0.05), (1.2, 0.05), (0.3, 0.01), (1.9, 0.005)):
        n = power.TTestPower().solve_power(effect_size=dz, alpha=alpha, power=0.8, alternative="two-sided")
        assert seeds_needed(dz, alpha=alpha) == math.ceil(n)
    a, b = [0.50, 0.52, 0.51, 0.53, 0.50], [0.49, 0.51, 0.50, 0.50, 0.495]
    c = [0.5, 0.52, 0.49, 0.51, 0.5]
    first, second = adjust([paired_test(a, b), paired_test(c, b)])
    assert first.seeds_needed == seeds_needed(first.effect_size, alpha=0.025)
    assert first.seeds_needed > paired_test(a, b).seeds_needed  # a family asks for more seeds than one test


def test_not_distinguishable_comparisons_carry_seeds_needed():
    a = [0.85, 0.86, 0.84, 0.87, 0.85]
    b = [0.86, 0.84, 0.85, 0.86, 0.855]
    p = paired_test(a, b)
    d = np.array(a) - np.array(b)
    assert p.verdict.startswith("not distinguishable")
    assert p.seeds_needed == seeds_needed(d.mean() / d.std(ddof=1))
    assert p.seeds_needed > 5
