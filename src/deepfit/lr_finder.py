"""The learning-rate finder: an exponential sweep of the rate, then everything put back.

Smith (2017, arXiv:1506.01186 §3.3) and the notebook's ``find_learning_rate``:
train for one epoch (or ``steps`` batches) while the rate grows geometrically
from ``min_rate`` to ``max_rate``, ``lr_t = min_rate · (max_rate / min_rate) **
(t / (n − 1))``, recording each batch's loss. The sweep is just a schedule run
by the ordinary trainer; a callback smooths the loss with a bias-corrected
moving average (``a_t = β a_{t−1} + (1 − β) loss_t``, ``smooth_t = a_t /
(1 − β^(t+1))``, β = 0.98) and stops the sweep when ``smooth_t > 4 · min
smooth`` or a loss is not finite (the notebook's sweep ran on into NaN).

Afterwards the model, optimizer and every random state are exactly as before
(a ``finally:`` writes the saved :class:`~deepfit.train.state.TrainState`
back). The suggestion is the rate where the smoothed loss falls fastest
against ``log10(rate)``, skipping the first ``skip_begin`` and last
``skip_end`` points and non-finite losses (as Lightning's finder); when too
few points remain, or the loss never falls, there is no suggestion and
``reason`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from deepfit.errors import ConfigError
from deepfit.optim.schedules import Schedule
from deepfit.train.events import Callback, Chunk, StopTraining
from deepfit.train.loop import Trainer


@dataclass
class LRFinderResult:
    """The sweep's record and the suggestion (None, with ``reason``, when there is none)."""

    rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float | None
    reason: str
    stop_reason: str | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def suggestion_index(self) -> int | None:
        if self.suggestion is None:
            return None
        return int(np.flatnonzero(self.rates == self.suggestion)[0])

    def to_dict(self) -> dict[str, Any]:
        finite = lambda a: [float(x) if np.isfinite(x) else None for x in a]  # noqa: E731
        return {"suggestion": self.suggestion, "reason": self.reason, "stop_reason": self.stop_reason,
                "settings": self.settings, "rates": [float(r) for r in self.rates],
                "losses": finite(self.losses), "smoothed": finite(self.smoothed)}


def sweep_schedule(min_rate: float, max_rate: float, steps: int) -> Schedule:
    """``lr_t = min_rate · (max_rate / min_rate) ** (t / (steps − 1))``: geometric, both ends included."""
    ratio, last = max_rate / min_rate, max(steps - 1, 1)
    return Schedule(lambda step: min_rate * ratio ** (jnp.asarray(step, jnp.float32) / last), name="lr_sweep")


class _Sweep(Callback):
    """Records per-batch rate and loss; stops at ``steps``, on divergence or on a non-finite loss."""

    order = -200

    def __init__(self, steps: int, beta: float, diverge: float):
        self.steps, self.beta, self.diverge = steps, beta, diverge
        self.every_n_steps = min(steps, 128)
        self.rates: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._avg, self._best = 0.0, math.inf

    def on_chunk_end(self, trainer, chunk: Chunk) -> None:
        for rate, loss in zip(chunk.rates, chunk.losses):
            loss, rate = float(loss), float(rate)
            self.rates.append(rate)
            self.losses.append(loss)
            if not math.isfinite(loss):
                self.smoothed.append(math.nan)
                raise StopTraining(f"the loss became {loss} at rate {rate:.3g} (step {len(self.losses)})")
            self._avg = self.beta * self._avg + (1 - self.beta) * loss
            smooth = self._avg / (1 - self.beta ** len(self.losses))
            self.smoothed.append(smooth)
            self._best = min(self._best, smooth)
            if smooth > self.diverge * self._best:
                raise StopTraining(f"the smoothed loss {smooth:.4g} exceeded {self.diverge:g}x the best "
                                   f"({self._best:.4g}) at rate {rate:.3g} (step {len(self.losses)})")
            if len(self.losses) >= self.steps:
                raise StopTraining(f"swept {self.steps} steps")


