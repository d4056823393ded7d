"""Task splits: keep some classes and relabel them, or make a binary task.

The notebook's transfer-learning experiment (its section 3.1.1, ``split_dataset``)
splits Fashion-MNIST in two: task A keeps the 8 classes other than sandal (5)
and shirt (6), relabelled 0..7; task B keeps sandals and shirts, with label 1
for "shirt". The same filter applies to training, validation and test sets.
"""

from __future__ import annotations

import numpy as np

from deepfit.errors import DataError


def has_task(cfg) -> bool:
    return cfg.classes is not None or cfg.positive_class is not None


def task_labels(cfg) -> list[int]:
    """The original class indices a task keeps (all of them when there is no task)."""
    if cfg.classes is not None:
        return list(cfg.classes)
    return [*cfg.negative_classes, cfg.positive_class]


def select_task(x: np.ndarray, y: np.ndarray, cfg, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Keep the task's samples of one split (order kept) and relabel them.

    ``classes = [c0, c1, ...]``: class ``c_i`` becomes ``i``. Binary:
    ``positive_class`` becomes 1, every ``negative_class`` 0.
    """
    if not has_task(cfg):
        return x, y
    y = np.asarray(y)
    keep = np.isin(y, task_labels(cfg))
    if cfg.classes is not None:
        lookup = {c: i for i, c in enumerate(cfg.classes)}
        labels = np.array([lookup[int(c)] for c in y[keep]], dtype=np.int32)
    else:
        labels = (y[keep] == cfg.positive_class).astype(np.int32)
    if part == "train" and not keep.any():
        present = sorted(int(c) for c in np.unique(y))
        raise DataError(
            f"the task split keeps no training image: the data's classes are {present}, "
            f"the task asks for {task_labels(cfg)}; fix data.classes or positive_class / negative_class"
        )
    return x[keep], labels
