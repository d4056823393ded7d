"""Keras models as data: architecture JSON + safetensors weights, never pickle.

The architecture is Keras's own JSON, rebuilt with ``safe_mode=True`` (no
lambdas) and only from Keras's and deepfit's registered classes; the weights
are NumPy arrays in safetensors, one per variable, in ``model.weights`` order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from deepfit.errors import CheckpointError
from deepfit.io import write_atomic


def _check_modules(node: Any, path: str) -> None:
    """Refuse any class outside Keras, deepfit and what this process registered with Keras
    (``@keras.saving.register_keras_serializable()``: a user's own layer, already imported)
    before Keras imports anything."""
    if isinstance(node, dict):
        registered = node.get("registered_name")
        if isinstance(registered, str) and registered in keras.saving.get_custom_objects():
            for value in node.values():
                _check_modules(value, path)
            return
        module = node.get("module")
        if isinstance(module, str) and not (module == "keras" or module.startswith(("keras.", "deepfit."))):
            raise CheckpointError(f"{path}: refuses to load class from module {module!r} ({node.get('class_name')!r}; "
                                  f"only Keras, deepfit and classes registered with "
                                  f"@keras.saving.register_keras_serializable(): register it, then load again)")
        if isinstance(registered, str) and ">" in registered and not registered.startswith("deepfit>"):
            raise CheckpointError(f"{path}: refuses unknown custom object {registered!r} (register it with "
                                  f"@keras.saving.register_keras_serializable() before loading)")
        for value in node.values():
            _check_modules(value, path)
    elif isinstance(node, list):
        for value in node:
            _check_modules(value, path)


def save_model(model: keras.Model, directory: str | Path) -> list[str]:
    """Write ``model.json`` and ``weights.safetensors``; returns the file names."""
    d = Path(directory)
    try:  # with its compile arguments (optimizer, loss, metrics), so the model reloads compiled
        text = model.to_json(indent=1)
    except Exception:  # noqa: BLE001 - compile arguments Keras cannot serialize: the architecture alone
        compiled, model.compiled = model.compiled, False
        try:
            text = model.to_json(indent=1)
        finally:
            model.compiled = compiled
    write_atomic(d / "model.json", text)
    arrays = {f"{i:04d}/{w.path}": np.ascontiguousarray(np.asarray(w.value)) for i, w in enumerate(model.weights)}
    write_atomic(d / "weights.safetensors", save(arrays, metadata={"format": "deepfit-keras-weights"}))
    return ["model.json", "weights.safetensors"]


def load_model(directory: str | Path) -> keras.Model:
    """Rebuild a model saved by :func:`save_model`; bad or unsafe files raise CheckpointError."""
    d = Path(directory)
    path = d / "model.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found: not a deepfit run directory?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid model JSON: {e}") from None
    _check_modules(config, str(path))
    import deepfit.nn.layers  # noqa: F401  (registers deepfit's layers)

    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except Exception as e:  # Keras raises many types for a bad config
        raise CheckpointError(f"{path}: Keras cannot rebuild this model: {e}") from None
    load_weights(model, d / "weights.safetensors")
    return model


def load_weights(model: keras.Model, path: str | Path) -> None:
    try:
        arrays = load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file: {e}") from None
    weights = model.weights
    if len(arrays) != len(weights):
        raise CheckpointError(f"{path}: holds {len(arrays)} tensors, the model has {len(weights)} variables")
    by_index = {int(k.split("/", 1)[0]): (k, v) for k, v in arrays.items() if k.split("/", 1)[0].isdigit()}
    for i, w in enumerate(weights):
        if i not in by_index:
            raise CheckpointError(f"{path}: tensor {i} ({w.path}) is missing")
        name, value = by_index[i]
        if tuple(value.shape) != tuple(w.shape):
            raise CheckpointError(f"{path}: tensor {name} has shape {value.shape}, the model expects {tuple(w.shape)}")
        w.assign(value.astype(w.dtype))
