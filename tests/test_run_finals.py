"""What final.json (and so the experiment's finals table) reports: the metrics of the weights the run keeps."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import deepfit as df
from deepfit.experiments.tables import load_experiment_dir
from deepfit.train.events import Callback
from experiment_fixtures import fake_experiment_dir
from tests.conftest import tiny_config


class NaNWeightsAt(Callback):
    """Turns the weights to NaN when epoch ``epoch`` (0-based) begins: a divergence mid-training."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        if epoch == self.epoch:
            trainer.state = trainer.state.replace(params={k: w * jnp.nan for k, w in trainer.state.params.items()})


def test_diverged_run_has_no_stale_finite_metrics_in_finals(tmp_path, tiny_arrays):
    # Regression: a run that diverged in epoch 2 kept epoch 1's finite val_accuracy as its "last" metrics,
    # so the finals table held a number for a run the report said was NaN and dropped.
    run = df.train(tiny_config(epochs=3), out=tmp_path / "run", data=tiny_arrays, callbacks=[NaNWeightsAt(1)])
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    assert final["status"] == "diverged" and final["divergence"]["epoch"] == 2
    assert final["last"] == {} and "test_accuracy" not in final
    assert final["divergence"]["last_finite_epoch"]["epoch"] == 1  # kept for the record, not as a result
    assert math.isfinite(final["divergence"]["last_finite_epoch"]["val_accuracy"])
    assert run.final["status"] == "diverged"


def test_diverged_run_from_an_older_record_is_nan_in_the_finals_table(tmp_path):
    exp = fake_experiment_dir(tmp_path / "exp", {"a": [0.8, 0.81, 0.82]}, {"a": [[0.7, 0.8], [0.7, 0.81], [0.7, 0.82]]},
                              reference="a")
    record = exp / "runs" / "a" / "seed-1" / "final.json"
    old = json.loads(record.read_text())
    record.write_text(json.dumps({**old, "status": "diverged"}))  # the stale finite "last" of before the fix
    finals = load_experiment_dir(exp).finals.set_index("seed")
    assert math.isnan(finals.loc[1, "val_accuracy"]) and finals.loc[0, "val_accuracy"] == 0.8


def test_restore_best_weights_finals_match_the_best_epoch(tmp_path, tiny_arrays):
    # Regression: with restore_best_weights, val_* in final.json came from the last epoch while test_*
    # and the saved model came from the best one.
    cfg = tiny_config(epochs=30, optimizer={"name": "sgd", "learning_rate": 0.5},
                      callbacks=[{"name": "early_stopping", "monitor": "val_loss", "patience": 2, "min_delta": 0.02,
                                  "restore_best_weights": True}])
    run = df.train(cfg, out=tmp_path / "run", data=tiny_arrays)
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    h = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert final["restored_epoch"] < len(h) and final["last_epoch"]["epoch"] == len(h)
    assert final["last"]["epoch"] == final["restored_epoch"]
    row = h[h["epoch"] == final["restored_epoch"]].iloc[0]
    assert final["last"]["val_loss"] == pytest.approx(row["val_loss"], rel=1e-12)
    assert final["last"]["val_loss"] != pytest.approx(h["val_loss"].iloc[-1], rel=1e-6)
    # The kept weights (the reloaded model) give exactly those validation numbers.
    data = df.load_data(run.config.data, arrays=tiny_arrays)
    again = df.load_run(tmp_path / "run")
    probs = np.asarray(again.model.predict(data.x_valid, verbose=0))
    assert np.mean(probs.argmax(1) == data.y_valid) == pytest.approx(final["last"]["val_accuracy"], abs=1e-9)
