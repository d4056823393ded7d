"""Scheduled-momentum optimizers: equal to Keras's own with a constant schedule,
and following 1cycle's momentum (SGD) / beta_1 (Nadam) against NumPy updates."""

import deepfit  # noqa: F401  (sets KERAS_BACKEND=jax before keras loads)
import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from deepfit.config import load_config
from deepfit.errors import ConfigError
from deepfit.optim import momentum as scheduled
from deepfit.optim.optimizers import make_optimizer
from deepfit.optim.plan import make_optimizer_and_schedule
from deepfit.optim.schedules import make_schedule

SHAPES = [(4, 3), (3,)]


def grads_for(step):
    rng = np.random.default_rng(step)
    return [rng.normal(size=s).astype(np.float32) for s in SHAPES]


def run(optimizer, steps=6, lr_of_step=None):
    """Apply `steps` fixed pseudo-random gradients with stateless_apply under jit, as the trainer does."""
    variables = [keras.Variable(np.linspace(-1, 1, int(np.prod(s)), dtype=np.float32).reshape(s)) for s in SHAPES]
    optimizer.build(variables)
    train = [v.value for v in variables]
    opt_vars = [v.value for v in optimizer.variables]
    lr_index = next(i for i, v in enumerate(optimizer.variables) if v is optimizer._learning_rate)
    apply = jax.jit(optimizer.stateless_apply)
    for step in range(steps):
        if lr_of_step is not None:
            opt_vars[lr_index] = jnp.asarray(lr_of_step(step), jnp.float32)
        train, opt_vars = apply(opt_vars, grads_for(step), train)
    return [np.asarray(t) for t in train]


KERAS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
         "nadam": keras.optimizers.Nadam, "adamax": keras.optimizers.Adamax}


@pytest.mark.parametrize("name, kwargs", [
    ("sgd", {"learning_rate": 0.05, "momentum": 0.9}),
    ("sgd", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    ("adam", {"learning_rate": 0.01, "beta_1": 0.9}),
    ("adamw", {"learning_rate": 0.01, "beta_1": 0.9, "weight_decay": 0.01}),
    ("nadam", {"learning_rate": 0.01, "beta_1": 0.9}),
    ("adamax", {"learning_rate": 0.01, "beta_1": 0.9}),
])
def test_constant_schedule_equals_keras_exactly(name, kwargs):
    const = kwargs.get("momentum", kwargs.get("beta_1"))
    expected = run(KERAS[name](**kwargs))
    got = run(make_optimizer({"name": name, **kwargs}, momentum_schedule=lambda it: const))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("name", ["sgd", "nadam"])
def test_constant_jnp_schedule_equals_keras_exactly(name):
    # SGD and Nadam cast the momentum to float32 before any arithmetic, so a traced float32 is bit-identical.
    kwargs = {"learning_rate": 0.01, ("momentum" if name == "sgd" else "beta_1"): 0.9}
    expected = run(KERAS[name](**kwargs))
    got = run(make_optimizer({"name": name, **kwargs}, momentum_schedule=lambda it: jnp.full((), 0.9, jnp.float32)))
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_constant_jnp_schedule_adam_within_float32_rounding():
    # Keras's Adam computes `1 - self.beta_1`: in float64 for a Python 0.9, in float32 for a
    # traced one (0.1 vs 0.10000002), so the two agree to float32 rounding, not bit for bit.
    expected = run(keras.optimizers.Adam(0.01))
    got = run(scheduled.Adam(0.01, momentum_schedule=lambda it: jnp.full((), 0.9, jnp.float32)))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)


ONE_CYCLE = make_schedule({"name": "one_cycle", "max_rate": 0.05}, 5, 4)  # 20 iterations


