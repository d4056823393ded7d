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
back).

The suggestion is read off a curve without lag: each loss averaged over a window
of ``WINDOW_DECADES`` of rate centred on it (the moving average that decides when
to stop trails the sweep by up to a decade, and rules read off it suggested rates
ten times too low: 0.0018 for the notebook's 1cycle network, which trains 7 points
worse than at its 0.05). Three rules, as fastai offers several:

- ``minimum``: the rate where that curve is lowest: the largest rate that still
  lowers the loss, which is what 1cycle's ``max_rate`` asks for (Smith 2018,
  arXiv:1803.09820 §4.1). On the notebook's 1cycle network (batch 128) it gives
  about 0.041 against the notebook's 0.05 (tests/test_lr_finder.py).
- ``minimum/10``: a tenth of it, for a rate held through training (the chapter: "the
  optimal learning rate will be a bit lower than the point at which the loss starts
  to climb (typically about 10 times lower than the turning point)").
- ``steepest``: where that curve falls fastest against ``log10(rate)``, before its lowest point.

A config with a 1cycle schedule gets ``minimum``, any other ``minimum/10``. The first
``skip_begin`` and last ``skip_end`` points and non-finite losses are skipped (as
Lightning's finder); when too few points remain, the loss never falls, or it is
still falling where the sweep ended, there is no suggestion and ``reason`` says why.
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
    smoothed: np.ndarray  # the centred average the rules read (see the module docstring)
    suggestion: float | None
    reason: str
    stop_reason: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    rule: str = "minimum/10"
    suggestions: dict[str, float | None] = field(default_factory=dict)  # every rule's answer

    def to_dict(self) -> dict[str, Any]:
        finite = lambda a: [float(x) if np.isfinite(x) else None for x in a]  # noqa: E731
        return {"suggestion": self.suggestion, "rule": self.rule, "suggestions": self.suggestions,
                "reason": self.reason, "stop_reason": self.stop_reason,
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
        self._avg, self._best = 0.0, math.inf

    def on_chunk_end(self, trainer, chunk: Chunk) -> None:
        for rate, loss in zip(chunk.rates, chunk.losses):
            loss, rate = float(loss), float(rate)
            self.rates.append(rate)
            self.losses.append(loss)
            if not math.isfinite(loss):
                raise StopTraining(f"the loss became {loss} at rate {rate:.3g} (step {len(self.losses)})")
            self._avg = self.beta * self._avg + (1 - self.beta) * loss
            smooth = self._avg / (1 - self.beta ** len(self.losses))
            self._best = min(self._best, smooth)
            if smooth > self.diverge * self._best:
                raise StopTraining(f"the smoothed loss {smooth:.4g} exceeded {self.diverge:g}x the best "
                                   f"({self._best:.4g}) at rate {rate:.3g} (step {len(self.losses)})")
            if len(self.losses) >= self.steps:
                raise StopTraining(f"swept {self.steps} steps")


RULES = ("minimum", "minimum/10", "steepest")
WINDOW_DECADES = 0.2


def centred(rates: np.ndarray, losses: np.ndarray, decades: float = WINDOW_DECADES) -> np.ndarray:
    """Each loss averaged with its neighbours within ``decades / 2`` of ``log10(rate)`` on either side,
    non-finite losses left out (NaN where none is left): a smoothing that does not trail the sweep."""
    logr, finite = np.log10(rates), np.isfinite(losses)
    values = np.where(finite, losses, 0.0)
    csum, ccount = np.concatenate([[0.0], np.cumsum(values)]), np.concatenate([[0], np.cumsum(finite)])
    lo = np.searchsorted(logr, logr - decades / 2, side="left")
    hi = np.searchsorted(logr, logr + decades / 2, side="right")
    count = ccount[hi] - ccount[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


def suggest(rates: np.ndarray, losses: np.ndarray, rule: str = "minimum/10", skip_begin: int = 10,
            skip_end: int = 1) -> tuple[float | None, str]:
    """The rate ``rule`` reads off the centred loss curve (see the module docstring), or None and why."""
    if rule not in RULES:
        raise ConfigError(f"unknown suggestion rule {rule!r}; one of {', '.join(RULES)}")
    n = len(rates)
    curve = centred(rates, losses)
    idx = np.arange(skip_begin, max(n - skip_end, skip_begin))
    idx = idx[np.isfinite(curve[idx])] if len(idx) else idx
    if len(idx) < 3:
        return None, (f"too few points: {len(idx)} finite losses remain of {n} after skipping the first "
                      f"{skip_begin} and last {skip_end}; sweep more steps (--steps), start lower (--min-rate) "
                      "or use more data")
    logr = np.log10(rates[idx])
    lowest = int(np.argmin(curve[idx]))
    if rule == "steepest":  # on the way down to the lowest loss (past it, the loss's collapse is no guide)
        slopes = np.gradient(curve[idx], logr)[: max(lowest, 1) + 1]
        best = int(np.argmin(slopes))
        if not slopes[best] < 0:
            return None, "the loss never decreased over the sweep; start lower (--min-rate)"
        return float(rates[idx[best]]), f"steepest descent of the loss: {slopes[best]:.3g} per decade of rate"
    if lowest == 0:
        return None, "the loss never decreased over the sweep; start lower (--min-rate)"
    if logr[-1] - logr[lowest] < WINDOW_DECADES / 2:
        return None, ("the loss was still falling where the sweep ended, so its minimum is not known; "
                      "sweep higher (--max-rate) or longer (--steps)")
    rate = float(rates[idx[lowest]])
    if rule == "minimum":
        return rate, f"the lowest loss (averaged over {WINDOW_DECADES} decades of rate)"
    return rate / 10, f"a tenth of the rate of the lowest loss ({rate:.3g})"


def default_rule(cfg: Any) -> str:
    """``minimum`` for 1cycle's max_rate, ``minimum/10`` for a rate held or decayed through training."""
    schedule = getattr(getattr(cfg, "training", None), "schedule", None)
    name = schedule.get("name") if isinstance(schedule, Mapping) else None
    return "minimum" if name in ONE_CYCLE else "minimum/10"


ONE_CYCLE = ("one_cycle", "1cycle", "onecycle")


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
    rule: str | None = None,
) -> LRFinderResult:
    """Sweep the rate from ``min_rate`` to ``max_rate`` over one epoch (or ``steps`` batches).

    ``rule`` picks the suggestion (``minimum``, ``minimum/10``, ``steepest``; see the module
    docstring); by default ``minimum`` for a config with a 1cycle schedule, else ``minimum/10``.
    Every rule's answer is in ``result.suggestions``.

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
    if rule is not None and rule not in RULES:
        raise ConfigError(f"unknown suggestion rule {rule!r}; one of {', '.join(RULES)}")
    trainer, x, y, cfg = _trainer_and_data(source, data, overrides)
    rule = rule or default_rule(cfg)
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
    rates, losses = (np.asarray(a, np.float64) for a in (sweep.rates, sweep.losses))
    answers = {r: suggest(rates, losses, r, skip_begin, skip_end) for r in RULES}
    suggestion, reason = answers[rule]
    settings = {"min_rate": min_rate, "max_rate": max_rate, "steps": n, "beta": beta, "diverge": diverge,
                "skip_begin": skip_begin, "skip_end": skip_end, "batch_size": trainer.batch_size,
                "seed": trainer.seed}
    return LRFinderResult(rates, losses, centred(rates, losses), suggestion, reason, finder.stop_reason, settings,
                          rule, {r: a[0] for r, a in answers.items()})


def _trainer_and_data(source: Any, data: Any, overrides) -> tuple[Trainer, np.ndarray, np.ndarray, Any]:
    if isinstance(source, Trainer):
        if data is None:
            raise ConfigError("find_lr(trainer, data=(x, y)): a trainer needs the training arrays")
        x, y = data
        return source, np.asarray(x), np.asarray(y), None
    from deepfit.config import load_config
    from deepfit.data.prepare import Dataset, load_data
    from deepfit.nn.build import build_model
    from deepfit.run import make_trainer

    cfg = load_config(source, overrides)
    dataset = data if isinstance(data, Dataset) else load_data(cfg.data, arrays=data)
    model = build_model(cfg.model, seed=cfg.seed)
    spe = -(-len(dataset.x_train) // cfg.training.batch_size)
    return make_trainer(cfg, model, spe), dataset.x_train, dataset.y_train, cfg


def apply_suggestion(cfg: Any, rate: float) -> Any:
    """A copy of a config with the suggested rate: 1cycle's ``max_rate``, else the starting rate."""
    from deepfit.config import load_config

    tree = load_config(cfg).to_dict()
    schedule = tree["training"].get("schedule")
    if isinstance(schedule, dict) and schedule.get("name") in ONE_CYCLE:
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
