"""deepfit.fit against Keras's own model.fit(shuffle=False): same weights, same history.

Each case builds the same model twice from one seed, trains one with ``model.fit`` and
one with ``deepfit.fit`` (same data order, same callbacks built afresh), and compares the
weights (1e-4 relative) and every History entry.
"""

import csv

import keras
import numpy as np
import pytest

import deepfit
from deepfit.errors import ConfigError, DataError

N, D, C = 300, 8, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (C, D))
    y = rng.integers(0, C, N + 60)
    x = (centers[y] + rng.normal(0, 1.0, (N + 60, D))).astype("float32")
    return x[:N], y[:N], x[N:], y[N:]


def mlp(out=C, activation="softmax", loss="sparse_categorical_crossentropy", metrics=("accuracy",),
        optimizer=None, dropout=False, named=False, **compile_kw):
    keras.utils.set_random_seed(1)
    # named: the same layer names every time, as a notebook rerun in a fresh kernel gives them
    name = (lambda n: n) if named else (lambda n: None)  # noqa: E731
    layers = [keras.Input((D,)), keras.layers.Dense(16, activation="relu", name=name("hidden"))]
    if dropout:
        layers.append(keras.layers.Dropout(0.3))
    model = keras.Sequential([*layers, keras.layers.Dense(out, activation=activation, name=name("output"))])
    model.compile(optimizer=optimizer() if optimizer else keras.optimizers.SGD(0.05), loss=loss,
                  metrics=list(metrics), **compile_kw)
    return model


def both(make, x, y, callbacks=lambda: [], **kw):
    """(keras model, its History, deepfit model, its History), trained the same way."""
    kw = {"batch_size": 32, "epochs": 3, "shuffle": False, "verbose": 0, **kw}
    a = make()
    ha = a.fit(x, y, callbacks=callbacks(), **kw)
    b = make()
    hb = deepfit.fit(b, x, y, callbacks=callbacks(), **kw)
    return a, ha, b, hb


def assert_same(a, ha, b, hb, rel=1e-6):
    assert isinstance(hb, keras.callbacks.History) and b.history is hb
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(wa).max())))
    assert sorted(hb.history) == sorted(ha.history)
    assert hb.epoch == ha.epoch
    for key, values in ha.history.items():
        assert hb.history[key] == pytest.approx(values, rel=rel, nan_ok=True), key


