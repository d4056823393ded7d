"""Calibration: is a model's confidence worth what it says?

- Negative log-likelihood ``NLL = −(1/n) Σ_i log p_i,y_i``, probabilities clipped
  to ``[ε, 1]`` with Keras's ``ε = 1e-7`` (so it matches Keras's crossentropy).
- Expected calibration error (Naeini et al. 2015; Guo et al. 2017, "On
  Calibration of Modern Neural Networks"): confidence ``c_i = max_k p_ik``,
  prediction ``argmax_k p_ik``; ``M`` equal-width bins over ``[0, 1]``, bin ``m``
  holding ``(m/M, (m+1)/M]`` (the first also holds 0);
  ``ECE = Σ_m (|B_m| / n) · |acc(B_m) − conf(B_m)|``. Default ``M = 15``, Guo et al.'s.
- A reliability diagram: accuracy against mean confidence per bin, beside the
  diagonal a perfectly calibrated model would follow.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from deepfit.io import write_atomic
from deepfit.uncertainty import class_probabilities

EPSILON = 1e-7  # keras.config.epsilon()


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels, in nats."""
    probs, y = class_probabilities(probs), np.asarray(y).astype(int).ravel()
    p = np.clip(probs[np.arange(len(y)), y], EPSILON, 1.0)
    return float(-np.mean(np.log(p)))


@dataclass
class Bins:
    """Per-bin counts, accuracy and mean confidence (NaN where a bin is empty)."""

    edges: np.ndarray  # (M + 1,)
    counts: np.ndarray  # (M,)
    accuracy: np.ndarray  # (M,)
    confidence: np.ndarray  # (M,)


def calibration_bins(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> Bins:
    probs, y = class_probabilities(probs), np.asarray(y).astype(int).ravel()
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    conf = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Right-closed bins (m/M, (m+1)/M]: searchsorted(side="left") puts c = m/M in bin m−1.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(which, weights=correct, minlength=bins) / counts
        confidence = np.bincount(which, weights=conf, minlength=bins) / counts
    return Bins(edges, counts, accuracy, confidence)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE with ``bins`` equal-width confidence bins (see the module doc)."""
    b = calibration_bins(probs, y, bins)
    full = b.counts > 0
    return float(np.sum(b.counts[full] / b.counts.sum() * np.abs(b.accuracy[full] - b.confidence[full])))


def calibration_metrics(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL and ECE of class probabilities against labels."""
    probs = class_probabilities(probs)
    y = np.asarray(y).astype(int).ravel()
    return {
        "accuracy": float(np.mean(probs.argmax(axis=-1) == y)),
        "nll": nll(probs, y),
        "ece": expected_calibration_error(probs, y, bins),
    }


def reliability_diagram(
    predictions: Mapping[str, np.ndarray], y: np.ndarray, path: str | Path, bins: int = 15,
    title: str = "Reliability diagram",
) -> Path:
    """A PNG with one panel per named set of probabilities (e.g. deterministic, MC)."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules:  # keep a notebook's inline backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(predictions), figsize=(4.2 * len(predictions), 4.2), squeeze=False)
    for ax, (name, probs) in zip(axes[0], predictions.items()):
        b = calibration_bins(probs, y, bins)
        width = 1.0 / bins
        full = b.counts > 0
        ax.bar(b.edges[:-1][full], b.accuracy[full], width=width, align="edge", edgecolor="black",
               color="tab:blue", label="accuracy")
        low = np.minimum(b.accuracy, b.confidence)[full]
        ax.bar(b.edges[:-1][full], np.abs(b.confidence - b.accuracy)[full], bottom=low, width=width,
               align="edge", color="tab:red", alpha=0.35, hatch="//", edgecolor="tab:red", label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        m = calibration_metrics(probs, y, bins)
        ax.set_title(f"{name}\nacc {m['accuracy']:.4f}  NLL {m['nll']:.4f}  ECE {m['ece']:.4f}", fontsize=10)
        ax.set_xlabel("confidence (max probability)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path
