"""Keras's own callbacks (``keras.callbacks.Callback``) run from deepfit's events, unchanged.

One deepfit callback holds them in a ``keras.callbacks.CallbackList`` (Keras's own
container: its History, its ProgbarLogger, its order) and translates the events:

- ``on_train_begin`` / ``on_epoch_begin`` / ``on_epoch_end`` / ``on_train_end``: exactly as
  ``model.fit`` calls them, with the logs it passes (``loss``, the compiled metrics,
  ``val_*``), the model's variables holding the trained values;
- batch hooks at chunk boundaries: ``on_train_batch_begin`` before a chunk of steps and
  ``on_train_batch_end`` after it, with the running logs, as ``model.fit`` does with
  ``steps_per_execution`` (deepfit's chunk is a whole epoch unless ``steps_per_execution``
  or a callback asks for fewer steps);
- validation runs inside deepfit's compiled evaluation: no ``on_test_*`` hooks.

What a Keras callback changes takes effect: ``model.stop_training`` ends training after
the epoch (after the chunk, from a batch hook), a new ``optimizer.learning_rate`` applies
from the next step (as a scale of deepfit's schedule, if the run has one), weights set on
the model (``EarlyStopping(restore_best_weights=True)``) become the trainer's.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import keras
import numpy as np

from deepfit.errors import ConfigError
from deepfit.train.events import Callback

# deepfit's own entries in an epoch's logs, which model.fit's logs do not have.
DEEPFIT_ONLY = ("epoch", "seconds", "learning_rate")

# Keras callbacks that cannot be honoured exactly here, and what to use instead.
REFUSED = {
    "TensorBoard": "Keras's TensorBoard callback needs TensorFlow; use deepfit's: "
                   "deepfit.train.callbacks.tensorboard.TensorBoard(log_dir), or training.tensorboard = true",
    "BackupAndRestore": "deepfit keeps its own bit-exact backups: pass out=DIR (deepfit.fit) or train a config "
                        "with a run directory, and resume with resume=True / `deepfit train RUN --resume`",
}


def is_keras_callback(obj: Any) -> bool:
    return isinstance(obj, keras.callbacks.Callback)


def check_keras_callbacks(callbacks: Sequence[Any]) -> None:
    """Refuse, before training, a Keras callback deepfit cannot honour exactly (with what to do)."""
    for cb in callbacks:
        for cls in type(cb).__mro__:
            if cls.__module__.startswith("keras") and cls.__name__ in REFUSED:
                raise ConfigError(f"callback {type(cb).__name__}: {REFUSED[cls.__name__]}")


# Keras callbacks a config cannot name: their arguments are Python functions.
NEEDS_PYTHON = ("LambdaCallback", "LearningRateScheduler", "Callback", "CallbackList", "History")


def keras_callback_class(name: str) -> type | None:
    """Keras's callback class of that name (``ModelCheckpoint`` or ``model_checkpoint``), or None."""
    from keras.src.utils.naming import to_snake_case

    wanted = name.replace("-", "_").lower()
    return next((getattr(keras.callbacks, n) for n in dir(keras.callbacks)
                 if isinstance(getattr(keras.callbacks, n), type) and wanted in (n.lower(), to_snake_case(n))), None)


def keras_callback(name: str, kwargs: dict[str, Any]) -> keras.callbacks.Callback | None:
    """A Keras callback named in a config (``ModelCheckpoint`` or ``model_checkpoint``, Keras's arguments);
    None when Keras has no callback of that name."""
    cls = keras_callback_class(name)
    if cls is None:
        return None
    if cls.__name__ in REFUSED:
        raise ConfigError(f"callback {name!r}: {REFUSED[cls.__name__]}")
    if cls.__name__ in NEEDS_PYTHON:
        raise ConfigError(f"callback {name!r} takes Python functions, which a config cannot hold: pass it from "
                          f"Python (deepfit.train(cfg, callbacks=[keras.callbacks.{cls.__name__}(...)]))")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"callback {name!r}: {e}") from None