def test_plain_fit_with_validation_is_keras_fit(data):
    x, y, xv, yv = data
    a, ha, b, hb = both(mlp, x, y, validation_data=(xv, yv))
    assert_same(a, ha, b, hb)
    assert set(hb.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    # The model is updated in place and evaluates as Keras would.
    assert b.evaluate(xv, yv, verbose=0)[0] == pytest.approx(hb.history["val_loss"][-1], rel=1e-5)


def test_keras_metrics_through_their_stateless_api(data):
    x, y, xv, yv = data
    yb = (y == 1).astype("float32")
    make = lambda: mlp(out=1, activation="sigmoid", loss="binary_crossentropy",  # noqa: E731
                       metrics=["accuracy", keras.metrics.AUC(name="auc"), keras.metrics.Precision(name="precision"),
                                keras.metrics.Recall(name="recall"), "mae"])
    a, ha, b, hb = both(make, x, yb, validation_data=(xv, (yv == 1).astype("float32")))
    assert_same(a, ha, b, hb, rel=1e-5)
    assert {"auc", "precision", "recall", "mae", "val_auc"} <= set(hb.history)


def test_from_logits_top_k_and_labels_shaped_n_by_1(data):
    x, y, xv, yv = data
    make = lambda: mlp(activation=None, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),  # noqa: E731
                       metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    a, ha, b, hb = both(make, x, y[:, None], validation_data=(xv, yv[:, None]))
    assert_same(a, ha, b, hb)
    assert 0.5 < hb.history["accuracy"][-1] <= hb.history["top2"][-1] <= 1  # (n, 1) labels: a real accuracy


def test_one_hot_labels_and_a_loss_function(data):
    x, y, _, _ = data
    onehot = np.eye(C, dtype="float32")[y]
    make = lambda: mlp(loss=keras.losses.categorical_crossentropy, metrics=["accuracy"],  # noqa: E731
                       optimizer=lambda: keras.optimizers.Nadam(0.01))
    assert_same(*both(make, x, onehot, validation_split=0.2))


def test_class_weight_and_sample_weight(data):
    x, y, xv, yv = data
    assert_same(*both(mlp, x, y, class_weight={0: 1.0, 1: 3.0, 2: 0.5}, validation_data=(xv, yv)))
    w = np.random.default_rng(1).uniform(0.2, 2.0, len(x)).astype("float32")
    make = lambda: mlp(weighted_metrics=["accuracy"])  # noqa: E731
    a, ha, b, hb = both(make, x, y, sample_weight=w, validation_data=(xv, yv, w[: len(xv)]))
    assert_same(a, ha, b, hb)
    assert "weighted_accuracy" in hb.history or "val_accuracy" in hb.history


def test_dropout_masks_follow_the_models_seed_generator(data):
    x, y, xv, yv = data
    assert_same(*both(lambda: mlp(dropout=True), x, y, validation_data=(xv, yv)))


KERAS_CALLBACKS = {
    "early_stopping": lambda tmp: [keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=1,
                                                                 restore_best_weights=True)],
    "reduce_lr_on_plateau": lambda tmp: [keras.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5,
                                                                           min_delta=10.0)],
    "learning_rate_scheduler": lambda tmp: [keras.callbacks.LearningRateScheduler(lambda e, lr: lr * 0.5 ** e)],
    "terminate_on_nan": lambda tmp: [keras.callbacks.TerminateOnNaN()],
    "lambda": lambda tmp: [keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: logs.__setitem__("twice_loss", 2 * logs["loss"]))],
}


@pytest.mark.parametrize("name", sorted(KERAS_CALLBACKS))
def test_keras_callbacks_run_unchanged(data, name, tmp_path):
    x, y, xv, yv = data
    kw = {"epochs": 6} if name == "early_stopping" else {}
    make = mlp
    if name == "terminate_on_nan":  # a rate that sends the loss to inf or NaN within the first epoch
        make = lambda: mlp(activation=None, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),  # noqa: E731
                           optimizer=lambda: keras.optimizers.SGD(1e12))
    a, ha, b, hb = both(make, x, y, lambda: KERAS_CALLBACKS[name](tmp_path), validation_data=(xv, yv), **kw)
    if name == "terminate_on_nan":
        # Both stop at the batch that gave a non-finite loss (batch hooks at every step, as model.fit)
        assert len(ha.history["loss"]) == 1 and not np.isfinite(ha.history["loss"][0])
    assert_same(a, ha, b, hb)
    if name == "early_stopping":
        assert len(hb.epoch) < 6  # it stopped early, as Keras did, and restored the same best weights
    if name in ("reduce_lr_on_plateau", "learning_rate_scheduler"):
        assert hb.history["learning_rate"] == pytest.approx(ha.history["learning_rate"])
        assert len(set(hb.history["learning_rate"])) >= 2  # the rate did change
        assert float(b.optimizer.learning_rate) == pytest.approx(float(a.optimizer.learning_rate))


