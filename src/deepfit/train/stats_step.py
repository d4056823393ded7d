"""Per-layer health statistics, computed inside the compiled training step.

For each recorded layer ℓ of a ``keras.Sequential`` (every layer with weights,
and every activation layer), with ``a`` its output on the batch reshaped to
(B samples, U units):

- ``mean``         = mean over all entries of ``a``
- ``std``          = (1/U) Σ_u std_b a[b, u], the population std over the batch of
                     each unit, averaged over units: the notebook's
                     ``np.std(Z, axis=0).mean()`` (cell 21)
- ``saturated``    = fraction of entries within ``SATURATION_MARGIN`` × (bound range)
                     of a bound, for bounded activations (sigmoid, hard_sigmoid:
                     (0, 1); tanh, softsign: (-1, 1)). At a margin of 1% the
                     derivative of sigmoid (and of tanh) is below 4% of its peak:
                     such a unit passes on almost no gradient (Glorot & Bengio, 2010)
- ``dead``         = fraction of units whose output is exactly 0 for every sample in
                     the batch, for the ReLU family (relu, relu6, the ReLU layer)
- ``grad_norm``    = ‖∂L/∂W‖₂ over the layer's kernel (all its trainable variables
                     if it has no kernel, e.g. BatchNorm's gamma and beta)
- ``update_ratio`` = ‖W_after − W_before‖₂ / ‖W_before‖₂ for that same W, the step's
                     relative change (≈1e-3 is the usual healthy order; Karpathy, cs231n)
- ``size``         = number of entries of W (so a gradient can be compared per weight)

Statistics that do not apply to a layer are NaN. The activations come from the
very forward pass whose gradients train the network: :class:`StatsSteps` runs the
Sequential's layers one by one in Keras's stateless scope (what
``model.stateless_call`` does with ``model.call``) and returns every output as aux.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras
import numpy as np
from keras.src import backend as keras_backend

from deepfit.train.state import Layout, TrainState
from deepfit.train.step import Schedule, Steps, flags_set, trainable_weights

SATURATION_MARGIN = 0.01
BOUNDS = {"sigmoid": (0.0, 1.0), "hard_sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "softsign": (-1.0, 1.0)}
RELU_FAMILY = ("relu", "relu6")
STATS = ("mean", "std", "saturated", "dead", "grad_norm", "update_ratio")

# Layers that only reshape or add noise: their outputs say nothing new about health.
_SKIP = (keras.layers.Flatten, keras.layers.Reshape, keras.layers.Dropout, keras.layers.AlphaDropout,
         keras.layers.GaussianNoise, keras.layers.GaussianDropout, keras.layers.InputLayer)


@dataclass(frozen=True)
class Probe:
    """One recorded layer: where it sits, what it computes, which variables are its weights."""

    index: int  # position in model.layers
    name: str
    kind: str  # class name, e.g. "Dense"
    activation: str  # Keras activation name, or the layer's snake-case name ("leaky_relu")
    weights: tuple[str, ...]  # keys of its weights in the training state
    size: int  # number of weight entries

    @property
    def bounds(self) -> tuple[float, float] | None:
        return BOUNDS.get(self.activation)

    @property
    def can_die(self) -> bool:
        return self.activation in RELU_FAMILY


def activation_name(layer: keras.layers.Layer) -> str:
    """The activation a layer's output has passed through ("linear" if none)."""
    if isinstance(layer, keras.layers.ReLU):
        return "relu" if layer.negative_slope == 0 and layer.threshold == 0 else "leaky_relu"
    fn = getattr(layer, "activation", None)
    if callable(fn):
        name = keras.activations.serialize(fn)
        return name if isinstance(name, str) else getattr(fn, "__name__", "custom")
    if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
        return "linear"
    return keras.src.utils.naming.to_snake_case(type(layer).__name__)


def probes(model: keras.Model, layout: Layout | None = None) -> list[Probe]:
    """The layers :class:`StatsSteps` records, in depth order (``layout``: the training state's keys)."""
    if not isinstance(model, keras.Sequential):
        raise TypeError(f"layer statistics need a keras.Sequential model, got {type(model).__name__}")
    if layout is None:
        optimizer = keras.optimizers.SGD()
        optimizer.build(trainable_weights(model))
        layout = Layout(model, optimizer)
    params = set(layout.param_keys)
    out = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, _SKIP):
            continue
        own = [v for v in layer.variables if layout.model_keys[id(v)] in params]  # frozen or not
        kernel = [v for v in own if v.name == "kernel"]
        weights = kernel or own
        if not weights and activation_name(layer) == "linear":
            continue  # nothing to see: no weights and an identity output
        out.append(Probe(i, layer.name, type(layer).__name__, activation_name(layer),
                         layout.keys_of(weights), int(sum(np.prod(v.shape) for v in weights))))
    return out


