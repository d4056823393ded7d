"""Learning-rate schedules: pure functions ``step → rate`` written in ``jax.numpy``.

They run inside the compiled loop, plot without training (they take plain
ints and NumPy arrays too) and resume exactly, since they depend on nothing
but the global step (0 for the first batch: the rate of step ``t`` is
``schedule(t)``, as Keras 2's ``decay`` and the notebook's callbacks apply it).
``make_schedule(spec, steps_per_epoch, epochs, learning_rate)`` builds one from
``{ name = ..., **params }``; ``learning_rate`` is the optimizer's rate, the
default starting rate of every schedule. The notebook's names are kept:
``learning_rate`` (its ``lr0``), ``s``, ``c``, ``decay``, ``boundaries``,
``values``, ``max_rate``, ``start_rate``, ``last_iterations``, ``last_rate``.

Reduce-on-plateau depends on metrics, so it is a callback
(``callbacks = [{ name = "reduce_lr_on_plateau", ... }]``) that multiplies the
scheduled rate; it composes with every schedule here.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from deepfit.config import register_check
from deepfit.errors import ConfigError
from deepfit.registry import Registry, did_you_mean

SCHEDULES = Registry("schedule")

StepFn = Callable[[Any], Any]


class Schedule:
    """``step → rate`` (call it), plus ``momentum``: ``step → momentum`` or None.

    1cycle sets ``momentum``; :func:`deepfit.optim.optimizers.make_optimizer`
    turns it into a scheduled ``momentum`` (SGD) or ``beta_1`` (Adam family).
    """

    def __init__(self, rate: StepFn, momentum: StepFn | None = None, name: str = ""):
        self.rate, self.momentum, self.name = rate, momentum, name

    def __call__(self, step: Any) -> Any:
        return self.rate(step)

    def __repr__(self) -> str:
        return f"Schedule({self.name or self.rate!r}, momentum={'yes' if self.momentum else 'no'})"


def _f32(step: Any) -> Any:
    return jnp.asarray(step, jnp.float32)


def _epoch(step: Any, steps_per_epoch: int, per_step: bool) -> Any:
    """The epoch a step is in: whole epochs (as Keras's LearningRateScheduler), or fractional."""
    if per_step:
        return _f32(step) / steps_per_epoch
    return _f32(jnp.asarray(step) // steps_per_epoch)


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not np.isfinite(value):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


@SCHEDULES.register("constant")
def constant(steps_per_epoch: int, epochs: int, learning_rate: float = 0.01) -> Schedule:
    """The optimizer's rate, unchanged: ``lr(t) = learning_rate``."""
    lr = _positive("learning_rate", learning_rate)
    return Schedule(lambda step: jnp.full(jnp.shape(step), lr, jnp.float32), name="constant")


@SCHEDULES.register("power", aliases=("power_decay", "inverse_time"))
def power(steps_per_epoch: int, epochs: int, learning_rate: float = 0.01, s: float | None = None,
          c: float = 1.0, decay: float | None = None) -> Schedule:
    """Power scheduling, per step: ``lr(t) = learning_rate / (1 + t / s) ** c``.

    Give ``s`` (steps) or Keras 2's ``decay`` (``s = 1 / decay``, c = 1): the
    notebook's ``SGD(lr=0.01, decay=1e-4)`` is ``{ name = "power",
    learning_rate = 0.01, decay = 1e-4 }`` (Keras 2 computed
    ``lr / (1 + decay * iterations)``). Géron, *Hands-On ML*, ch. 11.
    """
    lr, c = _positive("learning_rate", learning_rate), _positive("c", c)
    if (s is None) == (decay is None):
        raise ValueError(f"give exactly one of s (steps) or decay (= 1/s), got s={s!r}, decay={decay!r}")
    if decay is not None:
        d = _positive("decay", decay)
        return Schedule(lambda step: lr / (1.0 + d * _f32(step)) ** c, name="power")
    s = _positive("s", s)
    return Schedule(lambda step: lr / (1.0 + _f32(step) / s) ** c, name="power")


@SCHEDULES.register("exponential", aliases=("exponential_decay",))
def exponential(steps_per_epoch: int, epochs: int, learning_rate: float = 0.01, s: float = 20.0,
                per_step: bool = False) -> Schedule:
    """Exponential scheduling: ``lr = learning_rate * 0.1 ** (epoch / s)``.

    ``epoch`` is the whole epoch number (0-based), as the notebook's
    ``LearningRateScheduler(exponential_decay_fn)`` sets it at each epoch's
    start; ``per_step = true`` uses the fractional epoch ``t / steps_per_epoch``
    instead (a smooth decay). The rate falls tenfold every ``s`` epochs.
    """
    lr, s = _positive("learning_rate", learning_rate), _positive("s", s)
    return Schedule(lambda step: lr * 0.1 ** (_epoch(step, steps_per_epoch, per_step) / s), name="exponential")


@SCHEDULES.register("piecewise_constant", aliases=("piecewise",))
def piecewise_constant(steps_per_epoch: int, epochs: int, boundaries: Sequence[float] = (5, 15),
                       values: Sequence[float] = (0.01, 0.005, 0.001), per_step: bool = False) -> Schedule:
    """Piecewise constant: ``lr = values[i]`` for ``boundaries[i-1] <= epoch < boundaries[i]``.

    ``boundaries`` are epochs (increasing), ``values`` one more than them; the
    notebook's ``piecewise_constant([5, 15], [0.01, 0.005, 0.001])`` is the
    default. ``epoch`` is whole, or fractional with ``per_step = true``.
    """
    b = [float(x) for x in boundaries]
    v = [_positive("values[]", x) for x in values]
    if len(v) != len(b) + 1:
        raise ValueError(f"values needs one more entry than boundaries, got {len(v)} values for {len(b)} boundaries")
    if any(b2 <= b1 for b1, b2 in zip(b, b[1:])):
        raise ValueError(f"boundaries must increase, got {list(boundaries)}")
    b_arr, v_arr = jnp.asarray(b, jnp.float32), jnp.asarray(v, jnp.float32)

    def rate(step):
        epoch = _epoch(step, steps_per_epoch, per_step)
        index = jnp.sum(jnp.asarray(epoch)[..., None] >= b_arr, axis=-1)
        return v_arr[index]

    return Schedule(rate, name="piecewise_constant")


@SCHEDULES.register("one_cycle", aliases=("1cycle", "onecycle"))
def one_cycle(steps_per_epoch: int, epochs: int, max_rate: float = 0.05, start_rate: float | None = None,
              last_iterations: int | None = None, last_rate: float | None = None,
              iterations: int | None = None, cycle_momentum: bool = True,
              max_momentum: float = 0.95, min_momentum: float = 0.85) -> Schedule:
    """1cycle (Smith 2018, arXiv:1803.09820), as the notebook's ``OneCycleScheduler``.

    With ``half = (iterations - last_iterations) // 2``, linear pieces:
    ``start_rate → max_rate`` over ``[0, half)``, ``max_rate → start_rate`` over
    ``[half, 2 half)``, then ``start_rate → last_rate`` over ``[2 half,
    iterations]``, floored at ``last_rate``. Defaults as the notebook:
    ``start_rate = max_rate / 10``, ``last_iterations = iterations // 10 + 1``,
    ``last_rate = start_rate / 1000``, ``iterations = steps_per_epoch * epochs``
    (the notebook passed ``len(X_train) // batch_size * epochs``, 25 steps fewer
    than it ran at batch 128; steps past ``iterations`` stay at ``last_rate``).

    Momentum (``cycle_momentum``, on by default where the optimizer has one:
    SGD's ``momentum``, the Adam family's ``beta_1``) goes the other way, as
    the notebook's text describes: ``max_momentum → min_momentum`` over the
    first half, back to ``max_momentum`` over the second, then stays there.
    """
    max_rate = _positive("max_rate", max_rate)
    start = _positive("start_rate", start_rate) if start_rate is not None else max_rate / 10
    its = int(iterations) if iterations is not None else steps_per_epoch * epochs
    if its < 2:
        raise ValueError(f"iterations must be at least 2, got {its}")
    last_its = int(last_iterations) if last_iterations is not None else its // 10 + 1
    if not 1 <= last_its < its:
        raise ValueError(f"last_iterations must be in [1, iterations={its}), got {last_its}")
    last = _positive("last_rate", last_rate) if last_rate is not None else start / 1000
    for name, m in (("max_momentum", max_momentum), ("min_momentum", min_momentum)):
        if not 0 <= m < 1:
            raise ValueError(f"{name} must be in [0, 1), got {m!r}")
    half = (its - last_its) // 2
    h = max(half, 1)  # only guards a division in a branch never taken when half == 0

    def line(t, t1, t2, r1, r2):
        # (r1 (t2 - t) + r2 (t - t1)) / (t2 - t1): both terms positive, so no float32
        # cancellation near a small end rate (the textbook a + (b - a) f loses 5 digits there).
        return (r1 * (t2 - t) + r2 * (t - t1)) / (t2 - t1)

    def pieces(step, a, b, c):
        t = _f32(step)
        return jnp.where(t < half, line(t, 0, h, a, b),
                         jnp.where(t < 2 * half, line(t, half, half + h, b, a), line(t, 2 * half, its, a, c)))

    rate = lambda step: jnp.maximum(pieces(step, start, max_rate, last), last)  # noqa: E731
    momentum = None
    if cycle_momentum:
        hi, lo = float(max_momentum), float(min_momentum)
        momentum = lambda step: pieces(step, hi, lo, hi)  # noqa: E731
    return Schedule(rate, momentum, name="one_cycle")


def from_function(fn: Callable, per: str = "epoch") -> Callable:
    """A schedule factory from a user function, as Keras's ``LearningRateScheduler``.

    ``fn(epoch, lr) → new lr`` (or ``fn(epoch)``), called at each epoch's start
    with the current rate (``per = "step"``: ``fn(step, lr)`` at each step).
    The rates are tabulated once on the host over the planned steps, so the
    schedule stays a pure function of the step inside the compiled loop.
    """
    if per not in ("epoch", "step"):
        raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")
    try:
        n_args = len([p for p in inspect.signature(fn).parameters.values()
                      if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
    except (TypeError, ValueError):
        n_args = 2
    call = (lambda i, lr: fn(i, lr)) if n_args >= 2 else (lambda i, lr: fn(i))  # noqa: E731

    def factory(steps_per_epoch: int, epochs: int, learning_rate: float = 0.01) -> Schedule:
        n = epochs if per == "epoch" else steps_per_epoch * epochs
        table, lr = np.empty(n, np.float32), float(learning_rate)
        for i in range(n):
            lr = float(call(i, lr))
            if not (np.isfinite(lr) and lr >= 0):
                raise ValueError(f"schedule function returned {lr!r} at {per} {i}; rates must be finite and >= 0")
            table[i] = lr
        rates = jnp.asarray(table)
        unit = steps_per_epoch if per == "epoch" else 1

        def rate(step):
            return rates[jnp.clip(jnp.asarray(step) // unit, 0, n - 1)]

        return Schedule(rate, name=getattr(fn, "__name__", "function"))

    factory.__doc__ = f"User function {getattr(fn, '__name__', fn)!r} of ({per}, lr)."
    factory.tabulates = True
    return factory


def register_schedule(name: str, fn: Callable, per: str = "epoch") -> None:
    """Register a user function of ``(epoch or step, lr)`` so configs name it: ``schedule = "NAME"``.

    The config stays data (a name), so it still saves as TOML and reruns as
    long as the registering code runs first.
    """
    SCHEDULES.register(name)(from_function(fn, per))


_CALLBACK_NOT_SCHEDULE = {
    "reduce_on_plateau": "reduce_lr_on_plateau", "reduce_lr_on_plateau": "reduce_lr_on_plateau",
    "reducelronplateau": "reduce_lr_on_plateau", "performance": "reduce_lr_on_plateau",
}


def _split(spec: str | Mapping[str, Any]) -> tuple[Callable, dict[str, Any]]:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"a schedule needs a name, e.g. {{ name = 'exponential', s = 20 }}; got {spec!r}")
    name = spec["name"]
    if isinstance(name, str) and name.strip().lower().replace("-", "_") in _CALLBACK_NOT_SCHEDULE:
        raise ConfigError(
            f"schedule {name!r} depends on validation metrics, so it is a callback: use "
            "callbacks = [{ name = 'reduce_lr_on_plateau', factor = 0.5, patience = 5 }] "
            "(it multiplies whatever schedule is set)"
        )
    fn = SCHEDULES.get(name)
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    params = [p for p in inspect.signature(fn).parameters if p not in ("steps_per_epoch", "epochs")]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(
            f"schedule {name!r} has no parameter {unknown[0]!r}.{did_you_mean(unknown[0], params)} "
            f"Its parameters: {', '.join(params)}."
        )
    return fn, kwargs


@register_check("schedule")
def check_schedule(spec: str | Mapping[str, Any]) -> None:
    """Fail on an unknown schedule, parameter or bad value before anything runs."""
    fn, kwargs = _split(spec)
    if getattr(fn, "tabulates", False):
        return  # a user's function: called for each planned step once the plan is known, not on a made-up one
    try:
        # Values that do not depend on the data size are checked on a nominal plan.
        fn(steps_per_epoch=1000, epochs=1000, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"schedule {spec!r}: {e}") from None


def make_schedule(spec: str | Mapping[str, Any] | Callable, steps_per_epoch: int, epochs: int,
                  learning_rate: float | None = None) -> Schedule:
    """``step → rate`` for a schedule spec; ``learning_rate`` is the default starting rate.

    ``spec`` is a name, ``{name = ..., **params}``, or (from Python) a function
    of ``(epoch, lr)`` as Keras's ``LearningRateScheduler`` takes.
    """
    if callable(spec) and not isinstance(spec, Mapping):
        fn, kwargs = from_function(spec), {}
    else:
        fn, kwargs = _split(spec)
    if learning_rate is not None and "learning_rate" in inspect.signature(fn).parameters:
        kwargs.setdefault("learning_rate", learning_rate)
    try:
        return fn(steps_per_epoch=steps_per_epoch, epochs=epochs, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"schedule {spec!r}: {e}") from None