def test_model_checkpoint_and_csv_logger_write_what_keras_writes(data, tmp_path):
    x, y, xv, yv = data

    def callbacks(tag):
        return lambda: [keras.callbacks.ModelCheckpoint(str(tmp_path / f"{tag}.keras"), monitor="val_loss"),
                        keras.callbacks.ModelCheckpoint(str(tmp_path / f"{tag}-{{epoch}}.weights.h5"),
                                                        save_weights_only=True),
                        keras.callbacks.CSVLogger(str(tmp_path / f"{tag}.csv"))]

    a = mlp()
    a.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, validation_data=(xv, yv),
          callbacks=callbacks("keras")())
    b = mlp()
    deepfit.fit(b, x, y, batch_size=32, epochs=2, shuffle=False, verbose=0, validation_data=(xv, yv),
                callbacks=callbacks("deepfit")())
    for ka, kb in [("keras.keras", "deepfit.keras"), ("keras-1.weights.h5", "deepfit-1.weights.h5")]:
        ma, mb = mlp(), mlp()
        if ka.endswith(".keras"):
            ma, mb = keras.models.load_model(tmp_path / ka), keras.models.load_model(tmp_path / kb)
        else:
            ma.load_weights(tmp_path / ka)
            mb.load_weights(tmp_path / kb)
        for wa, wb in zip(ma.get_weights(), mb.get_weights()):
            np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-7)
    rows = {t: list(csv.DictReader(open(tmp_path / f"{t}.csv"))) for t in ("keras", "deepfit")}
    assert [list(r) for r in rows["deepfit"]] == [list(r) for r in rows["keras"]]
    for ra, rb in zip(rows["keras"], rows["deepfit"]):
        assert {k: float(v) for k, v in rb.items()} == pytest.approx({k: float(v) for k, v in ra.items()}, rel=1e-5)


