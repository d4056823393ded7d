"""Data augmentation in configs and in deepfit's compiled loop: Keras's image preprocessing layers,
random in training, the identity in evaluation, their seed state in the training state (resumable)."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from reliability_fixtures import tiny_arrays, tiny_config

import deepfit as df
from deepfit.nn.build import build_model, reseed_noise

DATA = tiny_arrays()
AUGMENT = [
    {"type": "reshape", "target_shape": [8, 8, 1]},
    {"type": "random_translation", "height_factor": 0.125, "width_factor": 0.125},
    {"type": "random_rotation", "factor": 0.05},
    {"type": "random_zoom", "height_factor": 0.1},
    {"type": "random_flip", "mode": "horizontal"},
]


def augmented_config(**training):
    cfg = tiny_config(**training)
    cfg["model"]["layers"] = AUGMENT + cfg["model"]["layers"]
    return cfg


def test_the_augmentation_layers_are_keras_layers_by_name():
    model = build_model(augmented_config()["model"], seed=0)
    kinds = [type(layer) for layer in model.layers[:5]]
    assert kinds == [keras.layers.Reshape, keras.layers.RandomTranslation, keras.layers.RandomRotation,
                     keras.layers.RandomZoom, keras.layers.RandomFlip]
    assert reseed_noise(model, 7) == 5  # four augmentation layers and the dropout follow the noise seed


def test_augmentation_samples_in_training_and_is_the_identity_in_evaluation(tmp_path):
    run = df.train(augmented_config(epochs=1), data=DATA, save=False)
    steps, state = run.trainer.steps, run.trainer.state
    # State keys are position and path (state.py): the layers follow the Reshape.
    assert {k for k in state.buffers if "seed_generator_state" in k} >= {
        "1.random_translation/seed_generator_state", "2.random_rotation/seed_generator_state",
        "3.random_zoom/seed_generator_state", "4.random_flip/seed_generator_state"}
    x = np.asarray(run.trainer.x_all[:64])
    translation = "1.random_translation/seed_generator_state"
    trained_a, _, _ = steps.call(state.variables, x, training=True)
    trained_b, _, _ = steps.call({**state.variables, translation: state.variables[translation] + 1}, x,
                                 training=True)
    assert np.abs(np.asarray(trained_a) - np.asarray(trained_b)).max() > 1e-3  # another draw, other images
    # Evaluation: the same weights without the augmentation layers give the same outputs, to the bit.
    plain = build_model(tiny_config()["model"], seed=0)
    for layer in plain.layers:
        source = run.model.get_layer(layer.name)
        layer.set_weights(source.get_weights())
    inference = np.asarray(steps.forward(state.variables, x))
    np.testing.assert_array_equal(inference, np.asarray(plain(x, training=False)))
    xv, yv = run.trainer.x_all[:100], run.trainer.y_all[:100]
    loss, acc = run.trainer.evaluate(xv, yv)
    plain.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    keras_loss, keras_acc = plain.evaluate(np.asarray(xv), np.asarray(yv), verbose=0)
    assert (loss, acc) == pytest.approx((keras_loss, keras_acc), abs=1e-6)


def test_augmented_training_resumed_is_bit_identical(tmp_path):
    straight = df.train(augmented_config(epochs=3, steps_per_chunk=5), data=DATA, out=tmp_path / "straight")
    df.train(augmented_config(epochs=1, steps_per_chunk=5), data=DATA, out=tmp_path / "resumed")
    resumed = df.train(augmented_config(epochs=3, steps_per_chunk=5), data=DATA, out=tmp_path / "resumed",
                       resume=True)
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))
    assert (tmp_path / "straight" / "metrics.csv").read_bytes() == (tmp_path / "resumed" / "metrics.csv").read_bytes()


def test_augmentation_changes_training_and_follows_the_seed():
    a = df.train(augmented_config(epochs=1), data=DATA, save=False).history["loss"].iloc[0]
    again = df.train(augmented_config(epochs=1), data=DATA, save=False).history["loss"].iloc[0]
    cfg = tiny_config(epochs=1)
    cfg["model"]["layers"] = [AUGMENT[0], *cfg["model"]["layers"]]  # the reshape alone: no augmentation
    plain = df.train(cfg, data=DATA, save=False).history["loss"].iloc[0]
    assert a == again  # same seed, same draws
    assert a != plain


def test_augmentation_runs_without_tensorflow():
    code = ("import sys, deepfit as df; from reliability_fixtures import tiny_arrays; "
            "from test_augmentation import augmented_config; "
            "df.train(augmented_config(epochs=1), data=tiny_arrays(), save=False); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(__import__("pathlib").Path(__file__).parent))
    assert result.returncode == 0, result.stderr[-2000:]
