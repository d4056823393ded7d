"""The whole training state as one explicit pytree, keyed by variable path.

Everything that changes while training lives here, so a copy of it is a
snapshot (the LR finder restores one, early stopping keeps one, a checkpoint
saves one) and the compiled step is a pure function of it. The epoch and the
position inside the epoch's shuffled order are derived from ``step``.

The keys do not depend on which layers are frozen: ``params`` holds every weight
the optimizer covers, frozen or not, and freezing only masks their updates (as
optax's ``masked``). So the state saved in one phase of a freeze schedule loads
into the trainer of any other, and a checkpoint is the same file whatever the
flags were when it was written.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import keras
import numpy as np

# Per-epoch running sums: total loss × samples, correct predictions, samples.
N_SUMS = 3


def _children(layer) -> list:
    """A layer's direct sublayers, in Keras's order (a model's ``layers``; else what the layer tracks)."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    return list(layer._flatten_layers(include_self=False, recursive=False))


def stable_keys(model: keras.Model) -> dict[str, keras.Variable]:
    """Every variable of ``model`` under a key made of positions and roles, never of names.

    A layer's own variables are keyed by its position in its parent and its class, then the
    variable's own name: ``"1.dense/kernel"``, ``"0.sequential/2.batch_normalization/moving_mean"``,
    ``"2.dropout/seed_generator_state"``. Keras's names and paths carry process-wide counters
    (``dense_4``, ``sequential_3``, ``seed_generator_12``), so the same network built in another
    process, or twice in one notebook, names its layers differently; its structure does not.
    """
    from keras.src.utils.naming import to_snake_case

    out: dict[str, keras.Variable] = {}
    seen: set[int] = set()

    def visit(layer, prefix: str) -> None:
        children = _children(layer)
        nested = {id(v) for child in children for v in child.variables}
        counts: dict[str, int] = {}
        for v in layer.variables:
            if id(v) in nested or id(v) in seen:
                continue
            seen.add(id(v))
            n = counts[v.name] = counts.get(v.name, 0) + 1
            out[f"{prefix}{v.name}" + (f"#{n}" if n > 1 else "")] = v
        for i, child in enumerate(children):
            visit(child, f"{prefix}{i}.{to_snake_case(type(child).__name__)}/")

    visit(model, "")
    for v in model.variables:  # variables the model holds outside its layers and their trackers
        if id(v) not in seen:
            seen.add(id(v))
            out[f"model/{v.name}#{len(out)}"] = v
    return out


class Layout:
    """Which key names which Keras variable, for one model and its optimizer.

    Model variables are keyed by :func:`stable_keys` (positions and roles, the same in every
    process). Optimizer variables are keyed by name (``"iteration"``, ``"learning_rate"``) or, for
    a weight's slot, ``"<weight key>:<slot>"`` (``"1.dense/kernel:momentum"``): that is how a frozen
    weight's slots are found. An optimizer that wraps another (Keras's ``LossScaleOptimizer`` under
    ``mixed_float16``) keys the inner one's variables under ``"inner/"``.
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer):
        self.variables: dict[str, keras.Variable] = stable_keys(model)
        self.model_keys: dict[int, str] = {id(v): k for k, v in self.variables.items()}
        covered = {id(v) for v in optimizer._trainable_variables}
        self.param_keys = tuple(k for k, v in self.variables.items() if id(v) in covered)
        self.buffer_keys = tuple(k for k, v in self.variables.items() if id(v) not in covered)
        missing = len(covered) - len(self.param_keys)
        if missing:
            raise ValueError(f"the optimizer was built for {missing} variable(s) the model does not hold: "
                             "build it for this model's weights (or pass an unbuilt optimizer)")

        # Keras names a slot "<weight path with _>_<slot>" (add_variable_from_reference); longest first,
        # so "dense_1_kernel" is not read as "dense_1" + "_kernel...".
        tokens = sorted(((self.variables[k].path.replace("/", "_") + "_", k) for k in self.param_keys),
                        key=lambda t: -len(t[0]))
        inner = getattr(optimizer, "inner_optimizer", None)
        inner_ids = {id(v) for v in inner.variables} if inner is not None else set()
        self.optimizer_vars: dict[str, keras.Variable] = {}
        self.slot_owner: dict[str, str] = {}  # optimizer key → the weight key it belongs to
        for i, v in enumerate(optimizer.variables):
            rel = v.path.split("/", 1)[-1]
            owner = next(((tok, k) for tok, k in tokens if rel.startswith(tok)), None)
            key = rel if owner is None else f"{owner[1]}:{rel[len(owner[0]):]}"
            if owner is None and re.fullmatch(r"variable(_\d+)?", rel):
                key = f"variable@{i}"  # unnamed (Nadam's u_product): Keras numbers it process-wide
            if id(v) in inner_ids:
                key = f"inner/{key}"
            if key in self.optimizer_vars:
                raise ValueError(f"two optimizer variables map to the key {key!r}")
            self.optimizer_vars[key] = v
            if owner is not None:
                self.slot_owner[key] = owner[1]
        # The counter Keras's LearningRateSchedule reads (optimizer.iterations; the inner one's if wrapped).
        self.iterations_key = self.key_of_optimizer_variable(optimizer.iterations)

    def key_of_optimizer_variable(self, variable) -> str | None:
        return next((k for k, v in self.optimizer_vars.items() if v is variable), None)

    def keys_of(self, variables: Iterable[keras.Variable]) -> tuple[str, ...]:
        return tuple(self.model_keys[id(v)] for v in variables)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Model, optimizer and loop state. Immutable: ``state.replace(step=...)`` makes a new one."""

    params: dict  # every weight the optimizer covers, frozen or not
    buffers: dict  # BatchNorm moving statistics and dropout seed-generator states
    optimizer: dict  # Keras optimizer variables: iteration, learning rate, slots (see Layout)
    step: jax.Array  # global step (int32): the one clock every schedule reads
    lr_scale: jax.Array  # multiplies the scheduled rate (reduce-on-plateau writes it)
    sums: jax.Array  # this epoch's running metric sums, see N_SUMS

    def replace(self, **changes: Any) -> "TrainState":
        return dataclasses.replace(self, **changes)

    @property
    def variables(self) -> dict:
        """Every model variable by key: weights and buffers."""
        return {**self.params, **self.buffers}

    @classmethod
    def from_model(cls, layout: Layout) -> "TrainState":
        value = lambda vs: {k: jnp.asarray(v.value) for k, v in vs}  # noqa: E731
        return cls(
            params=value((k, layout.variables[k]) for k in layout.param_keys),
            buffers=value((k, layout.variables[k]) for k in layout.buffer_keys),
            optimizer=value(layout.optimizer_vars.items()),
            step=jnp.zeros((), jnp.int32),
            lr_scale=jnp.ones((), jnp.float32),
            sums=jnp.zeros((N_SUMS,), jnp.float32),
        )

    def to_model(self, layout: Layout, optimizer: bool = True) -> None:
        """Write the state's values back into the Keras variables (after training)."""
        for key, value in self.variables.items():
            layout.variables[key].assign(value)
        if optimizer:
            for key, value in self.optimizer.items():
                layout.optimizer_vars[key].assign(value)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{"params/dense/kernel": array, ...}``, the form checkpoints store."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, dict):
                out.update({f"{field.name}/{k}": np.asarray(v) for k, v in value.items()})
            else:
                out[field.name] = np.asarray(value)
        return out

    def with_arrays(self, arrays: dict[str, np.ndarray]) -> "TrainState":
        """This state's structure filled from :meth:`to_arrays` output (shapes and dtypes checked)."""
        template = self.to_arrays()
        missing = sorted(set(template) - set(arrays))
        extra = sorted(set(arrays) - set(template))
        if missing or extra:
            raise ValueError(f"state arrays do not match: missing {missing[:3]}, unexpected {extra[:3]}")
        for k, t in template.items():
            if arrays[k].shape != t.shape or arrays[k].dtype != t.dtype:
                raise ValueError(f"state array {k}: {arrays[k].dtype}{arrays[k].shape}, expected {t.dtype}{t.shape}")
        changes = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, dict):
                changes[field.name] = {k: jnp.asarray(arrays[f"{field.name}/{k}"]) for k in value}
            else:
                changes[field.name] = jnp.asarray(arrays[field.name])
        return self.replace(**changes)
