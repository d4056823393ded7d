"""deepfit's training loop, top to bottom.

``Trainer.fit`` runs epochs; each epoch shuffles the training set with a key
derived from the run's seed and the epoch number, runs the compiled chunk(s)
of steps, evaluates on the validation set and hands the logs to the callbacks.
Everything optional is a callback (see ``deepfit.train.events``).
"""

from __future__ import annotations

import math
import time
from typing import Any, Generator, Sequence

import jax
import jax.numpy as jnp
import keras
import numpy as np

from deepfit.train import compile_cache
from deepfit.train.events import Callback, CallbackList, Chunk, StopTraining
from deepfit.train.state import Layout, TrainState
from deepfit.train.objective import as_objective
from deepfit.train.step import (Schedule, Steps, StepsFactory, layer_flags, shared_steps, structure_key,
                               trainable_weights)

# Streams of randomness derived from the run's seed (init uses the seed itself).
DATA_ORDER = 1


class Trainer:
    """Trains a Keras model with a Keras optimizer in deepfit's compiled loop.

    ``shuffle=False`` keeps the data order (as ``model.fit(shuffle=False)``); ``validation_freq``
    validates every that many epochs, or at the epochs (1-based) listed, as ``model.fit``'s.
    ``program``: a key under which this process keeps the compiled step for the next
    trainer of the same shape (see :func:`deepfit.train.step.shared_steps`).

    The trainer owns its step factory: a callback that must see inside the step (layer
    statistics) names its :class:`~deepfit.train.step.Steps` subclass as ``steps_factory``,
    and whatever changes the frozen layers (a freeze schedule) calls :meth:`refresh_steps`.
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        *,
        loss: str = "sparse_categorical_crossentropy",
        batch_size: int = 32,
        epochs: int = 1,
        seed: int = 0,
        schedule: Schedule | None = None,
        callbacks: Sequence[Callback] = (),
        steps_per_chunk: int | None = None,
        eval_batch_size: int = 1000,
        shuffle: bool = True,
        program: Any = None,
        validation_freq: int | Sequence[int] = 1,
    ):
        if keras.backend.backend() != "jax":
            raise RuntimeError(
                f"deepfit's trainer needs Keras's JAX backend, but KERAS_BACKEND is "
                f"{keras.backend.backend()!r}: set KERAS_BACKEND=jax before importing keras"
            )
        compile_cache.enable()
        self.model, self.optimizer = model, optimizer
        self.batch_size, self.epochs, self.seed = batch_size, epochs, seed
        self.eval_batch_size, self.shuffle = eval_batch_size, shuffle
        self.callbacks = CallbackList(callbacks)
        asked = [c.every_n_steps for c in self.callbacks if c.every_n_steps]
        self.steps_per_chunk = min([steps_per_chunk or math.inf, *asked])
        asked_eval = [c.eval_batches_per_call for c in self.callbacks if c.eval_batches_per_call]
        self.eval_batches_per_call = min(asked_eval) if asked_eval else None
        self.validation_freq = validation_freq
        if not optimizer.built:
            optimizer.build(trainable_weights(model))
        # One objective (Keras's loss and metrics) for every step this trainer builds: the sums keep one shape.
        self.loss, self.schedule = as_objective(loss, model), schedule
        # A caller's key for the compiled step, completed by what the step is traced from: a key that
        # missed a constant of the model or optimizer can then never hand this trainer another's program.
        self.program = None if program is None else (program, structure_key(model, optimizer))
        self.layout = Layout(model, optimizer)
        factories = [c.steps_factory for c in self.callbacks if getattr(c, "steps_factory", None)]
        if len(factories) > 1:
            raise ValueError("two callbacks each want their own compiled step; use one of them")
        self.steps_factory: StepsFactory = factories[0] if factories else Steps
        self._steps: dict[tuple, Steps] = {}
        self.refresh_steps()
        self.state = TrainState.from_model(self.layout).replace(sums=self.loss.zeros())
        self.fresh_optimizer = self.state.optimizer  # what a phase that resets the optimizer starts from
        self.history: list[dict[str, Any]] = []
        self.stop_training = False
        self.stop_reason: str | None = None
        self.ended = False  # the last fit ended normally (its epochs, or stopped by a callback)

    def refresh_steps(self) -> Steps:
        """The compiled steps for the layers trainable now (built once per set of flags)."""
        flags = layer_flags(self.model)
        if flags not in self._steps:
            key = None if self.program is None else (self.program, flags, self.steps_factory)
            self._steps[flags] = shared_steps(key, lambda: self.steps_factory(
                self.model, self.optimizer, self.loss, self.schedule, layout=self.layout))
        self.steps = self._steps[flags]
        return self.steps

    # -- data order -------------------------------------------------------
    def epoch_order(self, epoch: int, n: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(n, dtype=np.int32)
        # NumPy's seeded generator: 1 ms where jax.random.permutation on the CPU took 100 ms.
        rng = np.random.Generator(np.random.PCG64([self.seed, DATA_ORDER, epoch]))
        return rng.permutation(n).astype(np.int32)

    def steps_per_epoch(self, n: int) -> int:
        return math.ceil(n / self.batch_size)

    @property
    def epoch(self) -> int:
        """Epochs completed (derived from the step, so it resumes by itself)."""
        return int(self.state.step) // self._steps_per_epoch

    # -- the loop -----------------------------------------------------------
    def fit(self, x, y, validation_data=None) -> list[dict[str, Any]]:
        """Train until ``epochs`` are done or a callback stops; returns the history rows."""
        loop = self.loop(x, y, validation_data)
        try:
            idx, active = next(loop)
            while True:
                idx, active = loop.send(self.steps.run_chunk(self.state, self.x_all, self.y_all, idx, active))
        except StopIteration:
            pass
        return self.history

    def loop(self, x, y, validation_data=None) -> Generator[tuple[np.ndarray, np.ndarray], Any, None]:
        """The loop itself, as a generator: it yields each chunk's batch indices ``(K, batch)`` and active
        rows, and is sent back ``run_chunk``'s ``(state, losses, rates)``. :meth:`fit` runs the chunks
        one by one; a :class:`~deepfit.train.group.Group` runs several trainers' chunks in one call."""
        self.x_all, self.y_all = on_device(x), on_device(y)
        n = len(self.x_all)
        self._steps_per_epoch = self.steps_per_epoch(n)
        full, rest = divmod(n, self.batch_size)
        k = int(min(self.steps_per_chunk, full)) if full else 0
        self.stop_training, self.stop_reason = False, None
        self.callbacks("on_fit_begin", self)
        ended = False  # normally: the epochs done, or a callback stopped it (not an exception or a signal)
        try:
            while self.epoch < self.epochs and not self.stop_training:
                epoch = self.epoch
                position = int(self.state.step) - epoch * self._steps_per_epoch
                if position == 0:
                    self.state = self.state.replace(sums=jnp.zeros_like(self.state.sums))
                self.callbacks("on_epoch_begin", self, epoch)
                started = time.perf_counter()
                order = self.epoch_order(epoch, n)
                rows = order[: full * self.batch_size].reshape(full, self.batch_size)
                for start in range(position - position % k if k else 0, full, k or 1):
                    idx = np.zeros((k, self.batch_size), np.int32)
                    take = rows[start : start + k]
                    idx[: len(take)] = take
                    active = np.arange(start, start + k) < full
                    active &= np.arange(start, start + k) >= position
                    yield from self._run(epoch, idx, active)
                    if self.stop_training:  # set from a chunk's end (a Keras batch hook): the epoch ends here
                        break
                if rest and position <= full and not self.stop_training:
                    yield from self._run(epoch, order[None, full * self.batch_size :], np.ones(1, bool))
                logs = self._epoch_logs(epoch, time.perf_counter() - started, validation_data)
                self.history.append(logs)
                self.callbacks("on_epoch_end", self, epoch, logs)
            ended = True
        except StopTraining as stop:
            self.stop_reason = str(stop)
            ended = True
        finally:
            self.state.to_model(self.layout)
            self.ended = ended
            if ended:
                self._finalize_optimizer()
            self.callbacks("on_fit_end", self)

    def _finalize_optimizer(self) -> None:
        """As ``model.fit`` ends: an optimizer with ``use_ema`` writes its moving averages into the
        weights (Keras's ``finalize_variable_values``; a no-op otherwise), which the state then holds.
        Not after an exception or a signal: a resumed run must continue from the weights it trained."""
        self.optimizer.finalize_variable_values([self.layout.variables[k] for k in self.steps.trainable_keys])
        self.state = self.state.replace(params={k: jnp.asarray(self.layout.variables[k].value)
                                                for k in self.state.params})

    def _run(self, epoch: int, idx: np.ndarray, active: np.ndarray):
        first = int(self.state.step)
        self.state, losses, rates, aux = yield idx, active
        losses, rates = np.asarray(losses)[active], np.asarray(rates)[active]
        self.callbacks("on_chunk_end", self, Chunk(epoch, first, first + int(active.sum()), losses, rates, aux))

    def _epoch_logs(self, epoch: int, seconds: float, validation_data) -> dict[str, Any]:
        logs: dict[str, Any] = {"epoch": epoch + 1, **self.steps.loss.logs(self.state.sums)}
        if validation_data is not None and self._validates(epoch):
            logs.update({f"val_{k}": v for k, v in self.validate(*validation_data).items()})
        logs["learning_rate"] = self.learning_rate
        logs["seconds"] = seconds
        return logs

    def _validates(self, epoch: int) -> bool:
        freq = self.validation_freq
        return (epoch + 1) % freq == 0 if isinstance(freq, int) else epoch + 1 in freq

    def validate(self, x, y) -> dict[str, float]:
        """An epoch's validation, with the ``on_test_*`` events (as ``model.fit`` runs ``evaluate`` with
        its callbacks): batch events after every ``eval_batches_per_call`` batches when a callback asks."""
        self.callbacks("on_test_begin", self)
        per_call = self.eval_batches_per_call
        if per_call is None:
            logs = self.evaluate_logs(x, y)
        else:
            sums = np.zeros(self.steps.loss.size, np.float32)
            total, done = -(-len(x) // self.eval_batch_size), 0
            for xs, ys in batches(on_device(x), on_device(y), self.eval_batch_size):
                for i in range(len(xs)):
                    if done % per_call == 0:
                        self.callbacks("on_test_batch_begin", self, done)
                    yb = jax.tree.map(lambda a: a[i : i + 1], ys)
                    sums += np.asarray(self.steps.evaluate_batches(self.state.variables, xs[i : i + 1], yb))
                    done += 1
                    if done % per_call == 0 or done == total:  # numbered as Keras numbers an execution's end
                        end = (done - 1) // per_call * per_call + per_call - 1
                        self.callbacks("on_test_batch_end", self, end, self.steps.loss.logs(sums))
            logs = self.steps.loss.logs(sums)
        self.callbacks("on_test_end", self, logs)
        return logs

    @property
    def learning_rate(self) -> float:
        """The rate the last step used (what Keras's ``optimizer.learning_rate`` reads after it)."""
        return float(self.steps.last_rate(self.state))

    def evaluate(self, x, y, state: TrainState | None = None) -> tuple[float, float]:
        """Mean loss (regularization included, as Keras reports it) and accuracy, inference mode."""
        logs = self.evaluate_logs(x, y, state)
        return logs["loss"], logs.get("accuracy", float("nan"))

    def evaluate_logs(self, x, y, state: TrainState | None = None, prefix: str = "") -> dict[str, float]:
        """Loss and every metric of the objective, as ``model.evaluate(return_dict=True)`` names them;
        ``y`` may be ``(labels, sample_weight)``."""
        state = state or self.state
        sums = np.zeros(self.steps.loss.size, np.float32)  # float32 as Keras accumulates: the same numbers
        for xb, yb in batches(on_device(x), on_device(y), self.eval_batch_size):
            sums += np.asarray(self.steps.evaluate_batches(state.variables, xb, yb))
        return self.steps.loss.logs(sums, prefix)

    def predict(self, x, state: TrainState | None = None) -> np.ndarray:
        """Model outputs in inference mode, batched."""
        state = state or self.state
        x, size = np.asarray(x), self.eval_batch_size
        return np.concatenate([np.asarray(self.steps.forward(state.variables, x[i : i + size]))
                               for i in range(0, len(x), size)])


# Device copies of read-only host arrays (the prepared datasets a process keeps), by identity:
# copying the notebook's 172 MB training set costs 0.3 s, once a process instead of once a run.
_KEEP_ON_DEVICE = 8
_ON_DEVICE: dict[int, tuple[np.ndarray, Any]] = {}


def on_device(x) -> Any:
    """``jnp.asarray(x)``, reused for a read-only NumPy array seen before (a writable one may change);
    a tuple (labels, sample weights) element by element."""
    if isinstance(x, tuple):
        return tuple(on_device(a) for a in x)
    if not isinstance(x, np.ndarray) or x.flags.writeable:
        return jnp.asarray(x)
    hit = _ON_DEVICE.get(id(x))
    if hit is None or hit[0] is not x:
        hit = (x, jnp.asarray(x))
        _ON_DEVICE[id(x)] = hit  # holding x keeps its id from being reused by another array
        while len(_ON_DEVICE) > _KEEP_ON_DEVICE:
            _ON_DEVICE.pop(next(iter(_ON_DEVICE)))
    return hit[1]


def batches(x, y, size: int):
    """(K, size, ...) stacks of full batches, then one stack of the remainder."""
    full = len(x) // size * size
    if full:
        yield x[:full].reshape(-1, size, *x.shape[1:]), jax.tree.map(lambda a: a[:full].reshape(-1, size, *a.shape[1:]), y)
    if full < len(x):
        yield x[None, full:], jax.tree.map(lambda a: a[None, full:], y)
