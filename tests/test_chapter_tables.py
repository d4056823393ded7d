"""Table 11-2's measures and stars, on hand-made numbers (no training)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from deepfit.experiments import chapter_tables as ct


def curves(rows):
    """{seed: [val_accuracy per epoch]} -> a results frame with a training loss falling 0.1 an epoch."""
    out = []
    for seed, accs in rows.items():
        for i, a in enumerate(accs, 1):
            out.append({"seed": seed, "epoch": i, "val_accuracy": a, "loss": 1.0 - 0.1 * i})
    return pd.DataFrame(out)


def test_epochs_to_threshold_is_the_first_epoch_at_or_above_it():
    assert ct.epochs_to_threshold([0.80, 0.86, 0.87, 0.90], 0.87) == 3.0
    assert ct.epochs_to_threshold([0.88, 0.80], 0.87) == 1.0  # reached, then fell: still reached at 1
    assert math.isnan(ct.epochs_to_threshold([0.80, 0.869], 0.87))


def test_runs_that_never_reach_the_threshold_count_as_epochs_plus_one():
    results = curves({0: [0.80, 0.88, 0.89], 1: [0.80, 0.82, 0.84], 2: [0.87, 0.88, 0.88]})
    m = ct.run_measures(results, threshold=0.87).set_index("seed")
    assert m["epochs_to_threshold"].tolist()[:1] == [2.0] and math.isnan(m.loc[1, "epochs_to_threshold"])
    assert m["epochs_censored"].tolist() == [2.0, 4.0, 1.0]  # 3 planned epochs: never -> 4
    assert m["reached"].tolist() == [True, False, True]
    assert m["best_val_accuracy"].tolist() == [0.89, 0.84, 0.88]
    assert m.loc[0, "final_loss"] == pytest.approx(0.7)
    # Planned 10 epochs: a run that never got there counts as 11, not as the 3 it had.
    assert ct.run_measures(results, 0.87, epochs=10).set_index("seed").loc[1, "epochs_censored"] == 11.0


def test_stars_drop_only_when_the_gap_is_significant_and_large():
    seeds = range(5)
    noise = np.array([0.01, -0.01, 0.005, -0.005, 0.0])
    best = pd.Series(0.89 + noise, index=seeds)
    close = pd.Series(0.886 + noise + [0.001, 0, -0.001, 0, 0], index=seeds)  # 0.4 points below: ***
    mid = pd.Series(0.880 + noise + [0.001, -0.001, 0, 0.001, -0.001], index=seeds)  # 1.0 point, significant: **
    far = pd.Series(0.85 + noise + [0.002, -0.002, 0.001, 0, -0.001], index=seeds)  # 4 points: *
    noisy = pd.Series(0.87 + np.array([0.08, -0.08, 0.06, -0.06, 0.0]), index=seeds)  # 2 points, not significant
    s = ct.stars({"best": best, "close": close, "mid": mid, "far": far, "noisy": noisy}, True, ct.QUALITY_GAPS,
                 ratio=False)
    assert {k: v["stars"] for k, v in s.items()} == {"best": 3, "close": 3, "mid": 2, "far": 1, "noisy": 3}
    assert s["mid"]["gap"] == pytest.approx(0.01)
    assert s["mid"]["p_value"] == pytest.approx(sps.ttest_rel(mid, best).pvalue)
    assert s["noisy"]["p_value"] > 0.05


def test_speed_stars_are_ratios_to_the_fastest_row():
    seeds = range(5)
    fast = pd.Series([2, 2, 2, 3, 2], index=seeds, dtype=float)
    slow = pd.Series([5, 5, 6, 5, 5], index=seeds, dtype=float)  # 2.3x: **
    never = pd.Series([11, 11, 11, 11, 11], index=seeds, dtype=float)  # never in 10 epochs: 5x, *
    s = ct.stars({"fast": fast, "slow": slow, "never": never}, False, ct.SPEED_RATIOS, ratio=True)
    assert [s[k]["stars"] for k in ("fast", "slow", "never")] == [3, 2, 1]
    assert s["slow"]["gap"] == pytest.approx(26 / 11)


def test_verdict_sets_measured_stars_beside_the_books():
    assert ct.row_verdict(3, 3, {3}, {2, 3}) == "as the book says"
    assert ct.row_verdict(3, 2, {3}, {2, 3}) == "as the book says"
    assert ct.row_verdict(3, 3, {1}, {3}) == "faster than the book says"
    assert ct.row_verdict(2, 3, {3}, {1}) == "slower than the book says; better quality than the book says"
    assert ct.row_verdict(3, 1, {3}, {2, 3}) == "worse quality than the book says"


def test_optimizer_table_puts_it_together():
    # Six seeds: every seed's speed differs by exactly the same 2 epochs; whole-epoch counts carry a rounding
    # spread of at least 1/sqrt(6) epoch, so the difference is judged by the t-test, not the sign test.
    a = curves({s: [0.85, 0.875, 0.88] for s in range(6)})
    b = curves({s: [0.80, 0.82, 0.83 + 0.001 * s] for s in range(6)})
    t = ct.optimizer_table({"adam": a, "adagrad": b}, {"adam": 1e-3, "adagrad": 1e-2}, threshold=0.87).table
    t = t.set_index("optimizer")
    assert t.loc["adam", "reached"] == 6 and t.loc["adagrad", "reached"] == 0
    assert t.loc["adam", "epochs_mean"] == 2.0 and t.loc["adagrad", "epochs_mean"] == 4.0
    assert t.loc["adagrad", "book_quality"] == "*" and t.loc["adam", "book_quality"] == "** or ***"
    assert t.loc["adam", "verdict"] == "as the book says"
    assert t.loc["adagrad", "quality_stars"] == 1  # 5 points below, every seed
    assert t.loc["adagrad", "verdict"] == "slower than the book says"
    assert t.loc["adagrad", "learning_rate"] == 1e-2


def test_the_rate_rule_picks_the_best_and_breaks_ties_low():
    assert ct.pick_rate({1e-3: 0.80, 1e-2: 0.85, 1e-1: 0.84}) == 1e-2
    assert ct.pick_rate({1e-3: 0.85, 1e-2: 0.85, 1e-1: float("nan")}) == 1e-3
    assert ct.pick_rate({1e-3: float("nan"), 1e-2: float("nan")}) == 1e-3


def test_the_tuning_split_never_touches_the_validation_images():
    from deepfit.data.prepare import Dataset

    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    d = Dataset(x[20:], np.arange(80), x[:20], np.arange(20))
    t = ct.tuning_split(d, images=10)
    assert len(t.x_train) == 70 and len(t.x_valid) == 10
    assert t.x_valid[:, 0].tolist() == list(range(90, 100))  # the last 10 training images
    assert not set(t.x_valid[:, 0]) & set(d.x_valid[:, 0]) and not set(t.x_train[:, 0]) & set(t.x_valid[:, 0])


def test_the_optimizers_sweep_is_the_books_eight_on_the_notebooks_baseline():
    from deepfit.experiments.reproduce import configs_dir
    from deepfit.experiments.spec import load_experiment

    exp = load_experiment(configs_dir() / "sweeps" / "optimizers.toml")
    assert [v.name for v in exp.variants] == list(ct.BOOK_11_2) and exp.seeds == [0, 1, 2, 3, 4]
    nesterov = exp.config("nesterov", 0).training
    assert nesterov.optimizer == {"name": "sgd", "learning_rate": 1e-3, "momentum": 0.9, "nesterov": True}
    assert nesterov.epochs == 10 and nesterov.batch_size == 32
    assert {exp.config(v, 0).training.optimizer["name"] for v in exp.variants} == {
        "sgd", "adagrad", "rmsprop", "adam", "nadam", "adamax"}


def test_i20_11_censored_rows_lose_stars_their_intervals_stay_possible_and_the_tests_are_adjusted():
    # Ten epochs planned. 'fast' reaches 0.87 at epoch 4 on every seed; 'never' never does (censored at 11 on
    # every seed: before, its differences were all exactly 7, fell to the sign test, p = 0.0625, and it kept
    # ***); 'sgd' reaches it on 3 seeds of 5 (epochs 7, 8, 9), the other 2 are censored.
    ten = lambda reach: [0.80] * (reach - 1) + [0.88] * (11 - reach) if reach <= 10 else [0.80] * 10  # noqa: E731
    results = {"fast": curves({s: ten(4) for s in range(5)}), "never": curves({s: ten(11) for s in range(5)}),
               "sgd": curves({s: ten(r) for s, r in enumerate([7, 8, 9, 11, 11])})}
    t = ct.optimizer_table(results, epochs=10).table.set_index("optimizer")
    assert t.loc["never", "reached"] == 0 and t.loc["never", "epochs_mean"] == 11.0
    assert t.loc["never", "speed_stars"] < 3  # 11/4 = 2.75x the fastest, every seed: **
    assert t.loc["never", "speed_stars"] == 2 and t.loc["never", "speed_p_holm"] < 0.05
    # The interval of a row with censored runs stays inside what is possible: [1, epochs + 1].
    x = np.array([7, 8, 9, 11, 11.0])
    lo, hi = sps.t.interval(0.95, 4, x.mean(), sps.sem(x))
    assert hi > 11 and t.loc["sgd", "epochs_ci_high"] == 11.0 and t.loc["sgd", "epochs_ci_low"] == pytest.approx(lo)
    assert t.loc["sgd", "epochs_censored"] == 2 and t.loc["sgd", "epochs_max"] == 11
    # The star tests are Holm-adjusted together, both measures.
    raw = list(t["speed_p_vs_fastest"]) + list(t["quality_p_vs_best"])
    assert list(t["speed_p_holm"]) + list(t["quality_p_holm"]) == pytest.approx(list(ct.holm(raw)), nan_ok=True)
    # A raw p of 0.03 is not significant once adjusted over the table's tests.
    seeds = range(5)
    best = pd.Series([0.890, 0.885, 0.893, 0.888, 0.891], index=seeds)
    rows = {"best": best, "a": best - [0.006, 0.001, 0.012, 0.002, 0.008], "b": best - 0.02 + 0.001 * np.arange(5),
            "c": best - [0.03, 0.0, 0.02, 0.025, 0.01]}
    s = ct.stars(rows, True, ct.QUALITY_GAPS, ratio=False)
    assert 0.01 < s["a"]["p_value"] < 0.05 < s["a"]["p_holm"] and s["a"]["stars"] == 3


def test_i20_20_a_rate_record_made_by_another_config_is_not_reused(tmp_path, tiny_arrays):
    from conftest import tiny_config
    from deepfit.data.prepare import Dataset

    (x, y), _ = tiny_arrays
    data = Dataset((x[:500] / 255).astype(np.float32), y[:500].astype(np.int32), (x[500:] / 255).astype(np.float32),
                   y[500:].astype(np.int32))
    trained = []

    def log(line):
        if "tuning accuracy" in line:
            trained.append(line)

    record = tmp_path / "rate.json"
    cfg = tiny_config()
    first = ct.choose_rate(cfg, record, grid=(0.01, 0.1), epochs=1, seed=0, images=100, dataset=data, log=log)
    assert len(trained) == 2
    ct.choose_rate(cfg, record, grid=(0.01, 0.1), epochs=1, seed=0, images=100, dataset=data, log=log)
    assert len(trained) == 2  # the same config, grid and data: the record is reused (an interrupted choice resumes)
    other = tiny_config(optimizer={"name": "adam", "learning_rate": 0.05})
    again = ct.choose_rate(other, record, grid=(0.01, 0.1), epochs=1, seed=0, images=100, dataset=data, log=log)
    assert len(trained) == 4  # another optimizer: chosen again, not the stale record reused
    ct.choose_rate(other, record, grid=(0.01, 0.1, 0.3), epochs=1, seed=0, images=100, dataset=data, log=log)
    assert len(trained) == 7  # another grid: all of it again
    assert first["key"] == ct.rate_key(cfg, (0.01, 0.1), 1, 0, 100, data) != again["key"]
    assert ct.rate_key(other, (0.01,), 1, 0, 100, data) != ct.rate_key(other, (0.01,), 2, 0, 100, data)
