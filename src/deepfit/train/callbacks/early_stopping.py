from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.callbacks.monitor import Monitor
from deepfit.train.events import Callback


@CALLBACKS.register("early_stopping", aliases=("earlystopping",))
class EarlyStopping(Callback):
    """Stop when a monitored metric stops improving (Keras's EarlyStopping).

    An epoch improves when it beats the best by more than ``min_delta``; after
    ``patience`` epochs without improvement training stops at the end of the
    epoch. ``restore_best_weights`` puts back the best epoch's weights (and
    BatchNorm statistics) when training ends, as Keras 3 does: whenever it holds
    best weights, whether training stopped early or its epochs ran out.
    """

    order = 50

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False, start_from_epoch: int = 0):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.watch = Monitor("early_stopping", monitor, mode, min_delta)
        self.monitor, self.mode, self.patience = monitor, self.watch.mode, patience
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, start_from_epoch
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self._best_state = None
        self.restored_epoch: int | None = None  # 1-based epoch whose weights the model holds, once restored

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        value = self.watch.value(logs)
        if epoch < self.start_from_epoch:
            return
        self.wait += 1
        # A NaN is never an improvement, but it is an epoch without one: skipping it would let a
        # run whose validation loss went NaN train on forever.
        if np.isfinite(value) and self.watch.improved(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                # JAX arrays are immutable: keeping a reference is a free snapshot.
                self._best_state = {"params": trainer.state.params, "buffers": trainer.state.buffers}
        elif self.wait >= self.patience:
            trainer.stop_training = True
            best = ("never finite" if self.best is None
                    else f"best {self.best:.4f} at epoch {self.best_epoch + 1}")
            trainer.stop_reason = (
                f"early stopping: {self.monitor} has not improved for {self.wait} epochs ({best})"
            )

    def on_fit_end(self, trainer) -> None:
        if self.restore_best_weights and self._best_state is not None and self.best_epoch + 1 != trainer.epoch:
            trainer.state = trainer.state.replace(**self._best_state)
            trainer.state.to_model(trainer.layout, optimizer=False)
            self.restored_epoch = self.best_epoch + 1

    def state_dict(self) -> dict[str, Any]:
        # The best epoch's arrays too: a run resumed after it must still restore them.
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_state": self._best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        best = state.get("best_state")
        self._best_state = None if best is None else {
            part: {k: jnp.asarray(a) for k, a in best[part].items()} for part in ("params", "buffers")}
