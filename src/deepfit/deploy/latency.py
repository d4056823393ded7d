"""Prediction latency: warm calls, timed one by one, the predictors taking turns (A B A B ...).

Every predictor is warmed first (compiled for that batch size, caches filled).
Then each round times one call of each, in an order that rotates every round,
so a slow patch of a shared machine falls on all of them alike; a ratio is
only quoted between predictors timed in the same rounds. Each predictor gets
the median and the 90th percentile of its calls (``numpy.percentile``'s linear
rule), and the machine's load average is recorded beside them.
"""

from __future__ import annotations

import os
import time
from typing import Mapping

import numpy as np

from deepfit.deploy.engines import Predictor

BATCHES = (1, 1000)


def batch_of(x: np.ndarray, size: int) -> np.ndarray:
    """``size`` inputs from ``x`` (repeated if it holds fewer), as a contiguous float32 array."""
    reps = -(-size // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:size], np.float32)


def alternate(predictors: Mapping[str, Predictor], x: np.ndarray, calls: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds of ``calls`` warm calls of each predictor on ``x``, taken in rotating turns."""
    names = list(predictors)
    for name in names:
        predictors[name].warm(x, warmup)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(calls):
        for name in names[r % len(names):] + names[:r % len(names)]:
            started = time.perf_counter()
            predictors[name](x)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    s = np.asarray(seconds, np.float64)
    return {"median_s": float(np.median(s)), "p90_s": float(np.percentile(s, 90)), "calls": int(s.size)}


def measure(predictors: Mapping[str, Predictor], x: np.ndarray, calls: Mapping[int, int] | None = None,
            batches: tuple[int, ...] = BATCHES) -> dict[str, dict[str, dict[str, float]]]:
    """``{name: {"batch_1": {median_s, p90_s, calls}, "batch_1000": ...}}`` plus ``"load"`` (1-minute load
    averages before and after). ``calls``: per batch size (default 200 at batch 1, 30 at batch 1000)."""
    calls = dict(calls or {})
    out: dict = {name: {} for name in predictors}
    before = os.getloadavg()[0]
    for b in batches:
        timed = alternate(predictors, batch_of(x, b), calls.get(b, 200 if b == 1 else 30))
        for name, s in timed.items():
            out[name][f"batch_{b}"] = summary(s)
    out["load"] = {"before": before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    return out
