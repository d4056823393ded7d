"""The engines an exported model runs on, as one callable each: JAX ``jit`` and onnxruntime.

A :class:`Predictor` maps a float32 batch to float32 outputs; ``warm`` compiles
it for a batch size first (JAX compiles once per input shape), so timings
measure calls, never compilation. ONNX needs the ``export`` extra
(``pip install 'deepfit[export]'``: onnx, onnxruntime and jax2onnx, through
which Keras 3.14+ exports a JAX-backend model: ``model.export(format="onnx")``).
"""

from __future__ import annotations

import abc
import contextlib
import os
import warnings
from pathlib import Path
import jax
import keras
import numpy as np

from deepfit.errors import ConfigError
from deepfit.nn.layers import mc_dropout_off

EXTRA_HINT = "install the export extra: pip install 'deepfit[export]' (onnx, onnxruntime, jax2onnx)"


class Predictor(abc.ABC):
    """``predictor(x)``: outputs as a float32 NumPy array, the engine's work finished before it returns."""

    engine: str

    @abc.abstractmethod
    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def warm(self, x: np.ndarray, calls: int = 3) -> None:
        for _ in range(calls):
            self(x)

    def predict(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


class JaxPredictor(Predictor):
    """The Keras model's inference pass (``stateless_call``, training off) compiled with ``jax.jit``."""

    def __init__(self, model: keras.Model):
        self.engine = f"jax {jax.__version__} jit ({jax.default_backend()})"
        self.model = model
        self.trainable = [v.value for v in model.trainable_variables]
        self.non_trainable = [v.value for v in model.non_trainable_variables]

        def forward(trainable, non_trainable, x):
            with mc_dropout_off():
                return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        self._forward = jax.jit(forward)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self._forward(self.trainable, self.non_trainable, x)
        return np.asarray(jax.block_until_ready(y), np.float32)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"ONNX export needs onnxruntime: {EXTRA_HINT}") from None
    return onnxruntime


class OnnxPredictor(Predictor):
    """An ONNX file run by an onnxruntime ``InferenceSession`` on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = _onnxruntime()
        self.engine = f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for a kernel it lacks
            raise ConfigError(f"onnxruntime cannot run the exported model: {str(e).splitlines()[0]} (bfloat16 has "
                              "no CPU kernels in onnxruntime; use --precision float16 or the keras format)") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input: np.asarray(x, np.float32)})[0], np.float32)


def export_onnx(model: keras.Model, path: str | Path, sample: np.ndarray) -> None:
    """``model.export(path, format="onnx")`` (Keras's own exporter; jax2onnx on the JAX backend)."""
    try:
        import jax2onnx  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError(f"--format onnx needs onnx and jax2onnx: {EXTRA_HINT}") from None
    with mc_dropout_off():
        model(sample[:1], training=False)  # Keras exports only a model that has been called
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(str(path), format="onnx", verbose=False)


def quantize_onnx_int8(source: str | Path, target: str | Path) -> None:
    """onnxruntime's dynamic quantization: MatMul / Gemm weights as int8, activations quantized per call."""
    _onnxruntime()
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its advice to pre-process is for convolutional models
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        quiet.setLevel(level)


def predictor(model_or_path: keras.Model | str | Path) -> Predictor:
    return JaxPredictor(model_or_path) if isinstance(model_or_path, keras.Model) else OnnxPredictor(model_or_path)

