"""A Keras model handed to deepfit.train: what trains is what the run records, compile arguments used."""

import json

import keras
import numpy as np
import pytest

import deepfit
from deepfit.errors import ConfigError
from tests.conftest import tiny_config


def notebook_model(compiled=True, input_layer=True, optimizer=None):
    keras.utils.set_random_seed(7)
    layers = [keras.layers.Flatten(), keras.layers.Dense(12, activation="elu", kernel_initializer="he_normal"),
              keras.layers.Dense(3, activation="softmax")]
    model = keras.models.Sequential(([keras.layers.Input(shape=[8, 8])] if input_layer else []) + layers)
    if compiled:
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      optimizer=optimizer or keras.optimizers.Nadam(learning_rate=0.01))
    return model


def test_the_run_records_the_model_and_its_compile_arguments(tiny_arrays, tmp_path):
    run = deepfit.train(tiny_config(), tmp_path / "run", model=notebook_model(), data=tiny_arrays)
    assert isinstance(run.trainer.optimizer, keras.optimizers.Nadam)  # not the config's SGD
    assert float(run.trainer.optimizer.learning_rate) == pytest.approx(0.01)
    again = deepfit.load_config(tmp_path / "run" / "config.toml")
    assert again.training.optimizer["name"] == "nadam" and again.training.optimizer["learning_rate"] == pytest.approx(0.01)
    assert again.model.layers == [] and "elu" in again.model.architecture
    # Rerunning the recorded config trains the same network (12 ELU units), not the config's 16 ReLU units.
    rerun = deepfit.train(again, data=tiny_arrays, save=False)
    assert [l.get_config().get("units") for l in rerun.model.layers] == [None, 12, 3]
    assert rerun.model.layers[1].get_config()["activation"] == "elu"
    assert isinstance(rerun.trainer.optimizer, keras.optimizers.Nadam)


def test_a_loaded_run_is_compiled_and_evaluates(tiny_arrays, tmp_path):
    run = deepfit.train(tiny_config(), tmp_path / "run", data=tiny_arrays)
    loaded = deepfit.load_run(tmp_path / "run")
    data = deepfit.load_data(run.config.data, arrays=tiny_arrays)
    loss, acc = loaded.model.evaluate(data.x_test, data.y_test, verbose=0)
    assert loss == pytest.approx(run.final["test_loss"], rel=1e-5)
    assert acc == pytest.approx(run.final["test_accuracy"])


def test_a_sequential_without_input_is_built_on_the_configs_input_shape(tiny_arrays):
    run = deepfit.train(tiny_config(), model=notebook_model(input_layer=False), data=tiny_arrays, save=False)
    assert run.history_rows[-1]["val_accuracy"] > 0.8


def test_a_registered_custom_layer_reloads(tiny_arrays, tmp_path):
    @keras.saving.register_keras_serializable(package="notebook")
    class MCDropout(keras.layers.Dropout):
        def call(self, inputs, training=None):
            return super().call(inputs, training=True)

    model = notebook_model(compiled=False)
    model = keras.Sequential([keras.layers.Input(shape=[8, 8]), *model.layers[:2], MCDropout(0.1),
                              model.layers[-1]])
    run = deepfit.train(tiny_config(), tmp_path / "run", model=model, data=tiny_arrays)
    loaded = deepfit.load_run(tmp_path / "run")
    assert type(loaded.model.layers[2]).__name__ == "MCDropout"
    for a, b in zip(run.model.get_weights(), loaded.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_loss_defined_outside_keras_is_refused_not_ignored(tiny_arrays):
    model = notebook_model(compiled=False)

    def my_loss(y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

    model.compile(optimizer="sgd", loss=my_loss)
    with pytest.raises(ConfigError, match="loss 'my_loss', defined outside Keras.*deepfit.fit"):
        deepfit.train(tiny_config(), model=model, data=tiny_arrays, save=False)
