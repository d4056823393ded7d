"""Gradual magnitude pruning inside the compiled step (Zhu & Gupta 2017, "To prune, or not to prune").

The target sparsity grows from ``initial`` at ``begin_step`` to ``target`` at
``end_step`` along the cubic ``s(t) = target + (initial − target)(1 − (t − begin)/(end − begin))³``
(pruning early, while the network can still recover, and less and less after),
the schedule TensorFlow Model Optimization calls ``PolynomialDecay``. Every
``frequency`` steps from ``begin_step``, and at ``end_step``, the mask is recomputed:
in each kernel (``scope = "layer"``) or over all of them (``"global"``), the
``floor(s(t) · n)`` weights of smallest magnitude are zeroed (with exact ties at
the threshold, all of them). After every optimizer update, from ``begin_step``
on, the mask is applied to the updated weights, so a pruned weight stays exactly
zero whatever its gradient says.

The mask is not stored: it is the set of weights that are not zero, read from
the weights before the update (after the first pruning step no unpruned weight
is exactly zero, save by a measure-zero accident or an optimizer whose own
update makes exact zeros, such as FTRL with l1; those then stay zero too). So
the training state, checkpoints and resume are exactly those of any run: a
resumed pruning run is bit-identical to one never stopped.

Targets: the kernels of the Dense layers (or those named), as
:mod:`deepfit.nn.sparsity` prunes after training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import keras

from deepfit.errors import ConfigError
from deepfit.train.state import Layout, TrainState
from deepfit.train.step import Schedule, Steps


@dataclass(frozen=True)
class PrunePlan:
    target: float
    begin_step: int
    end_step: int
    frequency: int
    initial: float = 0.0
    scope: str = "layer"

    def sparsity_at(self, step: jax.Array) -> jax.Array:
        span = max(self.end_step - self.begin_step, 1)
        t = jnp.clip((step - self.begin_step) / span, 0.0, 1.0)
        return self.target + (self.initial - self.target) * (1.0 - t) ** 3

    def updates_at(self, step: jax.Array) -> jax.Array:
        on_grid = (step - self.begin_step) % self.frequency == 0
        return (step >= self.begin_step) & (step <= self.end_step) & (on_grid | (step == self.end_step))

    def masks(self, weights: Sequence[jax.Array], sparsity: jax.Array) -> list[jax.Array]:
        """Keep-masks zeroing the ``floor(sparsity · n)`` smallest magnitudes (per kernel or over all)."""
        groups = [[w] for w in weights] if self.scope == "layer" else [list(weights)]
        out = []
        for group in groups:
            flat = jnp.sort(jnp.concatenate([jnp.abs(w).ravel() for w in group]))
            k = jnp.floor(sparsity * flat.size).astype(jnp.int32)
            threshold = jnp.where(k > 0, flat[jnp.maximum(k - 1, 0)], -1.0)
            out += [jnp.abs(w) > threshold for w in group]
        return out

    def apply(self, before: Sequence[jax.Array], after: Sequence[jax.Array], step: jax.Array) -> list[jax.Array]:
        """The updated weights ``after`` with the mask applied (unchanged before ``begin_step``)."""
        kept = [b != 0 for b in before]
        candidates = [jnp.where(m, a, jnp.zeros_like(a)) for m, a in zip(kept, after)]
        masks = jax.lax.cond(self.updates_at(step), lambda c: self.masks(c, self.sparsity_at(step)),
                             lambda c: kept, candidates)
        pruned = [jnp.where(m, a, jnp.zeros_like(a)) for m, a in zip(masks, after)]
        return [jnp.where(step >= self.begin_step, p, a) for p, a in zip(pruned, after)]


def prunable_keys(model: keras.Model, layout: Layout, layers: Sequence[str] | None = None) -> tuple[str, ...]:
    """The training-state keys of the kernels to prune: every Dense layer's, or the named layers'."""
    dense = {layer.name: layer for layer in model._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.Dense)}
    if layers is not None:
        unknown = [n for n in layers if n not in dense]
        if unknown:
            raise ConfigError(f"pruning: no Dense layer named {unknown[0]!r}; the Dense layers are "
                             f"{', '.join(dense) or 'none'}")
        dense = {n: dense[n] for n in layers}
    keys = tuple(layout.model_keys[id(layer.kernel)] for layer in dense.values())
    if not keys:
        raise ConfigError("pruning: the model has no Dense layer to prune")
    return keys


class PruneSteps(Steps):
    """:class:`~deepfit.train.step.Steps` whose every optimizer update is followed by the pruning mask."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, loss,
                 schedule: Schedule | None = None, layout: Layout | None = None, *, plan: PrunePlan,
                 layers: Sequence[str] | None = None):
        super().__init__(model, optimizer, loss, schedule, layout)
        self.plan = plan
        self.targets = prunable_keys(model, self.layout, layers)

    def apply_gradients(self, state: TrainState, grads: dict, loss, correct, updated: dict,
                        batch: int) -> tuple[TrainState, jax.Array, jax.Array]:
        new, loss, rate = super().apply_gradients(state, grads, loss, correct, updated, batch)
        masked = self.plan.apply([state.params[k] for k in self.targets], [new.params[k] for k in self.targets],
                                 state.step)
        return new.replace(params={**new.params, **dict(zip(self.targets, masked))}), loss, rate
