"""deepfit.make_optimizer through deepfit's compiled step vs each update rule written in NumPy."""

import numpy as np
import pytest

import deepfit as df
from deepfit.errors import ConfigError

rng = np.random.default_rng(0)
X = rng.normal(size=(8, 5)).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1, 2, 2, 1])
W0 = rng.normal(scale=0.5, size=(5, 3)).astype(np.float32)
B0 = rng.normal(scale=0.1, size=3).astype(np.float32)
STEPS = 4


def grads(w, b):
    """Softmax cross-entropy (mean over the batch) and its gradients."""
    z = X @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = p.copy()
    d[np.arange(len(Y)), Y] -= 1
    d /= len(Y)
    return X.T @ d, d.sum(0)


def numpy_run(rule, **hp):
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    slots = [dict() for _ in params]
    for t in range(1, STEPS + 1):
        for p, g, s in zip(params, grads(*params), slots):
            p -= rule(g, s, t, **hp)
    return params


def sgd(g, s, t, lr, momentum=0.0, nesterov=False):
    if momentum == 0:
        return lr * g
    s["m"] = momentum * s.get("m", 0) - lr * g
    return -(momentum * s["m"] - lr * g) if nesterov else -s["m"]


def adam(g, s, t, lr, b1=0.9, b2=0.999, eps=1e-7):
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    return alpha * s["m"] / (np.sqrt(s["v"]) + eps)


def rmsprop(g, s, t, lr, rho=0.9, eps=1e-7):
    s["v"] = rho * s.get("v", 0) + (1 - rho) * g * g
    return lr * g / np.sqrt(s["v"] + eps)


def adagrad(g, s, t, lr, init=0.1, eps=1e-7):
    s["a"] = s.get("a", init) + g * g
    return lr * g / np.sqrt(s["a"] + eps)


def adamax(g, s, t, lr, b1=0.9, b2=0.999, eps=1e-7):
    s["m"] = s.get("m", 0) + (g - s.get("m", 0)) * (1 - b1)
    s["u"] = np.maximum(b2 * s.get("u", 0), np.abs(g))
    return lr * s["m"] / ((1 - b1**t) * (s["u"] + eps))


def nadam(g, s, t, lr, b1=0.9, b2=0.999, eps=1e-7):
    """Keras 3's Nadam: momentum schedule mu_t = b1 (1 - 0.5 * 0.96**t)."""
    mu = lambda k: b1 * (1 - 0.5 * 0.96**k)  # noqa: E731
    if s.get("t") != t:  # the product of mu is shared by all variables of a step
        s["prod"] = s.get("prod", 1.0) * mu(t)
        s["t"] = t
    prod_t, prod_t1 = s["prod"], s["prod"] * mu(t + 1)
    s["m"] = s.get("m", 0) + (g - s.get("m", 0)) * (1 - b1)
    s["v"] = s.get("v", 0) + (g * g - s.get("v", 0)) * (1 - b2)
    m_hat = mu(t + 1) * s["m"] / (1 - prod_t1) + (1 - mu(t)) * g / (1 - prod_t)
    v_hat = s["v"] / (1 - b2**t)
    return lr * m_hat / (np.sqrt(v_hat) + eps)


def deepfit_run(spec):
    model = df.build_model({"input_shape": [5], "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]})
    model.set_weights([W0, B0])
    trainer = df.Trainer(model, df.make_optimizer(spec), batch_size=8, epochs=STEPS, shuffle=False)
    trainer.fit(X, Y)
    return [w.numpy() for w in model.weights]


CASES = [
    ({"name": "sgd", "learning_rate": 0.1}, sgd, {"lr": 0.1}),
    ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}, sgd, {"lr": 0.1, "momentum": 0.9}),
    ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, sgd,
     {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ({"name": "adam", "learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99}, adam, {"lr": 0.01, "b1": 0.8, "b2": 0.99}),
    ({"name": "rmsprop", "learning_rate": 0.01, "rho": 0.8}, rmsprop, {"lr": 0.01, "rho": 0.8}),
    ({"name": "adagrad", "learning_rate": 0.1}, adagrad, {"lr": 0.1}),
    ({"name": "adamax", "learning_rate": 0.02}, adamax, {"lr": 0.02}),
    ({"name": "nadam", "learning_rate": 0.01}, nadam, {"lr": 0.01}),
]


@pytest.mark.parametrize("spec, rule, hp", CASES, ids=[f"{c[0]['name']}-{i}" for i, c in enumerate(CASES)])
def test_first_steps_follow_the_update_rule(spec, rule, hp):
    expected = numpy_run(rule, **hp)
    got = deepfit_run(spec)
    for start, e, g in zip((W0, B0), expected, got):
        assert np.abs(e - start).max() > 1e-3  # the rule moved the weights: the comparison means something
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-6)


def test_keras2_argument_names_get_a_pointer_to_keras3():
    with pytest.raises(ConfigError, match="learning_rate"):
        df.make_optimizer({"name": "sgd", "lr": 0.1})
    with pytest.raises(ConfigError, match="power"):
        df.make_optimizer({"name": "sgd", "decay": 1e-4})
    with pytest.raises(ConfigError, match="Did you mean 'momentum'"):
        df.make_optimizer({"name": "sgd", "momentun": 0.9})