def output_stats(a: jax.Array, probe: Probe) -> dict[str, jax.Array]:
    """mean, std, saturated, dead of one layer's output (see the module docstring)."""
    a = jnp.reshape(a, (a.shape[0], -1)).astype(jnp.float32)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    saturated = dead = nan
    if probe.bounds is not None:
        lo, hi = probe.bounds
        margin = SATURATION_MARGIN * (hi - lo)
        saturated = jnp.mean(((a <= lo + margin) | (a >= hi - margin)).astype(jnp.float32))
    if probe.can_die:
        dead = jnp.mean(jnp.all(a == 0, axis=0).astype(jnp.float32))
    return {"mean": jnp.mean(a), "std": jnp.mean(jnp.std(a, axis=0)), "saturated": saturated, "dead": dead}


def _norm(arrays) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in arrays))


def weight_stats(probe: Probe, grads: dict, before: dict, after: dict) -> dict[str, jax.Array]:
    """grad_norm and update_ratio of one layer's weights for one step (a frozen layer has no gradient)."""
    nan = jnp.asarray(jnp.nan, jnp.float32)
    if not probe.weights:
        return {"grad_norm": nan, "update_ratio": nan}
    pick = lambda values: [values[k] for k in probe.weights]  # noqa: E731
    change = [b - a for a, b in zip(pick(before), pick(after))]
    grad_norm = _norm(pick(grads)) if all(k in grads for k in probe.weights) else nan
    return {"grad_norm": grad_norm, "update_ratio": _norm(change) / _norm(pick(before))}


def stats_table(outputs, grads, before, after, layers: list[Probe]) -> dict[str, jax.Array]:
    """Every statistic for every probe: {name: array of shape (len(layers),)}."""
    rows = [{**output_stats(outputs[p.index], p), **weight_stats(p, grads, before, after)} for p in layers]
    return {k: jnp.stack([r[k] for r in rows]) for k in STATS}


