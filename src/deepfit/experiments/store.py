"""Where an experiment's runs live on disk (see :mod:`deepfit.experiments.runner` for the layout)."""

from __future__ import annotations

from pathlib import Path

from deepfit.experiments.spec import Experiment, load_experiment
from deepfit.io import read_json

RUNS, PARTIAL, LOCKS = "runs", ".partial", ".locks"


def run_dir(exp_dir: Path, variant: str, seed: int) -> Path:
    return exp_dir / RUNS / variant / f"seed-{seed}"


def is_finished(path: Path) -> bool:
    # Complete directories arrive by rename; the manifest check also rejects a run dir copied in by hand half-way.
    return (path / "manifest.json").is_file() and (path / "final.json").is_file()


def read_experiment(exp_dir: str | Path) -> Experiment:
    """The experiment a directory was made from (its ``experiment.json``)."""
    d = Path(exp_dir)
    tree = read_json(d / "experiment.json", "experiment record")
    return load_experiment(tree)
