"""What an experiment directory's statistics say, read from its result files only (issue 20, items 4 and 13).

The runs are written by hand as a run writes them (``final.json`` with its "columns" record), so these
tests run without training; module-level imports are the ones every version of deepfit has.
"""

import json
import math

import numpy as np

from deepfit.experiments.tables import load_experiment_dir


def write_runs(directory, values: dict[str, list[dict]], columns: dict, metric: str):
    """An experiment directory: ``values[variant][k]`` is the k-th seed's final logs."""
    spec = {"name": "handmade", "seeds": list(range(len(next(iter(values.values()))))), "reference": next(iter(values)),
            "metric": metric, "base": {"model": {"layers": [{"type": "flatten"},
                                                             {"type": "dense", "units": 3, "activation": "softmax"}]}},
            "overrides": {}, "variants": [{"name": v, "overrides": {}} for v in values]}
    directory.mkdir(parents=True)
    (directory / "experiment.json").write_text(json.dumps(spec))
    for v, seeds in values.items():
        for s, last in enumerate(seeds):
            d = directory / "runs" / v / f"seed-{s}"
            d.mkdir(parents=True)
            (d / "metrics.csv").write_text(",".join(["epoch", *last]) + "\n" + ",".join(["1", *map(repr, last.values())])
                                           + "\n")
            (d / "final.json").write_text(json.dumps({"status": "completed", "epochs_run": 1, "seconds": 1.0,
                                                      "last": {"epoch": 1, **last}, "columns": columns}))
            (d / "manifest.json").write_text("{}")
    return directory


def keras_records(loss, metrics) -> dict:
    """What a run of a model compiled with ``loss`` and ``metrics`` records about its columns."""
    import keras

    from deepfit.train.objective import Objective

    model = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    return Objective.for_model(loss, metrics, model).columns()


# What a run of a softmax model compiled with a cosine-similarity loss and MAE records (checked below against
# Objective.columns()); and one compiled with sparse crossentropy and accuracy.
MAE_RECORDS = {"loss": {"direction": "min", "range": [None, None]}, "mae": {"direction": "min", "range": [0.0, None]},
               "val_loss": {"direction": "min", "range": [None, None]},
               "val_mae": {"direction": "min", "range": [0.0, None]}}
ACCURACY_RECORDS = {"loss": {"direction": "min", "range": [0.0, None], "kind": "crossentropy"},
                    "accuracy": {"direction": "max", "range": [0.0, 1.0]},
                    "val_loss": {"direction": "min", "range": [0.0, None], "kind": "crossentropy"},
                    "val_accuracy": {"direction": "max", "range": [0.0, 1.0]}}


def test_i20_04_direction_and_bounds_are_read_from_the_run_records_not_the_name(tmp_path):
    records = MAE_RECORDS
    # A variant 0.10 worse in MAE (higher) on every seed; a cosine-similarity loss below 0.
    rng = np.random.default_rng(1)
    ref = 0.30 + rng.normal(0, 0.01, 6)
    worse = ref + 0.10 + rng.normal(0, 0.004, 6)
    loss = [-0.9, -0.88, -0.86, -0.91, -0.87, -0.89]
    exp = write_runs(tmp_path / "e", {"r": [{"val_mae": float(x), "loss": y} for x, y in zip(ref, loss)],
                                      "v": [{"val_mae": float(x), "loss": y} for x, y in zip(worse, loss)]},
                     records, "val_mae")
    result = load_experiment_dir(exp)
    c = result.comparisons().iloc[0]
    assert c["verdict"] == "worse" and c["mean_diff"] > 0.09  # MAE goes down: higher is worse, never "better"
    s = result.summary("loss").iloc[0]
    assert s["ci_low"] < s["mean"] < s["ci_high"] < 0 and not s["clipped"]  # no bound at 0 a loss does not have
    acc = result.summary("val_mae").iloc[0]
    assert acc["ci_low"] >= 0  # MAE's bound is known (a mean of absolute values)
    # The records are what Keras's own loss and metric objects say.
    assert keras_records({"name": "cosine_similarity"}, ["mae"]) == MAE_RECORDS
    assert keras_records("sparse_categorical_crossentropy", ["accuracy"]) == ACCURACY_RECORDS


def test_i20_13_one_rule_below_three_seeds_stated_once(tmp_path):
    records = ACCURACY_RECORDS
    exp = write_runs(tmp_path / "e", {"r": [{"val_accuracy": 0.80}, {"val_accuracy": 0.81}],
                                      "s": [{"val_accuracy": 0.85}, {"val_accuracy": 0.87}]}, records, "val_accuracy")
    result = load_experiment_dir(exp)
    summary, c = result.summary(), result.comparisons().iloc[0]
    note = summary.loc[0, "note"]
    assert summary["ci_low"].isna().all() and (summary["note"] == note).all() and note.startswith("fewer than 3")
    assert math.isnan(c["ci_low"]) and math.isnan(c["p_value"]) and math.isnan(c["p_holm"])  # no interval, no test
    assert c["verdict"] == f"undecided at 2 seeds ({note})"  # ... and no verdict: the same rule, the same words
    three = load_experiment_dir(write_runs(
        tmp_path / "f", {"r": [{"val_accuracy": x} for x in (0.80, 0.81, 0.805)],
                         "s": [{"val_accuracy": x} for x in (0.85, 0.87, 0.86)]}, records, "val_accuracy"))
    c3 = three.comparisons().iloc[0]
    assert math.isfinite(c3["ci_low"]) and math.isfinite(c3["p_value"]) and c3["n"] == 3  # three seeds: all of them
