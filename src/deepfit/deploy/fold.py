"""Fold BatchNormalization layers into the Dense layers beside them: exact algebra, for inference.

In inference mode a BatchNormalization layer is an affine map of each feature,
``BN(z) = s · (z − μ) + β`` with ``s = γ / √(σ² + ε)`` (its moving mean μ and
variance σ², Keras's ``batch_normalization``). An affine map next to a Dense
layer ``z = x W + b`` merges into it:

- BN right after a Dense with no activation (the notebook's "BN before the
  activation": ``Dense(use_bias=False)``, ``BatchNormalization``, ``Activation``):
  ``W′ = W · diag(s)``, ``b′ = (b − μ) · s + β``;
- BN right before a Dense (the notebook's "BN after Flatten" and "BN after each
  hidden layer's activation"): ``W′ = diag(s) · W``, ``b′ = b + (β − μ · s) · W``.

Layers that are the identity in inference (Dropout, AlphaDropout, GaussianNoise,
GaussianDropout) may sit in between. The sums are done in float64 and stored in
the model's dtype. A BatchNormalization that fits neither pattern (next to a
non-linear layer on both sides, over another axis than the features of a
rank-2 input, or in a model that is not a ``keras.Sequential``) is kept as it
is, and :class:`Folded` names it with the reason: never skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

# Exactly these classes (not subclasses: MCDropout samples at inference).
IDENTITY_IN_INFERENCE = (keras.layers.Dropout, keras.layers.AlphaDropout, keras.layers.GaussianNoise,
                         keras.layers.GaussianDropout)


@dataclass
class Folded:
    """The folded model and what happened to each BatchNormalization layer."""

    model: keras.Model
    folded: list[dict[str, str]] = field(default_factory=list)  # {batch_norm, into, placement}
    kept: list[dict[str, str]] = field(default_factory=list)  # {layer, reason}

    def record(self) -> dict[str, Any]:
        return {"folded": self.folded, "not_folded": self.kept}


def _is_linear_dense(layer) -> bool:
    return isinstance(layer, keras.layers.Dense) and keras.activations.serialize(layer.activation) == "linear"


def _neighbour(layers: list, i: int, step: int):
    """The first layer from ``i`` in direction ``step`` that is not the identity in inference, with its index."""
    j = i + step
    while 0 <= j < len(layers) and type(layers[j]) in IDENTITY_IN_INFERENCE:
        j += step
    return (j, layers[j]) if 0 <= j < len(layers) else (None, None)


def _scale_shift(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """``s`` and the shift ``β − μ · s`` of the BN's inference map ``z ↦ s · z + shift``, in float64."""
    mean = np.asarray(bn.moving_mean.value, np.float64)
    var = np.asarray(bn.moving_variance.value, np.float64)
    gamma = np.asarray(bn.gamma.value, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta.value, np.float64) if bn.center else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.epsilon)
    return s, beta - mean * s


def _why_not(layers: list, i: int) -> tuple[int | None, str, str]:
    """(index of the Dense it folds into, placement, reason it cannot) for the BN at ``i``."""
    bn = layers[i]
    shape = bn.input.shape if hasattr(bn, "input") else None
    rank = len(shape) if shape is not None else None
    axis = [bn.axis] if isinstance(bn.axis, int) else list(bn.axis)
    axes = [a % rank for a in axis] if rank else axis
    if rank != 2 or axes != [1]:
        return None, "", (f"it normalizes axis {bn.axis} of a rank-{rank} input; only a BatchNormalization over the "
                          "features of a rank-2 input (a Dense layer's input or output) folds")
    j, before = _neighbour(layers, i, -1)
    if before is not None and _is_linear_dense(before):
        return j, "after_dense", ""
    k, after = _neighbour(layers, i, +1)
    if after is not None and isinstance(after, keras.layers.Dense):
        return k, "before_dense", ""
    def name(layer) -> str:
        if layer is None:
            return "nothing"
        if isinstance(layer, keras.layers.Dense):
            return f"{layer.name} (Dense, activation {keras.activations.serialize(layer.activation)})"
        return f"{layer.name} ({type(layer).__name__})"

    return None, "", (f"it follows {name(before)} and precedes {name(after)}: folding needs a Dense layer without "
                      "activation right before it, or a Dense layer right after it (Dropout-like layers may sit "
                      "in between)")


def fold_batch_norm(model: keras.Model) -> Folded:
    """A new ``keras.Sequential`` with every foldable BatchNormalization merged into its Dense neighbour.

    The original model is not changed. See the module docstring for the algebra
    and for what cannot be folded.
    """
    if not isinstance(model, keras.Sequential):
        bns = [layer.name for layer in model._flatten_layers(include_self=False)
               if isinstance(layer, keras.layers.BatchNormalization)]
        return Folded(model, [], [{"layer": n, "reason": f"the model is a {type(model).__name__}, not a "
                                   "keras.Sequential: only a Sequential's layer order says which Dense is next"}
                                  for n in bns])
    layers = list(model.layers)
    weights: dict[int, list[np.ndarray]] = {}  # Dense index -> [kernel, bias] in float64, as folded so far
    drop, folded, kept = set(), [], []
    for i, layer in enumerate(layers):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        j, placement, reason = _why_not(layers, i)
        if j is None:
            kept.append({"layer": layer.name, "reason": reason})
            continue
        dense = layers[j]
        if j not in weights:
            kernel = np.asarray(dense.kernel.value, np.float64)
            bias = np.asarray(dense.bias.value, np.float64) if dense.use_bias else np.zeros(kernel.shape[1])
            weights[j] = [kernel, bias]
        w, b = weights[j]
        s, shift = _scale_shift(layer)
        if placement == "after_dense":  # BN(x W + b) = x (W diag s) + (b s + shift)
            weights[j] = [w * s[None, :], b * s + shift]
        else:  # (s x + shift) W + b = x (diag(s) W) + (shift W + b)
            weights[j] = [s[:, None] * w, b + shift @ w]
        drop.add(i)
        folded.append({"batch_norm": layer.name, "into": dense.name, "placement": placement})
    if not folded:
        return Folded(model, [], kept)
    new_layers = []
    for i, layer in enumerate(layers):
        if i in drop:
            continue
        config = layer.get_config()
        if i in weights:
            config["use_bias"] = True  # a Dense(use_bias=False) gets the BN's shift as its bias
        new_layers.append(layer.__class__.from_config(config))
    out = keras.Sequential([keras.Input(tuple(model.input_shape[1:]), dtype=model.inputs[0].dtype), *new_layers],
                           name=model.name)
    kept_layers = [(i, layer) for i, layer in enumerate(layers) if i not in drop]
    for (i, old), new in zip(kept_layers, out.layers):
        if i in weights:
            kernel, bias = weights[i]
            new.kernel.assign(kernel.astype(old.kernel.dtype))
            new.bias.assign(bias.astype(old.kernel.dtype))
        else:
            for a, b in zip(new.weights, old.weights):
                a.assign(b.value)
    return Folded(out, folded, kept)
