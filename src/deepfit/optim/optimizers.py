"""Keras optimizers by name: ``{ name = "nadam", learning_rate = 0.001 }``.

Keras 3 names, not the notebook's Keras 2 ones: ``learning_rate`` (not ``lr``);
SGD's ``decay`` is gone, use ``schedule = { name = "power", decay = 1e-4 }``.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import keras

from deepfit.errors import ConfigError
from deepfit.registry import did_you_mean, normalize

# Keras's own optimizer classes under the names a config uses.
OPTIMIZERS: dict[str, type] = {
    "sgd": keras.optimizers.SGD,
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "nadam": keras.optimizers.Nadam,
    "adamax": keras.optimizers.Adamax,
    "rmsprop": keras.optimizers.RMSprop,
    "adagrad": keras.optimizers.Adagrad,
    "adadelta": keras.optimizers.Adadelta,
    "ftrl": keras.optimizers.Ftrl,
    "lion": keras.optimizers.Lion,
    "lamb": keras.optimizers.Lamb,
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


def make_optimizer(spec: str | Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """A fresh Keras optimizer from a name or ``{name, **Keras kwargs}``."""
    name, kwargs = optimizer_spec(spec)
    cls = OPTIMIZERS[name]
    for key, hint in _KERAS2_HINTS.items():
        if key in kwargs:
            raise ConfigError(f"optimizer {name!r}: {key!r} is Keras 2; {hint}")
    params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(
            f"optimizer {name!r} has no argument {unknown[0]!r}.{did_you_mean(unknown[0], params)} "
            f"Its arguments: {', '.join(params)}."
        )
    lr = kwargs.get("learning_rate")
    if lr is not None and (not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0):
        raise ConfigError(f"optimizer {name!r}: learning_rate must be a positive number, got {lr!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optimizer {name!r}: {e}") from None
