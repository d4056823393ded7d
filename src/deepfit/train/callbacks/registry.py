"""The registry of callbacks by name (each callback module registers itself here)."""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from deepfit.config import register_check
from deepfit.errors import ConfigError
from deepfit.registry import Registry, did_you_mean
from deepfit.train.events import Callback

CALLBACKS = Registry("callback")


@register_check("callback")
def make_callback(spec: str | Mapping[str, Any] | Callback) -> Callback:
    """A callback from ``"name"``, ``{name = ..., **kwargs}`` or an instance. deepfit's names come first;
    any other Keras callback (``ModelCheckpoint``, ``CSVLogger``, ...) is Keras's own, run unchanged
    (a ``keras.callbacks.Callback``: the run wraps those in ``keras_adapter.KerasCallbacks``)."""
    from deepfit.train.callbacks.keras_adapter import is_keras_callback, keras_callback

    if isinstance(spec, Callback) or is_keras_callback(spec):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ConfigError(f"a callback needs a name, e.g. {{ name = 'early_stopping', patience = 5 }}; got {spec!r}")
    if spec["name"] not in CALLBACKS:
        made = keras_callback(str(spec["name"]), {k: v for k, v in spec.items() if k != "name"})
        if made is not None:
            return made
    cls = CALLBACKS.get(spec["name"])
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise ConfigError(
            f"callback {spec['name']!r} has no argument {unknown[0]!r}.{did_you_mean(unknown[0], params)} "
            f"Its arguments: {', '.join(params)}."
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"callback {spec['name']!r}: {e}") from None
