"""Every schedule against its formula written out independently in NumPy (float64),
at every step of the notebook's settings: 25 epochs × 1,719 steps (batch 32 on
55,000 images), and 1cycle at batch 128: 430 × 25 steps."""

import numpy as np
import pytest

from deepfit.errors import ConfigError
from deepfit.optim.schedules import SCHEDULES, check_schedule, make_schedule, register_schedule

SPE, EPOCHS = 1719, 25
STEPS = np.arange(SPE * EPOCHS)
RTOL = 2e-6  # the schedules compute in float32


def rates(spec, spe=SPE, epochs=EPOCHS, lr=None, steps=STEPS):
    return np.asarray(make_schedule(spec, spe, epochs, lr)(steps), np.float64)


def test_power_equals_keras2_sgd_decay_at_every_step():
    # Keras 2's SGD(lr=0.01, decay=1e-4): lr_t = lr / (1 + decay * iterations), iterations before the update.
    expected = 0.01 / (1 + 1e-4 * STEPS.astype(np.float64))
    np.testing.assert_allclose(rates({"name": "power", "decay": 1e-4}, lr=0.01), expected, rtol=RTOL)
    np.testing.assert_allclose(rates({"name": "power", "learning_rate": 0.01, "s": 1e4}), expected, rtol=RTOL)


def test_power_with_c():
    expected = 0.05 / (1 + STEPS / 3000.0) ** 2.5
    np.testing.assert_allclose(rates({"name": "power", "learning_rate": 0.05, "s": 3000, "c": 2.5}), expected,
                               rtol=RTOL)


