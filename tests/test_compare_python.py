"""compare from a notebook cell: variants as functions seed -> compiled model, data as arrays, no TOML."""

import keras
import numpy as np
import pytest

import deepfit
from deepfit.errors import ConfigError


def make(activation):
    def build(seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                                  keras.layers.Dense(16, activation=activation, kernel_initializer="he_normal"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model
    return build


@pytest.fixture
def arrays(tiny_arrays):
    (x, y), (xt, yt) = tiny_arrays
    return ((x / 255.0).astype("float32"), y), ((xt / 255.0).astype("float32"), yt)


def test_functions_and_arrays_give_the_experiment_result(arrays, tmp_path):
    result = deepfit.compare({"relu": make("relu"), "tanh": make("tanh")}, data=arrays, seeds=2, epochs=2,
                             out=tmp_path / "e", backend="local", log=lambda s: None)
    assert sorted(result.finals["variant"]) == ["relu", "relu", "tanh", "tanh"]
    summary = result.summary()
    assert set(summary["variant"]) == {"relu", "tanh"}
    assert len(result.comparisons()) == 1  # tanh against the reference, relu
    view = result.report()
    assert "<html" in view._repr_html_().lower() and "relu" in repr(view)
    # Each run is a plain config: the network the function built, trained from the run's seed.
    run = deepfit.load_run(tmp_path / "e" / "runs" / "tanh" / "seed-1")
    assert run.config.seed == 1 and "tanh" in run.config.model.architecture
    assert run.config.data.validation_split == pytest.approx(0.1)
    # The same function and seed trained alone by deepfit.train give the same weights.
    alone = deepfit.train(run.config, data=None, save=False)
    for a, b in zip(alone.model.get_weights(), run.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_function_that_builds_different_networks_per_seed_is_refused(arrays, tmp_path):
    def unstable(seed):
        model = make("relu")(seed)
        return model if seed == 0 else make("tanh")(seed)

    with pytest.raises(ConfigError, match="different network"):
        deepfit.compare({"x": unstable}, data=arrays, seeds=2, out=tmp_path / "e", backend="local")


def test_a_custom_layer_of_this_process_cannot_go_to_a_pool(arrays, tmp_path):
    @keras.saving.register_keras_serializable(package="notebook_cp")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    def build(seed):
        model = make("relu")(seed)
        model = keras.Sequential([keras.Input((8, 8)), Twice(), *model.layers])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    with pytest.raises(ConfigError, match=r"uses 'notebook_cp>Twice', a class defined in this process.*backend='local'"):
        deepfit.compare({"twice": build}, data=arrays, seeds=1, out=tmp_path / "e", backend="pool")


def test_an_uncompiled_model_is_named(arrays, tmp_path):
    with pytest.raises(ConfigError, match="variant 'raw': the model is not compiled"):
        deepfit.compare({"raw": lambda s: keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                                                             keras.layers.Dense(3)])},
                        data=arrays, seeds=1, out=tmp_path / "e")
