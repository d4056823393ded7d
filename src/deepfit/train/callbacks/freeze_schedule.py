"""Freeze schedules: train in phases, each with its own set of trainable layers.

The notebook trains model B on A's layers for 4 epochs with the reused layers
frozen, then unfreezes them, recompiles (a fresh optimizer) and trains 16 more.
Here one :class:`~deepfit.train.loop.Trainer` runs all the epochs, so the
epoch count, the history, the data order and the other callbacks continue
across phases; at the first epoch of each phase this callback sets the
layers' ``trainable`` flags, builds a fresh optimizer and re-splits the
trainer's state, because the compiled step differentiates only the variables
that were trainable when it was built.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from deepfit.errors import ConfigError
from deepfit.nn.transfer import BatchNormRule, Selector, select_layers, set_trainable
from deepfit.optim.optimizers import make_optimizer
from deepfit.train.events import Callback
from deepfit.train.state import TrainState
from deepfit.train.step import Steps


def swap_optimizer(trainer, optimizer: keras.optimizers.Optimizer, loss: str) -> None:
    """Give ``trainer`` a fresh optimizer and a state split by the model's current flags.

    Call after changing ``layer.trainable`` and after writing the old state back
    with ``trainer.state.to_model(trainer.model)`` (done *before* the flags change,
    while the old split still matches). Step, rate scale and epoch sums carry on.
    """
    model, old = trainer.model, trainer.state
    optimizer.build(model.trainable_variables)
    trainer.optimizer = optimizer
    trainer.steps = Steps(model, optimizer, trainer.steps.loss, trainer.steps.schedule)  # the same loss and metrics
    trainer.state = TrainState.from_model(model, optimizer).replace(
        step=old.step, lr_scale=old.lr_scale, sums=old.sums
    )


class FreezeSchedule(Callback):
    """Phases ``[{epochs, trainable}, ...]`` (see :class:`~deepfit.config.FreezePhase`).

    ``optimizer`` is the spec each phase builds afresh; ``head`` is how many top
    layers ``trainable = "head"`` means; ``batch_norm`` the rule for frozen
    BatchNormalization layers (``"inference"``, Keras's, or ``"trainable"``).
    Adds ``phase`` (1-based) to each epoch's logs.
    """

    order = -1000  # before any other callback sees the epoch

    def __init__(self, phases: Sequence[Mapping[str, Any]], optimizer: Mapping[str, Any] | str,
                 loss: str = "sparse_categorical_crossentropy", head: int = 1,
                 batch_norm: BatchNormRule = "inference"):
        if not phases:
            raise ValueError("a freeze schedule needs at least one phase")
        self.phases: list[tuple[int, Selector]] = [(int(p["epochs"]), p["trainable"]) for p in phases]
        self.ends = []
        total = 0
        for epochs, _ in self.phases:
            total += epochs
            self.ends.append(total)
        self.optimizer_spec, self.loss, self.head, self.batch_norm = optimizer, loss, head, batch_norm
        self.current: int | None = None
        self.trainable_layers: list[list[str]] = []

    @classmethod
    def from_config(cls, cfg, model: keras.Model | None = None) -> "FreezeSchedule":
        """The schedule ``training.freeze`` describes; with ``model``, its layer names are checked now."""
        t = cfg.training
        head = len(cfg.model.layers) if cfg.model.from_run else 1
        phases = [p.model_dump() for p in t.freeze]
        schedule = cls(phases, t.optimizer, t.loss, head, t.frozen_batch_norm)
        if model is not None:
            for i, (_, trainable) in enumerate(schedule.phases):
                try:
                    select_layers(model, trainable, head)
                except ConfigError as e:
                    raise ConfigError(f"training.freeze.{i}.trainable: {e}") from None
        return schedule

    def phase_at(self, epoch: int) -> int:
        """The phase an epoch (0-based) belongs to; the last one lasts until training ends."""
        return next((i for i, end in enumerate(self.ends) if epoch < end), len(self.phases) - 1)

    def on_fit_begin(self, trainer) -> None:
        self.current = None

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        phase = self.phase_at(epoch)
        if phase == self.current:
            return
        trainer.state.to_model(trainer.model)
        names = set_trainable(trainer.model, self.phases[phase][1], head=self.head, batch_norm=self.batch_norm)
        swap_optimizer(trainer, make_optimizer(self.optimizer_spec), self.loss)
        self.current = phase
        self.trainable_layers.append(names)

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        logs["phase"] = self.phase_at(epoch) + 1
