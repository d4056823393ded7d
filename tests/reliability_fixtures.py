"""Small data and configs for the reliability tests: IDX files of 8×8 images, 3 classes."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def tiny_arrays(n_train: int = 700, n_test: int = 100, seed: int = 0):
    """Separable synthetic 'images' (uint8, 8×8) and labels 0..2."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (3, 8, 8))
    n = n_train + n_test
    y = rng.integers(0, 3, n)
    x = np.clip((centers[y] + rng.normal(0, 0.7, (n, 8, 8))) * 40 + 120, 0, 255).astype(np.uint8)
    y = y.astype(np.uint8)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding (uint8 only): zero, zero, type 0x08, ndim, big-endian dims, values."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_dir(directory: Path, n_train: int = 700, n_test: int = 100) -> Path:
    (x, y), (xt, yt) = tiny_arrays(n_train, n_test)
    directory.mkdir(parents=True, exist_ok=True)
    for part, arr in zip(FILES, (x, y, xt, yt)):
        (directory / (FILES[part] + ".gz")).write_bytes(gzip.compress(idx_bytes(arr), mtime=0))
    return directory


def tiny_config(data_dir: Path | None = None, **training) -> dict:
    data = ({"source": "directory", "path": str(data_dir)} if data_dir is not None else {"source": "arrays"})
    return {
        "seed": 3,
        "data": {**data, "validation_size": 100, "scaling": "divide255"},
        "model": {
            "input_shape": [8, 8],
            "layers": [
                {"type": "flatten"},
                {"type": "dense", "units": 16, "activation": "relu", "kernel_initializer": "he_normal"},
                {"type": "dropout", "rate": 0.2},
                {"type": "dense", "units": 3, "activation": "softmax"},
            ],
        },
        "training": {"epochs": 2, "batch_size": 32, "optimizer": {"name": "sgd", "learning_rate": 0.05,
                                                                  "momentum": 0.9},
                     "progress": False, **training},
    }


def toml_text(cfg: dict) -> str:
    import tomli_w

    return tomli_w.dumps(cfg)
