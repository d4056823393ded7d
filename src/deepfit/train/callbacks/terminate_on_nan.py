from __future__ import annotations

import numpy as np

from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.events import Callback, StopTraining


@CALLBACKS.register("terminate_on_nan", aliases=("terminateonnan",))
class TerminateOnNaN(Callback):
    """Stop at the first chunk whose loss is NaN or infinite, naming the step and the rate."""

    order = -100

    def __init__(self):
        self.last_finite: float | None = None
        self.report: dict | None = None

    def on_chunk_end(self, trainer, chunk) -> None:
        bad = np.flatnonzero(~np.isfinite(chunk.losses))
        finite = chunk.losses[: bad[0]] if len(bad) else chunk.losses
        if len(finite):
            self.last_finite = float(finite[-1])
        if len(bad):
            i = int(bad[0])
            self.report = {"step": chunk.start + i + 1, "epoch": chunk.epoch + 1,
                           "last_finite_loss": self.last_finite, "learning_rate": float(chunk.rates[i])}
            raise StopTraining(
                f"loss became {chunk.losses[i]} at step {chunk.start + i + 1} (epoch {chunk.epoch + 1}) "
                f"with learning rate {float(chunk.rates[i]):.3g}; last finite loss {self.last_finite}. "
                "The rate is probably too high: try `deepfit find-lr CONFIG`."
            )

    def state_dict(self) -> dict:
        return {"last_finite": self.last_finite}

    def load_state_dict(self, state: dict) -> None:
        self.last_finite = state["last_finite"]
