"""``diagnose``: layer statistics at initialization and over a short training, with a verdict.

One training run of ``steps`` steps with the ``layer_stats`` callback: its step 0
is the forward/backward at initialization (the update ratio is that of the
first step), the last record is the state after training. The data is the
config's, cut to ``steps × batch_size`` training images (one epoch) when it has
more, so the diagnosis stays quick whatever the config's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from deepfit.diagnostics.verdict import Verdict, judge
from deepfit.errors import ConfigError


@dataclass
class Diagnosis:
    """Layer statistics over a short training and the verdicts at its first and last records."""

    table: pd.DataFrame
    initial: Verdict
    final: Verdict
    steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def at(self, step: int | None = None) -> pd.DataFrame:
        """One step's rows, by depth (default: the last recorded step)."""
        step = int(self.table["step"].max()) if step is None else step
        return self.table[self.table["step"] == step].sort_values("depth").reset_index(drop=True)


def diagnose(config, steps: int = 200, *, overrides: Sequence[str] | Mapping[str, Any] = (),
             every_n_steps: int | None = None, out: str | Path | None = None, data=None,
             model=None) -> Diagnosis:
    """Train ``steps`` steps recording layer statistics; judge the first and the last record.

    ``every_n_steps`` defaults to about 20 records over the run. With ``out``,
    writes ``layer_stats.csv``, ``verdict.txt`` and the figures there.
    """
    from deepfit.config import load_config
    from deepfit.data.prepare import Dataset, load_data
    from deepfit.nn.build import build_model
    from deepfit.run import make_trainer
    from deepfit.train.callbacks.layer_stats import LayerStats
    from deepfit.train.callbacks.terminate_on_nan import TerminateOnNaN

    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps must be a positive number of training steps, got {steps!r}")
    cfg = load_config(config, overrides)
    batch = cfg.training.batch_size
    if not isinstance(data, Dataset):
        wanted = steps * batch
        data_cfg = cfg.data.model_copy(update={"train_size": min(cfg.data.train_size or wanted, wanted)})
        data = load_data(data_cfg, arrays=data)
    per_epoch = math.ceil(len(data.x_train) / batch)
    epochs = math.ceil(steps / per_epoch)
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(update={"epochs": epochs})})
    if model is None:
        model = build_model(cfg.model, seed=cfg.seed)
    stats = LayerStats(every_n_steps=every_n_steps or max(1, steps // 20))
    trainer = make_trainer(cfg, model, per_epoch, [TerminateOnNaN(), stats])
    trainer.fit(data.x_train, data.y_train)
    table = stats.frame()
    first, last = int(table["step"].min()), int(table["step"].max())
    result = Diagnosis(table, judge(table[table["step"] == first]), judge(table[table["step"] == last]),
                       int(trainer.state.step), trainer.history)
    if trainer.stop_reason:
        result.final.findings.insert(0, f"training stopped: {trainer.stop_reason}")
    if out is not None:
        write(result, Path(out), cfg.name or "")
    return result


def write(result: Diagnosis, out: Path, title: str = "") -> None:
    """``layer_stats.csv``, ``verdict.txt``, ``depth.png`` and ``steps.png`` in ``out``."""
    from deepfit.diagnostics.figures import depth_figure, steps_figure
    from deepfit.io import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "layer_stats.csv", result.table.to_csv(index=False))
    write_atomic(out / "verdict.txt", f"at initialization:\n{result.initial.text()}\n\n"
                                      f"after {result.steps} steps:\n{result.final.text()}\n")
    result.figures = [depth_figure(result.table, out / "depth.png", title),
                      steps_figure(result.table, out / "steps.png", title)]


def rich_table(rows: pd.DataFrame, title: str, max_rows: int = 30) -> "rich.table.Table":  # noqa: F821
    """One step's statistics as a rich table; deep networks show every k-th layer (first and last kept)."""
    from rich.table import Table

    n = len(rows)
    keep = list(range(n))
    if n > max_rows:
        k = math.ceil(n / max_rows)
        keep = sorted(set(range(0, n, k)) | {n - 2, n - 1})
        title += f" (every {k}th layer shown; the CSV has all)"
    table = Table(title=title)
    for col in ("depth", "layer", "activation", "mean", "std", "saturated", "dead", "‖grad‖", "update/weight"):
        table.add_column(col, justify="left" if col in ("layer", "activation") else "right")
    fmt = lambda v, spec: "–" if not math.isfinite(v) else format(v, spec)  # noqa: E731
    for i in keep:
        r = rows.iloc[i]
        table.add_row(str(r["depth"]), r["layer"], r["activation"], fmt(r["mean"], ".3f"), fmt(r["std"], ".3g"),
                      fmt(r["saturated"], ".0%"), fmt(r["dead"], ".0%"), fmt(r["grad_norm"], ".3g"),
                      fmt(r["update_ratio"], ".2g"))
    return table
