"""How sparse a network is, and magnitude pruning of its kernels (NumPy, after training).

The prunable weights are the kernels of the ``Dense`` layers (``layer.kernel``):
biases, BatchNorm's parameters and statistics are few and are never pruned, as
in the TensorFlow Model Optimization toolkit's defaults. A weight is "zero" when
it is exactly 0.0 (an l1 penalty under Adam leaves tiny weights, not zeros: that
is why the chapter says to zero them after training).

Magnitude pruning at fraction ``f`` zeroes the ``floor(f · n)`` weights of
smallest ``|w|`` (ties broken by position, so exactly that many), either within
each kernel (``scope = "layer"``: every layer loses the same fraction) or over
all kernels at once (``scope = "global"``: one threshold, so layers with many
small weights lose more).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import keras
import numpy as np

Scope = Literal["layer", "global"]
SCOPES = ("layer", "global")


def kernels(model: keras.Model) -> list[tuple[str, keras.Variable]]:
    """``(layer name, kernel variable)`` of every Dense layer, in model order."""
    return [(layer.name, layer.kernel) for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.Dense) and getattr(layer, "_kernel", None) is not None]


def sparsity(model: keras.Model) -> dict[str, Any]:
    """Exact zeros in the Dense kernels: per layer and in all (the run record's ``sparsity``)."""
    layers, total, zeros = {}, 0, 0
    for name, kernel in kernels(model):
        w = np.asarray(kernel.value)
        z = int(w.size - np.count_nonzero(w))
        layers[name] = {"weights": int(w.size), "zeros": z, "fraction": z / w.size if w.size else 0.0}
        total, zeros = total + int(w.size), zeros + z
    return {"weights": total, "zeros": zeros, "fraction": zeros / total if total else 0.0, "layers": layers}


def magnitude_masks(arrays: Sequence[np.ndarray], fraction: float, scope: Scope = "layer") -> list[np.ndarray]:
    """Boolean keep-masks zeroing the smallest ``fraction`` of the weights by magnitude (see the module doc)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the pruned fraction must be in [0, 1), got {fraction}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    groups = [[a] for a in arrays] if scope == "layer" else [list(arrays)]
    masks: list[np.ndarray] = []
    for group in groups:
        flat = np.concatenate([np.abs(np.asarray(a, np.float64)).ravel() for a in group]) if group else np.zeros(0)
        keep = np.ones(flat.size, bool)
        keep[np.argsort(flat, kind="stable")[: int(np.floor(fraction * flat.size))]] = False
        start = 0
        for a in group:
            masks.append(keep[start:start + a.size].reshape(a.shape))
            start += a.size
    return masks


def prune(model: keras.Model, fraction: float, scope: Scope = "layer") -> dict[str, Any]:
    """Zero the smallest ``fraction`` of the Dense kernels' weights in place; returns what was zeroed per layer."""
    named = kernels(model)
    masks = magnitude_masks([np.asarray(k.value) for _, k in named], fraction, scope)
    out = {}
    for (name, kernel), keep in zip(named, masks):
        w = np.asarray(kernel.value)
        kernel.assign(np.where(keep, w, np.zeros_like(w)))
        out[name] = {"weights": int(w.size), "pruned": int(keep.size - keep.sum())}
    return out
