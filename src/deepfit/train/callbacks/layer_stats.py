from __future__ import annotations

import math
from typing import Any

import numpy as np

from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.events import Callback


@CALLBACKS.register("layer_stats", aliases=("layerstats",))
class LayerStats(Callback):
    """Per-layer activation mean/std, saturated and dead fractions, gradient norm and update ratio.

    Recorded inside the compiled step every ``every_n_steps`` steps (step 0, the
    initialization, included); see :mod:`deepfit.train.stats_step` for the
    formulas. The trainer hands the statistics back every ``rows_per_call``
    records, so the loop still runs long compiled chunks. ``frame()`` is the
    long table (one row per step and layer).
    """

    order = -50

    def __init__(self, every_n_steps: int = 100, rows_per_call: int = 10):
        if int(every_n_steps) < 1 or int(rows_per_call) < 1:
            raise ValueError(f"every_n_steps and rows_per_call must be >= 1, got {every_n_steps}, {rows_per_call}")
        self.n = int(every_n_steps)
        # The trainer's chunk length: stats come back to the host once per chunk.
        self.every_n_steps = self.n * int(rows_per_call)
        self.rows_per_call = int(rows_per_call)
        self.layers: list = []
        self.records: list[dict[str, Any]] = []

    def steps_factory(self, model, optimizer, loss, schedule=None, layout=None):
        """The trainer's step factory while this callback is attached: steps that record statistics."""
        from deepfit.train.stats_step import StatsSteps

        steps = StatsSteps(model, optimizer, loss, schedule, layout, every_n_steps=self.n)
        self.layers = steps.layers
        return steps

    def on_chunk_end(self, trainer, chunk) -> None:
        from deepfit.train.stats_step import frame_rows

        self.layers = trainer.steps.layers  # a freeze schedule's phase has steps of its own
        stats = {k: np.asarray(v) for k, v in chunk.aux.items()}
        rows = np.flatnonzero(stats["taken"])
        if len(rows):
            table = frame_rows(self.layers, {k: v[rows] for k, v in stats.items()}, stats["step"][rows], chunk.epoch)
            self.records.extend(table.to_dict("records"))

    def frame(self):
        """The records as a DataFrame: step, epoch, depth, layer, type, activation, size and the statistics."""
        import pandas as pd

        return pd.DataFrame(self.records)

    def state_dict(self) -> dict[str, Any]:
        clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
        return {"records": [{k: clean(v) for k, v in r.items()} for r in self.records]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = [{k: (math.nan if v is None else v) for k, v in r.items()} for r in state["records"]]
