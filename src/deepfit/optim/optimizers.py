"""Keras optimizers by name: ``{ name = "nadam", learning_rate = 0.001 }``.

Keras 3 names, not the notebook's Keras 2 ones: ``learning_rate`` (not ``lr``);
SGD's ``decay`` is gone, use ``schedule = { name = "power", decay = 1e-4 }``.
``nadam`` is Keras's Nadam plus ``momentum_decay = "notebook"`` (Keras 2's
``0.96 ** (0.004 t)`` momentum schedule instead of Keras 3's ``0.96 ** t``).

:data:`CAPABILITIES` records which hyperparameter holds each optimizer's
momentum, so 1cycle knows whether to cycle ``momentum`` (SGD) or ``beta_1``
(the Adam family), or nothing.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import keras

from deepfit.config import register_check
from deepfit.errors import ConfigError
from deepfit.optim import momentum as scheduled
from deepfit.registry import did_you_mean, normalize

# Keras's own optimizer classes under the names a config uses.
OPTIMIZERS: dict[str, type] = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "nadam": scheduled.Nadam,  # Keras's, plus momentum_decay = "keras" | "notebook"
    "adamax": keras.optimizers.Adamax,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
    "ftrl": keras.optimizers.Ftrl,
    "lion": keras.optimizers.Lion,
    "lamb": keras.optimizers.Lamb,
}



@dataclass(frozen=True)
class Capability:
    """What an optimizer supports: the name of its momentum hyperparameter and the
    subclass that can schedule it (None: it has no momentum to cycle)."""

    momentum: str | None
    scheduled: type | None = None


CAPABILITIES: dict[str, Capability] = {
    "sgd": Capability("momentum", scheduled.SGD),
    "adam": Capability("beta_1", scheduled.Adam),
    "adamw": Capability("beta_1", scheduled.AdamW),
    "nadam": Capability("beta_1", scheduled.Nadam),
    "adamax": Capability("beta_1", scheduled.Adamax),
}

_KERAS2_HINTS = {
    "lr": "Keras 3 calls it learning_rate",
    "decay": "Keras 3 dropped it: use schedule = { name = 'power', decay = ... } (the same formula)",
}


def optimizer_spec(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split ``"adam"`` or ``{name = "adam", **kwargs}`` into a canonical name and kwargs."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"optimizer needs a name, e.g. {{ name = 'sgd', learning_rate = 0.01 }}; got {spec!r}")
    name = normalize(spec["name"])
    if name not in OPTIMIZERS:
        raise ConfigError(
            f"unknown optimizer {spec['name']!r}.{did_you_mean(name, list(OPTIMIZERS))} "
            f"Valid names: {', '.join(OPTIMIZERS)}."
        )
    return name, {k: v for k, v in spec.items() if k != "name"}


def init_params(cls: type) -> list[str]:
    """The keyword arguments an optimizer class takes: its own and its Keras base's."""
    keras_base = next(c for c in cls.__mro__ if c.__module__.startswith("keras"))
    names: list[str] = []
    for c in (cls, keras_base):
        names += [p for p in inspect.signature(c.__init__).parameters
                  if p not in ("self", "args", "kwargs", "momentum_schedule") and p not in names]
    return names


def supports_momentum_schedule(spec: str | Mapping[str, Any]) -> bool:
    """Whether 1cycle can cycle this optimizer's momentum (``momentum`` or ``beta_1``)."""
    cap = CAPABILITIES.get(optimizer_spec(spec)[0])
    return cap is not None and cap.scheduled is not None


def make_optimizer(spec: str | Mapping[str, Any],
                   momentum_schedule: Callable | None = None) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer from a name or ``{name, **Keras kwargs}``.

    ``momentum_schedule`` (``step → value``) makes SGD's ``momentum`` or the
    Adam family's ``beta_1`` follow it (the value in the spec is then unused);
    an optimizer without momentum (see :data:`CAPABILITIES`) refuses it.
    """
    name, kwargs = check_optimizer(spec)
    cls = OPTIMIZERS[name]
    if momentum_schedule is not None:
        cap = CAPABILITIES.get(name)
        if cap is None or cap.scheduled is None:
            raise ConfigError(f"optimizer {name!r} has no momentum to schedule; optimizers that do: "
                              f"{', '.join(n for n, c in CAPABILITIES.items() if c.scheduled)}")
        cls, kwargs = CAPABILITIES[name].scheduled, {**kwargs, "momentum_schedule": momentum_schedule}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optimizer {name!r}: {e}") from None


@register_check("optimizer")
def check_optimizer(spec: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The optimizer's name and arguments, checked by lookup and signature (nothing is built).

    Returns the canonical name and the keyword arguments.
    """
    name, kwargs = optimizer_spec(spec)
    cls = OPTIMIZERS[name]
    for key, hint in _KERAS2_HINTS.items():
        if key in kwargs:
            raise ConfigError(f"optimizer {name!r}: {key!r} is Keras 2; {hint}")
    params = init_params(cls)
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(
            f"optimizer {name!r} has no argument {unknown[0]!r}.{did_you_mean(unknown[0], params)} "
            f"Its arguments: {', '.join(params)}."
        )
    # TOML's `learning_rate = 1` is an integer, which Keras refuses: a float where Keras's default is one.
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()}
    kwargs = {k: float(v) if type(v) is int and isinstance(defaults.get(k), float) else v for k, v in kwargs.items()}
    lr = kwargs.get("learning_rate")
    if lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0):
        raise ConfigError(f"optimizer {name!r}: learning_rate must be a positive number, got {lr!r}")
    return name, kwargs
