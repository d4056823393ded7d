"""Diagnostics: are my gradients vanishing or exploding?

- :mod:`.stats`: per-layer statistics computed inside the compiled step (the ``layer_stats`` callback)
- :mod:`.verdict`: a plain-language reading of those statistics
- :mod:`.selu_demo`: the notebook's self-normalization demo (cell 21) and its failures
- :mod:`.diagnose`: one call: statistics at initialization and over a short training, table, verdict, figures
- :mod:`.figures`: the figures (statistics across depth and over steps; the activation functions)
"""

from deepfit.diagnostics.diagnose import Diagnosis, diagnose
from deepfit.diagnostics.selu_demo import run_all as selu_demo
from deepfit.train.stats_step import SATURATION_MARGIN, StatsSteps, layer_stats, probes
from deepfit.diagnostics.verdict import Verdict, judge

__all__ = ["SATURATION_MARGIN", "Diagnosis", "StatsSteps", "Verdict", "diagnose", "judge", "layer_stats",
           "probes", "selu_demo"]
