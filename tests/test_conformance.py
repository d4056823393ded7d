"""Keras conformance by differential testing: ``deepfit.fit`` against ``model.fit(shuffle=False)``.

Hypothesis draws a compiled Keras model and a sequence of ``fit`` calls (optimizers with and
without schedules, ``use_ema``, Keras's built-in callbacks and a user's callback with batch-level
hooks, losses and metrics, class and sample weights, ``validation_split``, several calls in a
row, ``initial_epoch``, mixed precision). Each case runs twice from the same seed: once through
Keras, once through deepfit. The oracle is Keras: the same History (keys, epochs, values within
``HISTORY_RTOL``), the same weights (within ``WEIGHT_RTOL`` of the largest weight), the same
callback calls in the same order with the same logs, the same optimizer iteration count and
learning rate; or, where Keras refuses, a refusal; or where deepfit refuses, a ``ConfigError``
that names what is unsupported (``REFUSALS`` lists the only ones allowed).

Budget: ``make test`` runs the ``default`` profile (a fixed, small number of examples);
``DEEPFIT_CONFORMANCE=long`` (or ``--hypothesis-profile=conformance-long``) runs thousands, for a
developer's machine.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, reject, settings
from hypothesis import strategies as st

import deepfit
from deepfit.errors import ConfigError

# Float32 sums taken in another order (XLA fuses deepfit's whole step; Keras's step is jitted
# separately) move the last bits; after a few dozen steps that is ~1e-6 relative.
HISTORY_RTOL = 2e-5
WEIGHT_RTOL = 2e-5

# Refusals deepfit may give where Keras trains (each names what is unsupported and what to do).
REFUSALS = (
    r"callback BackupAndRestore: deepfit keeps its own bit-exact backups",
)

D = 5

# No shrinking: an example costs seconds (two trainings), and a case prints readably as it is.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate]
settings.register_profile("conformance-default", max_examples=int(os.environ.get("DEEPFIT_CONFORMANCE_EXAMPLES", 12)),
                          deadline=None, derandomize=True, print_blob=True, phases=PHASES, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("conformance-long", max_examples=int(os.environ.get("DEEPFIT_CONFORMANCE_EXAMPLES", 2000)),
                          deadline=None, print_blob=True, phases=PHASES,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = "conformance-long" if os.environ.get("DEEPFIT_CONFORMANCE") == "long" else "conformance-default"


# -- what a case is -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    task: str  # sparse | categorical | binary | regression
    logits: bool
    hidden: tuple[int, ...]
    dropout: float
    batch_norm: bool
    optimizer: str
    learning_rate: float
    schedule: str | None
    use_ema: bool
    momentum: float
    metrics: tuple[str, ...]
    callbacks: tuple[str, ...]
    weights: str | None  # None | class | sample
    validation: str | None  # None | split | data
    batch_size: int
    calls: tuple[tuple[int, int], ...]  # (initial_epoch, epochs) per fit call
    policy: str
    steps_per_execution: int
    n_train: int
    validation_freq: int
    validation_batch_size: int | None


TASK_METRICS = {
    "sparse": ["accuracy", "sparse_top_k", "sparse_ce_metric"],
    "categorical": ["accuracy", "top_k", "auc_multi"],
    "binary": ["accuracy", "auc", "precision", "recall", "mae_metric"],
    "regression": ["mae_metric", "mse_metric", "rmse"],
}
CALLBACKS = ["early_stopping", "early_stopping_restore", "reduce_lr", "lr_scheduler", "terminate_on_nan",
             "recorder", "batch_rate", "lambda_epoch", "csv_logger", "checkpoint", "swap_ema", "backup_and_restore"]


@st.composite
def cases(draw) -> Case:
    task = draw(st.sampled_from(sorted(TASK_METRICS)))
    optimizer = draw(st.sampled_from(["sgd", "adam", "nadam", "rmsprop", "adagrad", "adamw", "adamax"]))
    epochs1 = draw(st.integers(1, 4))
    calls = [(draw(st.sampled_from([0, 0, 1])) if epochs1 > 1 else 0, epochs1)]
    if draw(st.booleans()):
        calls.append((0, draw(st.integers(1, 2))))
    return Case(
        task=task,
        logits=task in ("sparse", "categorical", "binary") and draw(st.booleans()),
        hidden=tuple(draw(st.lists(st.sampled_from([4, 7, 12]), min_size=1, max_size=2))),
        dropout=draw(st.sampled_from([0.0, 0.0, 0.3])),
        batch_norm=draw(st.booleans()),
        optimizer=optimizer,
        learning_rate=draw(st.sampled_from([0.003, 0.02, 0.1])),
        schedule=draw(st.sampled_from([None, None, "exponential", "piecewise", "cosine"])),
        use_ema=draw(st.booleans()) and draw(st.booleans()),
        momentum=draw(st.sampled_from([0.0, 0.9])),
        metrics=tuple(draw(st.lists(st.sampled_from(TASK_METRICS[task]), max_size=3, unique=True))),
        callbacks=tuple(draw(st.lists(st.sampled_from(CALLBACKS), max_size=3, unique=True))),
        weights=draw(st.sampled_from([None, None, "class", "sample"])) if task != "regression" else
        draw(st.sampled_from([None, "sample"])),
        validation=draw(st.sampled_from([None, "split", "data", "data"])),
        batch_size=draw(st.sampled_from([8, 16, 24])),
        calls=tuple(calls),
        policy=draw(st.sampled_from(["float32", "float32", "float32", "mixed_bfloat16", "mixed_float16"])),
        steps_per_execution=draw(st.sampled_from([1, 1, 1, 3])),
        n_train=draw(st.sampled_from([64, 70])),
        validation_freq=draw(st.sampled_from([1, 1, 2])),
        validation_batch_size=draw(st.sampled_from([None, None, 10])),
    )


# -- building it, the same way for both engines --------------------------------------------------
def make_data(case: Case):
    rng = np.random.default_rng(0)
    classes = 2 if case.task == "binary" else 3
    centers = rng.normal(0, 1.5, (classes, D))
    y = rng.integers(0, classes, case.n_train + 24)
    x = (centers[y] + rng.normal(0, 1.0, (len(y), D))).astype("float32")
    if case.task == "sparse":
        y = y.astype("int32")
    elif case.task == "categorical":
        y = np.eye(classes, dtype="float32")[y]
    elif case.task == "binary":
        y = y.astype("float32")[:, None]
    else:
        y = (x @ rng.normal(0, 1, (D, 2))).astype("float32")
    return x[:case.n_train], y[:case.n_train], x[case.n_train:], y[case.n_train:]


def make_metric(name: str):
    return {
        "accuracy": "accuracy",
        "sparse_top_k": keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"),
        "top_k": keras.metrics.TopKCategoricalAccuracy(k=2, name="top2"),
        "sparse_ce_metric": keras.metrics.SparseCategoricalCrossentropy(name="xent"),
        "auc_multi": keras.metrics.AUC(name="auc", multi_label=False),
        "auc": keras.metrics.AUC(name="auc"),
        "precision": keras.metrics.Precision(name="precision"),
        "recall": keras.metrics.Recall(name="recall"),
        "mae_metric": keras.metrics.MeanAbsoluteError(name="mae"),
        "mse_metric": keras.metrics.MeanSquaredError(name="mse"),
        "rmse": keras.metrics.RootMeanSquaredError(name="rmse"),
    }[name]


def make_loss(case: Case):
    return {
        "sparse": keras.losses.SparseCategoricalCrossentropy(from_logits=case.logits),
        "categorical": keras.losses.CategoricalCrossentropy(from_logits=case.logits),
        "binary": keras.losses.BinaryCrossentropy(from_logits=case.logits),
        "regression": "mse",
    }[case.task]


def make_optimizer(case: Case):
    steps = math.ceil(case.n_train / case.batch_size)
    rate: Any = case.learning_rate
    if case.schedule == "exponential":
        rate = keras.optimizers.schedules.ExponentialDecay(rate, decay_steps=steps, decay_rate=0.5)
    elif case.schedule == "piecewise":
        rate = keras.optimizers.schedules.PiecewiseConstantDecay([steps, 2 * steps], [rate, rate / 3, rate / 10])
    elif case.schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=4 * steps, warmup_target=None)
    ema = {"use_ema": True, "ema_momentum": 0.9} if case.use_ema else {}
    cls = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "nadam": keras.optimizers.Nadam,
           "rmsprop": keras.optimizers.RMSprop, "adagrad": keras.optimizers.Adagrad, "adamw": keras.optimizers.AdamW,
           "adamax": keras.optimizers.Adamax}[case.optimizer]
    extra = {"momentum": case.momentum, "nesterov": case.momentum > 0} if case.optimizer == "sgd" else {}
    if case.optimizer == "rmsprop":
        extra = {"momentum": case.momentum}
    return cls(learning_rate=rate, **extra, **ema)


def make_model(case: Case) -> keras.Model:
    keras.config.set_dtype_policy(case.policy)
    try:
        keras.utils.set_random_seed(1)
        out = {"sparse": 3, "categorical": 3, "binary": 1, "regression": 2}[case.task]
        act = None if case.logits or case.task == "regression" else ("sigmoid" if case.task == "binary" else "softmax")
        layers: list = [keras.Input((D,))]
        for units in case.hidden:
            layers.append(keras.layers.Dense(units, activation="relu"))
            if case.batch_norm:
                layers.append(keras.layers.BatchNormalization())
            if case.dropout:
                layers.append(keras.layers.Dropout(case.dropout))
        # The last layer computes in float32 under a mixed policy, as Keras's guide advises.
        layers.append(keras.layers.Dense(out, activation=act, dtype="float32"))
        model = keras.Sequential(layers)
        model.compile(optimizer=make_optimizer(case), loss=make_loss(case),
                      metrics=[make_metric(m) for m in case.metrics],
                      steps_per_execution=case.steps_per_execution)
        return model
    finally:
        keras.config.set_dtype_policy("float32")


class Recorder(keras.callbacks.Callback):
    """Records every hook Keras calls, with its arguments and logs, in order."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def _add(self, hook, *args, logs=None):
        self.log.append((hook, *args, None if logs is None else {k: float(v) for k, v in sorted(logs.items())}))

    def on_train_begin(self, logs=None): self._add("train_begin", logs=logs)
    def on_train_end(self, logs=None): self._add("train_end", logs=logs)
    def on_epoch_begin(self, epoch, logs=None): self._add("epoch_begin", epoch, logs=logs)
    def on_epoch_end(self, epoch, logs=None): self._add("epoch_end", epoch, logs=logs)
    def on_train_batch_begin(self, batch, logs=None): self._add("batch_begin", batch, logs=logs)
    def on_train_batch_end(self, batch, logs=None): self._add("batch_end", batch, logs=logs)
    def on_test_begin(self, logs=None): self._add("test_begin", logs=logs)
    def on_test_end(self, logs=None): self._add("test_end", logs=logs)
    def on_test_batch_begin(self, batch, logs=None): self._add("test_batch_begin", batch, logs=logs)
    def on_test_batch_end(self, batch, logs=None): self._add("test_batch_end", batch, logs=logs)


