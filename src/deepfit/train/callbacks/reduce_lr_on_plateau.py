from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.callbacks.monitor import Monitor
from deepfit.train.events import Callback


@CALLBACKS.register("reduce_lr_on_plateau", aliases=("reduce_on_plateau", "reducelronplateau", "plateau"))
class ReduceLROnPlateau(Callback):
    """Performance scheduling: cut the rate when a metric stops improving (Keras's ReduceLROnPlateau).

    At each epoch's end, as Keras 3: an epoch improves when ``val_loss <
    best - min_delta`` (``> best + min_delta`` for a metric to maximize);
    after ``patience`` epochs without improvement, outside ``cooldown``, the
    rate becomes ``max(rate * factor, min_lr)``, provided ``rate > min_lr``,
    then ``cooldown`` epochs pass before counting again.

    It composes with any schedule: it multiplies ``TrainState.lr_scale``, by
    which the loop multiplies the scheduled rate at every step, so after a
    cut the schedule goes on at ``factor`` times its height. ``min_lr`` bounds
    the rate at the epoch of the cut (a decaying schedule may later go
    below it). ``lr_scale`` lives in the train state, so checkpoints carry it.
    """

    order = 40

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise ValueError(f"patience, cooldown and min_lr must be >= 0, got {patience}, {cooldown}, {min_lr}")
        self.watch = Monitor("reduce_lr_on_plateau", monitor, mode, abs(float(min_delta)))
        self.monitor, self.mode, self.factor, self.patience = monitor, self.watch.mode, float(factor), int(patience)
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0
        self.reductions: list[dict[str, float]] = []

    def on_fit_begin(self, trainer) -> None:
        self.mode = self.watch.resolve(trainer)  # "auto": the metric's own direction, as Keras 3

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        value = self.watch.value(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.watch.improved(value, self.best):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(trainer.learning_rate)
                if old > np.float32(self.min_lr) and old > 0:
                    new = max(old * self.factor, self.min_lr)
                    scale = float(trainer.state.lr_scale) * new / old
                    trainer.state = trainer.state.replace(lr_scale=jnp.asarray(scale, jnp.float32))
                    self.reductions.append({"epoch": epoch + 1, "from": old, "to": new})
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter,
                "reductions": list(self.reductions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]
        self.cooldown_counter = state["cooldown_counter"]
        self.reductions = list(state.get("reductions", []))
