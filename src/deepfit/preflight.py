"""Checks before training: the data fits the model, and both fit in memory.

A mistake here would otherwise surface as a shape error deep inside a compiled
step, silent garbage (a label beyond the output layer), or the operating system
killing the process after minutes of allocation. The estimate of the memory a
run needs (bytes, float32)::

    state       = 4 × (P + T × S)                 weights (P, of which T trainable) + S optimizer slots per weight
    step        = 2 × state + 4 × T               the step's input and output states, and the gradients
    activations = 4 × 3 × batch × Σ layer outputs  forward values kept for the backward pass, their gradients, slack
    data        = bytes of the training and validation arrays (copied to the device)

The model's weights are counted without allocating them (Keras's deferred
variables inside a ``StatelessScope``), so a config asking for a trillion
weights fails in milliseconds.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from deepfit.errors import ConfigError, DataError

BYTES = 4  # float32


@dataclass
class Estimate:
    params: int
    trainable: int
    slots: int
    activations_per_sample: int
    data_bytes: int
    batch_size: int

    @property
    def model_bytes(self) -> int:
        state = BYTES * (self.params + self.trainable * self.slots)
        return 2 * state + BYTES * self.trainable

    @property
    def activation_bytes(self) -> int:
        return 3 * BYTES * self.batch_size * self.activations_per_sample

    @property
    def total(self) -> int:
        return self.model_bytes + self.activation_bytes + self.data_bytes

    def describe(self) -> str:
        return (f"{self.params:,} weights ({self.trainable:,} trainable, {self.slots} optimizer slot(s) each) "
                f"need about {gib(self.model_bytes)}; activations for a batch of {self.batch_size}: "
                f"{gib(self.activation_bytes)}; data: {gib(self.data_bytes)}; total about {gib(self.total)}")


def gib(n: int) -> str:
    return f"{n / 1024**3:,.2f} GiB" if n >= 1024**3 / 100 else f"{n / 1024**2:,.1f} MiB"


def available_memory() -> int | None:
    """Bytes the process may still allocate: the accelerator's free memory, else the host's
    (MemAvailable, bounded by a cgroup limit if the process runs in a container)."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    candidates = []
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    try:
        limit = open("/sys/fs/cgroup/memory.max", encoding="ascii").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current", encoding="ascii").read().strip())
        if limit.isdigit():
            candidates.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(candidates) if candidates else None


def _shapes_without_allocating(cfg) -> tuple[keras.Model, list[tuple]] | None:
    """The config's model with deferred (unallocated) variables, and each layer's output shape.

    None when the model cannot be built that way (a layer that creates variables
    outside ``build``, or one that reads a saved run): the real build then says why.
    """
    from keras.src.backend.common import global_state
    from keras.src.backend.common.stateless_scope import StatelessScope

    from deepfit.nn.build import build_model

    if cfg.model.from_run is not None:
        return None  # it reads a saved run's weights: the real build says what is wrong
    pending = list(global_state.get_global_attribute("uninitialized_variables") or [])
    try:
        with StatelessScope(initialize_variables=False):
            model = build_model(cfg.model)
        return model, [tuple(layer.output.shape) for layer in model.layers]
    except Exception:  # noqa: BLE001 (anything: the real build, outside the scope, raises it properly)
        return None
    finally:
        # Forget the deferred variables, or Keras would allocate them at its next scope's exit.
        global_state.set_global_attribute("uninitialized_variables", pending)


def _size(shape) -> int:
    return math.prod(int(d) for d in shape if d is not None)


def optimizer_slots(spec: Any) -> int:
    """Variables the optimizer keeps per model weight (Adam: 2), counted on a one-element weight."""
    from deepfit.optim.optimizers import make_optimizer

    opt = make_optimizer(spec)
    before = len(opt.variables)
    opt.build([keras.Variable(np.zeros((1,), np.float32))])
    return len(opt.variables) - before


def estimate(cfg, dataset=None, model: keras.Model | None = None) -> tuple[Estimate, tuple] | None:
    """The memory estimate for a run, and the model's output shape (None: cannot tell before building)."""
    if model is None:
        built = _shapes_without_allocating(cfg)
        if built is None:
            return None
        model, shapes = built
    else:
        shapes = []
        for layer in getattr(model, "layers", []):
            try:
                shapes.append(tuple(layer.output.shape))
            except (AttributeError, ValueError):  # a layer never called on a symbolic input
                pass
    params = sum(_size(w.shape) for w in model.weights)
    trainable = sum(_size(w.shape) for w in model.trainable_weights)
    data = 0
    if dataset is not None:
        data = sum(a.nbytes for a in (dataset.x_train, dataset.y_train, dataset.x_valid, dataset.y_valid))
    est = Estimate(params, trainable, optimizer_slots(cfg.training.optimizer),
                   sum(_size(s) for s in shapes), data, cfg.training.batch_size)
    return est, tuple(model.output_shape) if hasattr(model, "output_shape") else (shapes[-1] if shapes else ())


