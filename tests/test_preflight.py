"""Preflight: weights counted without allocating, against Keras and the formula; a clear
error with the estimate when a run cannot fit in memory."""

from __future__ import annotations

import time

import numpy as np
import pytest
from reliability_fixtures import tiny_arrays, tiny_config

import deepfit as df
from deepfit.errors import ConfigError, DataError
from deepfit.preflight import Estimate, available_memory, check_resources, estimate, optimizer_slots

NOTEBOOK_BN = {
    "input_shape": [28, 28],
    "layers": [{"type": "flatten"}, {"type": "batch_norm"},
               {"type": "dense", "units": 300, "activation": "relu"}, {"type": "batch_norm"},
               {"type": "dense", "units": 100, "activation": "relu"}, {"type": "batch_norm"},
               {"type": "dense", "units": 10, "activation": "softmax"}],
}


def test_weights_counted_without_allocating_match_the_notebook_and_keras():
    cfg = df.load_config({"model": NOTEBOOK_BN, "training": {"optimizer": {"name": "adam"}}})
    est, out_shape = estimate(cfg)
    # The notebook's model.summary(): 271,346 parameters, 2,368 of them non-trainable.
    formula = 4 * 784 + (784 * 300 + 300) + 4 * 300 + (300 * 100 + 100) + 4 * 100 + (100 * 10 + 10)
    assert est.params == formula == 271_346
    assert est.params - est.trainable == 2 * (784 + 300 + 100) == 2_368
    keras_model = df.build_model(cfg.model, seed=0)
    assert est.params == keras_model.count_params() and out_shape == (None, 10)
    assert est.activations_per_sample == 784 * 2 + 300 * 2 + 100 * 2 + 10


@pytest.mark.parametrize("spec, slots", [({"name": "sgd"}, 0), ({"name": "sgd", "momentum": 0.9}, 1),
                                          ({"name": "adam"}, 2), ({"name": "rmsprop"}, 1),
                                          ({"name": "adam", "amsgrad": True}, 3)])
def test_optimizer_slots(spec, slots):
    assert optimizer_slots(spec) == slots


def test_estimate_formula():
    est = Estimate(params=1000, trainable=900, slots=2, activations_per_sample=50, data_bytes=7, batch_size=32)
    assert est.model_bytes == 2 * 4 * (1000 + 900 * 2) + 4 * 900
    assert est.activation_bytes == 3 * 4 * 32 * 50
    assert est.total == est.model_bytes + est.activation_bytes + 7


def test_trillions_of_weights_fail_fast_with_the_estimate(tmp_path):
    # 64 inputs × 10^11 units + biases + the 10^11 × 3 output layer: 6.8 × 10^12 weights, 25 TB
    cfg = tiny_config(epochs=1)
    cfg["model"]["layers"][1]["units"] = 10**11
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot fit in memory: 6,800,000,000,003 weights .*GiB.*available") as e:
        df.train(cfg, tmp_path / "run", data=tiny_arrays())
    assert time.perf_counter() - t0 < 30
    assert "units" in str(e.value) and not (tmp_path / "run").exists()  # nothing written


def test_data_that_cannot_fit_beside_the_model_is_a_data_error():
    cfg = df.load_config(tiny_config())
    data = df.load_data(cfg.data, arrays=tiny_arrays())
    need = estimate(cfg, data)[0]
    assert need.data_bytes == sum(a.nbytes for a in (data.x_train, data.y_train, data.x_valid, data.y_valid))
    with pytest.raises(DataError, match="data cannot fit in memory.*data.train_size"):
        check_resources(cfg, data, available=need.total - need.data_bytes // 2)
    assert check_resources(cfg, data, available=need.total).total == need.total


def test_available_memory_is_plausible():
    free = available_memory()
    assert free is None or 0 < free < 2**50
