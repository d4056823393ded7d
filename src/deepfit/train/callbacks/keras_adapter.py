"""Keras's own callbacks (``keras.callbacks.Callback``) run from deepfit's events, unchanged.

One deepfit callback holds them in a ``keras.callbacks.CallbackList`` (Keras's own
container: its History, its ProgbarLogger, its order) and calls each hook where
``model.fit`` calls it, with the logs it passes:

- ``on_train_begin`` / ``on_epoch_begin`` / ``on_epoch_end`` / ``on_train_end`` (the last
  only when training ended without an exception, as in ``model.fit``);
- ``on_train_batch_begin`` / ``on_train_batch_end`` around every execution of
  ``steps_per_execution`` steps (every step by default) when a callback overrides a batch
  hook (Keras's own test, ``utils.is_default``). deepfit's compiled chunks are then that
  many steps long, so a rate set in ``on_train_batch_begin`` applies to the very next step.
  It costs what it costs in ``model.fit``: a return to Python after every execution (measured
  in benchmarks/bench_batch_hooks.py). With no such callback the chunks stay long and only
  the progress bar is told, every ``PROGRESS_STEPS`` steps;
- ``on_test_begin`` / ``on_test_batch_begin`` / ``on_test_batch_end`` / ``on_test_end``
  around each epoch's validation (batch by batch only when a callback overrides a test batch
  hook), as ``model.fit`` runs ``evaluate`` with its callbacks.

The model's variables follow the training state by Keras's own mechanism: before a hook the
state is handed to the model as its pending JAX state (``model._jax_state``), and a callback
that reads ``self.model`` syncs it into the variables (``jax_state_sync``), exactly as in
``model.fit``. After the hook, if it was synced, what the callbacks changed becomes the
trainer's: weights (``EarlyStopping(restore_best_weights=True)``), optimizer variables, the
learning rate (a scale of deepfit's schedule when the run has one), ``stop_training``.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax.numpy as jnp
import keras
import numpy as np
from keras.src import utils as keras_utils

from deepfit.errors import ConfigError
from deepfit.train.events import Callback

# deepfit's own entries in an epoch's logs, which model.fit's logs do not have.
DEEPFIT_ONLY = ("epoch", "seconds", "learning_rate")

# Steps between progress-bar updates when no callback needs every batch: often enough to watch,
# rarely enough to cost nothing measurable.
PROGRESS_STEPS = 100

TRAIN_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")
TEST_BATCH_HOOKS = ("on_test_batch_begin", "on_test_batch_end")

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


def overrides(callback: keras.callbacks.Callback, hooks: Sequence[str]) -> bool:
    """Whether the callback does something in any of ``hooks`` (Keras's test for its batch hooks)."""
    return any(not keras_utils.is_default(getattr(callback, h)) for h in hooks)


def needs_every_batch(callback: keras.callbacks.Callback) -> bool:
    """A callback whose train batch hooks must run at every execution, as in ``model.fit``. Not the
    progress bar (a display, told at chunk ends) nor a ModelCheckpoint saving by epoch (its batch hook
    returns at once)."""
    if isinstance(callback, keras.callbacks.ProgbarLogger):
        return False
    if isinstance(callback, keras.callbacks.ModelCheckpoint) and callback.save_freq == "epoch":
        return False
    return overrides(callback, TRAIN_BATCH_HOOKS)


# Keras callbacks a config cannot name: their arguments are Python functions.
NEEDS_PYTHON = ("LambdaCallback", "LearningRateScheduler", "Callback", "CallbackList", "History")


def keras_callback(name: str, kwargs: dict[str, Any]) -> keras.callbacks.Callback | None:
    """A Keras callback named in a config (``ModelCheckpoint`` or ``model_checkpoint``, Keras's arguments);
    None when Keras has no callback of that name."""
    from keras.src.utils.naming import to_snake_case

    wanted = name.replace("-", "_").lower()
    cls = next((getattr(keras.callbacks, n) for n in dir(keras.callbacks)
                if isinstance(getattr(keras.callbacks, n), type) and wanted in (n.lower(), to_snake_case(n))), None)
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
    ``steps_per_execution``: the model's (``model.compile(steps_per_execution=...)``): batch hooks
    run once per that many steps. ``restored_epoch``: after training, the epoch (1-based) whose
    weights a Keras ``EarlyStopping(restore_best_weights=True)`` put back, else None.
    """

    order = 90  # after deepfit's own callbacks and the run record, as model.fit appends History last

    def __init__(self, callbacks: Sequence[keras.callbacks.Callback] = (), *, verbose: Any = 0,
                 add_history: bool = True, initial_epoch: int = 0, steps_per_execution: int = 1):
        check_keras_callbacks(callbacks)
        self.keras_callbacks = list(callbacks)
        self.verbose, self.add_history, self.initial_epoch = verbose, add_history, initial_epoch
        self.per_execution = max(1, int(steps_per_execution))
        every_batch = any(needs_every_batch(cb) for cb in self.keras_callbacks)
        # Batch hooks fall at multiples of this many steps (or an epoch's end); any chunk end for the bar alone.
        self.hook_every = self.per_execution if every_batch else 1
        self.every_n_steps = self.per_execution if every_batch else (PROGRESS_STEPS if verbose == 1 else None)
        if any(overrides(cb, TEST_BATCH_HOOKS) for cb in self.keras_callbacks):
            self.eval_batches_per_call = self.per_execution
        self.list: keras.callbacks.CallbackList | None = None
        self.restored_epoch: int | None = None
        self._logs: dict[str, Any] = {}
        self._rate_shown: float | None = None

    @property
    def history(self) -> keras.callbacks.History | None:
        return None if self.list is None else self.list._history

    # -- the model follows the state, lazily (Keras's jax_state_sync) ----------------------
    def _expose(self, trainer) -> None:
        """Hand the state to the model as its pending JAX state; a callback reading ``self.model`` syncs it."""
        model, steps, state = trainer.model, trainer.steps, trainer.state
        variables, optimizer = state.variables, dict(state.optimizer)
        self._rate_shown = None
        if steps.schedule is not None and steps.lr_key is not None and not steps.keras_schedule:
            # deepfit's schedule: the optimizer shows the rate the next step will use
            self._rate_shown = float(steps.rate(state))
            optimizer[steps.lr_key] = jnp.asarray(self._rate_shown, optimizer[steps.lr_key].dtype)
        model._jax_state = {
            "trainable_variables": [variables[k] for k in steps.trainable_keys],
            "non_trainable_variables": [variables[k] for k in steps.non_trainable_keys],
            "optimizer_variables": [optimizer[k] for k in trainer.layout.optimizer_vars],
        }
        model._jax_state_synced = False
        model.stop_training = trainer.stop_training

    def _collect(self, trainer) -> None:
        """What the callbacks changed on the model, if they looked at it, becomes the trainer's."""
        model = trainer.model
        if model._jax_state_synced:
            layout, state, steps = trainer.layout, trainer.state, trainer.steps
            value = lambda k, vs: jnp.asarray(vs[k].value)  # noqa: E731
            state = state.replace(params={k: value(k, layout.variables) for k in state.params},
                                  buffers={k: value(k, layout.variables) for k in state.buffers},
                                  optimizer={k: value(k, layout.optimizer_vars) for k in state.optimizer})
            if self._rate_shown is not None:
                rate = float(np.asarray(state.optimizer[steps.lr_key]))
                if rate != np.float32(self._rate_shown):  # a callback set it: a scale of deepfit's schedule
                    scheduled = float(steps.rate(state.replace(lr_scale=jnp.ones((), jnp.float32))))
                    state = state.replace(lr_scale=jnp.asarray(rate / scheduled, jnp.float32))
            trainer.state = state
        model._jax_state = None
        if getattr(model, "stop_training", False) and not trainer.stop_training:
            trainer.stop_training = True
            trainer.stop_reason = trainer.stop_reason or "a Keras callback set model.stop_training"

    def _call(self, trainer, event: str, *args: Any) -> None:
        self._expose(trainer)
        try:
            getattr(self.list, event)(*args)
        finally:
            self._collect(trainer)

    # -- deepfit's events ------------------------------------------------------------------
    def on_fit_begin(self, trainer) -> None:
        if self.initial_epoch and int(trainer.state.step) == 0:
            trainer.state = trainer.state.replace(
                step=jnp.asarray(self.initial_epoch * trainer._steps_per_epoch, jnp.int32))
        self.restored_epoch = None
        self.list = keras.callbacks.CallbackList(
            self.keras_callbacks, add_history=self.add_history, add_progbar=self.verbose != 0, model=trainer.model,
            verbose=self.verbose, epochs=trainer.epochs, steps=trainer._steps_per_epoch)
        trainer.model.stop_training = False
        self._call(trainer, "on_train_begin")

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        self._call(trainer, "on_epoch_begin", epoch)
        self._call(trainer, "on_train_batch_begin", int(trainer.state.step) - epoch * trainer._steps_per_epoch)

    def on_chunk_end(self, trainer, chunk) -> None:
        per_epoch = trainer._steps_per_epoch
        done = chunk.stop - chunk.epoch * per_epoch  # steps of this epoch done
        if done % self.hook_every and done != per_epoch:
            return  # inside an execution of steps_per_execution steps
        # Keras numbers an execution's end as its start + steps_per_execution - 1, past the epoch's last batch too.
        end = (done - 1) // self.hook_every * self.hook_every + self.hook_every - 1
        self._call(trainer, "on_train_batch_end", end, trainer.steps.loss.logs(trainer.state.sums))
        if done < per_epoch and not trainer.stop_training:
            self._call(trainer, "on_train_batch_begin", done)

    def on_test_begin(self, trainer) -> None:
        self._call(trainer, "on_test_begin")

    def on_test_batch_begin(self, trainer, batch: int) -> None:
        self._call(trainer, "on_test_batch_begin", batch)

    def on_test_batch_end(self, trainer, batch: int, logs: dict[str, Any]) -> None:
        self._call(trainer, "on_test_batch_end", batch, dict(logs))

    def on_test_end(self, trainer, logs: dict[str, Any]) -> None:
        self._call(trainer, "on_test_end", dict(logs))

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        self._logs = {k: v for k, v in logs.items() if k not in DEEPFIT_ONLY}
        self._call(trainer, "on_epoch_end", epoch, self._logs)

    def on_fit_end(self, trainer) -> None:
        if self.list is None or not trainer.ended:
            return
        self._call(trainer, "on_train_end", self._logs)
        restorer = next((cb for cb in self.keras_callbacks if isinstance(cb, keras.callbacks.EarlyStopping)
                         and cb.restore_best_weights and cb.best_weights is not None), None)
        if restorer is not None:
            self.restored_epoch = int(restorer.best_epoch) + 1
