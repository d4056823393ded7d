"""A Keras model handed in from Python, recorded as what it is.

``deepfit.train(cfg, model=m)`` trains ``m``: the run's config must then say so, or
rerunning it trains another network. The record is the model's architecture (Keras's
JSON, inline in ``[model] architecture``, rebuilt with ``safe_mode=True`` and only from
Keras's and deepfit's classes) and, when ``m`` was compiled, its optimizer, loss and
metrics in the config's own terms: used, and written down, never ignored. Compile
arguments a config cannot express (a loss function defined in the notebook) are refused
with what to do instead.
"""

from __future__ import annotations

import json
from typing import Any

import keras

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
    from deepfit.errors import CheckpointError

    try:
        _check_modules(config, "model.architecture")
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    import deepfit.nn.layers  # noqa: F401  (registers deepfit's layers)

    if seed is not None:
        keras.utils.set_random_seed(seed)
    try:
        return keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for a config it cannot rebuild
        raise ConfigError(f"model.architecture: Keras cannot rebuild this model ({e}); a custom layer must be "
                          f"registered with @keras.saving.register_keras_serializable() before training") from None


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