def suggest(rates: np.ndarray, smoothed: np.ndarray, skip_begin: int = 10,
            skip_end: int = 1) -> tuple[float | None, str]:
    """The rate of steepest descent of ``smoothed`` against ``log10(rate)``, or None and why."""
    n = len(rates)
    idx = np.arange(skip_begin, max(n - skip_end, skip_begin))
    idx = idx[np.isfinite(smoothed[idx])] if len(idx) else idx
    if len(idx) < 3:
        return None, (f"too few points: {len(idx)} finite losses remain of {n} after skipping the first "
                      f"{skip_begin} and last {skip_end}; sweep more steps (--steps), start lower (--min-rate) "
                      "or use more data")
    # Slope across a window of about a tenth of a decade, not between neighbours: on a long sweep
    # neighbours are 0.005 decades apart and their difference is noise (a 1,719-step sweep
    # otherwise "suggests" its first rate).
    logr = np.log10(rates[idx])
    spacing = abs(logr[-1] - logr[0]) / max(len(idx) - 1, 1)
    w = max(1, min(int(math.ceil(0.1 / spacing)) if spacing > 0 else 1, (len(idx) - 1) // 2))
    ahead, behind = np.minimum(np.arange(len(idx)) + w, len(idx) - 1), np.maximum(np.arange(len(idx)) - w, 0)
    slopes = (smoothed[idx][ahead] - smoothed[idx][behind]) / (logr[ahead] - logr[behind])
    steepest = int(np.argmin(slopes))
    # The slope belongs to its window's middle (in log10 rate; dropped points can skew the window).
    best = int(np.argmin(np.abs(logr - (logr[ahead[steepest]] + logr[behind[steepest]]) / 2)))
    slopes[best] = slopes[steepest]
    if not slopes[best] < 0:
        return None, "the smoothed loss never decreased over the sweep; start lower (--min-rate)"
    return float(rates[idx[best]]), (f"steepest descent of the smoothed loss: slope {slopes[best]:.3g} "
                                     "per decade of rate")


def find_lr(
    source: Any,
    data: Any = None,
    *,
    min_rate: float = 1e-5,
    max_rate: float = 10.0,
    steps: int | None = None,
    beta: float = 0.98,
    diverge: float = 4.0,
    skip_begin: int = 10,
    skip_end: int = 1,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> LRFinderResult:
    """Sweep the rate from ``min_rate`` to ``max_rate`` over one epoch (or ``steps`` batches).

    ``source`` is a config (path, dict or :class:`~deepfit.config.Config`: its
    model is built fresh from the seed and its data loaded) or a
    :class:`~deepfit.train.loop.Trainer` with ``data = (x, y)``: the sweep
    starts from the trainer's current state, and the trainer, its model and
    optimizer are left bit-identical. The data order is the trainer's
    (its seed, epoch 0), so the same seed gives the same record.
    """
    if not (0 < min_rate < max_rate) or not all(map(math.isfinite, (min_rate, max_rate))):
        raise ConfigError(f"need 0 < min_rate < max_rate, got min_rate={min_rate!r}, max_rate={max_rate!r}")
    if steps is not None and steps < 2:
        raise ConfigError(f"steps must be at least 2, got {steps!r}")
    if not 0 <= beta < 1 or not diverge > 1:
        raise ConfigError(f"need 0 <= beta < 1 and diverge > 1, got beta={beta!r}, diverge={diverge!r}")
    trainer, x, y = _trainer_and_data(source, data, overrides)
    n = steps or trainer.steps_per_epoch(len(x))
    sweep = _Sweep(n, beta, diverge)
    finder = Trainer(trainer.model, trainer.optimizer, loss=trainer.loss, batch_size=trainer.batch_size,
                     epochs=math.ceil(n / trainer.steps_per_epoch(len(x))), seed=trainer.seed,
                     schedule=sweep_schedule(min_rate, max_rate, n), callbacks=[sweep], shuffle=trainer.shuffle)
    saved = trainer.state
    finder.state = saved.replace(step=jnp.zeros((), jnp.int32), lr_scale=jnp.ones((), jnp.float32))
    try:
        finder.fit(x, y)
    finally:
        # JAX arrays are immutable: the saved state is an exact snapshot; write it back into the
        # Keras variables, which the sweep's fit overwrote.
        trainer.state = saved
        saved.to_model(trainer.layout)
    rates, losses, smoothed = (np.asarray(a, np.float64) for a in (sweep.rates, sweep.losses, sweep.smoothed))
    suggestion, reason = suggest(rates, smoothed, skip_begin, skip_end)
    settings = {"min_rate": min_rate, "max_rate": max_rate, "steps": n, "beta": beta, "diverge": diverge,
                "skip_begin": skip_begin, "skip_end": skip_end, "batch_size": trainer.batch_size,
                "seed": trainer.seed}
    return LRFinderResult(rates, losses, smoothed, suggestion, reason, finder.stop_reason, settings)


def _trainer_and_data(source: Any, data: Any, overrides) -> tuple[Trainer, np.ndarray, np.ndarray]:
    if isinstance(source, Trainer):
        if data is None:
            raise ConfigError("find_lr(trainer, data=(x, y)): a trainer needs the training arrays")
        x, y = data
        return source, np.asarray(x), np.asarray(y)
    from deepfit.config import load_config
    from deepfit.data.prepare import Dataset, load_data
    from deepfit.nn.build import build_model
    from deepfit.run import make_trainer

    cfg = load_config(source, overrides)
    dataset = data if isinstance(data, Dataset) else load_data(cfg.data, arrays=data)
    model = build_model(cfg.model, seed=cfg.seed)
    spe = -(-len(dataset.x_train) // cfg.training.batch_size)
    return make_trainer(cfg, model, spe), dataset.x_train, dataset.y_train


def apply_suggestion(cfg: Any, rate: float) -> Any:
    """A copy of a config with the suggested rate: 1cycle's ``max_rate``, else the starting rate."""
    from deepfit.config import load_config

    tree = load_config(cfg).to_dict()
    schedule = tree["training"].get("schedule")
    if isinstance(schedule, dict) and schedule.get("name") in ("one_cycle", "1cycle", "onecycle"):
        schedule["max_rate"] = rate
    else:
        tree["training"]["optimizer"]["learning_rate"] = rate
        if isinstance(schedule, dict) and "learning_rate" in schedule:
            schedule["learning_rate"] = rate
    return load_config(tree)


def save_result(result: LRFinderResult, out: str | Path) -> list[Path]:
    """``lr_finder.json`` and ``lr_finder.png`` in ``out``, written atomically."""
    from deepfit.io import write_json
    from deepfit.optim.figures import plot_lr_finder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "lr_finder.json", result.to_dict())
    plot_lr_finder(result, out / "lr_finder.png")
    return [out / "lr_finder.json", out / "lr_finder.png"]
