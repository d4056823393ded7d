"""A Keras model handed in from Python, recorded as what it is.

``deepfit.train(cfg, model=m)`` trains ``m``: the run's config must then say so, or
rerunning it trains another network. The record is the model's architecture (Keras's
JSON, inline in ``[model] architecture``, rebuilt with ``safe_mode=True`` and only from
Keras's and deepfit's classes) and, when ``m`` was compiled, its optimizer, loss and
metrics in the config's own terms: used, and written down, never ignored. Compile
arguments a config cannot express (a loss function defined in the notebook) are refused
with what to do instead. Weights that are not the fresh initialization the seed gives
(pretrained or transferred layers) are recorded too (``model.initial_weights``, safetensors).
"""

from __future__ import annotations

import json
from typing import Any

import keras
import numpy as np

from deepfit.errors import ConfigError


def architecture_json(model: keras.Model) -> str:
    """Keras's JSON of the model's architecture alone (no weights, no compile arguments)."""
    from keras.src.utils.naming import to_snake_case

    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    if config.get("class_name") == "Sequential":
        # Keras numbers default names per session ("dense_7"): the names a fresh session would give make
        # the record the same for the same network, so a notebook restarted can resume its run.
        counts: dict[str, int] = {}
        config["config"]["name"] = "sequential"
        for layer in config["config"]["layers"]:
            base = to_snake_case(layer["class_name"])
            name = layer["config"].get("name", "")
            if name == base or (name.startswith(base + "_") and name[len(base) + 1:].isdigit()):
                n = counts.get(base, 0)
                counts[base] = n + 1
                layer["config"]["name"] = base if n == 0 else f"{base}_{n}"
    return json.dumps(config, sort_keys=True)


def build_architecture(text: str, seed: int | None = None) -> keras.Model:
    """The model an ``architecture`` string describes, freshly initialized from ``seed``."""
    from deepfit.serialize import _check_modules

    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"model.architecture is not Keras's model JSON: {e}") from None
    unknown = unknown_classes(config)
    if unknown:
        module, name = unknown[0]
        raise ConfigError(f"model.architecture uses the class {name!r} (defined in {module or '__main__'}), which "
                          f"this process has not registered with Keras: define it and decorate it with "
                          f"@keras.saving.register_keras_serializable() before training (deepfit never imports "
                          f"code a config names)")
    from deepfit.errors import CheckpointError

    try:
        _check_modules(config, "model.architecture")
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    import deepfit.nn.layers  # noqa: F401  (registers deepfit's layers)

    if seed is not None:
        keras.utils.set_random_seed(seed)
    try:
        return _rebuild(config)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a config it cannot rebuild
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"model.architecture: Keras cannot rebuild this model: {first[:300]}") from None


