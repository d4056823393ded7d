"""Layers the chapter uses that Keras lacks, registered as Keras custom objects.

Registering them under the package ``deepfit`` lets a saved model reload
(``deepfit>RReLU``) without any code in the file itself.
"""

from __future__ import annotations

import contextlib
import contextvars

import keras
from keras import ops

# Read while a function is traced, so a compiled inference pass keeps the mode it was traced in.
_MC_OFF = contextvars.ContextVar("deepfit_mc_dropout_off", default=False)


@contextlib.contextmanager
def mc_dropout_off():
    """Inside: MC dropout layers act as plain Dropout (identity at inference), for a truly deterministic pass.

    The "deterministic" pass a MC-dropout comparison needs, and the validation
    and test metrics of a model built with MCDropout layers, must not sample.
    """
    token = _MC_OFF.set(True)
    try:
        yield
    finally:
        _MC_OFF.reset(token)


@keras.saving.register_keras_serializable(package="deepfit")
class RReLU(keras.layers.Layer):
    """Randomized leaky ReLU (Xu et al., 2015, "Empirical Evaluation of Rectified Activations").

    ``f(z) = z`` for ``z >= 0`` and ``a * z`` otherwise. In training ``a`` is drawn
    uniformly from ``[lower, upper]`` for every unit of every sample; in inference
    it is the mean slope ``(lower + upper) / 2``. Defaults are the paper's 1/8 and 1/3.
    """

    def __init__(self, lower: float = 1 / 8, upper: float = 1 / 3, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= lower <= upper:
            raise ValueError(
                f"RReLU needs 0 <= lower <= upper, received lower={lower}, upper={upper}"
            )
        self.lower, self.upper, self.seed = float(lower), float(upper), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if training:
            slope = keras.random.uniform(
                ops.shape(inputs), self.lower, self.upper, dtype=inputs.dtype, seed=self.seed_generator
            )
        else:
            slope = (self.lower + self.upper) / 2
        return ops.where(inputs >= 0, inputs, slope * inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "lower": self.lower, "upper": self.upper, "seed": self.seed}


@keras.saving.register_keras_serializable(package="deepfit")
class MCDropout(keras.layers.Dropout):
    """Dropout that samples at inference too: Monte Carlo dropout (Gal & Ghahramani, 2016).

    The notebook's ``MCDropout``: ``call`` forces ``training=True`` for this layer
    alone, so a model's other layers (BatchNormalization) stay in inference mode.
    Averaging N stochastic passes approximates the predictive distribution of
    the Bayesian network dropout is a variational approximation of.
    """

    def call(self, inputs, training=None):
        return super().call(inputs, training=bool(training) if _MC_OFF.get() else True)


@keras.saving.register_keras_serializable(package="deepfit")
class MCAlphaDropout(keras.layers.AlphaDropout):
    """AlphaDropout (Klambauer et al., 2017) that samples at inference too, as :class:`MCDropout`."""

    def call(self, inputs, training=None):
        return super().call(inputs, training=bool(training) if _MC_OFF.get() else True)
