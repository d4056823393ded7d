import math

import keras
import numpy as np
import pytest
from scipy.special import erf

import deepfit as df
from deepfit.errors import ConfigError
from deepfit.nn.specs import make_layer

FAN_IN, FAN_OUT = 400, 600
# Keras's truncated normal cuts at 2 sigma; this is the std of a standard normal so truncated.
TRUNC_STD = 0.87962566103423978


def kernel(init, seed=0) -> np.ndarray:
    keras.utils.set_random_seed(seed)
    layer = make_layer({"type": "dense", "units": FAN_OUT, "kernel_initializer": init})
    layer.build((None, FAN_IN))
    return np.asarray(layer.kernel.numpy(), np.float64)


@pytest.mark.parametrize(
    "init, std, bound",
    [
        ("he_normal", math.sqrt(2 / FAN_IN), 2 * math.sqrt(2 / FAN_IN) / TRUNC_STD),
        ("lecun_normal", math.sqrt(1 / FAN_IN), 2 * math.sqrt(1 / FAN_IN) / TRUNC_STD),
        ("glorot_normal", math.sqrt(2 / (FAN_IN + FAN_OUT)), 2 * math.sqrt(2 / (FAN_IN + FAN_OUT)) / TRUNC_STD),
        ("he_uniform", math.sqrt(6 / FAN_IN) / math.sqrt(3), math.sqrt(6 / FAN_IN)),
        ("lecun_uniform", math.sqrt(3 / FAN_IN) / math.sqrt(3), math.sqrt(3 / FAN_IN)),
        ("glorot_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3), math.sqrt(6 / (FAN_IN + FAN_OUT))),
        ({"name": "variance_scaling", "scale": 2.0, "mode": "fan_avg", "distribution": "uniform"},
         math.sqrt(3 * 2 / ((FAN_IN + FAN_OUT) / 2)) / math.sqrt(3), math.sqrt(3 * 2 / ((FAN_IN + FAN_OUT) / 2))),
        ({"name": "variance_scaling", "scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
         math.sqrt(2 / FAN_OUT), 2 * math.sqrt(2 / FAN_OUT) / TRUNC_STD),
        ({"name": "truncated_normal", "stddev": 1.0}, TRUNC_STD, 2.0),
    ],
)
def test_initializer_statistics_match_their_formulas(init, std, bound):
    w = kernel(init)
    assert abs(w.mean()) < 0.02 * std * 10
    assert w.std() == pytest.approx(std, rel=0.01)
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.97 * bound  # the bound is reached: it is the right truncation


def test_untruncated_normal_has_normal_tails():
    w = kernel({"name": "variance_scaling", "scale": 1.0, "mode": "fan_in", "distribution": "untruncated_normal"})
    std = math.sqrt(1 / FAN_IN)
    assert w.std() == pytest.approx(std, rel=0.01)
    # P(|z| > 2) = 4.55% for a normal, 0 for the truncated one.
    assert np.mean(np.abs(w) > 2 * std) == pytest.approx(0.0455, abs=0.003)


def test_orthogonal_constant_and_defaults():
    w = kernel({"name": "orthogonal"})  # 400 x 600: rows orthonormal
    np.testing.assert_allclose(w @ w.T, np.eye(FAN_IN), atol=1e-4)
    assert np.all(kernel({"name": "constant", "value": 0.5}) == 0.5)
    assert np.all(kernel("zeros") == 0) and np.all(kernel("ones") == 1)
    w = kernel({"name": "random_normal", "stddev": 1.0})
    assert w.std() == pytest.approx(1.0, rel=0.01) and np.abs(w).max() > 4
    # Keras's Dense default: glorot_uniform kernel, zero bias.
    layer = make_layer({"type": "dense", "units": FAN_OUT})
    layer.build((None, FAN_IN))
    assert np.abs(layer.kernel.numpy()).max() <= math.sqrt(6 / (FAN_IN + FAN_OUT)) + 1e-7
    assert np.all(layer.bias.numpy() == 0)


Z = np.linspace(-6, 6, 241).astype(np.float32)
SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731

ACTIVATIONS = {
    "sigmoid": sig,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1),
    "selu": lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * (np.exp(z) - 1)),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "softsign": lambda z: z / (1 + np.abs(z)),
    "swish": lambda z: z * sig(z),
    "gelu": lambda z: 0.5 * z * (1 + erf(z / np.sqrt(2))),
    "exponential": np.exp,
    "hard_sigmoid": lambda z: np.clip(z / 6 + 0.5, 0, 1),
    "linear": lambda z: z,
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_match_their_formulas(name):
    layer = make_layer({"type": "activation", "activation": name})
    out = np.asarray(layer(Z[None, :]))[0]
    np.testing.assert_allclose(out, ACTIVATIONS[name](Z.astype(np.float64)), rtol=2e-5, atol=2e-6)


def test_activation_layers_keep_keras_defaults():
    leaky = np.asarray(make_layer({"type": "leaky_relu"})(Z[None, :]))[0]
    np.testing.assert_allclose(leaky, np.where(Z > 0, Z, 0.3 * Z), rtol=1e-6)  # Keras's LeakyReLU slope 0.3
    leaky = np.asarray(make_layer({"type": "leaky_relu", "negative_slope": 0.01})(Z[None, :]))[0]
    np.testing.assert_allclose(leaky, np.where(Z > 0, Z, 0.01 * Z), rtol=1e-6)
    elu = np.asarray(make_layer({"type": "elu", "alpha": 0.5})(Z[None, :]))[0]
    np.testing.assert_allclose(elu, np.where(Z > 0, Z, 0.5 * (np.exp(Z) - 1)), rtol=1e-5, atol=1e-6)
    soft = np.asarray(make_layer({"type": "activation", "activation": "softmax"})(Z[None, :10]))[0]
    e = np.exp(Z[:10] - Z[:10].max())
    np.testing.assert_allclose(soft, e / e.sum(), rtol=1e-5)


def test_rrelu_samples_slopes_in_training_and_uses_the_mean_in_inference():
    layer = make_layer({"type": "rrelu", "lower": 0.1, "upper": 0.3, "seed": 1})
    x = -np.ones((200, 50), np.float32)
    infer = np.asarray(layer(x, training=False))
    np.testing.assert_allclose(infer, -0.2)
    slopes = -np.asarray(layer(x, training=True))
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3
    assert slopes.mean() == pytest.approx(0.2, abs=0.005)
    assert slopes.std() == pytest.approx(0.2 / math.sqrt(12), rel=0.05)  # uniform on [0.1, 0.3]
    pos = np.asarray(layer(np.ones((2, 3), np.float32), training=True))
    assert np.all(pos == 1)
    with pytest.raises(ConfigError, match="lower <= upper"):
        make_layer({"type": "rrelu", "lower": 0.5, "upper": 0.1})


def test_batch_norm_model_summary_counts_match_the_notebook():
    cfg = df.load_config("configs/batch_norm.toml")
    text = df.summary(df.build_model(cfg.model))
    assert "Total params: 271,346" in text
    assert "Non-trainable params: 2,368" in text
    # BN on the 784 inputs: 4 x 784 parameters, half of them (moving mean and variance) non-trainable.
    assert "3,136" in text


def test_regularizers_constraints_and_initializers_resolve_by_keras_name():
    layer = make_layer({"type": "dense", "units": 3, "kernel_regularizer": {"name": "l1_l2", "l1": 0.1, "l2": 0.2},
                        "kernel_constraint": {"name": "max_norm", "max_value": 2.0, "axis": 0}})
    assert isinstance(layer.kernel_regularizer, keras.regularizers.L1L2)
    assert layer.kernel_regularizer.l1 == pytest.approx(0.1)
    assert isinstance(layer.kernel_constraint, keras.constraints.MaxNorm)
    assert layer.kernel_constraint.max_value == 2.0


def test_same_seed_same_initial_weights():
    cfg = df.load_config("configs/dropout.toml")
    a, b = df.build_model(cfg.model, seed=5), df.build_model(cfg.model, seed=5)
    c = df.build_model(cfg.model, seed=6)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights))
    assert not np.array_equal(a.weights[0].numpy(), c.weights[0].numpy())
