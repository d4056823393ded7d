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


def test_i20_05_a_functions_pretrained_weights_are_recorded_and_every_run_starts_from_them(arrays, tmp_path):
    keras.utils.set_random_seed(100)
    pretrained = keras.layers.Dense(16, activation="relu")
    pretrained.build((None, 64))
    made = {}

    def transfer(seed):  # the notebook's transfer learning: a trained layer reused, a new head on top
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.layers[1].set_weights(pretrained.get_weights())
        model.layers[1].trainable = False
        # A rate so small that a step changes no nonzero weight: the runs end where they started.
        model.compile(optimizer=keras.optimizers.SGD(1e-30), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        made[seed] = model.get_weights()
        return model

    lines = []
    deepfit.compare({"transfer": transfer, "fresh": make("relu")}, data=arrays, seeds=2, epochs=1,
                    out=tmp_path / "e", backend="group", log=lines.append)
    for seed in (0, 1):
        run = deepfit.load_run(tmp_path / "e" / "runs" / "transfer" / f"seed-{seed}")
        for a, b in zip(run.model.get_weights(), made[seed]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-20)
        np.testing.assert_array_equal(run.model.get_weights()[0], pretrained.get_weights()[0])
        assert run.config.model.initial_weights.endswith(f"weights/transfer/seed-{seed}.safetensors")
    assert sum("'transfer': the function's initial weights are not the seed's fresh" in line for line in lines) == 1
    # A seeded function is its config: nothing more recorded.
    fresh = deepfit.load_run(tmp_path / "e" / "runs" / "fresh" / "seed-0")
    assert fresh.config.model.initial_weights is None and not (tmp_path / "e" / "weights" / "fresh").exists()
    # The recorded file is checked: a changed one is refused, not trained from.
    weights = tmp_path / "e" / "weights" / "transfer" / "seed-0.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\1\1\1\1")
    run = deepfit.load_run(tmp_path / "e" / "runs" / "transfer" / "seed-0")
    with pytest.raises(ConfigError, match="initial_weights .*sha256 does not match"):
        deepfit.train(run.config, save=False)


def test_i20_25_a_notebook_layer_is_registered_for_the_user_and_said_in_one_line(arrays, tmp_path):
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    Twice.__module__ = "__main__"  # as defined in a notebook cell, not registered

    def build(seed):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((8, 8)), Twice(), keras.layers.Flatten(),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    lines = []
    with pytest.raises(ConfigError, match=r"uses '__main__>Twice', a class defined in this process.*backend='local'"):
        deepfit.compare({"twice": build}, data=arrays, seeds=1, out=tmp_path / "e", backend="pool", log=lines.append)
    assert lines == ["variant 'twice': registered Twice with Keras as '__main__>Twice' so its runs can rebuild it; "
                     "they train in this process"]
    deepfit.compare({"twice": build}, data=arrays, seeds=1, epochs=1, out=tmp_path / "e", log=lines.append)
    run = deepfit.load_run(tmp_path / "e" / "runs" / "twice" / "seed-0")
    assert "__main__>Twice" in run.config.model.architecture


def test_i20_25_an_unknown_class_in_an_architecture_is_named_first_in_one_line():
    """A config naming a class this process does not know (a rerun in a fresh process): the fix first, one line."""
    import json

    from deepfit.keras_model import architecture_json, build_architecture

    config = json.loads(architecture_json(make("relu")(0)))
    flatten = config["config"]["layers"][1]
    flatten.update(class_name="MyFlatten", module=None, registered_name="MyFlatten")  # as Keras writes __main__'s
    with pytest.raises(ConfigError) as info:
        build_architecture(json.dumps(config))
    message = str(info.value)
    assert "\n" not in message and len(message) < 300
    assert message.startswith("model.architecture uses the class 'MyFlatten' (defined in __main__), which this "
                              "process has not registered with Keras: define it and decorate it with "
                              "@keras.saving.register_keras_serializable() before training")


