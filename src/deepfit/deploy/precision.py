"""Lower a model's precision for inference: 16-bit floats, or 8-bit integers.

- ``float16`` / ``bfloat16``: every layer rebuilt with that Keras dtype policy
  (weights stored and computed in 16 bits; Keras keeps BatchNormalization's
  arithmetic in float32, as it does for mixed precision), the weights cast.
  Inputs stay float32 and are cast by the first layer; outputs are 16-bit.
- ``int8``: Keras's own ``Model.quantize("int8")`` (Dense kernels as int8 with a
  per-output-channel scale, inputs quantized on the fly) for a Keras model;
  onnxruntime's ``quantize_dynamic`` (MatMul / Gemm weights as int8, activations
  quantized per call) for an ONNX file (:mod:`deepfit.deploy.onnx`).

Neither is assumed faster: :mod:`deepfit.deploy.exporter` measures both.
"""

from __future__ import annotations

import warnings

import keras

PRECISIONS = ("float32", "float16", "bfloat16", "int8")


def with_dtype(model: keras.Model, dtype: str) -> keras.Model:
    """A copy of ``model`` whose every layer has the dtype policy ``dtype``, with its weights cast."""
    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": dtype})

    out = keras.models.clone_model(model, clone_function=clone)
    for new, old in zip(out.weights, model.weights):
        new.assign(keras.ops.cast(old.value, new.dtype))
    return out


def quantized_int8(model: keras.Model) -> keras.Model:
    """A copy of ``model`` quantized by Keras (``Model.quantize("int8")``: Dense, EinsumDense and Embedding)."""
    out = keras.models.clone_model(model)
    out.set_weights(model.get_weights())
    with warnings.catch_warnings():  # Keras warns for every layer it leaves alone (Flatten, BatchNormalization)
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method")
        out.quantize("int8")
    return out


def lower(model: keras.Model, precision: str) -> keras.Model:
    """``model`` at ``precision`` (one of :data:`PRECISIONS`; float32 returns it unchanged)."""
    if precision == "float32":
        return model
    if precision == "int8":
        return quantized_int8(model)
    return with_dtype(model, precision)
