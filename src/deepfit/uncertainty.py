"""MC Dropout: predictive mean, spread, entropy and mutual information.

Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation": keeping
dropout on at test time and averaging ``T`` stochastic passes approximates the
predictive distribution ``p(y|x) ≈ (1/T) Σ_t p(y|x, ω_t)``. For each input:

- mean ``p̄_c = (1/T) Σ_t p_tc`` and std ``sqrt((1/T) Σ_t (p_tc − p̄_c)²)`` (NumPy's
  ``std``, as the notebook);
- predictive entropy ``H[p̄] = −Σ_c p̄_c log p̄_c`` (nats; ``0 log 0 = 0``): total uncertainty;
- expected entropy ``E_t H[p_t] = (1/T) Σ_t H[p_t]``: what the noise in the data explains;
- mutual information ``I = H[p̄] − E_t H[p_t] ≥ 0`` (BALD, Houlsby et al. 2011;
  Gal, Islam & Ghahramani 2017): the model's own uncertainty, what more data would reduce.

Only Dropout / AlphaDropout layers sample: they become :class:`~deepfit.nn.layers.MCDropout`
/ ``MCAlphaDropout`` and the model runs in inference mode, so BatchNormalization
uses its moving statistics. (The notebook's ``model(X, training=True)`` puts
BatchNorm in training mode too, which its own text warns against.) The ``T``
passes over a batch of inputs run as one compiled call over the dropout
layers' seed states (``jax.lax.map``, vmapped in chunks: see :func:`mc_predict`).
"""

from __future__ import annotations

import weakref
from typing import Any
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import keras
import numpy as np

from deepfit.errors import ConfigError
from deepfit.nn.layers import MCAlphaDropout, MCDropout, mc_dropout_off


def class_probabilities(y_pred: np.ndarray) -> np.ndarray:
    """Model outputs as class probabilities: one sigmoid output ``p`` becomes ``[1 − p, p]``."""
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_pred.shape[-1] == 1:
        return np.concatenate([1.0 - y_pred, y_pred], axis=-1)
    return y_pred


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats, ``−Σ p log p`` with ``0 log 0 = 0``."""
    p = np.asarray(p, dtype=np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return -np.sum(p * logs, axis=axis)


@dataclass
class MCPrediction:
    """MC dropout statistics, one row per input (``k`` classes; 2 for a sigmoid output)."""

    mean: np.ndarray  # (n, k) mean class probabilities
    std: np.ndarray  # (n, k) their standard deviation over the samples
    entropy: np.ndarray  # (n,) predictive entropy H[mean]
    expected_entropy: np.ndarray  # (n,) mean over samples of each sample's entropy
    mutual_information: np.ndarray  # (n,) entropy − expected_entropy
    samples: int
    all_samples: np.ndarray | None = None  # (T, n, k) when asked for

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.mean, axis=-1)


def summarize(probs: np.ndarray, keep: bool = False) -> MCPrediction:
    """:class:`MCPrediction` from stacked sample probabilities ``(T, n, k)``."""
    probs = np.asarray(probs, dtype=np.float64)
    mean = probs.mean(axis=0)
    h = entropy(mean)
    expected = entropy(probs).mean(axis=0)
    # H[p̄] ≥ E H[p_t] by concavity; clip the float rounding that can dip below 0.
    mi = np.maximum(h - expected, 0.0)
    return MCPrediction(mean, probs.std(axis=0), h, expected, mi, len(probs), probs if keep else None)


def _dropout_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, (keras.layers.Dropout, keras.layers.AlphaDropout))]


def to_mc_dropout(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose Dropout / AlphaDropout layers are MC ones, same weights.

    The notebook's recipe (clone the architecture with the layers swapped, then
    ``set_weights``); the source model is not changed.
    """

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if isinstance(layer, keras.layers.AlphaDropout) and not isinstance(layer, MCAlphaDropout):
            return MCAlphaDropout.from_config(config)
        if isinstance(layer, keras.layers.Dropout) and not isinstance(layer, MCDropout):
            return MCDropout.from_config(config)
        return layer.__class__.from_config(config)

    mc = keras.models.clone_model(model, clone_function=swap)
    mc.set_weights(model.get_weights())
    return mc


