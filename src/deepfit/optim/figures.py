"""The chapter's schedule figures as PNG files: schedules, the LR finder, the plateau plot.

Drawn on ``matplotlib.figure.Figure`` with the Agg canvas, so nothing touches
pyplot's global state or needs a display; files are written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfit.io import write_atomic

if TYPE_CHECKING:
    from deepfit.optim.schedules import Schedule

TITLES = {"power": "Power Scheduling", "exponential": "Exponential Scheduling",
          "piecewise_constant": "Piecewise Constant Scheduling", "one_cycle": "1cycle Scheduling",
          "constant": "Constant Learning Rate"}


def _figure(size=(7, 4)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(out, buf.getvalue())
    return out


def plot_schedule(schedule: "Schedule", steps_per_epoch: int, epochs: int, out: str | Path,
                  title: str | None = None) -> Path:
    """Rate (and momentum, if scheduled) over the planned steps, x in epochs.

    The line is every step; the dots are each epoch's first step, the points
    the notebook plots (``plt.plot(epochs, lrs, "o-")``).
    """
    steps = np.arange(steps_per_epoch * epochs)
    x = steps / steps_per_epoch
    rate = np.asarray(schedule(steps), np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(x, rate, "b-", lw=1.2)
    starts = steps[::steps_per_epoch]
    ax.plot(starts / steps_per_epoch, rate[starts], "bo", ms=4)
    ax.set(xlabel="Epoch", ylabel="Learning Rate", xlim=(0, epochs), ylim=(0, rate.max() * 1.1))
    ax.grid(True)
    if schedule.momentum is not None:
        ax.yaxis.label.set_color("b")
        ax2 = ax.twinx()
        ax2.plot(x, np.asarray(schedule.momentum(steps), np.float64), "r--", lw=1.2)
        ax2.set_ylabel("Momentum", color="r")
    ax.set_title(title or TITLES.get(schedule.name, schedule.name), fontsize=14)
    return _save(fig, out)


def plot_lr_finder(result: Any, out: str | Path) -> Path:
    """Loss against rate on a log axis, raw and smoothed, the suggestion marked.

    ``result`` is a :class:`deepfit.lr_finder.LRFinderResult` (not imported: lr_finder imports this module).
    """
    fig = _figure()
    ax = fig.add_subplot()
    finite = np.isfinite(result.losses)
    ax.plot(result.rates[finite], result.losses[finite], color="0.75", lw=0.8, label="batch loss")
    ax.plot(result.rates, result.smoothed, "b-", lw=1.5, label="centred average")
    ax.set_xscale("log")
    ok = result.smoothed[np.isfinite(result.smoothed)]
    if len(ok):
        low, first = ok.min(), ok[0]
        ax.set_ylim(low - 0.05 * abs(low), max(first, low) * 1.5 + 1e-9)
        ax.axhline(low, color="0.5", lw=0.8)
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="r", ls="--", lw=1, label=f"suggestion {result.suggestion:.3g} "
                                                                        f"({result.rule})")
    else:
        ax.text(0.02, 0.02, f"no suggestion: {result.reason}", transform=ax.transAxes, fontsize=7, wrap=True)
    ax.set(xlabel="Learning rate", ylabel="Loss", title="Learning-rate finder")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, out)


def plot_plateau(history: Any, out: str | Path, title: str = "Reduce LR on Plateau") -> Path:
    """The notebook's plateau figure: rate (blue, left) and validation loss (red, right) per epoch.

    ``history`` is a run's ``metrics.csv`` path, a run directory, or rows /
    a DataFrame with ``epoch``, ``learning_rate`` and ``val_loss``.
    """
    import pandas as pd

    if isinstance(history, (str, Path)):
        p = Path(history)
        history = pd.read_csv(p / "metrics.csv" if p.is_dir() else p)
    df = pd.DataFrame(history)
    missing = {"epoch", "learning_rate", "val_loss"} - set(df.columns)
    if missing:
        from deepfit.errors import DataError

        raise DataError(f"the plateau figure needs columns epoch, learning_rate, val_loss; missing {sorted(missing)}")
    epoch = df["epoch"].to_numpy() - 1  # the notebook's x axis is Keras's 0-based history.epoch
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(epoch, df["learning_rate"], "bo-")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Learning Rate", color="b")
    ax.tick_params("y", colors="b")
    ax.set_xlim(0, max(epoch.max(), 1))
    ax.grid(True)
    ax2 = ax.twinx()
    ax2.plot(epoch, df["val_loss"], "r^-")
    ax2.set_ylabel("Validation Loss", color="r")
    ax2.tick_params("y", colors="r")
    ax.set_title(title, fontsize=14)
    return _save(fig, out)
