"""What early stopping and reduce-on-plateau share: read a metric, decide if it improved (Keras's rule)."""

from __future__ import annotations

from typing import Any


class Monitor:
    """``value < best - min_delta`` improves a metric to minimize (``> best + min_delta`` one to maximize).

    ``mode = "auto"`` maximizes metrics whose name holds "acc", as Keras does.
    """

    def __init__(self, owner: str, monitor: str, mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.owner, self.monitor, self.min_delta = owner, monitor, float(min_delta)
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")

    def value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            raise ValueError(f"{self.owner} monitors {self.monitor!r}, which the logs lack; "
                             f"available: {', '.join(logs)}")
        return float(logs[self.monitor])

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta
