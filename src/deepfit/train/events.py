"""Callbacks: named events at chunk boundaries, control by exception.

The loop calls ``on_fit_begin``, ``on_epoch_begin``, ``on_chunk_end``,
``on_epoch_end`` and ``on_fit_end`` on each callback in ``order``, and around the
validation of each epoch ``on_test_begin``, ``on_test_batch_end`` (after each call of
``eval_batches_per_call`` batches, when a callback asks for it) and ``on_test_end``. A callback
stops training by setting ``trainer.stop_training`` (the epoch finishes, as in
Keras) or by raising :class:`StopTraining` (at once). Every callback can save
and restore its own state, so a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

# Callbacks receive deepfit.train.loop.Trainer; not imported, since the loop imports this module
# (imports go one way: the loop is above its events).
Trainer = Any


class StopTraining(Exception):
    """Raised by a callback to end ``fit`` now; the message says why."""


@dataclass
class Chunk:
    """What one compiled call did: global steps [start, stop) and each step's loss."""

    epoch: int
    start: int
    stop: int
    losses: np.ndarray  # per-step training loss, host copy
    rates: np.ndarray  # per-step learning rate
    aux: dict = field(default_factory=dict)  # what the step recorded besides (layer statistics), host copies


class Callback:
    """Base class: override the events you need. Lower ``order`` runs first."""

    order: int = 0
    # Steps between on_chunk_end calls this callback needs (None: once an epoch is enough).
    every_n_steps: int | None = None
    # Validation batches between on_test_batch_end calls it needs (None: the whole evaluation at once).
    eval_batches_per_call: int | None = None

    def on_fit_begin(self, trainer: "Trainer") -> None: ...
    def on_epoch_begin(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_chunk_end(self, trainer: "Trainer", chunk: Chunk) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: "Trainer") -> None: ...
    def on_test_begin(self, trainer: "Trainer") -> None: ...
    def on_test_batch_begin(self, trainer: "Trainer", batch: int) -> None: ...
    def on_test_batch_end(self, trainer: "Trainer", batch: int, logs: dict[str, Any]) -> None: ...
    def on_test_end(self, trainer: "Trainer", logs: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable state needed to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class CallbackList:
    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = sorted(callbacks, key=lambda c: c.order)

    def __iter__(self):
        return iter(self.callbacks)

    def __call__(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(*args)
