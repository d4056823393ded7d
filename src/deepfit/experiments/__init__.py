"""Experiments: a base config × named variants × seeds, run on a backend, summarized honestly."""

from deepfit.experiments.runner import compare, read_experiment
from deepfit.experiments.spec import Experiment, Variant, load_experiment
from deepfit.experiments.tables import ExperimentResult, load_experiment_dir

__all__ = ["Experiment", "ExperimentResult", "Variant", "compare", "load_experiment", "load_experiment_dir",
           "read_experiment"]
