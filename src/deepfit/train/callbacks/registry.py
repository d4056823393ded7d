"""The registry of callbacks by name (each callback module registers itself here)."""

from __future__ import annotations

import inspect
from pathlib import Path
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


# The arguments of Keras's and deepfit's callbacks that name a file or folder they write (Keras's
# ModelCheckpoint.filepath, CSVLogger.filename and OrbaxCheckpoint.directory; deepfit's tensorboard.log_dir
# and backup_and_restore.backup_dir). tests/test_runs_and_files.py checks that no callback of either has
# another argument naming a path.
PATH_ARGUMENTS = ("filepath", "filename", "directory", "log_dir", "backup_dir")


def callback_class(name: str) -> type | None:
    """The class a config's callback name makes (deepfit's names first, as :func:`make_callback`), or None."""
    from deepfit.train.callbacks.keras_adapter import keras_callback_class

    return CALLBACKS.get(name) if name in CALLBACKS else keras_callback_class(name)


def paths_of(spec: str | Mapping[str, Any]) -> dict[str, str]:
    """The paths a config's callback will write to, by argument (its defaults included), as given."""
    spec = {"name": spec} if isinstance(spec, str) else spec
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        return {}
    cls = callback_class(spec["name"])
    if cls is None:
        return {}
    params = inspect.signature(cls.__init__).parameters
    found = {}
    for arg in PATH_ARGUMENTS:
        value = spec.get(arg, params[arg].default if arg in params else None)
        if arg in params and isinstance(value, (str, Path)) and str(value):
            found[arg] = str(value)
    return found


def in_directory(spec: str | Mapping[str, Any], directory: str | Path) -> str | Mapping[str, Any]:
    """A config's callback with its relative paths placed inside ``directory`` (a run's own), so the runs of
    a sweep each write their own ``best.keras`` and ``log.csv``; an absolute path is kept."""
    relative = {arg: str(Path(directory) / value) for arg, value in paths_of(spec).items()
                if not Path(value).is_absolute()}
    if not relative:
        return spec
    return {**({"name": spec} if isinstance(spec, str) else spec), **relative}
