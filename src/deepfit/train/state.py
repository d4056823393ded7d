"""The whole training state as one explicit pytree.

Everything that changes while training lives here, so a copy of it is a
snapshot (the LR finder restores one, early stopping keeps one, a checkpoint
saves one) and the compiled step is a pure function of it. The epoch and the
position inside the epoch's shuffled order are derived from ``step``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

# Per-epoch running sums: total loss × samples, correct predictions, samples.
N_SUMS = 3


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """Model, optimizer and loop state. Immutable: ``state.replace(step=...)`` makes a new one."""

    trainable: tuple
    non_trainable: tuple  # BatchNorm moving statistics and dropout seed-generator states
    optimizer: tuple  # Keras optimizer variables: iteration, learning rate, slots
    step: jax.Array  # global step (int32)
    lr_scale: jax.Array  # multiplies the scheduled rate (reduce-on-plateau writes it)
    sums: jax.Array  # this epoch's running metric sums, see N_SUMS

    def replace(self, **changes: Any) -> "TrainState":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_model(cls, model: keras.Model, optimizer: keras.optimizers.Optimizer) -> "TrainState":
        value = lambda vs: tuple(jnp.asarray(v.value) for v in vs)  # noqa: E731
        return cls(
            trainable=value(model.trainable_variables),
            non_trainable=value(model.non_trainable_variables),
            optimizer=value(optimizer.variables),
            step=jnp.zeros((), jnp.int32),
            lr_scale=jnp.ones((), jnp.float32),
            sums=jnp.zeros((N_SUMS,), jnp.float32),
        )

    def to_model(self, model: keras.Model, optimizer: keras.optimizers.Optimizer | None = None) -> None:
        """Write the state's values back into the Keras variables (after training)."""
        for var, value in zip(model.trainable_variables, self.trainable):
            var.assign(value)
        for var, value in zip(model.non_trainable_variables, self.non_trainable):
            var.assign(value)
        if optimizer is not None:
            for var, value in zip(optimizer.variables, self.optimizer):
                var.assign(value)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat ``{"trainable/0003": array, ...}``, the form checkpoints store."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                out.update({f"{field.name}/{i:04d}": np.asarray(v) for i, v in enumerate(value)})
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
            if isinstance(value, tuple):
                changes[field.name] = tuple(jnp.asarray(arrays[f"{field.name}/{i:04d}"]) for i in range(len(value)))
            else:
                changes[field.name] = jnp.asarray(arrays[field.name])
        return self.replace(**changes)
