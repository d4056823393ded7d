"""The compiled step and the scan that runs a chunk of steps.

One training step is a pure function ``(state, x, y) → state``, built from
Keras's ``model.stateless_call`` and ``optimizer.stateless_apply`` (the pattern
of Keras's "training loop from scratch in JAX" guide), so regularization losses,
constraints and every optimizer are Keras's own. A chunk is ``jax.lax.scan``
over a fixed number of batch-index rows; rows marked inactive leave the state
untouched, so one compiled program serves every chunk of an epoch and a run
resumed mid-epoch.

Freezing masks updates: the optimizer covers every weight, the step
differentiates only the weights trainable when its :class:`Steps` was built, and
the frozen weights and their optimizer slots keep their values (optax's
``masked``). Every scheduled value reads the state's one clock, ``state.step``:
the rate is written into the optimizer's ``learning_rate`` variable and the
step into its ``schedule_step`` variable (scheduled momentum) before each update,
as optax's ``inject_hyperparams`` does.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Callable, Hashable

import jax
import jax.numpy as jnp
import keras

from deepfit.nn.layers import mc_dropout_off
from deepfit.train.objective import as_objective
from deepfit.train.state import Layout, TrainState

Schedule = Callable[[jax.Array], jax.Array]
CLOCK = "schedule_step"  # the optimizer variable scheduled momentum reads (deepfit.optim.momentum)


def trainable_weights(model: keras.Model) -> list[keras.Variable]:
    """Every weight created trainable, frozen or not: what the optimizer is built for.

    ``layer.trainable = False`` also clears its variables' ``trainable`` flags, so
    the weights are read from each layer's own list of the variables it created
    trainable (Keras's ``_trainable_variables``).
    """
    seen, out = set(), []
    for layer in model._flatten_layers(include_self=True):
        for v in layer._trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def layer_flags(model: keras.Model) -> tuple:
    """The model's trainable flags, layers' and variables' (what a traced step depends on)."""
    return (tuple(layer._trainable for layer in model._flatten_layers(include_self=True)),
            tuple(v.trainable for v in model.variables))


@contextlib.contextmanager
def flags_set(model: keras.Model, flags: tuple):
    """Inside: the model's trainable flags are ``flags`` (a program retraced later still sees its own)."""
    layers, variables = list(model._flatten_layers(include_self=True)), model.variables
    saved = layer_flags(model)
    try:
        for layer, f in zip(layers, flags[0]):
            layer._trainable = f
        for v, f in zip(variables, flags[1]):
            v.trainable = f
        yield
    finally:
        for layer, f in zip(layers, saved[0]):
            layer._trainable = f
        for v, f in zip(variables, saved[1]):
            v.trainable = f


class Steps:
    """The compiled functions for one model, optimizer, loss and schedule, with the layers frozen now.

    ``run_chunk(state, x_all, y_all, idx, active)`` returns ``(state, losses, rates, aux)``;
    ``aux`` is what a subclass records inside the step (``{}`` here; layer statistics in
    :class:`~deepfit.train.stats_step.StatsSteps`).
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, loss,
                 schedule: Schedule | None = None, layout: Layout | None = None):
        self.model, self.optimizer = model, optimizer
        self.loss_name = loss
        # loss(y, y_pred) -> (mean loss, metric-state increment): Keras's loss and metrics (objective.py)
        self.loss = as_objective(loss, model)
        self.layout = layout or Layout(model, optimizer)
        self.flags = layer_flags(model)
        self.trainable_keys = self.layout.keys_of(model.trainable_variables)
        self.non_trainable_keys = self.layout.keys_of(model.non_trainable_variables)
        self.frozen = frozenset(self.layout.param_keys) - set(self.trainable_keys)
        self.frozen_slots = frozenset(k for k, owner in self.layout.slot_owner.items() if owner in self.frozen)
        lr = getattr(optimizer, "_learning_rate", None)
        self.lr_key = self.layout.key_of_optimizer_variable(lr)
        self.clock_key = next((k for k in self.layout.optimizer_vars if k.rsplit("/", 1)[-1] == CLOCK), None)
        self.keras_schedule = isinstance(lr, keras.optimizers.schedules.LearningRateSchedule)
        if schedule is None and self.keras_schedule:
            if self.layout.iterations_key is None:
                raise TypeError("the optimizer has a LearningRateSchedule but no iterations variable")
            schedule = lr  # Keras's schedule on Keras's own clock, optimizer.iterations (see rate)
        if schedule is None and self.lr_key is None:
            raise TypeError(f"the optimizer's learning_rate {lr!r} is neither a number, a variable nor a Keras "
                            "LearningRateSchedule: give a number or a schedule")
        # None: the optimizer's own learning_rate variable is the rate (what a Keras callback sets)
        self.schedule = schedule
        self.run_chunk = jax.jit(self._run_chunk)
        self.evaluate_batches = jax.jit(self._evaluate_batches)
        self.forward = jax.jit(self._forward)

    # -- the model, called as it was when these steps were built ------------------------------
    def call(self, variables: dict, x, training: bool):
        """``model.stateless_call`` on ``variables`` (by key); returns outputs, new buffers and losses."""
        with flags_set(self.model, self.flags):
            y_pred, non_trainable, losses = self.model.stateless_call(
                [variables[k] for k in self.trainable_keys], [variables[k] for k in self.non_trainable_keys],
                x, training=training, return_losses=True)
        return y_pred, dict(zip(self.non_trainable_keys, non_trainable)), losses

    def rate(self, state: TrainState) -> jax.Array:
        """The learning rate the next step uses: deepfit's schedule on ``state.step``; a Keras
        ``LearningRateSchedule`` on ``optimizer.iterations``, as ``model.fit`` evaluates it (a second
        ``fit`` continues it, an optimizer reset restarts it); else the optimizer's own rate
        variable. Times ``lr_scale`` (reduce-on-plateau)."""
        if self.schedule is None:
            base = state.optimizer[self.lr_key]
        elif self.keras_schedule:
            base = self.schedule(state.optimizer[self.layout.iterations_key])
        else:
            base = self.schedule(state.step)
        return jnp.asarray(base, jnp.float32) * state.lr_scale

    def last_rate(self, state: TrainState) -> jax.Array:
        """The rate the last step used (the one before ``state``; the first rate before any step)."""
        if self.schedule is None:
            return self.rate(state)
        if self.keras_schedule:
            key = self.layout.iterations_key
            before = jnp.maximum(state.optimizer[key] - 1, 0).astype(state.optimizer[key].dtype)
            return self.rate(state.replace(optimizer={**state.optimizer, key: before}))
        return self.rate(state.replace(step=jnp.maximum(state.step - 1, 0)))

    def _objective(self, trainable: dict, state: TrainState, x, y):
        y_pred, updated, reg_losses = self.call({**state.variables, **trainable}, x, training=True)
        loss, correct = self.loss(y, y_pred)
        total = loss + sum(reg_losses) if reg_losses else loss
        return self.scale_loss(total, state), (updated, correct, total)

    def scale_loss(self, loss, state: TrainState):
        """The loss the gradients are taken of: Keras's ``optimizer.scale_loss`` on the state's optimizer
        variables (a ``LossScaleOptimizer``'s dynamic scale under ``mixed_float16``; else unchanged),
        as Keras's JAX trainer does; the optimizer unscales the gradients."""
        mapping = [(v, state.optimizer[k]) for k, v in self.layout.optimizer_vars.items()]
        with keras.StatelessScope(state_mapping=mapping):
            return self.optimizer.scale_loss(loss)

    def gradients(self, state: TrainState, x, y):
        """Loss, aux ``(updated non-trainable values, correct)`` and gradients of the trainable weights."""
        trainable = {k: state.params[k] for k in self.trainable_keys}
        return jax.value_and_grad(self._objective, has_aux=True)(trainable, state, x, y)

    def train_step(self, state: TrainState, x, y) -> tuple[TrainState, jax.Array, jax.Array]:
        """One optimizer step. Returns the new state, the batch loss and the rate used."""
        (_, (updated, correct, loss)), grads = self.gradients(state, x, y)
        return self.apply_gradients(state, grads, loss, correct, updated, x.shape[0])

    def apply_gradients(self, state: TrainState, grads: dict, loss, correct, updated: dict,
                        batch: int) -> tuple[TrainState, jax.Array, jax.Array]:
        """The optimizer update (frozen weights and their slots masked) and the metric sums."""
        rate = self.rate(state)
        opt = dict(state.optimizer)
        if self.lr_key is not None:
            opt[self.lr_key] = rate.astype(opt[self.lr_key].dtype)
        if self.clock_key is not None:
            opt[self.clock_key] = state.step.astype(opt[self.clock_key].dtype)
        # In Keras's order (a dict that has been through a jitted call comes back with sorted keys).
        keys, opt_keys = self.layout.param_keys, list(self.layout.optimizer_vars)
        all_grads = [grads[k] if k in grads else jnp.zeros_like(state.params[k]) for k in keys]
        with self._rate_injected(rate):
            new_params, new_opt = self.optimizer.stateless_apply(
                [opt[k] for k in opt_keys], all_grads, [state.params[k] for k in keys])
        params = {k: state.params[k] if k in self.frozen else v for k, v in zip(keys, new_params)}
        optimizer = {k: state.optimizer[k] if k in self.frozen_slots else v for k, v in zip(opt_keys, new_opt)}
        if self.schedule is None:  # the variable keeps the rate set on it, not the rate times lr_scale
            optimizer[self.lr_key] = state.optimizer[self.lr_key]
        buffers = {**state.buffers, **{k: v for k, v in updated.items() if k in state.buffers}}
        sums = state.sums + self.loss.sums(loss, correct, batch)
        new = state.replace(params=params, buffers=buffers, optimizer=optimizer, step=state.step + 1, sums=sums)
        return new, loss, rate

    @contextlib.contextmanager
    def _rate_injected(self, rate):
        """While tracing the update: a Keras LearningRateSchedule reads deepfit's clock, not Keras's iterations."""
        if not self.keras_schedule:
            yield
            return
        schedule = self.optimizer._learning_rate
        self.optimizer._learning_rate = lambda: rate  # Keras calls a callable rate with no argument
        try:
            yield
        finally:
            self.optimizer._learning_rate = schedule

    def _step_or_skip(self, state: TrainState, x, y, on):
        def skip(state):
            return state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)

        return jax.lax.cond(on, lambda s: self.train_step(s, x, y), skip, state)

    def _run_chunk(self, state: TrainState, x_all, y_all, idx, active):
        """Scan ``train_step`` over rows of batch indices ``idx`` (K, batch); skip inactive rows."""

        def body(state, row):
            batch_idx, on = row
            state, loss, rate = self._step_or_skip(state, x_all[batch_idx], take(y_all, batch_idx), on)
            return state, (loss, rate)

        state, (losses, rates) = jax.lax.scan(body, state, (idx, active))
        return state, losses, rates, {}

    # -- inference: one forward pass, shared by evaluate and predict --------------------------
    def infer(self, variables: dict, x):
        """Outputs and regularization losses in inference mode (MC dropout layers do not sample)."""
        with mc_dropout_off():
            y_pred, _, reg_losses = self.call(variables, x, training=False)
        return y_pred, reg_losses

    def _forward(self, variables: dict, x):
        return self.infer(variables, x)[0]

    def _evaluate_batches(self, variables: dict, x_batches, y_batches):
        """The objective's sums (loss × n, n, metric state) over batches (K, batch, ...), inference mode."""

        def body(sums, batch):
            x, y = batch
            y_pred, reg_losses = self.infer(variables, x)
            loss, correct = self.loss(y, y_pred)
            loss = loss + sum(reg_losses) if reg_losses else loss
            return sums + self.loss.sums(loss, correct, x.shape[0]), None

        sums, _ = jax.lax.scan(body, self.loss.zeros(), (x_batches, y_batches))
        return sums


def take(y, idx):
    """Rows ``idx`` of the labels, or of ``(labels, sample_weight)``."""
    return jax.tree.map(lambda a: a[idx], y)


StepsFactory = Callable[..., Steps]

# Compiled programs kept per process, by a key naming everything they depend on except values
# that travel in the state (weights, seeds). A second run of the same shape reuses the traced and
# compiled functions: measured here, that saves 1-1.5 s a run (tracing, lowering and XLA's
# compilation, which the persistent cache does not skip for these programs).
_KEEP_PROGRAMS = 8
_PROGRAMS: "OrderedDict[Hashable, Steps]" = OrderedDict()


def structure_key(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> str:
    """A digest of everything a traced step reads from the model and optimizer as Python constants: the
    architecture with every layer's arguments (activations, regularizers, constraints, dtype policies;
    Keras's automatic names normalized) and the optimizer's configuration."""
    import hashlib
    import json

    from deepfit.keras_model import architecture_json

    def optimizer_config(opt) -> dict:
        config = {k: v for k, v in opt.get_config().items() if k != "name"}
        inner = getattr(opt, "inner_optimizer", None)
        return {"class": type(opt).__qualname__, **config,
                **({"inner": optimizer_config(inner)} if inner is not None else {})}

    text = json.dumps([architecture_json(model), optimizer_config(optimizer)], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def shared_steps(key: Hashable | None, build: Callable[[], Steps]) -> Steps:
    """The :class:`Steps` cached under ``key`` (built now if new); ``key=None`` always builds.

    Safe because a Steps only reads its model and optimizer for their structure and their
    Python constants (momentum, regularization factors, ...), all of which the key fixes: the
    trainer's key holds :func:`structure_key` beside its caller's (the config without seeds).
    """
    if key is None:
        return build()
    if key not in _PROGRAMS:
        _PROGRAMS[key] = build()
        while len(_PROGRAMS) > _KEEP_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key]
