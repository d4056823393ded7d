"""Init / order variance decomposition and the crossed comparison: by hand, against statsmodels, by simulation."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepfit.experiments.stats import compare_to_reference, crossed, describe
from deepfit.experiments.variance import crossed_mean, decompose, decompose_table, grid, mean_squares


def test_decomposition_by_hand():
    # Rows (init) means 1.5, 4; columns (order) 2, 3.5; grand 2.75; residuals ±0.25.
    d = decompose(np.array([[1.0, 2.0], [3.0, 5.0]]))
    assert (d.ms_init, d.ms_order, d.ms_resid) == pytest.approx((6.25, 2.25, 0.25))
    assert (d.var_init, d.var_order, d.var_resid) == pytest.approx((3.0, 1.0, 0.25))
    assert d.p_init == pytest.approx(stats.f.sf(25.0, 1, 1)) and d.p_order == pytest.approx(stats.f.sf(9.0, 1, 1))
    assert d.share("init") == pytest.approx(3 / 4.25) and not d.truncated
    assert decompose(np.array([[1.0, 2.0, 3.0]])) is None  # one init seed: nothing to separate


def test_mean_squares_match_statsmodels_anova():
    sm = pytest.importorskip("statsmodels.formula.api")
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(3)
    y = 0.8 + rng.normal(0, 0.05, (4, 1)) + rng.normal(0, 0.02, (1, 5)) + rng.normal(0, 0.01, (4, 5))
    table = pd.DataFrame([{"init": i, "order": j, "y": y[i, j]} for i in range(4) for j in range(5)])
    ref = anova_lm(sm.ols("y ~ C(init) + C(order)", table).fit())
    assert mean_squares(y) == pytest.approx(tuple(ref["mean_sq"]), rel=1e-10)
    d = decompose(y)
    assert d.p_init == pytest.approx(ref.loc["C(init)", "PR(>F)"], rel=1e-8)
    assert d.p_order == pytest.approx(ref.loc["C(order)", "PR(>F)"], rel=1e-8)


def test_negative_component_is_truncated_at_zero_and_flagged():
    y = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5], [1.5, 1.5, 1.5]])  # column means equal: MS_order = 0
    d = decompose(y)
    assert d.ms_order == pytest.approx(0.0, abs=1e-15) and d.ms_resid > 0
    assert d.var_order == 0.0 and d.truncated == ("order",)


def test_grid_drops_an_init_seed_with_a_diverged_cell():
    rows = [{"init_seed": i, "order_seed": j, "v": 0.5 + 0.1 * i + 0.01 * j} for i in range(3) for j in range(3)]
    rows[4]["v"] = math.nan  # init 1, order 1 diverged
    y, dropped = grid(pd.DataFrame(rows), "v")
    assert y.shape == (2, 3) and dropped == 2
    d = decompose_table(pd.DataFrame(rows), "v")
    assert d.n_init == 2 and d.dropped == 2
    assert d.var_init == pytest.approx(((0.7 - 0.5) ** 2 / 2 * 3 - 0) / 3)  # exactly additive: no residual


def test_crossed_mean_by_hand_and_it_covers_where_independent_cells_do_not():
    d = np.array([[1.0, 2.0], [3.0, 5.0]])
    m = crossed_mean(d)
    # (MS_init + MS_order − MS_resid) / IJ = (6.25 + 2.25 − 0.25) / 4; Satterthwaite df by hand.
    assert m.se == pytest.approx(math.sqrt(8.25 / 4))
    assert m.df == pytest.approx(8.25 ** 2 / (6.25 ** 2 + 2.25 ** 2 + 0.25 ** 2))
    # Simulated 5 x 5 grids with a large init effect: the crossed interval covers about 95% of the time,
    # treating the 25 cells as independent pairs covers far less.
    rng = np.random.default_rng(0)
    hits_crossed = hits_naive = 0
    trials = 1500
    for _ in range(trials):
        g = rng.normal(0, 1.0, (5, 1)) + rng.normal(0, 0.5, (1, 5)) + rng.normal(0, 0.3, (5, 5))
        c = crossed_mean(g)
        hits_crossed += abs(c.mean) <= stats.t.ppf(0.975, c.df) * c.se
        hits_naive += abs(g.mean()) <= stats.t.ppf(0.975, 24) * g.std(ddof=1) / 5
    assert 0.93 <= hits_crossed / trials <= 0.985
    assert hits_naive / trials < 0.8


def test_crossed_comparison_pairs_on_shared_cells():
    rng = np.random.default_rng(1)
    init = rng.normal(0, 0.05, 3)[:, None]
    order = rng.normal(0, 0.03, 3)[None, :]
    ref = 0.7 + init + order + rng.normal(0, 0.01, (3, 3))
    var = ref + 0.02 + rng.normal(0, 0.01, (3, 3))
    rows = []
    for name, y in (("ref", ref), ("var", var)):
        rows += [{"variant": name, "seed": f"i{i}-o{j}", "init_seed": i, "order_seed": j, "val_accuracy": y[i, j]}
                 for i in range(3) for j in range(3)]
    finals = pd.DataFrame(rows).sample(frac=1.0, random_state=2)  # pairing must not rely on row order
    assert crossed(finals)
    c = compare_to_reference(finals, "val_accuracy", "ref").iloc[0]
    m = crossed_mean(var - ref)
    assert c["test"] == "crossed t" and c["n"] == 9
    assert c["mean_diff"] == pytest.approx((var - ref).mean())
    assert c["p_value"] == pytest.approx(2 * stats.t.sf(abs(m.mean / m.se), m.df))
    assert c["ci_high"] - c["mean_diff"] == pytest.approx(stats.t.ppf(0.975, m.df) * m.se)
    s = describe(finals, "val_accuracy").set_index("variant")
    r = crossed_mean(ref)
    assert s.loc["ref", "ci_high"] - s.loc["ref", "mean"] == pytest.approx(stats.t.ppf(0.975, r.df) * r.se)
    plain = finals.assign(order_seed=finals["init_seed"])
    assert not crossed(plain)


def test_learning_curve_bands_of_a_crossed_experiment_use_the_crossed_model():
    from deepfit.experiments.stats import curves

    rng = np.random.default_rng(5)
    y = 0.7 + rng.normal(0, 0.05, (3, 1)) + rng.normal(0, 0.02, (1, 3)) + rng.normal(0, 0.01, (3, 3))
    rows = [{"variant": "a", "seed": f"i{i}-o{j}", "init_seed": i, "order_seed": j, "epoch": 1, "val_accuracy": y[i, j]}
            for i in range(3) for j in range(3)]
    band = curves(pd.DataFrame(rows), "val_accuracy").iloc[0]
    m = crossed_mean(y)
    assert band["ci_high"] - band["mean"] == pytest.approx(stats.t.ppf(0.975, m.df) * m.se)
