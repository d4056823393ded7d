from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from deepfit.train.callbacks import CALLBACKS
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
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.factor, self.patience = monitor, float(factor), int(patience)
        self.min_delta, self.cooldown, self.min_lr = abs(float(min_delta)), int(cooldown), float(min_lr)
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0
        self.reductions: list[dict[str, float]] = []

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise ValueError(
                f"reduce_lr_on_plateau monitors {self.monitor!r}, which the logs lack; available: {', '.join(logs)}"
            )
        value = float(logs[self.monitor])
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
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
