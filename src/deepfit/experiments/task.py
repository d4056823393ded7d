"""What a backend receives and hands back: one run as plain data, and its outcome.

Kept apart from the runner so backends (below it) and the runner (above) import
this module, not each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

# Yielded to a backend when every run left is held by another driver: finish yours, then ask again.
WAIT = object()


@dataclass(frozen=True)
class Task:
    """One run, as plain data a worker process (or a Ray node) can receive.

    ``experiment`` is the experiment directory it belongs to, so one backend can
    serve several experiments at once (``deepfit reproduce``).
    """

    variant: str
    seed: int
    config: dict[str, Any]
    experiment: str = ""

    @property
    def key(self) -> str:
        return f"{self.variant}__seed-{self.seed}"

    @property
    def cost(self) -> float:
        return estimated_cost(self.config)


@dataclass
class Outcome:
    """What a finished run reports back to the driver."""

    task: Task
    final: dict[str, Any]
    worker: dict[str, Any]


# Training images of the data sources whose size is known without reading them (bundled Fashion-MNIST).
DEFAULT_TRAIN_IMAGES = 60_000


def estimated_cost(config: Mapping[str, Any]) -> float:
    """Multiply-adds of a run's training, roughly: epochs × training images × dense weights.

    Only for ordering runs (longest first) and for choosing a backend; it reads the config
    alone (a transferred model's body counts as nothing, a task split as the whole set).
    """
    data, model, training = (config.get(k) or {} for k in ("data", "model", "training"))
    images = data.get("train_size") or max(1, DEFAULT_TRAIN_IMAGES - int(data.get("validation_size", 5000)))
    width = math.prod(model.get("input_shape") or [28, 28])
    weights = 0
    for spec in model.get("layers") or []:
        if spec.get("type") == "dense":
            for _ in range(int(spec.get("repeat", 1))):
                weights += width * int(spec.get("units", 1))
                width = int(spec.get("units", 1))
    return float(training.get("epochs", 10)) * images * max(weights, 1)
