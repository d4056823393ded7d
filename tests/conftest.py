import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("DEEPFIT_COMPILE_CACHE", "1")

import numpy as np
import pytest
from hypothesis import settings

# `make test` draws the same examples every run, so a red CI names a change, not a draw;
# DEEPFIT_HYPOTHESIS_RANDOM=1 searches afresh (a test's own @settings inherit this).
settings.register_profile("deepfit", derandomize=os.environ.get("DEEPFIT_HYPOTHESIS_RANDOM") is None)
settings.load_profile("deepfit")


@pytest.fixture
def tiny_arrays():
    """Separable synthetic 'images': 600 train / 100 test of 8x8, 3 classes."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, 8, 8))
    y = rng.integers(0, 3, 700)
    x = (centers[y] + rng.normal(0, 0.7, (700, 8, 8))) * 40 + 120
    x = np.clip(x, 0, 255).astype(np.uint8)
    return (x[:600], y[:600].astype(np.uint8)), (x[600:], y[600:].astype(np.uint8))


def tiny_config(**training):
    cfg = {
        "seed": 3,
        "data": {"source": "arrays", "validation_size": 100, "scaling": "divide255"},
        "model": {
            "input_shape": [8, 8],
            "layers": [
                {"type": "flatten"},
                {"type": "dense", "units": 16, "activation": "relu", "kernel_initializer": "he_normal"},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        "training": {"epochs": 2, "batch_size": 32, "optimizer": {"name": "sgd", "learning_rate": 0.05},
                     "progress": False, **training},
    }
    return cfg


@pytest.fixture
def tiny_cfg():
    return tiny_config()