class BatchRate(keras.callbacks.Callback):
    """The notebook's pattern (cells 83 and 86): read and set the rate in batch hooks."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def on_train_batch_begin(self, batch, logs=None):
        lr = self.model.optimizer.learning_rate
        if not isinstance(self.model.optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            self.model.optimizer.learning_rate = float(lr) * 0.97

    def on_train_batch_end(self, batch, logs=None):
        self.log.append(("rate", float(self.model.optimizer.learning_rate), float(logs["loss"])))


def make_callbacks(case: Case, log: list, tmp: str, tag: str) -> list:
    monitor = "val_loss" if case.validation else "loss"
    metric = next((m for m in ("auc", "accuracy", "precision", "mae") if m in [make_name(x) for x in case.metrics]), None)
    out = []
    for name in case.callbacks:
        if name == "early_stopping":
            out.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=1, min_delta=1e-3))
        elif name == "early_stopping_restore":
            watched = ("val_" if case.validation else "") + metric if metric else monitor
            out.append(keras.callbacks.EarlyStopping(monitor=watched, patience=1, restore_best_weights=True))
        elif name == "reduce_lr":
            out.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=0, min_delta=1e-2))
        elif name == "lr_scheduler":
            out.append(keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.7 if epoch else lr))
        elif name == "terminate_on_nan":
            out.append(keras.callbacks.TerminateOnNaN())
        elif name == "recorder":
            out.append(Recorder(log))
        elif name == "batch_rate":
            out.append(BatchRate(log))
        elif name == "lambda_epoch":
            out.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: log.append(("lambda", e))))
        elif name == "csv_logger":
            out.append(keras.callbacks.CSVLogger(os.path.join(tmp, f"{tag}.csv"), append=True))
        elif name == "checkpoint":
            out.append(keras.callbacks.ModelCheckpoint(os.path.join(tmp, f"{tag}-{{epoch}}.weights.h5"),
                                                       save_weights_only=True))
        elif name == "swap_ema":  # validation on the moving averages (Keras refuses it without use_ema)
            out.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
        elif name == "backup_and_restore":  # deepfit refuses it: its own backups are bit-exact
            out.append(keras.callbacks.BackupAndRestore(os.path.join(tmp, f"{tag}-backup")))
    return out


def make_name(metric: str) -> str:
    m = make_metric(metric)
    return m if isinstance(m, str) else m.name


@dataclasses.dataclass
class Outcome:
    histories: list = dataclasses.field(default_factory=list)
    weights: list = dataclasses.field(default_factory=list)
    log: list = dataclasses.field(default_factory=list)
    iterations: int = 0
    rate: float = 0.0
    error: BaseException | None = None
    files: dict = dataclasses.field(default_factory=dict)


def run(case: Case, engine: str, tmp: str) -> Outcome:
    x, y, xv, yv = make_data(case)
    rng = np.random.default_rng(2)
    model = make_model(case)
    out = Outcome()
    kw: dict[str, Any] = {"batch_size": case.batch_size, "shuffle": False, "verbose": 0,
                          "validation_freq": case.validation_freq,
                          "validation_batch_size": case.validation_batch_size}
    if case.weights == "class":
        kw["class_weight"] = {0: 1.0, 1: 2.5, 2: 0.5} if case.task != "binary" else {0: 1.0, 1: 2.0}
    elif case.weights == "sample":
        kw["sample_weight"] = rng.uniform(0.2, 2.0, len(x)).astype("float32")
    if case.validation == "split":
        kw["validation_split"] = 0.25
    elif case.validation == "data":
        kw["validation_data"] = (xv, yv)
    try:
        for initial_epoch, epochs in case.calls:
            callbacks = make_callbacks(case, out.log, tmp, engine)
            fit = model.fit if engine == "keras" else (lambda *a, **k: deepfit.fit(model, *a, **k))
            history = fit(x, y, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks, **kw)
            out.histories.append((list(history.epoch), {k: list(map(float, v)) for k, v in history.history.items()}))
    except Exception as e:  # noqa: BLE001 - the outcome of a case may be a refusal; compared below
        out.error = e
        return out
    out.weights = [np.asarray(w, np.float64) for w in model.get_weights()]
    out.iterations = int(model.optimizer.iterations)
    out.rate = float(model.optimizer.learning_rate)
    for name in sorted(os.listdir(tmp)):
        if name.startswith(engine) and name.endswith(".csv"):
            out.files[name[len(engine):]] = open(os.path.join(tmp, name)).read()
    return out


def assert_conforms(case: Case, keras_out: Outcome, deepfit_out: Outcome) -> None:
    if keras_out.error is not None:
        if not isinstance(keras_out.error, ValueError):
            # Not a refusal but Keras failing in its own fit (3.15.1: use_ema with a callback that reads the model
            # mid-epoch dies on "Attempt to donate the same buffer twice"): no oracle for this case.
            event(f"Keras failed: {type(keras_out.error).__name__}")
            reject()
        assert deepfit_out.error is not None, f"Keras refused ({keras_out.error!r}); deepfit trained"
        return
    if deepfit_out.error is not None:
        err = deepfit_out.error
        assert isinstance(err, ConfigError) and any(re.search(p, str(err)) for p in REFUSALS), \
            f"deepfit failed where Keras trained: {err!r}"
        return
    assert len(deepfit_out.histories) == len(keras_out.histories)
    for (ea, ha), (eb, hb) in zip(keras_out.histories, deepfit_out.histories):
        assert eb == ea, "epochs differ"
        assert sorted(hb) == sorted(ha), "history keys differ"
        for key in ha:
            np.testing.assert_allclose(hb[key], ha[key], rtol=HISTORY_RTOL, atol=1e-6, err_msg=key)
    assert deepfit_out.iterations == keras_out.iterations, "optimizer.iterations"
    assert deepfit_out.rate == pytest.approx(keras_out.rate, rel=1e-6), "optimizer.learning_rate"
    scale = max(1.0, max(float(np.abs(w).max()) for w in keras_out.weights))
    for i, (wa, wb) in enumerate(zip(keras_out.weights, deepfit_out.weights)):
        np.testing.assert_allclose(wb, wa, rtol=0, atol=WEIGHT_RTOL * scale, err_msg=f"weight {i}")
    assert [e[:2] for e in deepfit_out.log] == [e[:2] for e in keras_out.log], "callback calls differ"
    for ea, eb in zip(keras_out.log, deepfit_out.log):
        assert len(ea) == len(eb)
        for va, vb in zip(ea[2:], eb[2:]):
            if isinstance(va, dict):
                assert sorted(vb) == sorted(va), f"logs of {ea[:2]}"
                for k in va:
                    assert vb[k] == pytest.approx(va[k], rel=HISTORY_RTOL, abs=1e-6, nan_ok=True), f"{ea[:2]} {k}"
            elif isinstance(va, float):
                assert vb == pytest.approx(va, rel=HISTORY_RTOL, abs=1e-7, nan_ok=True), f"{ea[:2]}"
            else:
                assert vb == va
    assert sorted(deepfit_out.files) == sorted(keras_out.files)
    for name, text in keras_out.files.items():
        rows_a = [r.split(",") for r in text.strip().splitlines()]
        rows_b = [r.split(",") for r in deepfit_out.files[name].strip().splitlines()]
        assert [r[:1] for r in rows_b] == [r[:1] for r in rows_a] and rows_b[0] == rows_a[0]
        for ra, rb in zip(rows_a[1:], rows_b[1:]):
            assert len(rb) == len(ra)
            for a, b in zip(ra, rb):  # "NA" where an epoch was not validated (validation_freq)
                assert b == a if "NA" in (a, b) else float(b) == pytest.approx(float(a), rel=HISTORY_RTOL, abs=1e-6)


def check(case: Case, tmp_path_factory) -> None:
    tmp = str(tmp_path_factory.mktemp("case"))
    keras_out = run(case, "keras", tmp)
    deepfit_out = run(case, "deepfit", tmp)
    assert_conforms(case, keras_out, deepfit_out)


@settings(settings.get_profile(PROFILE))
@given(case=cases())
def test_deepfit_fit_conforms_to_model_fit(case, tmp_path_factory):
    check(case, tmp_path_factory)