def test_one_cycle_sgd_momentum_follows_the_schedule():
    n = 20
    half = (n - (n // 10 + 1)) // 2
    mom = lambda t: np.interp(t, [0, half, 2 * half], [0.95, 0.85, 0.95])  # noqa: E731
    lr = lambda t: float(ONE_CYCLE(t))  # noqa: E731
    # NumPy SGD with a per-step momentum: v = m_t v - lr_t g; w += v.
    w = [np.linspace(-1, 1, int(np.prod(s))).reshape(s) for s in SHAPES]
    v = [np.zeros(s) for s in SHAPES]
    for t in range(n):
        for i, g in enumerate(grads_for(t)):
            v[i] = mom(t) * v[i] - lr(t) * g
            w[i] = w[i] + v[i]
    opt = make_optimizer({"name": "sgd", "learning_rate": 0.01}, momentum_schedule=ONE_CYCLE.momentum)
    got = run(opt, steps=n, lr_of_step=lr)
    for g, e in zip(got, w):
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=1e-6)


def numpy_nadam(n, lr, beta_1_of, beta_2=0.999, eps=1e-7, k=1.0):
    """Nadam (Dozat 2016) as Keras writes it, in float64, with beta_1 varying per step and decay 0.96^(k t)."""
    w = [np.linspace(-1, 1, int(np.prod(s))).reshape(s) for s in SHAPES]
    m = [np.zeros(s) for s in SHAPES]
    v = [np.zeros(s) for s in SHAPES]
    u_product = 1.0
    for it in range(n):
        t = it + 1
        b1 = beta_1_of(it)
        u_t = b1 * (1 - 0.5 * 0.96 ** (k * t))
        u_next = b1 * (1 - 0.5 * 0.96 ** (k * (t + 1)))
        u_product *= u_t
        for i, g in enumerate(grads_for(it)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            m_hat = u_next * m[i] / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
            v_hat = v[i] / (1 - beta_2 ** t)
            w[i] = w[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w


@pytest.mark.parametrize("decay, k", [("keras", 1.0), ("notebook", 0.004)])
def test_one_cycle_nadam_beta_1_follows_the_schedule_beta_2_does_not(decay, k):
    n = 20
    opt = make_optimizer({"name": "nadam", "learning_rate": 0.01, "momentum_decay": decay},
                         momentum_schedule=ONE_CYCLE.momentum)
    got = run(opt, steps=n)
    expected = numpy_nadam(n, 0.01, lambda it: float(ONE_CYCLE.momentum(it)), k=k)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
    assert opt.beta_2 == 0.999
    # And not the constant beta_1: the same run with beta_1 fixed at 0.9 lands elsewhere.
    fixed = numpy_nadam(n, 0.01, lambda it: 0.9, k=k)
    assert not np.allclose(got[0], fixed[0], rtol=1e-4)


def test_nadam_notebook_decay_without_schedule_matches_numpy():
    got = run(make_optimizer({"name": "nadam", "learning_rate": 0.01, "momentum_decay": "notebook"}), steps=8)
    for g, e in zip(got, numpy_nadam(8, 0.01, lambda it: 0.9, k=0.004)):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


def test_bad_nadam_decay_and_unsupported_optimizer():
    with pytest.raises(ConfigError, match="momentum_decay"):
        make_optimizer({"name": "nadam", "momentum_decay": "paper"})
    with pytest.raises(ConfigError, match="no momentum to schedule"):
        make_optimizer("rmsprop", momentum_schedule=lambda it: 0.9)


BASE = {"model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]}}


def test_config_with_one_cycle_gets_momentum_cycling():
    cfg = load_config({**BASE, "training": {"optimizer": {"name": "sgd"},
                                            "schedule": {"name": "one_cycle", "max_rate": 0.05}}})
    opt, sched = make_optimizer_and_schedule(cfg.training, 430)
    assert isinstance(opt, scheduled.SGD) and opt.momentum_schedule is sched.momentum
    cfg = load_config({**BASE, "training": {"optimizer": {"name": "rmsprop"},
                                            "schedule": {"name": "one_cycle", "max_rate": 0.05}}})
    with pytest.warns(UserWarning, match="no momentum"):
        opt, sched = make_optimizer_and_schedule(cfg.training, 430)
    assert type(opt) is keras.optimizers.RMSprop and sched.momentum is None
