"""reduce_lr_on_plateau against Keras's own ReduceLROnPlateau fed the same metric sequence,
its state round trip, and an end-to-end run composing it with a schedule."""

import deepfit as df  # noqa: F401  (sets KERAS_BACKEND=jax before keras loads)
import jax.numpy as jnp
import keras
import numpy as np
import pytest

from deepfit.errors import ConfigError
from deepfit.train.callbacks import make_callback
from deepfit.train.state import TrainState


class FakeTrainer:
    """What the callback touches: the state's lr_scale and the rate the last step used."""

    def __init__(self, base: float):
        self.base = base
        self.state = TrainState((), (), (), jnp.zeros((), jnp.int32), jnp.ones((), jnp.float32),
                                jnp.zeros((3,), jnp.float32))

    @property
    def learning_rate(self) -> float:
        return float(np.float32(self.base) * self.state.lr_scale)


def keras_rates(values, base, **kwargs):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(base), loss="mse")
    cb = keras.callbacks.ReduceLROnPlateau(**kwargs)
    cb.set_model(model)
    cb.on_train_begin()
    out = []
    for epoch, v in enumerate(values):
        cb.on_epoch_end(epoch, {"val_loss": v})
        out.append(float(model.optimizer.learning_rate))
    return out


def sequence(seed, n=40):
    rng = np.random.default_rng(seed)
    # Plateaus (repeats), tiny gains below min_delta, real gains and rises.
    steps = rng.choice([0.0, -1e-5, -0.01, 0.02], size=n, p=[0.3, 0.2, 0.3, 0.2])
    return list(1.0 + np.cumsum(steps))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kwargs", [
    {"factor": 0.5, "patience": 5},  # the notebook's cell 81
    {"factor": 0.5, "patience": 2, "cooldown": 3, "min_lr": 0.004},
    {"factor": 0.1, "patience": 0, "min_delta": 0.0},
    {"factor": 0.3, "patience": 1, "min_delta": 0.015, "cooldown": 1},
])
def test_matches_keras_reduce_lr_on_plateau(seed, kwargs):
    values = sequence(seed)
    expected = keras_rates(values, 0.02, **kwargs)
    trainer, cb = FakeTrainer(0.02), make_callback({"name": "reduce_lr_on_plateau", **kwargs})
    got = []
    for epoch, v in enumerate(values):
        cb.on_epoch_end(trainer, epoch, {"val_loss": v})
        got.append(trainer.learning_rate)
    # atol: the lr_scale product is computed by XLA, which flushes float32 subnormals (< 1.2e-38) to zero.
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-30)


def test_state_dict_resumes_exactly():
    values = sequence(7)
    trainer, cb = FakeTrainer(0.02), make_callback({"name": "reduce_on_plateau", "factor": 0.5, "patience": 2,
                                                    "cooldown": 1})
    for epoch, v in enumerate(values[:20]):
        cb.on_epoch_end(trainer, epoch, {"val_loss": v})
    resumed = make_callback({"name": "reduce_on_plateau", "factor": 0.5, "patience": 2, "cooldown": 1})
    resumed.load_state_dict(cb.state_dict())
    other = FakeTrainer(0.02)
    other.state = trainer.state  # lr_scale travels in the train state
    for epoch, v in enumerate(values[20:], start=20):
        cb.on_epoch_end(trainer, epoch, {"val_loss": v})
        resumed.on_epoch_end(other, epoch, {"val_loss": v})
        assert other.learning_rate == trainer.learning_rate


def test_bad_arguments_and_missing_metric():
    with pytest.raises(ConfigError, match="factor"):
        make_callback({"name": "reduce_lr_on_plateau", "factor": 1.5})
    cb = make_callback({"name": "reduce_lr_on_plateau", "monitor": "val_los"})
    with pytest.raises(ValueError, match="val_los"):
        cb.on_epoch_end(FakeTrainer(0.1), 0, {"val_loss": 1.0})


def test_end_to_end_composes_with_a_schedule():
    # patience 0 and min_delta 10: every epoch after the first is a plateau, so the rate halves each epoch
    # from the second epoch on (the first always improves), on top of the exponential schedule.
    cfg = {"seed": 1, "data": {"train_size": 600, "validation_size": 200, "scaling": "standardize"},
           "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 16, "activation": "selu"},
                                {"type": "dense", "units": 10, "activation": "softmax"}]},
           "training": {"epochs": 4, "batch_size": 100, "progress": False,
                        "optimizer": {"name": "sgd", "learning_rate": 0.01},
                        "schedule": {"name": "exponential", "s": 2},
                        "callbacks": [{"name": "reduce_lr_on_plateau", "factor": 0.5, "patience": 0,
                                       "min_delta": 10.0}]}}
    run = df.train(cfg, save=False)
    e = np.arange(4)
    np.testing.assert_allclose(run.history["learning_rate"], 0.01 * 0.1 ** (e / 2) * 0.5 ** np.maximum(e - 1, 0),
                               rtol=1e-6)
