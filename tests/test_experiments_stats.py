"""Statistics against scipy and against the formulas written out by hand, on hand-made numbers."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepfit.experiments.sequential import critical_t, judge_sequence
from deepfit.experiments.stats import (FEW_SEEDS_NOTE, Column, adjust, compare_to_reference, curves, describe, holm,
                                     images_interval, paired_t_power, paired_test, seeds_needed,
                                     seeds_needed_text, superiority, t_interval)

ACCURACY = Column("val_accuracy", "max", 0.0, 1.0)
LOSS = Column("val_loss", "min", 0.0, math.inf, "crossentropy")

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
    assert math.isnan(s.ci_low) and math.isnan(s.ci_high) and s.note == FEW_SEEDS_NOTE
    assert t_interval([0.8, 0.85, 0.9]).n == 3 and not t_interval([0.8, 0.85, 0.9]).note


def test_accuracy_interval_stays_inside_zero_one():
    x = [0.99, 0.999, 0.9, 0.998]  # the t interval reaches past 1
    lo, hi = stats.t.interval(0.95, 3, np.mean(x), stats.sem(x))
    assert hi > 1
    s = t_interval(x, limits=(0.0, 1.0))
    assert s.clipped and s.ci_high == 1.0 and s.ci_low == pytest.approx(lo, rel=1e-12)
    finals = pd.DataFrame({"variant": ["v"] * 4, "seed": range(4), "val_accuracy": x, "val_loss": x})
    assert describe(finals, "val_accuracy", column=ACCURACY).loc[0, "ci_high"] == 1.0
    assert describe(finals, "val_loss", column=LOSS).loc[0, "ci_high"] == pytest.approx(hi, rel=1e-12)  # no top
    assert describe(finals, "val_accuracy").loc[0, "ci_high"] == pytest.approx(hi, rel=1e-12)  # unknown: no clip
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
    # t = 5.9 is significant for a test at fixed n = 5 (p = 0.004), not for one that may be looked at again:
    # the anytime-valid bound at 5 pairs is |t| > 6.35, so the verdict waits for more seeds.
    assert p.statistic < critical_t(5, 0.05) and p.verdict == "undecided at 5 seeds" and not p.decided
    half = critical_t(5, 0.05) * d.std(ddof=1) / math.sqrt(5)
    assert (p.cs_low, p.cs_high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)


def test_paired_direction_comes_from_the_column_for_losses_and_worse():
    up = [0.50, 0.52, 0.49, 0.51, 0.50, 0.51, 0.505]
    down = [0.40, 0.41, 0.40, 0.42, 0.40, 0.41, 0.405]
    # A loss went up by a consistent amount: worse. An accuracy went down: worse. Unknown: only higher / lower.
    assert paired_test(up, down, metric="val_loss", direction="min").verdict == "worse"
    assert paired_test(down, up, metric="val_accuracy", direction="max").verdict == "worse"
    assert paired_test(down, up, metric="val_loss", direction="min").verdict == "better"
    assert paired_test(up, down, metric="val_loss").verdict == "higher (direction unknown)"


def test_undecided_names_the_seed_count_and_what_would_decide_it():
    a = [0.85, 0.86, 0.84, 0.87, 0.85]
    b = [0.86, 0.84, 0.85, 0.86, 0.855]
    p = paired_test(a, b, direction="max", delta=0.01)
    assert p.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert p.p_value > 0.05 and p.ci_low < 0 < p.ci_high
    assert p.verdict == "undecided at 5 seeds" and p.to_decide > 5
    d = np.array(a) - np.array(b)
    # The rough guide: the first n whose half-width at the observed sd fits inside ±δ around the observed mean.
    n = int(p.to_decide)
    room = 0.01 - abs(d.mean())
    assert critical_t(n, 0.05) * d.std(ddof=1) / math.sqrt(n) < room
    assert critical_t(n - 1, 0.05) * d.std(ddof=1) / math.sqrt(n - 1) >= room


def test_wilcoxon_matches_scipy_and_cannot_reach_95_with_five_seeds():
    p = paired_test(A, B, test="wilcoxon")
    ref = stats.wilcoxon(A, B)
    assert p.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    # All 5 differences positive: exact two-sided p = 2 * (1/2^5) = 0.0625 > 0.05, by hand.
    assert p.p_value == pytest.approx(2 / 2**5)
    assert p.verdict == "undecided at 5 seeds"  # the verdict is the sequential rule's, whatever the test shown
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


def test_sd_zero_gives_no_p_zero():
    # Regression: when every seed moved by exactly the same amount, p was 0 (t ~ 1e13); the fixed-n test now
    # falls to the exact sign test, and identical runs say nothing at all.
    same = paired_test(A, A)
    assert same.p_value == 1.0 and same.verdict == "undecided at 5 seeds"
    correct = np.array([4306, 4286, 4331, 4296, 4316])  # of 5,000 validation images
    step, base = (correct + 1) / 5000, correct / 5000  # one more image right on every seed
    assert np.std(step - base, ddof=1) > 0  # equal up to the last float bits: t was ~1e13 and p = 0
    shifted = paired_test(step, base)
    assert shifted.test == "sign" and shifted.statistic == 5 and math.isnan(shifted.effect_size)
    assert shifted.p_value == pytest.approx(2 / 2**5)  # exact sign test, by hand
    assert shifted.p_value == pytest.approx(stats.binomtest(5, 5).pvalue)
    w = paired_test(step, base, test="wilcoxon")
    assert w.p_value == pytest.approx(0.0625)
    two = paired_test([0.9, 0.8], [0.8, 0.7])  # two seeds: no test, no verdict (one rule below 3)
    assert math.isnan(two.p_value) and two.verdict.startswith("undecided at 2 seeds")


def test_tables_describe_curves_and_compare_to_reference():
    finals = pd.DataFrame({"variant": ["r"] * 5 + ["s"] * 5, "seed": list(range(5)) * 2,
                           "val_accuracy": B + A})
    d = describe(finals, "val_accuracy").set_index("variant")
    assert d.loc["s", "mean"] == pytest.approx(np.mean(A))
    assert d.loc["r", "ci_high"] == pytest.approx(stats.t.interval(0.95, 4, np.mean(B), stats.sem(B))[1])
    # Seeds in a different order must still pair seed with seed.
    shuffled = finals.sample(frac=1.0, random_state=1).sort_values("seed", kind="stable")
    c = compare_to_reference(shuffled.sample(frac=1.0, random_state=2), "val_accuracy", "r", test="t")
    assert list(c["variant"]) == ["s"]
    assert c.loc[0, "p_value"] == pytest.approx(stats.ttest_rel(A, B).pvalue, rel=1e-9)
    results = pd.DataFrame({"variant": ["r"] * 6, "seed": [0, 0, 1, 1, 2, 2], "epoch": [1, 2] * 3,
                            "val_accuracy": [0.5, 0.6, 0.7, 0.8, 0.6, 0.7]})
    cv = curves(results, "val_accuracy").set_index("epoch")
    assert cv.loc[2, "mean"] == pytest.approx(0.7)
    sd = np.std([0.6, 0.8, 0.7], ddof=1)
    assert cv.loc[2, "ci_high"] == pytest.approx(0.7 + stats.t.ppf(0.975, 2) * sd / np.sqrt(3))


def test_holm_by_hand_is_kept_beside_the_verdicts():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running max: 0.02, 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, math.nan, 0.01])  # NaN neither counts nor moves
    assert math.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.2, 0.02])
    a, b = [0.50, 0.52, 0.51, 0.53, 0.50], [0.49, 0.51, 0.50, 0.50, 0.495]
    single = paired_test(a, b)
    noise = paired_test([0.5, 0.52, 0.49, 0.51, 0.5], [0.51, 0.5, 0.5, 0.5, 0.5])
    first, second = adjust([single, noise])
    assert first.p_holm == pytest.approx(min(1, 2 * single.p_value)) and first.family == 2
    assert second.p_holm == pytest.approx(max(first.p_holm, noise.p_value))


def test_a_family_widens_every_interval_to_alpha_over_m():
    # One comparison alone is decided at 4 seeds; in a family of 3 its interval is at 1 - 0.05/3 and it needs more.
    rng = np.random.default_rng(3)
    ref = rng.normal(0.85, 0.005, 12)
    variant = ref + 0.02 + rng.normal(0, 0.003, 12)
    alone = paired_test(variant, ref, direction="max")
    other = paired_test(ref + rng.normal(0, 0.003, 12), ref, direction="max")
    first, *_ = adjust([alone, other, other])
    assert alone.verdict == "better" and first.verdict == "better" and first.family == 3
    assert first.n >= alone.n
    d = (variant - ref)[: first.n]
    half = critical_t(first.n, 0.05 / 3) * d.std(ddof=1) / math.sqrt(first.n)
    assert first.cs_high <= d.mean() + half + 1e-12 and first.cs_low > 0
    assert judge_sequence(variant - ref, delta=None, family=3).n == first.n


def test_compare_to_reference_judges_the_variants_as_one_family():
    rng = np.random.default_rng(0)
    b = list(0.84 + rng.normal(0, 0.004, 8))
    a = [x + 0.03 + e for x, e in zip(b, rng.normal(0, 0.002, 8))]
    t = [x + e for x, e in zip(b, rng.normal(0, 0.0015, 8))]
    finals = pd.DataFrame({"variant": ["r"] * 8 + ["s"] * 8 + ["t"] * 8, "seed": list(range(8)) * 3,
                           "val_accuracy": b + a + t})
    c = compare_to_reference(finals, "val_accuracy", "r", column=ACCURACY).set_index("variant")
    raw = [stats.ttest_rel(a[: c.loc["s", "n"]], b[: c.loc["s", "n"]]).pvalue, c.loc["t", "p_value"]]
    assert c.loc["s", "p_holm"] == pytest.approx(holm(raw)[0], rel=1e-12)
    assert (c["family"] == 2).all() and c.loc["s", "verdict"] == "better"
    assert c.loc["t", "verdict"] == "equivalent within ±0.01" and c.loc["t", "delta"] == 0.01
    assert -0.01 < c.loc["t", "cs_low"] < c.loc["t", "cs_high"] < 0.01


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


def test_seeds_needed_matches_statsmodels():
    power = pytest.importorskip("statsmodels.stats.power")
    for dz, alpha in ((0.5, 0.05), (1.2, 0.05), (0.3, 0.01), (1.9, 0.005)):
        n = power.TTestPower().solve_power(effect_size=dz, alpha=alpha, power=0.8, alternative="two-sided")
        assert seeds_needed(dz, alpha=alpha) == math.ceil(n)


def test_images_interval_is_the_crossed_seeds_by_images_formula_and_covers():
    from deepfit.experiments.variance import mean_squares

    rng = np.random.default_rng(0)

    def draw(seeds=5, images=400):
        # Which images a network gets right hardly depends on its seed (easy images are right on every seed):
        # the sample of images, not the seeds, holds most of the uncertainty, as on Fashion-MNIST.
        difficulty = rng.normal(1.5, 1.5, images)
        ua, ub = rng.normal(0, 0.7, (2, images))  # each variant's own easy and hard images
        a = difficulty + 0.15 + ua + rng.normal(0, 0.3, (seeds, images)) > 0
        b = difficulty + ub + rng.normal(0, 0.3, (seeds, images)) > 0
        return a, b

    a, b = draw()
    lo, hi = images_interval(a, b)
    c = a.astype(float) - b
    ms_s, ms_i, ms_e = mean_squares(c)
    se = math.sqrt((ms_s + ms_i - ms_e) / c.size)
    df = (ms_s + ms_i - ms_e) ** 2 / (ms_s**2 / 4 + ms_i**2 / 399 + ms_e**2 / (4 * 399))
    half = stats.t.ppf(0.975, df) * se
    assert (lo, hi) == pytest.approx((c.mean() - half, c.mean() + half), rel=1e-9)
    seed_only = t_interval(c.mean(axis=1))
    assert hi - lo > seed_only.ci_high - seed_only.ci_low  # the images add variance the seeds do not show
    # Coverage of the population difference (seeds and images redrawn), against the seed-only interval.
    truth = np.mean([np.subtract(*[x.mean() for x in draw(20, 200_000)]) for _ in range(3)])
    hits = seeds_hits = 0
    for _ in range(200):
        a, b = draw()
        lo, hi = images_interval(a, b)
        s = t_interval(a.mean(axis=1) - b.mean(axis=1))
        hits += lo <= truth <= hi
        seeds_hits += s.ci_low <= truth <= s.ci_high
    print(f"coverage over 200 draws: seeds + images {hits / 200:.2f}, seeds only {seeds_hits / 200:.2f}")
    assert hits / 200 >= 0.9 and seeds_hits / 200 < 0.8  # the seed interval says nothing about other images


def test_superiority_is_the_mann_whitney_probability_with_a_seed_bootstrap():
    a = np.array([0.861, 0.857, 0.866, 0.859, 0.863, 0.850])
    b = np.array([0.842, 0.851, 0.845, 0.840, 0.862, 0.850])
    p, lo, hi = superiority(a, b)
    u = stats.mannwhitneyu(a, b, alternative="greater").statistic  # counts ties as 1/2
    assert p == pytest.approx(u / (len(a) * len(b)))
    assert lo <= p <= hi and 0 <= lo and hi <= 1
    assert superiority(a, b) == (p, lo, hi)  # seeded: the same interval every time
    assert superiority(b + 1, b)[0] == 1.0 and superiority(b, b)[0] == 0.5
    assert all(math.isnan(x) for x in superiority(a[:2], b[:2]))  # below 3 seeds: none


def test_a_difference_of_bounded_values_keeps_its_intervals_inside_what_is_possible():
    # Three noisy seeds of two accuracies: the anytime interval at n = 3 is wide, but a difference of two
    # values in [0, 1] lies in [-1, 1].
    a, b = [0.9, 0.1, 0.8], [0.1, 0.9, 0.2]
    wide = paired_test(a, b, direction="max")
    assert wide.cs_low < -1 and wide.cs_high > 1
    p = paired_test(a, b, direction="max", span=ACCURACY.span)
    assert (p.cs_low, p.cs_high) == (-1.0, 1.0) and p.ci_low >= -1 and p.ci_high <= 1
    assert LOSS.span == math.inf and adjust([p])[0].cs_high == 1.0
    # Below 3 seeds the rule has not looked: no interval at all (not ±inf, nor the whole span).
    two = paired_test(a[:2], b[:2], direction="max", span=ACCURACY.span)
    assert math.isnan(two.cs_low) and math.isnan(two.cs_high)
