"""What a backend receives and hands back: one run as plain data, and its outcome.

Kept apart from the runner so backends (below it) and the runner (above) import
this module, not each other.
"""

from __future__ import annotations

import functools
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


# What a unit of a layer costs beside its weights (activations, per-layer work in the step), in
# multiply-adds: fitted to this CPU's epoch times of the notebook's 784-300-100-10 network (0.8 s,
# 266k weights, 400 units) and its 100-layer one (9.4 s, 1.26M weights, 10,200 units).
UNIT_COST = 340


def estimated_cost(config: Mapping[str, Any]) -> float:
    """A run's training cost, roughly: epochs × training images × (dense weights + UNIT_COST × units).

    Only for ordering runs (longest first) and for choosing a backend; it reads the config
    alone (a transferred model's body counts as nothing, a task split as the whole set). A model
    recorded as Keras's architecture (a network handed in from Python) is sized from it: see
    :func:`architecture_work`.
    """
    data, model, training = (config.get(k) or {} for k in ("data", "model", "training"))
    images = data.get("train_size") or max(1, DEFAULT_TRAIN_IMAGES - int(data.get("validation_size", 5000)))
    if model.get("architecture"):
        work = architecture_work(model["architecture"])
    else:
        width = math.prod(model.get("input_shape") or [28, 28])
        work = 0
        for spec in model.get("layers") or []:
            if spec.get("type") == "dense":
                units = int(spec.get("units", 1))
                for _ in range(int(spec.get("repeat", 1))):
                    work += width * units + UNIT_COST * units
                    width = units
    return float(training.get("epochs", 10)) * images * max(work, 1)


@functools.lru_cache(maxsize=64)
def architecture_work(architecture: str) -> float:
    """The per-image work of a model given as Keras's architecture JSON, in the units of
    :func:`estimated_cost`: for every layer with a kernel (a weight of two or more axes), its
    multiply-adds (the kernel's size × the output positions it is applied at: 1 for a Dense on
    vectors, height × width for a 2-D convolution) plus ``UNIT_COST`` × its outputs. For a stack
    of Dense layers that is exactly the count from config ``layers``.

    The model is built inside Keras's ``StatelessScope``, so its variables are shapes only
    (nothing is initialized or allocated: 0.25 s for the 100-layer network, benchmarks/bench_architecture_build.py);
    0 when Keras cannot rebuild it here (the run itself will say why)."""
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    from deepfit.errors import ConfigError
    from deepfit.keras_model import build_architecture

    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with StatelessScope(initialize_variables=False):
            model = build_architecture(architecture)
            work = 0.0
            for layer in model._flatten_layers(include_self=False, recursive=True):
                kernels = [w for w in layer._trainable_variables + layer._non_trainable_variables
                           if len(w.shape) >= 2]
                if not kernels:
                    continue
                out = tuple(layer.output.shape)[1:]
                units, positions = int(out[-1]), math.prod(int(d) for d in out[:-1])
                work += positions * sum(math.prod(w.shape) for w in kernels) + UNIT_COST * positions * units
            return work
    except (ConfigError, AttributeError, ValueError, TypeError):
        return 0.0
    finally:
        # Forget the deferred variables, or Keras would allocate them at its next scope's exit.
        global_state.set_global_attribute("uninitialized_variables", pending)
