"""Configs speak Keras: any loss (from_logits), compiled metrics, validation_split, Keras callbacks by name,
integers where Keras wants floats; and the bad inputs a Keras habit brings, refused with the fix."""

import csv

import keras
import numpy as np
import pytest

import deepfit
from deepfit.errors import ConfigError, DataError
from tests.conftest import tiny_config


def logits_config(**training):
    cfg = tiny_config(**training)
    cfg["model"]["layers"][-1] = {"type": "dense", "units": 3}  # no softmax: logits
    cfg["training"]["loss"] = {"name": "sparse_categorical_crossentropy", "from_logits": True}
    cfg["training"]["metrics"] = ["accuracy", {"name": "sparse_top_k_categorical_accuracy", "k": 2}]
    return cfg


def test_from_logits_and_metrics_are_what_keras_evaluates(tiny_arrays):
    run = deepfit.train(logits_config(), data=tiny_arrays, save=False)
    last = run.history_rows[-1]
    assert {"accuracy", "sparse_top_k_categorical_accuracy", "val_accuracy",
            "val_sparse_top_k_categorical_accuracy"} <= set(last)
    assert last["val_accuracy"] > 0.8  # logits trained as logits: not the 1/3 of a loss that expects probabilities
    # Keras itself, on the same weights and validation data, reports the same numbers.
    data = deepfit.load_data(deepfit.load_config(logits_config()).data, arrays=tiny_arrays)
    model = run.model
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2)])
    keras_logs = model.evaluate(data.x_valid, data.y_valid, batch_size=1000, verbose=0, return_dict=True)
    assert last["val_loss"] == pytest.approx(keras_logs["loss"], rel=1e-5)
    assert last["val_accuracy"] == pytest.approx(keras_logs["accuracy"])
    assert last["val_sparse_top_k_categorical_accuracy"] == pytest.approx(keras_logs["sparse_top_k_categorical_accuracy"])


def test_labels_shaped_n_by_1_give_the_same_run(tiny_arrays):
    (x, y), (xt, yt) = tiny_arrays
    flat = deepfit.train(tiny_config(), data=tiny_arrays, save=False)
    column = deepfit.train(tiny_config(), data=((x, y[:, None]), (xt, yt[:, None])), save=False)
    assert column.history_rows[-1]["val_accuracy"] == flat.history_rows[-1]["val_accuracy"] > 0.8
    assert column.final["test_accuracy"] == flat.final["test_accuracy"]


def test_validation_split_takes_the_last_fraction_as_keras(tiny_arrays):
    cfg = tiny_config()
    cfg["data"] = {"source": "arrays", "validation_split": 0.25, "scaling": "divide255"}
    data = deepfit.load_data(deepfit.load_config(cfg).data, arrays=tiny_arrays)
    (x, y), _ = tiny_arrays
    assert len(data.x_valid) == 150 and len(data.x_train) == 450
    np.testing.assert_array_equal(data.y_valid, y[450:])
    both = {**cfg, "data": {**cfg["data"], "validation_size": 100}}
    with pytest.raises(ConfigError, match="validation_size .* or validation_split .* not both"):
        deepfit.load_config(both)


def test_data_already_divided_by_255_is_refused_with_the_fix(tiny_arrays):
    (x, y), (xt, yt) = tiny_arrays
    scaled = ((x / 255.0).astype("float32"), y), ((xt / 255.0).astype("float32"), yt)
    with pytest.raises(DataError, match=r"already floats within \[0, 1\].*set data.scaling = 'none'"):
        deepfit.train(tiny_config(), data=scaled, save=False)
    cfg = tiny_config()
    cfg["data"]["scaling"] = "none"
    run = deepfit.train(cfg, data=scaled, save=False)
    assert run.history_rows[-1]["val_accuracy"] > 0.8


def test_an_integer_learning_rate_is_a_float_to_keras(tiny_arrays):
    cfg = tiny_config(optimizer={"name": "sgd", "learning_rate": 1})
    opt = deepfit.make_optimizer(deepfit.load_config(cfg).training.optimizer)
    assert float(opt.learning_rate) == 1.0