def _padded_batches(x: np.ndarray, size: int):
    """Batches of exactly ``size`` rows (the last one padded), so one program serves all."""
    for start in range(0, len(x), size):
        chunk = x[start : start + size]
        n = len(chunk)
        if n < size:
            chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), chunk.dtype)])
        yield chunk, n


# One compiled inference pass per model, kept while the model lives: a comparison calls
# predict_proba once per seed and data split, and each call used to trace and compile anew.
_FORWARD: "weakref.WeakKeyDictionary[keras.Model, Any]" = weakref.WeakKeyDictionary()


def inference_pass(model: keras.Model):
    """``model``'s compiled deterministic forward pass ``(trainable, non_trainable, x) → outputs``."""
    forward = _FORWARD.get(model)
    if forward is None:
        @jax.jit
        def forward(trainable, non_trainable, xb):
            with mc_dropout_off():  # "deterministic" must hold for MC dropout layers too
                return model.stateless_call(trainable, non_trainable, xb, training=False)[0]

        _FORWARD[model] = forward
    return forward


def predict_proba(model: keras.Model, x, batch_size: int = 1000) -> np.ndarray:
    """One deterministic pass in inference mode, as class probabilities ``(n, k)``; MC dropout layers do not sample."""
    x = np.asarray(x, dtype=np.float32)
    size = max(1, min(batch_size, len(x)))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    forward = inference_pass(model)
    out = [np.asarray(forward(trainable, non_trainable, xb))[:n] for xb, n in _padded_batches(x, size)]
    return class_probabilities(np.concatenate(out))


def mc_predict(
    model: keras.Model,
    x,
    samples: int = 100,
    *,
    seed: int = 0,
    batch_size: int = 250,
    sample_batch: int | None = None,
    keep_samples: bool = False,
) -> MCPrediction:
    """``samples`` stochastic passes with only the dropout layers sampling (see the module doc).

    ``model`` may hold plain Dropout / AlphaDropout layers (converted to MC ones
    on a copy) or MC ones already. All passes over a batch of ``batch_size``
    inputs run in one compiled call: ``jax.lax.map`` over the per-pass seed
    states, ``jax.vmap`` over ``sample_batch`` of them at a time. ``None`` picks
    all at once on an accelerator and 1 on the CPU, where vmapping all 100
    passes materializes 100× the activations and random bits and ran about 2×
    slower here (2 cores). The result depends on ``seed`` and, through the
    masks' layout, on ``batch_size``; not on ``sample_batch``. ``keep_samples``
    also returns every pass, ``(samples, n, k)``.
    """
    if not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples must be a positive integer, got {samples!r}")
    if sample_batch is None:
        sample_batch = 1 if jax.default_backend() == "cpu" else samples
    sample_batch = max(1, min(int(sample_batch), samples))
    layers = _dropout_layers(model)
    if not layers:
        raise ConfigError("the model has no Dropout or AlphaDropout layer: MC dropout needs at least one")
    if any(not isinstance(layer, (MCDropout, MCAlphaDropout)) for layer in layers):
        model = to_mc_dropout(model)
        layers = _dropout_layers(model)
    x = np.asarray(x, dtype=np.float32)
    size = max(1, min(batch_size, len(x)))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    ids = [id(v) for v in model.non_trainable_variables]
    # A layer with rate 0 has no seed generator (Keras makes none): it never samples.
    slots = [ids.index(id(layer.seed_generator.state)) for layer in layers if hasattr(layer, "seed_generator")]

    @jax.jit
    def passes(trainable, non_trainable, seed_states, xb):
        def one(states):
            nt = list(non_trainable)
            for j, slot in enumerate(slots):
                nt[slot] = states[j]
            return model.stateless_call(trainable, nt, xb, training=False)[0]

        return jax.lax.map(one, seed_states, batch_size=sample_batch)

    base = jax.random.PRNGKey(seed)
    out = []
    for b, (xb, n) in enumerate(_padded_batches(x, size)):
        # One raw uint32 key per (sample, dropout layer): a SeedGenerator's state is such a key.
        keys = jax.random.split(jax.random.fold_in(base, b), samples * max(len(slots), 1))
        states = keys.reshape(samples, -1, 2)[:, : len(slots)].astype(jnp.uint32)
        out.append(np.asarray(passes(trainable, non_trainable, states, xb))[:, :n])
    probs = class_probabilities(np.concatenate(out, axis=1))
    return summarize(probs, keep=keep_samples)
