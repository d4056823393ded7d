"""``deepfit.fit(model, x, y, ...)``: ``model.fit`` for a compiled Keras model, in deepfit's compiled loop.

The model is compiled as for Keras (``model.compile(optimizer, loss, metrics)``) and is
updated in place; the return value is Keras's ``History``. The arguments are ``model.fit``'s,
in its order. Loss and metrics are the model's own (train/objective.py), Keras callbacks run
unchanged, batch hooks included (train/callbacks/keras_adapter.py). What differs from
``model.fit``, and why: the data order of ``shuffle=True`` comes from ``seed`` (deepfit's rule,
so a run can be repeated and resumed), not from NumPy's global generator; data Keras would
train on without a word but wrongly (labels the loss cannot read, NaN inputs) is refused
before training, and raw integer pixels get a warning.
"""

from __future__ import annotations

import secrets
import warnings
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from deepfit.errors import ConfigError, DataError, DataWarning
from deepfit.preflight import check_finite, check_labels
from deepfit.train.callbacks.keras_adapter import KerasCallbacks, check_keras_callbacks, is_keras_callback
from deepfit.train.events import Callback
from deepfit.train.loop import Trainer
from deepfit.train.objective import Objective


def fit(
    model: keras.Model,
    x: Any = None,
    y: Any = None,
    batch_size: int | None = None,
    epochs: int = 1,
    verbose: Any = "auto",
    callbacks: Sequence[Any] | None = None,
    validation_split: float = 0.0,
    validation_data: Any = None,
    shuffle: bool = True,
    class_weight: dict[int, float] | None = None,
    sample_weight: Any = None,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    validation_batch_size: int | None = None,
    validation_freq: int | Sequence[int] = 1,
    *,
    seed: int | None = None,
    out: str | Path | None = None,
) -> keras.callbacks.History:
    """Train a compiled Keras model as ``model.fit`` does, in deepfit's compiled loop; returns the History.

    Arguments mean what they mean to ``model.fit``, in the same order (``validation_split`` takes the
    last fraction of ``x`` before shuffling; ``validation_data`` is ``(x, y)`` or ``(x, y,
    sample_weight)``; ``class_weight`` becomes per-sample weights). ``callbacks`` holds
    ``keras.callbacks.Callback`` objects (run unchanged, batch hooks at every step as in
    ``model.fit``) and deepfit callbacks. ``steps_per_epoch`` and ``validation_steps`` (for
    generators) are refused: deepfit takes arrays. ``seed`` fixes the data order (drawn at random
    when None, and recorded). ``out=DIR`` also writes deepfit's run directory.
    """
    _check_compiled(model)
    if steps_per_epoch is not None or validation_steps is not None:
        raise ConfigError("deepfit.fit takes arrays, which set the steps themselves: drop steps_per_epoch and "
                          "validation_steps (or use model.fit for a generator)")
    batch_size = 32 if batch_size is None else int(batch_size)
    x = _array(x, "x")
    if y is None:
        raise DataError("deepfit.fit needs labels: fit(model, x, y, ...); a dataset object is not supported")
    y = _array(y, "y")
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} samples but y has {len(y)}; they must match")
    if sample_weight is not None and class_weight is not None:
        raise DataError("give sample_weight or class_weight, not both (as model.fit)")
    if sample_weight is not None:
        sample_weight = _array(sample_weight, "sample_weight")
    if not 0 <= validation_split < 1:
        raise DataError(f"validation_split must be in [0, 1), got {validation_split}")
    if validation_split and validation_data is None:
        from keras.src.trainers.data_adapters.array_slicing import train_validation_split

        (x, y, sample_weight), validation_data = train_validation_split((x, y, sample_weight), validation_split)
    if class_weight is not None:
        from keras.src.trainers.data_adapters.data_adapter_utils import class_weight_to_sample_weights

        sample_weight = class_weight_to_sample_weights(y, class_weight)
    valid = _validation(validation_data)

    callbacks = list(callbacks or [])
    keras_cbs = [c for c in callbacks if is_keras_callback(c)]
    own = [c for c in callbacks if not is_keras_callback(c)]
    bad = [c for c in own if not isinstance(c, Callback)]
    if bad:
        raise ConfigError(f"callback {bad[0]!r} is neither a keras.callbacks.Callback nor a deepfit Callback")
    check_keras_callbacks(keras_cbs)

    if not model.built or getattr(model, "_compile_metrics", None) is not None and not model._compile_metrics.built:
        # As model.fit: build the model, its compiled metrics and optimizer from one batch's shapes.
        try:
            model._symbolic_build(data_batch=(x[:1], y[:1]) if sample_weight is None
                                  else (x[:1], y[:1], sample_weight[:1]))
        except Exception:  # noqa: BLE001 - a metric that fails here is named by the Objective's own check below
            if not model.built:
                raise
    spec = model.compute_output_spec(keras.KerasTensor((1, *x.shape[1:]), str(x.dtype)))
    _check_data(model.loss, x, y, valid, tuple(spec.shape))
    objective = Objective.from_model(model, y[:1], np.zeros((1, *spec.shape[1:]), np.float32))

    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    verbose = 1 if verbose == "auto" else verbose
    steps_per_execution = int(getattr(model, "steps_per_execution", 1) or 1)
    if out is not None:
        return _fit_with_run(model, x, y, valid, sample_weight, out=out, seed=seed, batch_size=batch_size,
                             epochs=epochs, shuffle=shuffle, callbacks=callbacks, verbose=verbose,
                             initial_epoch=initial_epoch)
    adapter = KerasCallbacks(keras_cbs, verbose=verbose, initial_epoch=initial_epoch,
                             steps_per_execution=steps_per_execution)
    trainer = Trainer(
        model, model.optimizer, loss=objective, batch_size=batch_size, epochs=epochs, seed=seed,
        callbacks=[*own, adapter], eval_batch_size=validation_batch_size or batch_size, shuffle=shuffle,
        validation_freq=validation_freq,
    )
    data_y = y if sample_weight is None else (y, np.asarray(sample_weight, np.float32))
    trainer.fit(x, data_y, valid)
    history = adapter.history
    model.history = history
    return history