class KerasCallbacks(Callback):
    """Runs ``keras.callbacks.Callback`` objects in deepfit's loop (see the module docstring).

    ``history``: Keras's ``History`` of the run (what ``model.fit`` returns).
    ``initial_epoch``: as ``model.fit``'s, training starts at that epoch (its data order included).
    """

    order = 90  # after deepfit's own callbacks and the run record, as model.fit appends History last

    def __init__(self, callbacks: Sequence[keras.callbacks.Callback] = (), *, verbose: Any = 0,
                 add_history: bool = True, initial_epoch: int = 0, validation_data: Any = None):
        check_keras_callbacks(callbacks)
        self.keras_callbacks = list(callbacks)
        self.verbose, self.add_history, self.initial_epoch = verbose, add_history, initial_epoch
        self.list: keras.callbacks.CallbackList | None = None
        self._logs: dict[str, Any] = {}
        self._rate_set: float | None = None

    @property
    def history(self) -> keras.callbacks.History | None:
        return None if self.list is None else self.list._history

    # -- keeping the model and the trainer's state in step -------------------------------
    def _to_model(self, trainer) -> None:
        """The trainer's state into the Keras variables, the next step's rate into ``optimizer.learning_rate``."""
        trainer.state.to_model(trainer.layout)
        trainer.model.stop_training = trainer.stop_training
        if trainer.steps.lr_key is not None:
            self._rate_set = float(trainer.steps.rate(trainer.state))
            trainer.optimizer.learning_rate = self._rate_set

    def _from_model(self, trainer) -> None:
        """What the callbacks changed on the model: weights, the learning rate, stop_training."""
        model, variables, state = trainer.model, trainer.layout.variables, trainer.state
        trainer.state = state.replace(params={k: jnp.asarray(variables[k].value) for k in state.params},
                                      buffers={k: jnp.asarray(variables[k].value) for k in state.buffers})
        if self._rate_set is not None:
            rate = float(np.asarray(trainer.optimizer.learning_rate))
            if rate != np.float32(self._rate_set):
                scheduled = float(trainer.steps.rate(trainer.state.replace(lr_scale=jnp.ones((), jnp.float32))))
                trainer.state = trainer.state.replace(lr_scale=jnp.asarray(rate / scheduled, jnp.float32))
        if getattr(model, "stop_training", False):
            trainer.stop_training = True
            trainer.stop_reason = trainer.stop_reason or "a Keras callback set model.stop_training"

    def _call(self, trainer, event: str, *args: Any) -> None:
        self._to_model(trainer)
        getattr(self.list, event)(*args)
        self._from_model(trainer)

    # -- deepfit's events ------------------------------------------------------------------
    def on_fit_begin(self, trainer) -> None:
        if self.initial_epoch and int(trainer.state.step) == 0:
            trainer.state = trainer.state.replace(
                step=jnp.asarray(self.initial_epoch * trainer._steps_per_epoch, jnp.int32))
        self.list = keras.callbacks.CallbackList(
            self.keras_callbacks, add_history=self.add_history, add_progbar=self.verbose != 0, model=trainer.model,
            verbose=self.verbose, epochs=trainer.epochs, steps=trainer._steps_per_epoch)
        trainer.model.stop_training = False
        self._call(trainer, "on_train_begin")

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        self._call(trainer, "on_epoch_begin", epoch)
        self._batch_begin(trainer, epoch, int(trainer.state.step))

    def _batch_begin(self, trainer, epoch: int, step: int) -> None:
        self._call(trainer, "on_train_batch_begin", step - epoch * trainer._steps_per_epoch)

    def on_chunk_end(self, trainer, chunk) -> None:
        logs = trainer.steps.loss.logs(trainer.state.sums)
        self._call(trainer, "on_train_batch_end", chunk.stop - 1 - chunk.epoch * trainer._steps_per_epoch, logs)
        if chunk.stop < (chunk.epoch + 1) * trainer._steps_per_epoch and not trainer.stop_training:
            self._batch_begin(trainer, chunk.epoch, chunk.stop)

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        self._logs = {k: v for k, v in logs.items() if k not in DEEPFIT_ONLY}
        self._call(trainer, "on_epoch_end", epoch, self._logs)

    def on_fit_end(self, trainer) -> None:
        if self.list is not None:
            self._call(trainer, "on_train_end", self._logs)