class StatsSteps(Steps):
    """:class:`~deepfit.train.step.Steps` that also records layer statistics every ``every_n_steps``.

    The statistics are taken on the steps whose global step is a multiple of
    ``every_n_steps`` (step 0 shows the initialization); every other step is the
    ordinary one, with no extra branch (see :meth:`_run_chunk`). ``run_chunk``'s aux
    holds the chunk's statistics: arrays (G, L) per statistic, plus ``taken`` (G,)
    and ``step`` (G,), one row per group of ``every_n_steps`` steps.
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, loss: str,
                 schedule: Schedule | None = None, layout: Layout | None = None, every_n_steps: int = 100):
        if int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        super().__init__(model, optimizer, loss, schedule, layout)
        self.layers = probes(model, self.layout)
        self.stats_step = jax.jit(self._stats_step)

    def _objective_with_outputs(self, trainable: dict, state: TrainState, x, y):
        """``_objective`` with every layer's output as aux: Keras's stateless_call, layer by layer."""
        model, variables = self.model, {**state.variables, **trainable}
        mapping = [(self.layout.variables[k], v) for k, v in variables.items()]
        outputs = []
        with flags_set(model, self.flags), keras_backend.StatelessScope(state_mapping=mapping,
                                                                        collect_losses=True) as scope:
            h = x
            for layer in model.layers:
                # As Sequential.call: training only goes to layers whose call takes it.
                h = layer(h, training=True) if layer._call_has_training_arg else layer(h)
                outputs.append(h)
            reg_losses = model.losses
        updated = {k: scope.get_current_value(self.layout.variables[k]) for k in self.non_trainable_keys}
        loss, correct = self.loss(y, h)
        total = loss + sum(reg_losses) if reg_losses else loss
        return self.scale_loss(total, state), (updated, correct, outputs, total)

    def _stats_step(self, state: TrainState, x, y):
        trainable = {k: state.params[k] for k in self.trainable_keys}
        (_, (updated, correct, outputs, loss)), grads = jax.value_and_grad(
            self._objective_with_outputs, has_aux=True)(trainable, state, x, y)
        new, loss, rate = self.apply_gradients(state, grads, loss, correct, updated, x.shape[0])
        return new, loss, rate, stats_table(outputs, grads, state.params, new.params, self.layers)

    def _run_chunk(self, state: TrainState, x_all, y_all, idx, active):
        """Nested scans: an outer scan over groups of ``every_n_steps`` rows, each a step with
        statistics then an inner scan of ordinary steps, so the ordinary steps carry no extra branch.

        The chunk's rows are shifted (by a traced offset, into a padded copy) so that the rows
        whose global step is a multiple of ``every_n_steps`` open the groups; the padding is
        inactive and the per-step outputs are shifted back.
        """
        n, k = self.every_n_steps, idx.shape[0]
        groups = -(-(k + n - 1) // n)
        blank = {key: jnp.zeros((len(self.layers),), jnp.float32) for key in STATS}
        zero = jnp.zeros((), jnp.float32)
        # Row j is global step s0 + j, s0 counting back over the leading inactive rows (a run resumed
        # mid-chunk); the padding puts the rows with (s0 + j) % n == 0 at the groups' starts.
        shift = (state.step - jnp.argmax(active)) % n

        def padded(a):
            pad = jnp.zeros((n, *a.shape[1:]), a.dtype)
            whole = jnp.concatenate([pad, a, jnp.zeros((groups * n, *a.shape[1:]), a.dtype)])
            return jax.lax.dynamic_slice_in_dim(whole, n - shift, groups * n).reshape(groups, n, *a.shape[1:])

        def plain(state, row):
            batch_idx, on = row
            state, loss, rate = self._step_or_skip(state, x_all[batch_idx], y_all[batch_idx], on)
            return state, (loss, rate)

        def group(state, rows):
            batch_idx, on = rows
            step = state.step
            state, loss, rate, stats = jax.lax.cond(
                on[0], lambda s: self._stats_step(s, x_all[batch_idx[0]], y_all[batch_idx[0]]),
                lambda s: (s, zero, zero, blank), state)
            state, (losses, rates) = jax.lax.scan(plain, state, (batch_idx[1:], on[1:]))
            return state, (jnp.concatenate([loss[None], losses]), jnp.concatenate([rate[None], rates]),
                           {**stats, "taken": on[0], "step": step})

        state, (losses, rates, stats) = jax.lax.scan(group, state, (padded(idx), padded(active)))
        back = lambda a: jax.lax.dynamic_slice_in_dim(a.reshape(-1), shift, k)  # noqa: E731
        return state, back(losses), back(rates), stats


def layer_stats(model: keras.Model, x, y, *, loss: str = "sparse_categorical_crossentropy",
                optimizer: keras.optimizers.Optimizer | str | None = None) -> "pandas.DataFrame":  # noqa: F821
    """Statistics of one forward/backward on ``(x, y)`` at the model's current weights.

    The update ratio is that of one step of ``optimizer`` (default: SGD 0.01),
    computed but not applied: the model is left unchanged.
    """
    optimizer = keras.optimizers.get(optimizer or keras.optimizers.SGD(0.01))
    if not optimizer.built:
        optimizer.build(trainable_weights(model))
    steps = StatsSteps(model, optimizer, loss, every_n_steps=1)
    state = TrainState.from_model(steps.layout).replace(sums=steps.loss.zeros())
    *_, stats = steps.stats_step(state, jnp.asarray(x), jnp.asarray(y))
    return frame_rows(steps.layers, {k: np.asarray(v)[None] for k, v in stats.items()}, steps=[0])


def frame_rows(layers: list[Probe], stats: dict[str, np.ndarray], steps, epoch: int | None = None) -> "pandas.DataFrame":  # noqa: F821
    """Long table: one row per (step, layer), from arrays (n_steps, L)."""
    import pandas as pd

    rows = []
    for r, step in enumerate(steps):
        for depth, p in enumerate(layers):
            row = {"step": int(step), "depth": depth, "layer": p.name, "type": p.kind,
                   "activation": p.activation, "size": p.size}
            if epoch is not None:
                row["epoch"] = epoch
            row.update({k: float(stats[k][r, depth]) for k in STATS})
            rows.append(row)
    return pd.DataFrame(rows)
