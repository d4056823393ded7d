"""Keras optimizers whose momentum is a schedule of their own step (for 1cycle).

Keras holds SGD's ``momentum`` and the Adam family's ``beta_1`` as Python
constants. These subclasses read them from ``momentum_schedule(step)``
instead, where ``step`` is the optimizer's ``schedule_step`` variable: deepfit's
trainer writes its clock (``state.step``, the step the rate schedule sees) into
it before every update, and the optimizer advances it itself when Keras's own
``fit`` drives it. Keras's ``iterations`` is not that clock: a freeze schedule
resets it with the rest of the optimizer, as the notebook's recompile does. ``beta_2`` is never scheduled. Without a
schedule each class is Keras's own, unchanged.

Two notes where results can differ from Keras 2 (the notebook):

* With a scheduled ``beta_1`` the Adam family's bias corrections use the
  current ``beta_1`` (``1 - beta_1_t ** t``), as PyTorch's OneCycleLR does.
* Keras 3's Nadam decays its momentum cache as ``0.96 ** t``; Keras 2 (the
  notebook), the paper (Dozat 2016) and PyTorch use ``0.96 ** (0.004 t)``.
  ``Nadam(momentum_decay="notebook")`` gives the latter.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
from keras import ops

MomentumSchedule = Callable[[Any], Any]


CLOCK = "schedule_step"


def _counter(optimizer: keras.optimizers.Optimizer) -> Any:
    # `.value` is the traced value inside stateless_apply's scope, the variable's value outside.
    return optimizer._schedule_step.value


class _Clock:
    """Mixin: with a momentum schedule, the optimizer holds its own ``schedule_step`` variable."""

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        if self.__dict__.get("momentum_schedule") is not None:
            self._schedule_step = self.add_variable(shape=(), initializer="zeros", dtype="int", name=CLOCK)

    def apply(self, grads, trainable_variables=None):
        out = super().apply(grads, trainable_variables)
        if self.__dict__.get("momentum_schedule") is not None:
            self._schedule_step.assign_add(1)
        return out


@keras.saving.register_keras_serializable(package="deepfit")
class SGD(_Clock, keras.optimizers.SGD):
    """Keras's SGD with ``momentum`` read from ``momentum_schedule(step)`` when given.

    ``v ← momentum_t · v − lr_t · g``; ``w ← w + v`` (Nesterov: ``w ← w +
    momentum_t · v − lr_t · g``), Keras's update with a per-step momentum
    (Sutskever et al. 2013). The slots exist even when ``momentum = 0``.
    """

    def __init__(self, *args: Any, momentum_schedule: MomentumSchedule | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.momentum_schedule = momentum_schedule

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        if self.momentum_schedule is not None and not self.momentums:
            self.momentums = self.add_optimizer_variables(variables, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum_schedule is None:
            return super().update_step(gradient, variable, learning_rate)
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        momentum = ops.cast(self.momentum_schedule(_counter(self)), variable.dtype)
        self.assign(m, ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)))
        if self.nesterov:
            self.assign_add(variable, ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)))
        else:
            self.assign_add(variable, m)


class _ScheduledBeta1(_Clock):
    """Mixin for the Adam family: ``beta_1`` is ``momentum_schedule(step)`` when one is set.

    Keras's update code reads ``self.beta_1`` wherever it needs it, so a
    property is enough; the constant given to the constructor is kept for
    ``get_config`` and used when there is no schedule.
    """

    momentum_schedule: MomentumSchedule | None = None

    @property
    def beta_1(self) -> Any:
        schedule = self.__dict__.get("momentum_schedule")
        if schedule is None:
            return self._beta_1_constant
        return schedule(_counter(self))

    @beta_1.setter
    def beta_1(self, value: float) -> None:
        self._beta_1_constant = value

    def get_config(self) -> dict[str, Any]:
        schedule = self.__dict__.pop("momentum_schedule", None)
        try:
            return super().get_config()
        finally:
            if schedule is not None:
                self.__dict__["momentum_schedule"] = schedule


def _init(cls):
    def __init__(self, *args: Any, momentum_schedule: MomentumSchedule | None = None, **kwargs: Any):
        super(cls, self).__init__(*args, **kwargs)
        self.momentum_schedule = momentum_schedule

    cls.__init__ = __init__
    return cls


@keras.saving.register_keras_serializable(package="deepfit")
@_init
class Adam(_ScheduledBeta1, keras.optimizers.Adam):
    """Keras's Adam (Kingma & Ba 2015) with ``beta_1`` scheduled when ``momentum_schedule`` is given."""