def test_exponential_per_epoch_as_the_notebook():
    def exponential_decay_fn(epoch):  # the notebook's cell 72, lr0=0.01, s=20
        return 0.01 * 0.1 ** (epoch / 20)

    expected = np.array([exponential_decay_fn(t // SPE) for t in STEPS])
    got = rates({"name": "exponential", "learning_rate": 0.01, "s": 20})
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    # Boundaries: the rate changes exactly at the first step of each epoch.
    assert got[SPE - 1] == got[0] and got[SPE] < got[SPE - 1]


def test_exponential_per_step():
    expected = 0.01 * 0.1 ** (STEPS / SPE / 20)
    np.testing.assert_allclose(rates({"name": "exponential", "s": 20, "per_step": True}, lr=0.01), expected,
                               rtol=RTOL)


def test_piecewise_constant_as_the_notebook():
    def piecewise_constant(boundaries, values):  # the notebook's cell 77
        boundaries = np.array([0] + boundaries)
        values = np.array(values)

        def piecewise_constant_fn(epoch):
            return values[np.argmax(boundaries > epoch) - 1]

        return piecewise_constant_fn

    fn = piecewise_constant([5, 15], [0.01, 0.005, 0.001])
    expected = np.array([fn(t // SPE) for t in STEPS])
    got = rates({"name": "piecewise_constant", "boundaries": [5, 15], "values": [0.01, 0.005, 0.001]})
    np.testing.assert_allclose(got, expected, rtol=RTOL)
    b1, b2 = 5 * SPE, 15 * SPE
    np.testing.assert_allclose(got[[b1 - 1, b1, b2 - 1, b2]], [0.01, 0.005, 0.005, 0.001], rtol=RTOL)


class NotebookOneCycle:
    """The notebook's OneCycleScheduler (cell 86), transcribed with K.set_value replaced by a list."""

    def __init__(self, iterations, max_rate, start_rate=None, last_iterations=None, last_rate=None):
        self.iterations = iterations
        self.max_rate = max_rate
        self.start_rate = start_rate or max_rate / 10
        self.last_iterations = last_iterations or iterations // 10 + 1
        self.half_iteration = (iterations - self.last_iterations) // 2
        self.last_rate = last_rate or self.start_rate / 1000
        self.iteration = 0
        self.rates = []

    def _interpolate(self, iter1, iter2, rate1, rate2):
        return (rate2 - rate1) * (self.iteration - iter1) / (iter2 - iter1) + rate1

    def on_batch_begin(self):
        if self.iteration < self.half_iteration:
            rate = self._interpolate(0, self.half_iteration, self.start_rate, self.max_rate)
        elif self.iteration < 2 * self.half_iteration:
            rate = self._interpolate(self.half_iteration, 2 * self.half_iteration, self.max_rate, self.start_rate)
        else:
            rate = self._interpolate(2 * self.half_iteration, self.iterations, self.start_rate, self.last_rate)
        rate = max(rate, self.last_rate)
        self.iteration += 1
        self.rates.append(rate)


@pytest.mark.parametrize("extra", [{}, {"start_rate": 0.001, "last_rate": 1e-5, "last_iterations": 700}])
def test_one_cycle_is_the_notebooks_scheduler_at_every_step(extra):
    spe, epochs = 430, 25  # batch 128: ceil(55,000 / 128) steps an epoch
    n = spe * epochs
    ref = NotebookOneCycle(n, max_rate=0.05, **extra)
    for _ in range(n):
        ref.on_batch_begin()
    got = rates({"name": "one_cycle", "max_rate": 0.05, **extra}, spe=spe, epochs=epochs, steps=np.arange(n))
    np.testing.assert_allclose(got, ref.rates, rtol=RTOL, atol=1e-12)
    half = ref.half_iteration
    assert got.argmax() == half
    np.testing.assert_allclose(got[[0, half, 2 * half]], [ref.start_rate, 0.05, ref.start_rate], rtol=RTOL)


def test_one_cycle_with_the_notebooks_iteration_count_stays_at_last_rate_past_it():
    # The notebook passed len(X_train) // 128 * 25 = 10,725 iterations but ran 10,750 steps.
    ref = NotebookOneCycle(10725, max_rate=0.05)
    for _ in range(10750):
        ref.on_batch_begin()
    got = rates({"name": "one_cycle", "max_rate": 0.05, "iterations": 10725}, spe=430, epochs=25,
                steps=np.arange(10750))
    np.testing.assert_allclose(got, ref.rates, rtol=RTOL, atol=1e-12)
    assert np.allclose(got[-25:], 0.005 / 1000)


def test_one_cycle_momentum_095_085_095():
    spe, epochs = 430, 25
    n = spe * epochs
    last_iterations = n // 10 + 1
    half = (n - last_iterations) // 2
    t = np.arange(n, dtype=np.float64)
    # Down linearly over the first half, up over the second, then flat at the maximum.
    expected = np.where(t < half, 0.95 - 0.10 * t / half,
                        np.where(t < 2 * half, 0.85 + 0.10 * (t - half) / half, 0.95))
    sched = make_schedule({"name": "one_cycle", "max_rate": 0.05}, spe, epochs)
    np.testing.assert_allclose(np.asarray(sched.momentum(np.arange(n)), np.float64), expected, rtol=RTOL)
    assert make_schedule({"name": "one_cycle", "max_rate": 0.05, "cycle_momentum": False}, spe, epochs).momentum is None


def test_user_function_of_epoch_and_rate_as_keras_learning_rate_scheduler():
    def halve_every_5(epoch, lr):
        return lr * 0.5 if epoch and epoch % 5 == 0 else lr

    # Keras's LearningRateScheduler: at each epoch's start, lr = fn(epoch, current lr).
    lr, per_epoch = 0.02, []
    for epoch in range(EPOCHS):
        lr = halve_every_5(epoch, lr)
        per_epoch.append(lr)
    expected = np.repeat(per_epoch, SPE)
    np.testing.assert_allclose(rates(halve_every_5, lr=0.02), expected, rtol=RTOL)


def test_user_function_per_step_and_registered_by_name():
    register_schedule("test_linear_warmup", lambda step: 0.001 * min(step + 1, 100) / 100, per="step")
    try:
        got = rates("test_linear_warmup", spe=50, epochs=3, steps=np.arange(150))
        np.testing.assert_allclose(got, 0.001 * np.minimum(np.arange(150) + 1, 100) / 100, rtol=RTOL)
        check_schedule({"name": "test_linear_warmup"})
    finally:
        SCHEDULES._entries.pop("test_linear_warmup")
        SCHEDULES._lookup.pop("test_linear_warmup")


def test_schedules_take_plain_ints():
    s = make_schedule({"name": "exponential", "s": 20}, SPE, EPOCHS, 0.01)
    assert float(s(0)) == pytest.approx(0.01) and float(s(20 * SPE)) == pytest.approx(0.001)


@pytest.mark.parametrize("spec, words", [
    ({"name": "power"}, "exactly one of s"),
    ({"name": "power", "s": -1}, "s must be a positive"),
    ({"name": "exponental"}, "Did you mean 'exponential'"),
    ({"name": "exponential", "lr0": 0.1}, "no parameter 'lr0'"),
    ({"name": "piecewise_constant", "boundaries": [5], "values": [0.1]}, "one more entry"),
    ({"name": "piecewise_constant", "boundaries": [15, 5], "values": [1, 2, 3]}, "must increase"),
    ({"name": "one_cycle", "max_rate": 0}, "max_rate must be a positive"),
    ({"name": "one_cycle", "min_momentum": 1.5}, "min_momentum"),
    ({"name": "reduce_on_plateau"}, "reduce_lr_on_plateau"),
])
def test_bad_specs_fail_at_validation_naming_the_field(spec, words):
    with pytest.raises(ConfigError, match=words):
        check_schedule(spec)