def test_a_sequential_architecture_rebuilds_as_keras_rebuilds_it():
    """deepfit adds a Sequential's layers at once (Keras rebuilds the model after each one): the same model,
    the same initial weights."""
    from deepfit.keras_model import architecture_json, build_architecture

    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                              *[keras.layers.Dense(8, activation="selu", kernel_initializer="lecun_normal")
                                for _ in range(5)], keras.layers.BatchNormalization(), keras.layers.Dropout(0.2),
                              keras.layers.Dense(3, activation="softmax")])
    text = architecture_json(model)
    ours = build_architecture(text, seed=7)
    keras.utils.set_random_seed(7)
    theirs = keras.saving.deserialize_keras_object(__import__("json").loads(text), safe_mode=True)
    assert architecture_json(ours) == architecture_json(theirs) == text
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def noisy_arrays():
    """Overlapping classes: accuracies well below 1 that move from seed to seed."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, 8, 8))
    y = rng.integers(0, 3, 1400)
    x = ((centers[y] + rng.normal(0, 2.2, (1400, 8, 8))) * 20 + 120).clip(0, 255).astype("float32") / 255
    return (x[:1000], y[:1000]), (x[1000:], y[1000:])


@pytest.mark.slow
def test_until_decided_trains_in_rounds_and_a_rerun_continues_where_it_stopped(noisy_arrays, tmp_path):
    import json

    base = {"model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 16, "activation": "relu"},
                                 {"type": "dense", "units": 3, "activation": "softmax"}]},
            "training": {"optimizer": {"name": "sgd", "learning_rate": 0.05}}}
    variants = {"sgd": {}, "slow": {"training": {"optimizer": {"name": "sgd", "learning_rate": 0.002}}},
                "twin": {"training": {"batch_size": 30}}}
    kwargs = dict(data=noisy_arrays, base=base, epochs=2, out=tmp_path / "e", backend="local", until_decided=True,
                  max_seeds=5, validation_size=300, log=lambda s: None)
    result = deepfit.compare(variants, **kwargs)
    c = result.comparisons().set_index("variant")
    assert c.loc["slow", "verdict"] == "worse" and c.loc["slow", "n"] <= 4  # decided early: no more seeds for it
    assert c.loc["twin", "verdict"].startswith("undecided at 5 seeds")  # hit its maximum
    counts = json.loads((tmp_path / "e" / "experiment.json").read_text())["seeds_per_variant"]
    assert counts == {"sgd": 5, "slow": int(c.loc["slow", "n"]), "twin": 5}
    assert result.missing == [] and len(result.finals) == 10 + int(c.loc["slow", "n"])
    assert "twin vs sgd: undecided at 5 seeds, its maximum" in (tmp_path / "e" / "rounds.txt").read_text()
    assert np.isfinite(c.loc["twin", "images_low"])  # every run kept which validation images it got right
    # The same command again: nothing retrained, the same verdicts; a larger maximum goes on from there.
    again = deepfit.compare(variants, **kwargs)
    assert again.trained == [] and again.comparisons()["verdict"].tolist() == c["verdict"].tolist()
    more = deepfit.compare(variants, **{**kwargs, "max_seeds": 6})
    assert sorted(more.trained) == [("sgd", 5), ("twin", 5)]


def test_until_decided_refuses_a_crossed_design_and_writes_nothing(tmp_path):
    from deepfit.experiments.reproduce import configs_dir

    with pytest.raises(ConfigError, match="crossed init x order grid .* can neither grow one seed at a time"):
        deepfit.compare(configs_dir() / "sweeps" / "deep_100_crossed.toml", out=tmp_path / "x", until_decided=True)
    assert not (tmp_path / "x").exists()
    from deepfit.cli import main

    assert main(["compare", str(configs_dir() / "sweeps" / "activations.toml"), "--max-seeds", "5",
                 "--out", str(tmp_path / "y")]) == 2  # --max-seeds bounds --until-decided: one clear error
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("verdict, said", [("undecided at 3 seeds", "undecided at 3 seeds: 0.1017"),
                                            ("better", "better at 3 seeds: 0.1017")])
def test_compare_prints_the_seeds_a_verdict_took_once(verdict, said):
    from types import SimpleNamespace

    from deepfit.commands.compare import comparison_line

    nan = float("nan")
    row = SimpleNamespace(variant="elu", reference="relu", verdict=verdict, n=3, mean_diff=0.1017, cs_low=-0.491,
                          cs_high=0.6943, ci_low=0.0614, ci_high=0.1419, images_low=nan, images_high=nan,
                          effect_size=6.28, p_superior=1.0, p_superior_low=1.0, p_superior_high=1.0, test="t",
                          p_value=0.0083, to_decide=5)
    line = comparison_line(row)
    assert line.startswith(f"elu vs relu: {said} ") and line.count("3 seeds") == 1
    assert "(95% seeds [0.0614, 0.1419]; d_z 6.28" in line and "seeds + images" not in line  # no image interval was computed
