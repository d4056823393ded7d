"""The self-normalization demo against the notebook's printed figures and Keras's SELU."""

import numpy as np
import pytest
import deepfit  # noqa: F401  (sets KERAS_BACKEND=jax before keras loads)
import keras

from deepfit.diagnostics.selu_demo import ALPHA, SCALE, run_demo, selu

# The notebook's cell 21 output: layer, mean, std (printed with two decimals).
NOTEBOOK = [(0, -0.00, 1.00), (100, 0.02, 0.96), (200, 0.01, 0.90), (300, -0.02, 0.92), (400, 0.05, 0.89),
            (500, 0.01, 0.93), (600, 0.02, 0.92), (700, -0.02, 0.90), (800, 0.05, 0.83), (900, 0.02, 1.00)]


def test_selu_constants_match_keras():
    # The literals in Keras's own source (keras/src/backend/numpy/nn.py), 32 digits.
    assert ALPHA == pytest.approx(1.6732632423543772848170429916717, rel=1e-14)
    assert SCALE == pytest.approx(1.0507009873554804934193349852946, rel=1e-14)
    z = np.array([-3.0, -0.5, 0.0, 0.7, 2.0], np.float32)
    np.testing.assert_allclose(np.asarray(keras.activations.selu(z)), selu(z.astype(np.float64)), rtol=1e-6)


def test_selu_demo_reproduces_the_notebook():
    r = run_demo("selu", "lecun_normal")
    assert r.layers == [row[0] for row in NOTEBOOK]
    for (layer, mean, std), m, s in zip(NOTEBOOK, r.means, r.stds):
        assert abs(m - mean) <= 0.005 + 1e-9, layer
        assert abs(s - std) <= 0.005 + 1e-9, layer
        assert 0.75 <= s <= 1.1  # the acceptance band
    assert r.verdict == "keeps"


def test_relu_glorot_collapses_and_selu_he_explodes():
    collapse = run_demo("relu", "glorot_uniform")
    # Half the second moment is lost per layer: std ~ 2^(-layer/2) (times a constant).
    assert collapse.stds[-1] < 1e-100 and collapse.verdict == "collapses"
    explode = run_demo("selu", "he_normal")
    assert explode.stds[-1] > 1e10 and explode.verdict == "explodes"
    assert np.all(np.diff(np.log(explode.stds)) > 0)  # grows at every reported layer


def test_sigmoid_random_normal_collapses_to_identical_outputs():
    r = run_demo("sigmoid", "random_normal(1.0)", layers=300)
    assert r.stds[-1] < 1e-3 and r.stds[-1] < r.stds[0] / 1000 and 0.3 < r.means[-1] < 0.7
    assert r.verdict == "collapses"