def check_compatible(cfg, dataset, output_shape: tuple, model_input: tuple | None = None) -> None:
    """The data's samples have the model's input shape; its labels fit the output layer."""
    sample = tuple(dataset.x_train.shape[1:])
    expected = tuple(model_input) if model_input is not None else tuple(cfg.model.input_shape)
    if sample != expected:
        raise DataError(
            f"the data's samples have shape {list(sample)} but model.input_shape is {list(expected)}; "
            f"set model.input_shape = {list(sample)} (or reshape the data)"
        )
    if len(dataset.x_train) == 0:
        raise DataError("the training set is empty; check data.train_size and data.validation_size")
    for part in ("train", "valid", "test"):
        x, y = getattr(dataset, f"x_{part}"), getattr(dataset, f"y_{part}")
        if x is not None:
            check_finite(x, f"the {part} inputs")
        units = output_shape[-1] if output_shape else None
        if y is not None and len(y) and units is not None:
            check_labels(cfg.training.loss, y, tuple(output_shape), f"the {part} labels")


def check_finite(x: np.ndarray, what: str) -> None:
    """NaN or infinite inputs make NaN weights at the first step that meets them: refused, with where."""
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
        raise DataError(f"{what} hold NaN or infinite values (first at sample {i}); clean the data before training")


def check_labels(loss: Any, y: np.ndarray, output_shape: tuple, what: str = "the labels") -> None:
    """Labels the loss would read wrong without a word, refused with the fix. Which labels a loss reads
    comes from the loss Keras resolves (``compile``'s rules), not from its name: a class index past the
    last output is one-hot encoded as zeros by the sparse crossentropy (loss 0, nothing learned)."""
    from keras.src.trainers import compile_utils

    from deepfit.train.objective import resolve_loss

    units = int(output_shape[-1])
    y = np.asarray(y)
    resolved = compile_utils.get_loss(resolve_loss(loss), y[:1], np.zeros((1, *output_shape[1:]), np.float32))
    fn = getattr(resolved, "fn", resolved)
    name = getattr(fn, "__name__", type(fn).__name__)
    values = y.reshape(-1)
    if fn is keras.losses.sparse_categorical_crossentropy:
        if y.ndim >= 2 and y.shape[-1] == units > 1:
            raise DataError(f"{what} are one-hot (shape {list(y.shape)}) but {name} reads class indices: use "
                            f"categorical_crossentropy, or integer labels (y.argmax(axis=-1))")
        if not np.all(np.equal(np.mod(values, 1), 0)):
            raise DataError(f"{what} are not whole numbers but {name} reads class indices 0..{units - 1}; "
                            "give integer class labels")
        low, top = int(values.min()), int(values.max())
        if low < 0 or top >= units:
            raise DataError(f"{what} go from {low} to {top} but the last layer has {units} outputs, so {name} reads "
                            f"classes 0..{units - 1} only; " + (f"set the last layer's units = {top + 1}" if low >= 0
                                                               else "labels must be class indices >= 0"))
    elif fn in (keras.losses.categorical_crossentropy, keras.losses.categorical_focal_crossentropy):
        if units > 1 and (y.ndim == 1 or y.shape[-1] == 1):
            raise DataError(f"{what} are class indices (shape {list(y.shape)}) but {name} reads one-hot rows of "
                            f"{units}: use sparse_categorical_crossentropy, or one-hot labels "
                            "(keras.utils.to_categorical(y, num_classes))")
    elif fn in (keras.losses.binary_crossentropy, keras.losses.binary_focal_crossentropy):
        low, top = float(values.min()), float(values.max())
        if low < 0 or top > 1:
            raise DataError(f"{what} go from {low:g} to {top:g} but {name} reads probabilities in [0, 1] (0/1 "
                            "labels); for several classes use sparse_categorical_crossentropy with a softmax output")


def check_resources(cfg, dataset, model: keras.Model | None = None,
                    available: int | None = None) -> Estimate | None:
    """Fail with the estimate when the run obviously cannot fit in memory; returns the estimate
    (None when the model cannot be sized before it is built)."""
    result = estimate(cfg, dataset, model)
    if result is None:
        return None
    est, output_shape = result
    check_compatible(cfg, dataset, output_shape, None if model is None else tuple(model.input_shape[1:]))
    free = available_memory() if available is None else available
    if free is None or est.total <= free:
        return est
    if est.model_bytes + est.activation_bytes > free:
        raise ConfigError(
            f"this model cannot fit in memory: {est.describe()}, but only {gib(free)} is available. "
            "Use fewer or smaller layers (units), a smaller training.batch_size, or an optimizer with fewer slots"
        )
    raise DataError(
        f"the data cannot fit in memory beside the model: {est.describe()}, but only {gib(free)} is "
        "available. Use a smaller data.train_size"
    )


def build_checked(cfg) -> keras.Model:
    """``build_model`` for a config, with Keras's complaints about its layers as a ConfigError
    (e.g. a Reshape that does not fit the input shape)."""
    from deepfit.nn.build import build_model

    try:
        return build_model(cfg.model, seed=cfg.seed)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"model: Keras cannot build these layers on input_shape {cfg.model.input_shape}: {e}") from None
