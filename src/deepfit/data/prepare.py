"""Raw arrays → the arrays a run trains on: validation split, subset, scaling.

The notebook's protocol: the validation set is the *first* ``validation_size``
training images, the training set the rest; scaling statistics come from the
training split alone, so no information leaks from validation or test.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepfit.data import cache
from deepfit.data.sources import (RawData, bundled_digest, directory_fingerprint, download, load_bundled,
                                  load_directory)
from deepfit.data.tasks import select_task
from deepfit.errors import DataError


@dataclass
class Dataset:
    """Prepared float32 inputs and int32 labels, ready for the trainer."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.y_train.max()) + 1 if len(self.y_train) else 0

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``"train"``, ``"valid"`` or ``"test"`` → (x, y)."""
        pairs = {"train": (self.x_train, self.y_train), "valid": (self.x_valid, self.y_valid),
                 "test": (self.x_test, self.y_test)}
        if name not in pairs or pairs[name][0] is None:
            raise DataError(f"no {name!r} split in this dataset; choose from "
                            f"{', '.join(k for k, v in pairs.items() if v[0] is not None)}")
        return pairs[name]


def _scale(x: np.ndarray, how: str, stats: dict[str, np.ndarray]) -> np.ndarray:
    x = x.astype(np.float32)
    if how == "none":
        return x
    x = x / np.float32(255.0)
    if how == "standardize":
        x = (x - stats["mean"]) / stats["std"]
    return x


def prepare(raw: RawData, cfg) -> Dataset:
    """Split and scale ``raw`` as a :class:`~deepfit.config.DataConfig` says."""
    n = len(raw.x_train)
    x_all = np.asarray(raw.x_train)
    if cfg.scaling == "divide255" and np.issubdtype(x_all.dtype, np.floating) and n and \
            float(np.min(x_all)) >= 0 and float(np.max(x_all)) <= 1:
        raise DataError(
            f"data.scaling = 'divide255' but the training images are already floats within [0, 1] "
            f"(max {float(np.max(x_all)):.3g}): dividing them by 255 again would leave almost nothing to learn; "
            f"set data.scaling = 'none' (or pass the raw 0-255 images)")
    if getattr(cfg, "validation_split", None):
        # Keras's rule: the *last* fraction of the training data, before any shuffling.
        at = int(np.floor(n * (1.0 - cfg.validation_split)))
        x_valid, y_valid = raw.x_train[at:], raw.y_train[at:]
        x_train, y_train = raw.x_train[:at], raw.y_train[:at]
        if not len(x_train) or not len(x_valid):
            raise DataError(f"data.validation_split = {cfg.validation_split} of {n} images leaves an empty split")
        return _finish(raw, cfg, x_train, y_train, x_valid, y_valid)
    if cfg.validation_size >= n:
        raise DataError(
            f"data.validation_size = {cfg.validation_size} leaves no training images "
            f"(the data has {n}); use a smaller validation_size"
        )
    x_valid, y_valid = raw.x_train[: cfg.validation_size], raw.y_train[: cfg.validation_size]
    x_train, y_train = raw.x_train[cfg.validation_size :], raw.y_train[cfg.validation_size :]
    return _finish(raw, cfg, x_train, y_train, x_valid, y_valid)


def _finish(raw: RawData, cfg, x_train, y_train, x_valid, y_valid) -> Dataset:
    """Task split, subset and scaling of the two splits."""
    # The task split comes before train_size: the notebook's task B is the first 200 *task* images.
    x_train, y_train = select_task(x_train, y_train, cfg, "train")
    x_valid, y_valid = select_task(x_valid, y_valid, cfg, "valid")
    x_test, y_test = raw.x_test, raw.y_test
    if x_test is not None and not len(x_test):  # arrays compared without a test set (python_api writes it empty)
        x_test, y_test = None, None
    if x_test is not None:
        x_test, y_test = select_task(x_test, y_test, cfg, "test")
    if cfg.train_size is not None:
        x_train, y_train = x_train[: cfg.train_size], y_train[: cfg.train_size]
    stats: dict[str, np.ndarray] = {}
    if cfg.scaling == "standardize":
        scaled = x_train.astype(np.float32) / np.float32(255.0)
        mean = scaled.mean(axis=0, keepdims=True)
        std = scaled.std(axis=0, keepdims=True)
        # A constant pixel (std 0) would divide by zero; leave it centred instead.
        stats = {"mean": mean, "std": np.where(std > 0, std, np.float32(1.0)).astype(np.float32)}
    labels = lambda y: None if y is None else np.asarray(y).astype(np.int32)  # noqa: E731
    for part, y in (("train", raw.y_train), ("test", raw.y_test)):
        if y is not None and len(y) and (np.asarray(y).min() < 0 or not np.issubdtype(np.asarray(y).dtype, np.integer)):
            raise DataError(f"{part} labels must be non-negative integers (class indices)")
    return Dataset(
        _scale(x_train, cfg.scaling, stats), labels(y_train),
        _scale(x_valid, cfg.scaling, stats), labels(y_valid),
        None if x_test is None else _scale(x_test, cfg.scaling, stats), labels(y_test),
        info={"origin": raw.origin, "scaling": cfg.scaling, "train": len(x_train),
              "valid": len(x_valid), "test": 0 if x_test is None else len(x_test)},
    )


def load_raw(cfg, arrays: RawData | dict | tuple | None = None) -> RawData:
    if cfg.source == "arrays" or arrays is not None:
        if arrays is None:
            raise DataError("data.source = 'arrays' needs arrays passed from Python: train(cfg, data=...)")
        if isinstance(arrays, RawData):
            return arrays
        if isinstance(arrays, dict):
            return RawData(**arrays)
        (x, y), test = arrays[0], (arrays[1] if len(arrays) > 1 else (None, None))
        return RawData(np.asarray(x), np.asarray(y), test[0], test[1])
    if cfg.source == "fashion_mnist":
        return load_bundled()
    if cfg.source == "directory":
        return load_directory(cfg.path)
    return download(cfg.cache_dir)


def load_data(cfg=None, arrays: RawData | dict | tuple | None = None) -> Dataset:
    """A prepared :class:`Dataset` from a :class:`~deepfit.config.DataConfig` (default: bundled).

    ``arrays`` may be ``((x_train, y_train), (x_test, y_test))`` as
    ``keras.datasets`` returns, a dict of :class:`RawData` fields, or a RawData.
    """
    from deepfit.config import DataConfig

    cfg = DataConfig() if cfg is None else cfg if isinstance(cfg, DataConfig) else DataConfig.model_validate(cfg)
    if arrays is not None or cfg.source not in ("fashion_mnist", "directory"):
        return prepare(load_raw(cfg, arrays), cfg)
    # Seeds of one experiment prepare the same data again and again (0.9 s each on the notebook's
    # 55,000 images): keep the last few in this process, keyed by what the data is (the bundled
    # copy's checksums; a directory's files as they are now) and how it is prepared. One Dataset
    # then serves every run of a group, so they train over one device copy in one program. The
    # arrays are made read-only, so a caller that writes to them fails loudly instead of changing
    # the next run's data.
    if cfg.source == "directory":
        fingerprint = directory_fingerprint(cfg.path)
        if fingerprint is None:  # not a readable data directory: load_directory names the problem
            return prepare(load_raw(cfg), cfg)
        key = json.dumps([cfg.model_dump_json(), fingerprint])
    else:
        key = cfg.model_dump_json()
    if key not in _PREPARED:
        _PREPARED[key] = _read_only(prepare(load_raw(cfg), cfg)) if cfg.source == "directory" \
            else _prepared_bundled(cfg, key)
        while len(_PREPARED) > _KEEP_PREPARED:
            _PREPARED.popitem(last=False)
    _PREPARED.move_to_end(key)
    return _PREPARED[key]


def _read_only(dataset: Dataset) -> Dataset:
    for part in cache.PARTS:
        a = getattr(dataset, part)
        if a is not None:
            a.setflags(write=False)
    return dataset


# Prepared datasets kept per process (a few hundred MB each at full size).
_KEEP_PREPARED = 3
_PREPARED: "OrderedDict[str, Dataset]" = OrderedDict()


def _prepared_bundled(cfg, config_json: str) -> Dataset:
    """The bundled data prepared as ``cfg`` says: from the disk cache when another process made it."""
    name = cache.key(bundled_digest(), config_json) if cache.enabled() else None
    stored = cache.load(name) if name else None
    if stored is not None:
        arrays, info = stored
        return Dataset(**arrays, info=info)
    dataset = _read_only(prepare(load_raw(cfg), cfg))
    parts = {p: getattr(dataset, p) for p in cache.PARTS}
    if name:
        cache.store(name, parts, dataset.info)
    return dataset