def test_keras_callbacks_by_name_in_a_config(tiny_arrays, tmp_path):
    log = tmp_path / "log.csv"
    cfg = tiny_config(callbacks=[{"name": "CSVLogger", "filename": str(log)},
                                 {"name": "model_checkpoint", "filepath": str(tmp_path / "best.keras"),
                                  "monitor": "val_accuracy", "save_best_only": True}])
    run = deepfit.train(cfg, data=tiny_arrays, save=False)
    rows = list(csv.DictReader(open(log)))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(run.history_rows[-1]["val_accuracy"])
    assert "seconds" not in rows[0]  # Keras's logs, not deepfit's extras
    assert keras.models.load_model(tmp_path / "best.keras").count_params() == run.model.count_params()


def test_keras_callback_objects_in_deepfit_train(tiny_arrays):
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
    run = deepfit.train(tiny_config(epochs=5), data=tiny_arrays, save=False, callbacks=[stop])
    assert len(run.history_rows) == 2 and stop.stopped_epoch == 1


@pytest.mark.parametrize("spec, message", [
    ({"loss": "sparse_categorical_crossentropie"}, "unknown loss .* Did you mean 'sparse_categorical_crossentropy'"),
    ({"loss": {"name": "sparse_categorical_crossentropy", "from_logit": True}}, "from_logit"),
    ({"metrics": ["acuracy"]}, "unknown metric 'acuracy'"),
    ({"callbacks": [{"name": "LambdaCallback"}]}, "takes Python functions"),
    ({"callbacks": [{"name": "LearningRateScheduler"}]}, "takes Python functions"),
    ({"callbacks": [{"name": "CSVLogger", "file": "x.csv"}]}, "CSVLogger"),
])
def test_bad_keras_names_in_a_config_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        deepfit.load_config(tiny_config(**spec))


def test_list_losses_and_metrics(capsys):
    from deepfit.cli import main

    assert main(["list", "losses"]) == 0 and main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    for name in ("categorical_crossentropy", "huber", "from_logits", "auc", "precision", "top_k_categorical_accuracy"):
        assert name in out


def test_logits_with_a_loss_that_expects_probabilities_are_refused(tiny_arrays):
    cfg = logits_config()
    cfg["training"]["loss"] = "sparse_categorical_crossentropy"
    with pytest.raises(ConfigError, match="no activation .* add activation = 'softmax'.* from_logits = true"):
        deepfit.train(cfg, data=tiny_arrays, save=False)


def test_plot_a_runs_learning_curves(tiny_arrays, tmp_path, capsys):
    from deepfit.cli import main

    deepfit.train(tiny_config(), tmp_path / "run", data=tiny_arrays)
    assert main(["plot", str(tmp_path / "run")]) == 0
    png = tmp_path / "run" / "figures" / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_resume_with_more_epochs_extends_a_finished_run_exactly(tiny_arrays, tmp_path):
    straight = deepfit.train(tiny_config(epochs=4), tmp_path / "straight", data=tiny_arrays)
    deepfit.train(tiny_config(epochs=2), tmp_path / "run", data=tiny_arrays)
    extended = deepfit.train(tiny_config(epochs=4), tmp_path / "run", data=tiny_arrays, resume=True)
    assert [r["epoch"] for r in extended.history_rows] == [1, 2, 3, 4]
    for a, b in zip(straight.model.get_weights(), extended.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    again = deepfit.load_run(tmp_path / "run")  # finished again, its manifest checked
    assert again.config.training.epochs == 4 and again.final["epochs_run"] == 4
    assert [round(r["val_loss"], 12) for r in again.history_rows] == \
        [round(r["val_loss"], 12) for r in straight.history_rows]
    with pytest.raises(ConfigError, match="already has 4 epochs"):
        deepfit.train(tiny_config(epochs=3), tmp_path / "run", data=tiny_arrays, resume=True)


def test_the_command_line_extends_a_run_by_its_directory(tmp_path, capsys):
    from deepfit.cli import main

    cfg = {"data": {"train_size": 256, "validation_size": 128}, "model": tiny_config()["model"],
           "training": {"epochs": 1, "batch_size": 64, "progress": False}}
    cfg["model"]["input_shape"] = [28, 28]
    cfg["model"]["layers"][-1] = {"type": "dense", "units": 10, "activation": "softmax"}
    deepfit.train(cfg, tmp_path / "run")
    assert main(["train", str(tmp_path / "run"), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert deepfit.load_run(tmp_path / "run").final["epochs_run"] == 2
