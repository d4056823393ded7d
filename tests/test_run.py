import os
import stat

import numpy as np
import pytest

import deepfit as df
from deepfit.errors import CheckpointError, ConfigError, DataError
from tests.conftest import tiny_config


def test_run_directory_is_complete_and_reloads_an_identical_model(tmp_path, tiny_arrays):
    cfg = tiny_config()
    cfg["model"]["layers"].insert(1, {"type": "batch_norm"})
    run = df.train(cfg, out=tmp_path / "run", data=tiny_arrays)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["config.toml", "correctness.npz", "environment.json", "final.json", "final_state", "manifest.json",
                     "metrics.csv", "model.json", "timings.csv", "weights.safetensors"]
    again = df.load_run(tmp_path / "run")
    assert again.config == run.config
    assert again.history.drop(columns="seconds").round(12).equals(run.history.drop(columns="seconds").round(12))
    x = np.random.default_rng(0).random((7, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(again.model(x)), np.asarray(run.model(x)))
    for a, b in zip(again.model.weights, run.model.weights):
        assert np.array_equal(a.numpy(), b.numpy())
    assert again.final["status"] == "completed" and 0 <= again.final["test_accuracy"] <= 1
    env = again.final and __import__("json").loads((tmp_path / "run" / "environment.json").read_text())
    assert env["seed"] == 3 and env["keras_backend"] == "jax" and env["keras"] and env["jax"]


def test_a_run_records_what_its_columns_are_and_which_images_it_got_right(tmp_path, tiny_arrays):
    import json

    from deepfit.run import read_correctness

    cfg = tiny_config(epochs=1, optimizer={"name": "sgd", "learning_rate": 0.002})  # a poor model: some wrong
    run = df.train(cfg, out=tmp_path / "run", data=tiny_arrays)
    final = json.loads((tmp_path / "run" / "final.json").read_text())
    # Directions and ranges as the Keras loss and metric objects declare them (statistics read these).
    assert final["columns"]["val_accuracy"] == {"direction": "max", "range": [0.0, 1.0]}
    assert final["columns"]["val_loss"] == {"direction": "min", "range": [0.0, None], "kind": "crossentropy"}
    assert final["columns"]["test_accuracy"]["direction"] == "max"
    val, test = read_correctness(tmp_path / "run", "val"), read_correctness(tmp_path / "run", "test")
    assert len(val) == 100 and len(test) == 100 and 0 < val.mean() < 1
    assert val.mean() == pytest.approx(final["last"]["val_accuracy"], abs=1e-6)  # the same images, the same weights
    assert test.mean() == pytest.approx(final["test_accuracy"], abs=1e-6)
    assert "correctness.npz" in json.loads((tmp_path / "run" / "manifest.json").read_text())
    df.load_run(tmp_path / "run")  # the manifest covers it, and checks it
    # A run recorded before runs kept "columns": the same answer, from its config's loss and metric objects.
    from deepfit.run import columns_of_config

    assert columns_of_config(run.config) == final["columns"]


def test_a_flipped_byte_in_the_weights_is_caught(tmp_path, tiny_arrays):
    df.train(tiny_config(), out=tmp_path / "run", data=tiny_arrays)
    path = tmp_path / "run" / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="weights.safetensors: sha256 does not match"):
        df.load_run(tmp_path / "run")


def test_an_unfinished_run_does_not_look_finished(tmp_path, tiny_arrays):
    class Boom(df.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        df.train(tiny_config(), out=tmp_path / "run", data=tiny_arrays, callbacks=[Boom()])
    assert not (tmp_path / "run" / "final.json").exists()
    with pytest.raises(CheckpointError, match="did not finish"):
        df.load_run(tmp_path / "run")


def test_bad_inputs_change_nothing(tmp_path, tiny_arrays):
    out = tmp_path / "out"
    with pytest.raises(ConfigError):
        df.train(tiny_config(), out=out, data=tiny_arrays, overrides={"model.layers.1.activation": "nope"})
    with pytest.raises(DataError):
        df.train({**tiny_config(), "data": {"source": "directory", "path": str(tmp_path / "none")}}, out=out)
    assert not out.exists()
    df.train(tiny_config(), out=out, data=tiny_arrays)
    before = sorted(os.listdir(out))
    with pytest.raises(ConfigError, match="already holds files"):
        df.train(tiny_config(), out=out, data=tiny_arrays)
    assert sorted(os.listdir(out)) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: a read-only folder does not stop it")
def test_unwritable_output_directory(tmp_path, tiny_arrays):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(ConfigError, match="cannot write"):
        df.train(tiny_config(), out=locked / "run", data=tiny_arrays)


def test_output_directory_on_a_filesystem_that_refuses_writes(tiny_arrays):
    # /proc refuses new files even to root, as a read-only mount or a full disk would.
    with pytest.raises(ConfigError, match="cannot write to '/proc'"):
        df.train(tiny_config(), out="/proc/deepfit-run", data=tiny_arrays)


def test_output_path_that_is_a_file(tmp_path, tiny_arrays):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        df.train(tiny_config(), out=tmp_path / "f", data=tiny_arrays)
    with pytest.raises(ConfigError, match="below the file"):
        df.train(tiny_config(), out=tmp_path / "f" / "run", data=tiny_arrays)


def test_a_keras_model_written_as_in_the_notebook(tiny_arrays):
    import keras

    model = keras.models.Sequential([
        keras.layers.Input((8, 8)),
        keras.layers.Flatten(),
        keras.layers.Dense(16, kernel_initializer="he_normal"),
        keras.layers.LeakyReLU(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    run = df.train(tiny_config(), model=model, data=tiny_arrays, save=False)
    assert run.model is model and run.history["val_accuracy"].iloc[-1] > 0.8
