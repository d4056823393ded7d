"""Freeze schedules in deepfit's loop: frozen weights and BN statistics stay bit-identical."""

import deepfit as df  # first: it selects Keras's JAX backend

import keras
import numpy as np
import pytest

from deepfit.train.callbacks.freeze_schedule import FreezeSchedule
from deepfit.train.events import Callback
from deepfit.train.loop import Trainer


def model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(8, activation="relu", name="h1"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(3, activation="softmax", name="out"),
    ])


def data(n=64):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(n, 5)) * 2 + 1).astype(np.float32)
    return x, rng.integers(0, 3, n).astype(np.int32)


def values(m):
    """Every variable by layer/name, as NumPy, from the Keras variables."""
    return {v.path.split("/", 1)[1]: np.array(v.value) for v in m.weights}


class Snapshots(Callback):
    """Per-epoch values of every variable, read from the trainer's state with its own split."""

    order = 1000

    def __init__(self):
        self.epochs, self.optimizers = [], []

    def on_epoch_end(self, trainer, epoch, logs):
        # by Keras's "layer/variable" path, as values() keys them
        self.epochs.append({trainer.layout.variables[k].path.split("/", 1)[1]: np.array(x)
                            for k, x in trainer.state.variables.items()})
        self.optimizers.append(int(trainer.state.optimizer["iteration"]))


def run(phases, batch_norm="inference", epochs=2):
    m = model()
    before = values(m)
    snaps = Snapshots()
    sched = FreezeSchedule(phases, head=1, batch_norm=batch_norm)
    trainer = Trainer(m, keras.optimizers.SGD(0.1), batch_size=16, epochs=epochs, seed=1,
                      callbacks=[sched, snaps])
    trainer.fit(*data())
    return before, snaps, trainer


FROZEN_BODY = ["h1/kernel", "h1/bias", "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]


def test_frozen_weights_and_bn_statistics_are_bit_identical_then_learn_when_unfrozen():
    before, snaps, trainer = run([{"epochs": 1, "trainable": "head"}, {"epochs": 1, "trainable": "all"}])
    first, second = snaps.epochs
    for name in FROZEN_BODY:
        np.testing.assert_array_equal(first[name], before[name], err_msg=name)
    assert not np.array_equal(first["out/kernel"], before["out/kernel"])
    for name in FROZEN_BODY:
        assert not np.array_equal(second[name], first[name]), name
    # Epochs, history and the clock continue across phases; each phase starts a fresh optimizer
    # (the notebook recompiles), so Keras's iteration count restarts.
    assert [row["epoch"] for row in trainer.history] == [1, 2]
    assert [row["phase"] for row in trainer.history] == [1, 2]
    assert int(trainer.state.step) == 8
    assert snaps.optimizers == [4, 4]
    assert int(trainer.optimizer.iterations.numpy()) == 4
    assert [v.path for v in trainer.model.trainable_variables] == [v.path for v in trainer.model.weights
                                                                    if "moving" not in v.path]


def test_trainable_batch_norm_keeps_learning_while_the_rest_is_frozen():
    before, snaps, _ = run([{"epochs": 1, "trainable": "head"}], batch_norm="trainable", epochs=1)
    (first,) = snaps.epochs
    for name in ["h1/kernel", "h1/bias"]:
        np.testing.assert_array_equal(first[name], before[name])
    for name in ["bn/gamma", "bn/moving_mean", "bn/moving_variance", "out/kernel"]:
        assert not np.array_equal(first[name], before[name]), name


def test_frozen_phase_matches_keras_fit():
    # Keras's own rule, run by Keras: freeze all but the head, compile, fit one epoch in order.
    x, y = data()
    ref = model()
    for layer in ref.layers[:-1]:
        layer.trainable = False
    ref.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    ref.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    m = model()
    sched = FreezeSchedule([{"epochs": 1, "trainable": "head"}])
    Trainer(m, keras.optimizers.SGD(0.1), batch_size=16, epochs=1, shuffle=False, callbacks=[sched]).fit(x, y)
    got, want = values(m), values(ref)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_the_last_phase_lasts_until_training_ends():
    s = FreezeSchedule([{"epochs": 2, "trainable": "head"}, {"epochs": 1, "trainable": "all"}])
    assert [s.phase_at(e) for e in range(5)] == [0, 0, 1, 1, 1]


def config(**training):
    return {"model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 2}]}, "training": training}


def test_freeze_config_is_validated():
    cfg = df.load_config(config(freeze=[{"epochs": 4, "trainable": "head"}, {"epochs": 16, "trainable": [0, "d"]}]))
    assert cfg.training.freeze[1].trainable == [0, "d"]
    assert cfg.training.frozen_batch_norm == "inference"
    with pytest.raises(df.ConfigError, match="training.freeze.0.trainable"):
        df.load_config(config(freeze=[{"epochs": 4, "trainable": "body"}]))
    with pytest.raises(df.ConfigError, match="training.freeze.0.epochs"):
        df.load_config(config(freeze=[{"epochs": 0, "trainable": "all"}]))
    with pytest.raises(df.ConfigError, match="frozen_batch_norm"):
        df.load_config(config(frozen_batch_norm="train"))


def test_an_unknown_layer_in_a_phase_fails_before_the_run_directory_is_made(tmp_path):
    x = np.zeros((40, 2, 2), np.uint8)
    cfg = {"data": {"source": "arrays", "validation_size": 10},
           "model": {"input_shape": [2, 2], "layers": [{"type": "flatten"}, {"type": "dense", "units": 2}]},
           "training": {"freeze": [{"epochs": 1, "trainable": ["dense", "dens"]}], "progress": False}}
    with pytest.raises(df.ConfigError, match=r"training.freeze.0.trainable: no layer named 'dens'"):
        df.train(cfg, tmp_path / "run", data=((x, np.zeros(40, int)), (None, None)))
    assert not (tmp_path / "run").exists()
