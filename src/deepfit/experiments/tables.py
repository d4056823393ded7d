"""The experiment's tidy tables, built from its finished run directories only.

``results``: one row per (variant, seed, epoch) with every per-epoch metric as a
column (``metrics.csv`` of each run). ``finals``: one row per (variant, seed)
with its init and order seeds (equal for a plain seed), the metrics of the
weights the run kept (none for a diverged run: NaN), the test metrics when
there are any, the run's status and the threads it used. Both are written as
CSV and Parquet.
"""

from __future__ import annotations

import fcntl
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deepfit.experiments.store import LOCKS, is_finished, read_experiment, run_dir
from deepfit.experiments.spec import Cell, Experiment, init_order
from deepfit.io import read_json, write_atomic


@dataclass
class ExperimentResult:
    """What :func:`deepfit.compare` returns: the directory and its tables."""

    dir: Path
    experiment: Experiment
    results: pd.DataFrame
    finals: pd.DataFrame
    missing: list[tuple[str, int]] = field(default_factory=list)
    trained: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0
    report: dict[str, Path] | None = None

    def summary(self, metric: str | None = None):
        from deepfit.experiments.stats import describe

        return describe(self.finals, metric or self.experiment.metric)

    def comparisons(self, metric: str | None = None):
        from deepfit.experiments.stats import compare_to_reference

        return compare_to_reference(self.finals, metric or self.experiment.metric, self.experiment.reference,
                                    test=self.experiment.test)


def collect(exp_dir: Path, exp: Experiment) -> ExperimentResult:
    rows, finals, missing = [], [], []
    for v, s in sorted(exp.runs(), key=lambda r: ([x.name for x in exp.variants].index(r[0].name), r[1])):
        d = run_dir(exp_dir, v.name, s)
        if not is_finished(d):
            missing.append((v.name, s))
            continue
        # A crossed cell's label ("i3-o2") is its seed; init_seed and order_seed say what it crossed.
        label = str(s) if isinstance(s, Cell) else s
        init, order = init_order(s)
        metrics = pd.read_csv(d / "metrics.csv")
        metrics.insert(0, "seed", label)
        metrics.insert(0, "variant", v.name)
        metrics["init_seed"], metrics["order_seed"] = init, order  # last: (variant, seed, epoch) lead the table
        rows.append(metrics)
        final = read_json(d / "final.json", "final record")
        worker = read_json(d / "worker.json", "worker record") if (d / "worker.json").is_file() else {}
        record: dict[str, Any] = {"variant": v.name, "seed": label, "init_seed": init, "order_seed": order,
                                  "status": final.get("status"), "epochs_run": final.get("epochs_run")}
        if final.get("status") != "diverged":  # older runs kept the epoch before the NaN here: not a result
            record.update({k: v2 for k, v2 in final.get("last", {}).items() if k != "epoch"})
        for k in ("test_loss", "test_accuracy"):
            if k in final:
                record[k] = final[k]
        record["train_seconds"] = final.get("seconds")
        record["threads"] = worker.get("threads")
        record["backend"] = worker.get("backend")
        finals.append(record)
    results = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["variant", "seed", "epoch"])
    return ExperimentResult(exp_dir, exp, results, pd.DataFrame(finals), missing)


def write_tables(exp_dir: str | Path, exp: Experiment) -> ExperimentResult:
    """Collect and write ``results`` and ``finals`` (CSV + Parquet), under a lock so concurrent drivers take turns."""
    exp_dir = Path(exp_dir)
    result = collect(exp_dir, exp)
    (exp_dir / LOCKS).mkdir(parents=True, exist_ok=True)
    fd = os.open(exp_dir / LOCKS / "tables.lock", os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as open()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for name, df in (("results", result.results), ("finals", result.finals)):
            write_atomic(exp_dir / f"{name}.csv", df.to_csv(index=False, float_format="%.17g"))
            buf = io.BytesIO()
            df.to_parquet(buf, index=False)
            write_atomic(exp_dir / f"{name}.parquet", buf.getvalue())
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return result


def load_experiment_dir(exp_dir: str | Path) -> ExperimentResult:
    """An experiment directory's tables, rebuilt from its runs (a report never trains)."""

    d = Path(exp_dir)
    return collect(d, read_experiment(d))