def _rebuild(config: dict[str, Any]) -> keras.Model:
    """``deserialize_keras_object`` (safe mode), with a Sequential's layers added at once: Keras's own
    ``Sequential.from_config`` rebuilds the model after each layer it adds: 4.7 s instead of 0.5 s for
    the 101 Dense layers of the notebook's deep network on this 2-core machine under load
    (``benchmarks/bench_architecture_build.py``). The same layers are made in the same order, so the
    initial weights are the same (tested bit for bit)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = inner.get("layers")
    if not (config.get("class_name") == "Sequential" and config.get("module") == "keras"
            and isinstance(layers, list) and "name" in inner and all(isinstance(c, dict) and "module" in c
                                                                     for c in layers)):
        return keras.saving.deserialize_keras_object(config, safe_mode=True)
    model = keras.Sequential([keras.saving.deserialize_keras_object(c, safe_mode=True) for c in layers],
                             name=inner["name"])
    shape = inner.get("build_input_shape")
    if not model.built and isinstance(shape, (list, tuple)) and shape:
        model.build(shape)
    return model


def _foreign(module: Any) -> bool:
    return not (isinstance(module, str) and (module == "keras" or module.startswith(("keras.", "deepfit."))))


def foreign_classes(config: Any) -> list[tuple[str | None, str]]:
    """(module, registered name) of each class in a Keras config from outside Keras and deepfit, which a
    process must have registered to rebuild it (Keras writes ``__main__``'s module as None)."""
    found: list[tuple[str | None, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "class_name" in node and "config" in node and node["class_name"] != "__keras_tensor__" \
                    and _foreign(node.get("module")):
                found.append((node.get("module"), node.get("registered_name") or node["class_name"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return list(dict.fromkeys(found))


def unknown_classes(config: Any) -> list[tuple[str | None, str]]:
    """The :func:`foreign_classes` this process has not registered with Keras."""
    known = keras.saving.get_custom_objects()
    return [(module, name) for module, name in foreign_classes(config) if name not in known]


def register_local_classes(model: keras.Model) -> list[str]:
    """Register with Keras, under their module's name (``__main__>MyLayer``), the classes of ``model``'s
    layers that are defined outside Keras and deepfit and not registered yet (a layer written in a
    notebook), so the model's record can be rebuilt in this process. Safe: the classes are already
    here; nothing is imported. Returns the names given."""
    given = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        cls = type(layer)
        if not _foreign(cls.__module__):
            continue
        if cls.__name__ != keras.saving.get_registered_name(cls):
            continue  # registered by its author
        keras.saving.register_keras_serializable(package=cls.__module__)(cls)
        given.append(keras.saving.get_registered_name(cls))
    return list(dict.fromkeys(given))


def same_as_fresh(model: keras.Model, architecture: str, seed: int) -> bool:
    """Whether ``model``'s weights are bit for bit those its architecture gets from ``seed`` (what a run
    of that config starts from), i.e. the config alone records them."""
    fresh = build_architecture(architecture, seed)
    ours = model.weights
    return len(ours) == len(fresh.weights) and all(
        tuple(a.shape) == tuple(b.shape) and np.array_equal(np.asarray(a.value), np.asarray(b.value))
        for a, b in zip(ours, fresh.weights))


def _spec(obj: Any, kind: str) -> Any:
    """A config's name or table for a Keras loss / metric / optimizer object, or a ConfigError."""
    from keras.src.utils.naming import to_snake_case

    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return obj
    module = type(obj).__module__
    if not module.startswith("keras"):
        name = getattr(obj, "__name__", type(obj).__name__)
        raise ConfigError(f"the model was compiled with the {kind} {name!r}, defined outside Keras, which a run's "
                          f"config cannot record: compile with a Keras {kind} (by name or object), or use "
                          f"deepfit.fit(model, x, y) which trains any compiled model")
    if callable(obj) and not hasattr(obj, "get_config"):  # a Keras loss or metric function
        return obj.__name__
    config = {k: v for k, v in obj.get_config().items() if v is not None and k not in ("name", "dtype", "reduction")}
    return {"name": to_snake_case(type(obj).__name__), **config}


def compile_overrides(model: keras.Model) -> dict[str, Any]:
    """The config overrides that say what ``model.compile(...)`` said (empty when not compiled)."""
    if not getattr(model, "compiled", False):
        return {}
    out: dict[str, Any] = {}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        from keras.src.utils.naming import to_snake_case

        config = optimizer.get_config()
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            raise ConfigError("the model's optimizer has a Keras LearningRateSchedule, which a run's config cannot "
                              "record: give the optimizer a number and set training.schedule instead")
        keep = {k: v for k, v in config.items() if v is not None and k != "name"
                and not (k in ("use_ema", "nesterov", "amsgrad", "centered") and v is False and k != "nesterov")}
        for default in ("ema_momentum", "ema_overwrite_frequency", "use_ema"):
            if keep.get("use_ema") is not True:
                keep.pop(default, None)
        out["training.optimizer"] = {"name": to_snake_case(type(optimizer).__name__), **keep}
    if model.loss is not None:
        out["training.loss"] = _spec(model.loss, "loss")
    metrics = getattr(model, "_compile_metrics", None)
    user = [] if metrics is None else (metrics._user_metrics or [])
    if metrics is not None and metrics._user_weighted_metrics:
        raise ConfigError("weighted_metrics need sample weights, which a config run does not have: "
                          "use deepfit.fit(model, x, y, sample_weight=...)")
    if isinstance(user, dict):
        raise ConfigError("metrics by output name are for multi-output models; deepfit trains one output")
    out["training.metrics"] = [_spec(m, "metric") for m in user]
    return out
