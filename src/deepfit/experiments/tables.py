"""The experiment's tidy tables, built from its finished run directories only.

``results``: one row per (variant, seed, epoch) with every per-epoch metric as a
column (``metrics.csv`` of each run). ``finals``: one row per (variant, seed)
with its init and order seeds (equal for a plain seed), the metrics of the
weights the run kept (none for a diverged run: NaN), the test metrics when
there are any, the run's status and the threads it used. Both are written as
CSV and Parquet. ``columns.json``: what each column is (direction and range, as
the runs' Keras metrics and losses recorded them in ``final.json``), so that the
statistics and the report never guess it from a name.
"""

from __future__ import annotations

import fcntl
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deepfit.errors import ConfigError
from deepfit.experiments.store import LOCKS, is_finished, read_experiment, run_dir
from deepfit.experiments.spec import Cell, Experiment, init_order
from deepfit.io import read_json, write_atomic, write_json


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
    columns: dict[str, Any] = field(default_factory=dict)  # name -> stats.Column, from the runs' records
    rounds: list[str] = field(default_factory=list)  # what --until-decided did, one line a look

    def column(self, metric: str | None = None):
        """What ``metric`` is (stats.Column): from the runs' records, and the experiment file's ``direction``
        for a metric whose Keras object declares none."""
        from dataclasses import replace

        from deepfit.experiments.stats import column_of

        metric = metric or self.experiment.metric
        c = column_of(self.columns, metric)
        stated = self.experiment.direction if metric == self.experiment.metric else None
        if stated is not None and c.direction is not None and stated != c.direction:
            raise ConfigError(f"experiment {self.experiment.name!r}: direction = {stated!r}, but {metric!r} is a "
                              f"metric to {'maximize' if c.direction == 'max' else 'minimize'} by its own Keras "
                              f"object; remove direction (it is only for metrics deepfit cannot tell)")
        return replace(c, direction=stated) if stated is not None else c

    def summary(self, metric: str | None = None):
        from deepfit.experiments.stats import describe

        metric = metric or self.experiment.metric
        return describe(self.finals, metric, column=self.column(metric))

    def comparisons(self, metric: str | None = None):
        from deepfit.experiments.stats import compare_to_reference

        metric = metric or self.experiment.metric
        delta = self.experiment.equivalence if metric == self.experiment.metric else None
        return compare_to_reference(self.finals, metric, self.experiment.reference, test=self.experiment.test,
                                    column=self.column(metric), delta=delta, images=self.images(metric))

    def images(self, metric: str):
        """``(variant, seeds) -> (seeds × images)`` per-image correctness for ``metric``'s split, or None."""
        from deepfit.experiments.stats import IMAGE_SPLITS

        split = IMAGE_SPLITS.get(metric)
        if split is None:
            return None
        return lambda variant, seeds: correctness_matrix(self.dir, variant, seeds, split)


def correctness_matrix(exp_dir: Path, variant: str, seeds, split: str = "val"):
    """(seeds × images) booleans from the runs' ``correctness.npz``; None if any run lacks them."""
    import numpy as np

    from deepfit.run import read_correctness

    rows = []
    for s in seeds:
        c = read_correctness(run_dir(exp_dir, variant, s), split)
        if c is None or (rows and len(c) != len(rows[0])):
            return None
        rows.append(c)
    return np.stack(rows) if rows else None


def final_value(run: Path, metric: str) -> float:
    """A finished run's final ``metric`` as ``finals`` holds it (NaN for a diverged run or a missing metric)."""
    final = read_json(run / "final.json", "final record")
    if metric in ("test_loss", "test_accuracy"):
        return float(final.get(metric, float("nan")))
    if final.get("status") == "diverged":
        return float("nan")
    return float(final.get("last", {}).get(metric, float("nan")))


def collect(exp_dir: Path, exp: Experiment) -> ExperimentResult:
    rows, finals, missing, records = [], [], [], []
    older: dict[str, dict] = {}
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
        if "columns" in final:
            records.append(final["columns"])
        elif v.name not in older:  # recorded before runs kept them: ask the config's loss and metric objects
            from deepfit.config import load_config
            from deepfit.run import columns_of_config

            try:
                older[v.name] = columns_of_config(load_config(d / "config.toml"))
            except (ConfigError, OSError):
                older[v.name] = {}
            records.append(older[v.name])
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
    from deepfit.experiments.stats import merge_columns

    return ExperimentResult(exp_dir, exp, results, pd.DataFrame(finals), missing, columns=merge_columns(records))


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
        write_json(exp_dir / "columns.json", {k: c.to_record() for k, c in result.columns.items()})
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return result


def load_experiment_dir(exp_dir: str | Path) -> ExperimentResult:
    """An experiment directory's tables, rebuilt from its runs (a report never trains)."""

    d = Path(exp_dir)
    return collect(d, read_experiment(d))
