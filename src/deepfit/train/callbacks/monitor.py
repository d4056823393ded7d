"""What early stopping and reduce-on-plateau share: read a metric, decide if it improved (Keras's rule)."""

from __future__ import annotations

from typing import Any

from deepfit.errors import ConfigError


class Monitor:
    """``value < best - min_delta`` improves a metric to minimize (``> best + min_delta`` one to maximize).

    ``mode = "auto"`` takes the direction from the trainer's objective when training begins
    (:meth:`resolve`), as Keras 3's ``MonitorCallback._set_monitor_op`` does: the loss is
    minimized, a metric goes the way its Keras ``_direction`` says, and a metric that declares
    none is refused with the two fixes (``mode='max'`` or ``mode='min'``), never guessed from its name.
    """

    def __init__(self, owner: str, monitor: str, mode: str = "auto", min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.owner, self.monitor, self.min_delta = owner, monitor, float(min_delta)
        # The loss is minimized whatever it is (Keras's first rule): known before any metric exists.
        self.mode = "min" if mode == "auto" and monitor.removeprefix("val_") == "loss" else mode

    def resolve(self, trainer: Any) -> str:
        """Settle ``mode = "auto"`` from the objective's metric objects; return the mode."""
        if self.mode != "auto":
            return self.mode
        directions = getattr(trainer.loss, "directions", dict)()
        way = directions.get(self.monitor)
        if way is None:
            known = ("its Keras metric declares no direction" if self.monitor in directions
                     else f"no metric of this run logs it (logged: {', '.join(directions) or 'none'})")
            raise ConfigError(f"{self.owner} monitors {self.monitor!r} with mode='auto', but deepfit cannot tell "
                              f"whether it should be maximized or minimized ({known}); pass mode='max' to keep the "
                              f"highest value or mode='min' to keep the lowest")
        self.mode = way
        return way

    def value(self, logs: dict[str, Any]) -> float:
        if self.monitor not in logs:
            raise ValueError(f"{self.owner} monitors {self.monitor!r}, which the logs lack; "
                             f"available: {', '.join(logs)}")
        return float(logs[self.monitor])

    def improved(self, value: float, best: float | None) -> bool:
        if self.mode == "auto":
            raise RuntimeError(f"{self.owner}: Monitor.resolve(trainer) must run before the first epoch ends")
        if best is None:
            return True
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta
