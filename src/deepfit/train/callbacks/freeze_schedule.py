"""Freeze schedules: train in phases, each with its own set of trainable layers.

The notebook trains model B on A's layers for 4 epochs with the reused layers
frozen, then unfreezes them, recompiles (a fresh optimizer) and trains 16 more.
Here one :class:`~deepfit.train.loop.Trainer` runs all the epochs, so the
epoch count, the history, the data order, the schedule's clock and the other
callbacks continue across phases. At the first epoch of each phase this
callback sets the layers' ``trainable`` flags and asks the trainer for the
steps compiled for them: frozen weights are masked, the state keeps one shape
(so checkpoints, early stopping's best weights and resume work in any phase).
``reset_optimizer`` (the notebook's recompile, on by default) puts the
optimizer's variables (slots, Keras's iteration count) back to their initial
values as a phase begins; scheduled rate and momentum read the run's clock,
which a phase never resets. Everything is a function of the epoch, so the
callback keeps no state to save.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras

from deepfit.errors import ConfigError
from deepfit.nn.transfer import BatchNormRule, Selector, select_layers, set_trainable
from deepfit.train.events import Callback


class FreezeSchedule(Callback):
    """Phases ``[{epochs, trainable}, ...]`` (see :class:`~deepfit.config.FreezePhase`).

    ``head`` is how many top layers ``trainable = "head"`` means; ``batch_norm``
    the rule for frozen BatchNormalization layers (``"inference"``, Keras's, or
    ``"trainable"``); ``reset_optimizer`` whether each phase starts with fresh
    optimizer variables. Adds ``phase`` (1-based) to each epoch's logs.
    """

    order = -1000  # before any other callback sees the epoch

    def __init__(self, phases: Sequence[Mapping[str, Any]], head: int = 1,
                 batch_norm: BatchNormRule = "inference", reset_optimizer: bool = True):
        if not phases:
            raise ValueError("a freeze schedule needs at least one phase")
        self.phases: list[tuple[int, Selector]] = [(int(p["epochs"]), p["trainable"]) for p in phases]
        self.ends = []
        total = 0
        for epochs, _ in self.phases:
            total += epochs
            self.ends.append(total)
        self.head, self.batch_norm, self.reset_optimizer = head, batch_norm, reset_optimizer
        self.current: int | None = None
        self.trainable_layers: list[list[str]] = []

    @classmethod
    def from_config(cls, cfg, model: keras.Model | None = None) -> "FreezeSchedule":
        """The schedule ``training.freeze`` describes; with ``model``, its layer names are checked now."""
        t = cfg.training
        head = len(cfg.model.layers) if cfg.model.from_run else 1
        phases = [p.model_dump() for p in t.freeze]
        schedule = cls(phases, head, t.frozen_batch_norm)
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
        names = set_trainable(trainer.model, self.phases[phase][1], head=self.head, batch_norm=self.batch_norm)
        trainer.refresh_steps()
        begins = self.ends[phase - 1] if phase else 0
        # Only where the phase begins: a run resumed later in the phase already holds its optimizer.
        if self.reset_optimizer and epoch == begins and int(trainer.state.step) == epoch * trainer._steps_per_epoch:
            trainer.state = trainer.state.replace(optimizer=dict(trainer.fresh_optimizer))
        self.current = phase
        self.trainable_layers.append(names)

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        logs["phase"] = self.phase_at(epoch) + 1
