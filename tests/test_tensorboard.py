"""The tensorboard callback: scalars and weight histograms, read back with TensorBoard's own reader."""

import numpy as np
import pandas as pd
import pytest

import deepfit

CONFIG = {
    "seed": 3,
    "data": {"validation_size": 100, "train_size": 300, "scaling": "divide255"},
    "model": {"input_shape": [28, 28], "layers": [
        {"type": "flatten"},
        {"type": "dense", "units": 8, "activation": "relu", "kernel_initializer": "he_normal"},
        {"type": "dense", "units": 10, "activation": "softmax"}]},
    "training": {"epochs": 2, "batch_size": 50, "progress": False, "tensorboard": True,
                 "optimizer": {"name": "sgd", "learning_rate": 0.05}},
}


def test_event_files_hold_epoch_scalars_and_weight_histograms(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard (a dev dependency) reads the event files back")
    run = deepfit.train(CONFIG, out=tmp_path / "run")
    acc = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"),
                                             size_guidance={event_accumulator.HISTOGRAMS: 0,
                                                            event_accumulator.SCALARS: 0})
    acc.Reload()
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        events = acc.Scalars(f"epoch/{key}")
        assert [e.step for e in events] == [1, 2]
        np.testing.assert_allclose([e.value for e in events], metrics[key], rtol=1e-6)  # float32 in the file
    tags = acc.Tags()["histograms"]
    variables = run.model.trainable_variables
    assert sorted(tags) == sorted(f"weights/{v.path}" for v in variables)
    for v in variables:
        events = acc.Histograms(f"weights/{v.path}")
        assert [e.step for e in events] == [1, 2]
        last = events[-1].histogram_value
        w = np.asarray(v.numpy(), np.float64)  # the trained weights, after the last epoch
        assert last.num == w.size
        assert last.min == pytest.approx(w.min()) and last.max == pytest.approx(w.max())
        assert last.sum == pytest.approx(w.sum(), abs=1e-6) and last.sum_squares == pytest.approx((w**2).sum())
    kernel = acc.Histograms(f"weights/{variables[0].path}")
    assert kernel[0].histogram_value.sum != kernel[1].histogram_value.sum  # each epoch's own weights


def test_histogram_freq_zero_writes_scalars_only(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    cfg = {**CONFIG, "training": {**CONFIG["training"], "tensorboard": False, "epochs": 1,
                                  "callbacks": [{"name": "tensorboard", "log_dir": str(tmp_path / "tb"),
                                                 "histogram_freq": 0}]}}
    deepfit.train(cfg, save=False)
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert acc.Tags()["histograms"] == [] and "epoch/loss" in acc.Tags()["scalars"]
