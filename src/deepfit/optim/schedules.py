"""Learning-rate schedules: pure functions ``step → rate`` written in ``jax.numpy``.

They run inside the compiled loop, plot without training and resume exactly,
since they depend on nothing but the step.
``make_schedule(spec, steps_per_epoch, epochs, learning_rate)`` builds one from
``{ name = ..., **params }``; ``learning_rate`` is the optimizer's rate, the
default starting rate of every schedule.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import jax.numpy as jnp

from deepfit.errors import ConfigError
from deepfit.registry import Registry, did_you_mean

SCHEDULES = Registry("schedule")


@SCHEDULES.register("constant")
def constant(steps_per_epoch: int, epochs: int, learning_rate: float) -> Callable:
    """The optimizer's rate, unchanged."""
    return lambda step: jnp.full(jnp.shape(step), learning_rate, jnp.float32)


def _split(spec: str | Mapping[str, Any]) -> tuple[Callable, dict[str, Any]]:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"a schedule needs a name, e.g. {{ name = 'exponential', s = 20 }}; got {spec!r}")
    fn = SCHEDULES.get(spec["name"])
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    params = [p for p in inspect.signature(fn).parameters if p not in ("steps_per_epoch", "epochs")]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(
            f"schedule {spec['name']!r} has no parameter {unknown[0]!r}.{did_you_mean(unknown[0], params)} "
            f"Its parameters: {', '.join(params)}."
        )
    return fn, kwargs


def check_schedule(spec: str | Mapping[str, Any]) -> None:
    """Fail on an unknown schedule or parameter before anything runs."""
    _split(spec)


def make_schedule(spec: str | Mapping[str, Any], steps_per_epoch: int, epochs: int,
                  learning_rate: float | None = None) -> Callable:
    """``step → rate`` for a schedule spec; ``learning_rate`` is the default starting rate."""
    fn, kwargs = _split(spec)
    if learning_rate is not None and "learning_rate" in inspect.signature(fn).parameters:
        kwargs.setdefault("learning_rate", learning_rate)
    try:
        return fn(steps_per_epoch=steps_per_epoch, epochs=epochs, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"schedule {spec!r}: {e}") from None