class StopAndSlow(keras.callbacks.Callback):
    """A user's subclass: halves the rate after epoch 0, stops after epoch 1, counts its calls."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))
        if epoch == 0:
            self.model.optimizer.learning_rate = float(self.model.optimizer.learning_rate) / 2
        if epoch == 1:
            self.model.stop_training = True


def test_a_users_subclass_stops_and_changes_the_rate(data):
    x, y, xv, yv = data
    cbs = {}
    a, ha, b, hb = both(mlp, x, y, lambda: [cbs.setdefault(len(cbs), StopAndSlow())], epochs=5,
                        validation_data=(xv, yv))
    assert_same(a, ha, b, hb)
    assert len(hb.epoch) == 2
    keras_calls, deepfit_calls = cbs[0].calls, cbs[1].calls
    epoch_events = lambda calls: [c for c in calls if c == "train_begin" or c[0] == "epoch_end"]  # noqa: E731
    assert epoch_events(deepfit_calls) == epoch_events(keras_calls)
    # Batch hooks at every batch, as model.fit: 9 full batches and the partial 10th, in both epochs.
    assert [c[1] for c in deepfit_calls if c[0] == "batch_end"] == [*range(10), *range(10)]
    assert deepfit_calls == keras_calls


def test_steps_per_execution_sets_the_chunk_and_the_batch_hooks(data):
    x, y, _, _ = data
    seen = []
    model = mlp(steps_per_execution=4)
    deepfit.fit(model, x, y, batch_size=32, epochs=1, shuffle=False, verbose=0,
                callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))])
    # Executions of 4 batches, numbered as Keras numbers them (the last one's end past the 10th batch)
    assert seen == [3, 7, 11]
    keras_seen = []
    mlp(steps_per_execution=4).fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[
        keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: keras_seen.append(b))])
    assert seen == keras_seen


def test_progbar_prints_like_keras(data, capsys):
    x, y, _, _ = data
    deepfit.fit(mlp(), x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "accuracy:" in out and "loss:" in out


def test_initial_epoch_starts_there(data):
    x, y, _, _ = data
    a, ha, b, hb = both(mlp, x, y, epochs=3, initial_epoch=1)
    assert_same(a, ha, b, hb)
    assert hb.epoch == [1, 2]


def test_seeded_shuffle_is_repeatable_and_differs_from_no_shuffle(data):
    x, y, _, _ = data
    runs = []
    for shuffle, seed in [(True, 5), (True, 5), (False, None)]:
        model = mlp()
        deepfit.fit(model, x, y, epochs=1, shuffle=shuffle, seed=seed, verbose=0)
        runs.append(model.get_weights()[0])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


# -- bad input: one message naming the problem and the fix, before any training -----------------
def test_an_uncompiled_model_is_refused(data):
    x, y, _, _ = data
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(C, activation="softmax")])
    with pytest.raises(ConfigError, match=r"not compiled: call model.compile\(optimizer="):
        deepfit.fit(model, x, y)


def test_a_metric_that_cannot_run_in_jax_is_named(data):
    x, y, _, _ = data

    def numpy_metric(y_true, y_pred):
        return np.mean(np.asarray(y_pred))  # NumPy on a traced array

    model = mlp(metrics=[numpy_metric])
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ConfigError, match="metric 'numpy_metric' cannot run inside deepfit's compiled JAX step"):
        deepfit.fit(model, x, y, verbose=0)
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)


def test_a_callback_that_needs_tensorflow_is_refused(data, tmp_path):
    x, y, _, _ = data
    with pytest.raises(ConfigError, match="TensorBoard callback needs TensorFlow; use deepfit's"):
        deepfit.fit(mlp(), x, y, callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])


# -- out=DIR: deepfit's run directory around the same training ---------------------------------------
class Interrupt(deepfit.Callback):
    order = 1001  # after the epoch's checkpoint

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt


def test_out_dir_records_the_run_and_resumes_bit_for_bit(data, tmp_path):
    x, y, xv, yv = data
    make = lambda: mlp(optimizer=lambda: keras.optimizers.Nadam(0.01), named=True)  # noqa: E731
    kw = dict(batch_size=32, epochs=3, validation_data=(xv, yv), seed=4, verbose=0)
    plain = make()
    hp = deepfit.fit(plain, x, y, **kw)
    recorded = make()
    hr = deepfit.fit(recorded, x, y, out=tmp_path / "run", **kw)
    assert_same(plain, hp, recorded, hr)
    run = deepfit.load_run(tmp_path / "run")  # manifest checked
    assert run.config.seed == 4 and run.config.training.optimizer["name"] == "nadam"
    assert "Dense" in run.config.model.architecture and run.config.training.metrics == ["accuracy"]
    for a, b in zip(recorded.get_weights(), run.model.get_weights()):
        np.testing.assert_array_equal(a, b)

    stopped = make()
    with pytest.raises(KeyboardInterrupt):
        deepfit.fit(stopped, x, y, out=tmp_path / "again", callbacks=[Interrupt()], **kw)
    resumed = make()
    deepfit.fit(resumed, x, y, out=tmp_path / "again", **kw)
    for a, b in zip(recorded.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    finished = make()
    again = deepfit.fit(finished, x, y, out=tmp_path / "run", **kw)  # already finished: the record comes back
    assert again.history["val_loss"] == pytest.approx(hr.history["val_loss"])
    for a, b in zip(recorded.get_weights(), finished.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- issue 20: numbers that were silently wrong --------------------------------------------------------
class ExponentialLearningRate(keras.callbacks.Callback):
    """The notebook's cell 83, in Keras 3's words: the rate grows by ``factor`` after every batch."""

    def __init__(self, factor):
        super().__init__()
        self.factor, self.rates, self.losses = factor, [], []

    def on_batch_end(self, batch, logs):
        self.rates.append(float(self.model.optimizer.learning_rate))
        self.losses.append(logs["loss"])
        self.model.optimizer.learning_rate = float(self.model.optimizer.learning_rate) * self.factor


class OneCycleScheduler(keras.callbacks.Callback):
    """The notebook's cell 86, in Keras 3's words (the rate set in on_batch_begin)."""

    def __init__(self, iterations, max_rate):
        super().__init__()
        self.iterations, self.max_rate, self.start_rate = iterations, max_rate, max_rate / 10
        self.last_iterations = iterations // 10 + 1
        self.half_iteration = (iterations - self.last_iterations) // 2
        self.last_rate, self.iteration, self.calls = self.start_rate / 1000, 0, 0

    def _interpolate(self, iter1, iter2, rate1, rate2):
        return (rate2 - rate1) * (self.iteration - iter1) / (iter2 - iter1) + rate1

    def on_batch_begin(self, batch, logs):
        self.calls += 1
        if self.iteration < self.half_iteration:
            rate = self._interpolate(0, self.half_iteration, self.start_rate, self.max_rate)
        elif self.iteration < 2 * self.half_iteration:
            rate = self._interpolate(self.half_iteration, 2 * self.half_iteration, self.max_rate, self.start_rate)
        else:
            rate = self._interpolate(2 * self.half_iteration, self.iterations, self.start_rate, self.last_rate)
        self.iteration += 1
        self.model.optimizer.learning_rate = max(rate, self.last_rate)


def test_i20_01_batch_hooks_see_every_batch_as_in_model_fit(data):
    x, y, xv, yv = data
    finders = []
    a, ha, b, hb = both(mlp, x, y, lambda: [finders.append(ExponentialLearningRate(1.2)) or finders[-1]],
                        epochs=4, validation_data=(xv, yv))
    keras_finder, deepfit_finder = finders
    assert len(keras_finder.rates) == len(deepfit_finder.rates) == 40  # 10 batches x 4 epochs (it recorded 2)
    np.testing.assert_allclose(deepfit_finder.rates, keras_finder.rates, rtol=1e-6)
    np.testing.assert_allclose(deepfit_finder.losses, keras_finder.losses, rtol=2e-5)
    assert_same(a, ha, b, hb, rel=2e-5)

    cycles = []
    a, ha, b, hb = both(mlp, x, y, lambda: [cycles.append(OneCycleScheduler(30, 0.5)) or cycles[-1]], epochs=3,
                        validation_data=(xv, yv))
    assert cycles[0].calls == cycles[1].calls == 30  # on_batch_begin at every batch (it was called 6 times)
    assert_same(a, ha, b, hb, rel=2e-5)
    assert float(b.optimizer.learning_rate) == pytest.approx(float(a.optimizer.learning_rate))


def test_i20_06_a_second_fit_continues_a_keras_schedule(data):
    x, y, xv, yv = data
    schedule = lambda: keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=5, decay_rate=0.5)  # noqa: E731
    a, b = mlp(optimizer=lambda: keras.optimizers.SGD(schedule())), mlp(optimizer=lambda: keras.optimizers.SGD(schedule()))
    for _ in range(2):  # two calls in a row, as a notebook does: the schedule reads the optimizer's iterations
        ha = a.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        hb = deepfit.fit(b, x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    assert int(b.optimizer.iterations) == int(a.optimizer.iterations) == 20
    assert_same(a, ha, b, hb)


def test_i20_07_use_ema_writes_the_averages_into_the_weights_at_the_end(data):
    x, y, xv, yv = data
    make = lambda: mlp(optimizer=lambda: keras.optimizers.Adam(0.01, use_ema=True, ema_momentum=0.9))  # noqa: E731
    a, ha, b, hb = both(make, x, y, validation_data=(xv, yv))
    assert_same(a, ha, b, hb)
    ema = [np.asarray(v) for v in b.optimizer.variables if "average" in v.path]
    np.testing.assert_array_equal(b.get_weights()[0], ema[0])  # the model holds the averages, as after model.fit


def test_i20_10_fit_refuses_what_runs_refuse(data):
    x, y, xv, yv = data
    for bad, fix in [(np.where(y == 0, 3, y), "set the last layer's units = 4"),
                     (np.where(y == 0, -1, y), "class indices >= 0")]:
        with pytest.raises(DataError, match=f"the training labels go from .* 3 outputs.*{fix}"):
            deepfit.fit(mlp(), x, bad, verbose=0)
    holed = x.copy()
    holed[7, 2] = np.nan
    with pytest.raises(DataError, match="the training inputs hold NaN or infinite values \\(first at sample 7\\)"):
        deepfit.fit(mlp(), holed, y, verbose=0)
    with pytest.raises(DataError, match="the validation labels go from"):
        deepfit.fit(mlp(), x, y, validation_data=(xv, yv + 5), verbose=0)
    pixels = (np.abs(x) * 60).astype(np.uint8)
    with pytest.warns(deepfit.DataWarning, match=r"integers up to 249 .*\(x / 255.0\)"):
        deepfit.fit(mlp(), pixels, y, verbose=0)


def test_i20_21_mixed_float16_trains_with_loss_scaling_as_keras(data):
    x, y, xv, yv = data

    def make():
        keras.config.set_dtype_policy("mixed_float16")
        try:
            return mlp(optimizer=lambda: keras.optimizers.Adam(0.01))
        finally:
            keras.config.set_dtype_policy("float32")

    a, ha, b, hb = both(make, x, y, validation_data=(xv, yv))
    assert isinstance(b.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(b.optimizer.dynamic_scale) == float(a.optimizer.dynamic_scale)
    assert_same(a, ha, b, hb, rel=1e-3)  # float16 arithmetic: its last bits follow the order of the sums


def test_i20_24_one_hot_labels_with_a_sparse_loss_name_the_fix(data):
    x, y, _, _ = data
    with pytest.raises(DataError, match=r"one-hot \(shape \[300, 3\]\).*use categorical_crossentropy, "
                                        r"or integer labels \(y.argmax\(axis=-1\)\)"):
        deepfit.fit(mlp(), x, np.eye(C, dtype="float32")[y], verbose=0)
    with pytest.raises(DataError, match="class indices .* use sparse_categorical_crossentropy, or one-hot"):
        deepfit.fit(mlp(loss="categorical_crossentropy"), x, y, verbose=0)


class CountingBar(keras.callbacks.ProgbarLogger):
    def __init__(self):
        super().__init__()
        self.updates = []

    def on_train_batch_end(self, batch, logs=None):
        self.updates.append(batch)
        super().on_train_batch_end(batch, logs)


def test_i20_26_positional_arguments_and_progress_inside_an_epoch(data, capsys):
    x, y, _, _ = data
    a, b = mlp(), mlp()
    ha = a.fit(x, y, 32, 2, 0, None, 0.0, None, False)  # Keras's order: batch_size, epochs, verbose, ...
    hb = deepfit.fit(b, x, y, 32, 2, 0, None, 0.0, None, False)
    assert_same(a, ha, b, hb)
    bar = CountingBar()
    many = np.repeat(x, 4, axis=0)[:1000]
    deepfit.fit(mlp(), many, np.repeat(y, 4)[:1000], batch_size=4, epochs=1, verbose=1, callbacks=[bar])
    assert bar.updates == [99, 199, 249]  # every 100 steps, then the epoch's end
    assert "250/250" in capsys.readouterr().out


def test_i20_27_early_stopping_restores_as_keras_does(data):
    """Keras 3.15 restores the best weights whenever it holds them (stopped early or not); so does deepfit's,
    and its docstring says so."""
    from deepfit.train.callbacks.early_stopping import EarlyStopping

    x, y, xv, yv = data
    patient = lambda: [keras.callbacks.EarlyStopping(monitor="val_loss", patience=50,  # noqa: E731
                                                     restore_best_weights=True)]
    a = mlp(optimizer=lambda: keras.optimizers.SGD(2.0))  # a rate that makes val_loss worse after its best epoch
    a.fit(x, y, batch_size=32, epochs=5, shuffle=False, verbose=0, validation_data=(xv, yv), callbacks=patient())
    b = mlp(optimizer=lambda: keras.optimizers.SGD(2.0))
    ours = EarlyStopping(monitor="val_loss", patience=50, restore_best_weights=True)
    deepfit.fit(b, x, y, batch_size=32, epochs=5, shuffle=False, verbose=0, validation_data=(xv, yv),
                callbacks=[ours])
    assert ours.restored_epoch is not None and ours.restored_epoch < 5  # it restored without stopping early
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, rtol=1e-4, atol=1e-6)
    assert "Unlike Keras" not in EarlyStopping.__doc__ and "whenever it holds" in EarlyStopping.__doc__