@keras.saving.register_keras_serializable(package="deepfit")
@_init
class AdamW(_ScheduledBeta1, keras.optimizers.AdamW):
    """Keras's AdamW (Loshchilov & Hutter 2019) with ``beta_1`` scheduled when ``momentum_schedule`` is given."""


@keras.saving.register_keras_serializable(package="deepfit")
@_init
class Adamax(_ScheduledBeta1, keras.optimizers.Adamax):
    """Keras's Adamax (Kingma & Ba 2015, §7) with ``beta_1`` scheduled when ``momentum_schedule`` is given."""


NADAM_DECAY = {"keras": 1.0, "notebook": 0.004}


@keras.saving.register_keras_serializable(package="deepfit")
class Nadam(_ScheduledBeta1, keras.optimizers.Nadam):
    """Keras's Nadam (Dozat 2016), with a schedulable ``beta_1`` and a choice of momentum decay.

    The momentum cache is ``u_t = beta_1 · (1 − 0.5 · 0.96 ** (k · t))``:
    ``momentum_decay = "keras"`` (default, Keras 3) has ``k = 1``;
    ``"notebook"`` has ``k = 0.004`` as Keras 2 (the notebook), the paper and
    PyTorch. With ``k = 1`` the cache reaches ``beta_1`` within ~100 steps; with
    0.004 it takes tens of thousands, so early updates lean less on momentum.
    """

    def __init__(self, *args: Any, momentum_decay: str = "keras",
                 momentum_schedule: MomentumSchedule | None = None, **kwargs: Any):
        if momentum_decay not in NADAM_DECAY:
            raise ValueError(f"momentum_decay must be one of {', '.join(map(repr, NADAM_DECAY))}, "
                             f"got {momentum_decay!r}")
        super().__init__(*args, **kwargs)
        self.momentum_decay = momentum_decay
        self.momentum_schedule = momentum_schedule

    def _cache_decay(self, step, dtype):
        k = NADAM_DECAY[self.momentum_decay]
        return ops.power(ops.cast(0.96, dtype), ops.cast(step, dtype) * k)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if self.momentum_decay == "keras":
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        dtype = self._u_product.dtype
        self.assign(self._u_product,
                    self._u_product * self.beta_1 * (1.0 - 0.5 * self._cache_decay(self.iterations + 1, dtype)))
        # Skip Keras's Nadam._backend_update_step (it would multiply the product again).
        keras.optimizers.Adam._backend_update_step(self, grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        if self.momentum_decay == "keras":
            return super().update_step(gradient, variable, learning_rate)
        # Keras 3.15's Nadam.update_step with the decay exponent scaled by k.
        var_dtype = variable.dtype
        lr = ops.cast(learning_rate, var_dtype)
        gradient = ops.cast(gradient, var_dtype)
        local_step = ops.cast(self.iterations + 1, var_dtype)
        beta_1 = ops.cast(self.beta_1, var_dtype)
        beta_2 = ops.cast(self.beta_2, var_dtype)
        u_t = beta_1 * (1.0 - 0.5 * self._cache_decay(self.iterations + 1, var_dtype))
        u_t_1 = beta_1 * (1.0 - 0.5 * self._cache_decay(self.iterations + 2, var_dtype))
        u_product_t = ops.cast(self._u_product, var_dtype)
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = ops.power(beta_2, local_step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), (1 - beta_1)))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), (1 - beta_2)))
        m_hat = ops.add(ops.divide(ops.multiply(u_t_1, m), 1 - u_product_t_1),
                        ops.divide(ops.multiply(1 - u_t, gradient), 1 - u_product_t))
        v_hat = ops.divide(v, (1 - beta_2_power))
        self.assign_sub(variable, ops.divide(ops.multiply(m_hat, lr), ops.add(ops.sqrt(v_hat), self.epsilon)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["momentum_decay"] = self.momentum_decay
        return config