def _check_data(loss: Any, x: np.ndarray, y: np.ndarray, valid, output_shape: tuple) -> None:
    """What a deepfit run refuses before training, refused here too (Keras would train on it, wrongly)."""
    parts = [("training", x, y)]
    if valid is not None:
        xv, yv = valid
        parts.append(("validation", xv, yv[0] if isinstance(yv, tuple) else yv))
    for part, xs, ys in parts:
        check_finite(xs, f"the {part} inputs")
        check_labels(loss, ys, output_shape, f"the {part} labels")
    if np.issubdtype(x.dtype, np.integer) and x.size and int(x.max()) > 1:
        warnings.warn(f"the inputs are integers up to {int(x.max())} (raw pixels?): the chapter scales them first "
                      "(x / 255.0), without which these networks train poorly", DataWarning, stacklevel=3)


def _fit_with_run(model, x, y, valid, sample_weight, *, out, seed, batch_size, epochs, shuffle, callbacks, verbose,
                  initial_epoch) -> keras.callbacks.History:
    """``fit`` recorded as a deepfit run in ``out``: the model's architecture and compile arguments in
    ``config.toml`` (they must be Keras's, so the record can be rerun), the seed, metrics, final weights,
    manifest and checkpoints. Calling it again on an unfinished ``out`` with the same model (its layer
    names included, as a notebook rerun in a fresh kernel gives them) resumes bit for bit; on a finished
    one it loads the trained weights into ``model`` and returns the recorded history."""
    from deepfit.data.prepare import Dataset
    from deepfit.run import load_run, train

    if sample_weight is not None or initial_epoch:
        raise ConfigError("out=DIR records the run as a config, which has no sample weights or initial_epoch "
                          "(yet): train without out=, or without those")
    if valid is None:
        raise ConfigError("out=DIR needs validation data (validation_data= or validation_split=), "
                          "as a deepfit run always reports it")
    xv, yv = valid
    if isinstance(yv, tuple):
        raise ConfigError("out=DIR: validation sample weights cannot be recorded (yet); pass (x_val, y_val)")
    cfg = {"seed": seed, "data": {"source": "arrays", "scaling": "none", "validation_size": len(xv)},
           "model": {"input_shape": [int(d) for d in x.shape[1:]], "layers": [{"type": "flatten"}]},
           "training": {"epochs": epochs, "batch_size": batch_size, "shuffle": shuffle, "progress": False,
                        "eval_batch_size": batch_size}}
    keras_cbs = [c for c in callbacks if is_keras_callback(c)]
    adapter = KerasCallbacks(keras_cbs, verbose=1 if verbose == "auto" else verbose)
    dataset = Dataset(np.asarray(x, np.float32) if x.dtype.kind != "f" else x, y, xv, yv)
    own = [c for c in callbacks if not is_keras_callback(c)]
    run = train(cfg, out, model=model, data=dataset, callbacks=[*own, adapter], resume=True)
    if run.trainer is None:  # finished before: the recorded weights and history
        done = load_run(out)
        model.set_weights(done.model.get_weights())
        history = keras.callbacks.History()
        history.set_model(model)
        history.on_train_begin()
        for row in done.history_rows:
            history.on_epoch_end(int(row["epoch"]) - 1, {k: v for k, v in row.items()
                                                          if k not in ("epoch", "seconds", "learning_rate")})
        model.history = history
        return history
    model.history = adapter.history
    return adapter.history


def _check_compiled(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise ConfigError(f"deepfit.fit needs a keras.Model, got {type(model).__name__}")
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ConfigError("the model is not compiled: call model.compile(optimizer=..., loss=..., metrics=[...]) "
                          "first, as for model.fit")
    if getattr(model, "loss", None) is None:
        raise ConfigError("the model was compiled without a loss: model.compile(optimizer=..., "
                          "loss='sparse_categorical_crossentropy', ...)")
    outputs = getattr(model, "outputs", None)
    if outputs is not None and len(outputs) > 1:
        raise ConfigError(f"deepfit.fit trains single-output models; this one has {len(outputs)} outputs: "
                          "use model.fit")


def _array(a: Any, name: str) -> np.ndarray:
    if isinstance(a, (dict, list)) and not isinstance(a, np.ndarray):
        raise DataError(f"{name}: deepfit.fit takes arrays (one input, one output), got a {type(a).__name__}")
    try:
        return np.asarray(a)
    except Exception as e:  # noqa: BLE001 - anything that is not array-like
        raise DataError(f"{name}: cannot be read as an array ({e})") from None


def _validation(data: Any):
    if data is None:
        return None
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise DataError("validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight_val)")
    xv, yv = _array(data[0], "validation x"), _array(data[1], "validation y")
    if len(data) == 3 and data[2] is not None:
        return xv, (yv, np.asarray(data[2], np.float32))
    return xv, yv
