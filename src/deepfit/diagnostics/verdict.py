"""A plain reading of one step's layer statistics: healthy, or what is wrong and what to try.

Each check is one number compared with one threshold, both printed, so a user
can see why the verdict says what it says:

- gradient flow: the RMS gradient per weight, ‖g‖ / sqrt(size), of the first
  layer with weights over that of the last. Below 10^-2: gradients vanish;
  above 10^2: they explode (per weight, so a 784×300 kernel and a 100×10 one compare fairly)
- saturation: sigmoid/tanh layers with more than 30% of outputs within 1% of a bound
- dead units: ReLU layers where more than 30% of units output 0 for the whole batch
- activation scale: std of the last hidden layer over that of the first, below 0.1 or above 10
- update size: update/weight ratio of any layer below 1e-6 (that layer barely
  learns) or above 0.1 (the rate is too high); ~1e-3 is the usual healthy order
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

VANISH = 1e-2
SATURATED = 0.30
DEAD = 0.30
SHRINK = 0.1
UPDATE_LOW, UPDATE_HIGH = 1e-6, 1e-1

FIX_VANISH = "try he_normal + relu, lecun_normal + selu, or batch norm"
FIX_EXPLODE = "try a smaller learning rate, lecun_normal or glorot init, gradient clipping, or batch norm"


@dataclass
class Verdict:
    """Findings (one sentence each) and the numbers behind them."""

    findings: list[str] = field(default_factory=list)
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.findings

    def text(self) -> str:
        if self.healthy:
            return ("healthy: gradients pass through every layer "
                    f"(first/last RMS gradient 10^{self.numbers.get('log10_gradient_ratio', 0):+.1f}), "
                    "no layer saturated or dead")
        return "\n".join(self.findings)


def _hidden(step: pd.DataFrame) -> pd.DataFrame:
    """Layers before the output layer (the last probe), if there are others."""
    return step.iloc[:-1] if len(step) > 1 else step


def judge(step: pd.DataFrame) -> Verdict:
    """The verdict for one step's rows of a layer-statistics table (ordered by depth)."""
    step = step.sort_values("depth")
    v = Verdict()
    weighted = step[np.isfinite(step["grad_norm"]) & (step["size"] > 0)]
    if len(weighted) >= 2:
        rms = weighted["grad_norm"].to_numpy() / np.sqrt(weighted["size"].to_numpy())
        first, last = rms[0], rms[-1]
        if first == 0 or last == 0:
            ratio = -math.inf if first == 0 else math.inf
        else:
            ratio = math.log10(first / last)
        v.numbers["log10_gradient_ratio"] = ratio
        if ratio <= math.log10(VANISH):
            v.findings.append(f"gradient norm per weight falls 10^{-ratio:.1f} from the last layer to the first "
                              f"({last:.2g} → {first:.2g}): gradients vanish; {FIX_VANISH}")
        elif ratio >= -math.log10(VANISH):
            v.findings.append(f"gradient norm per weight grows 10^{ratio:.1f} from the last layer to the first "
                              f"({last:.2g} → {first:.2g}): gradients explode; {FIX_EXPLODE}")
    hidden = _hidden(step)
    bounded = hidden[np.isfinite(hidden["saturated"])]
    if len(bounded):
        bad = bounded[bounded["saturated"] > SATURATED]
        v.numbers["max_saturated"] = float(bounded["saturated"].max())
        if len(bad):
            v.findings.append(
                f"{len(bad)} of {len(bounded)} {'/'.join(sorted(set(bounded['activation'])))} layers have more than "
                f"{SATURATED:.0%} of outputs saturated (within 1% of a bound; worst {bad['saturated'].max():.0%}, "
                f"{bad.iloc[0]['layer']} first): little gradient passes them; try relu/elu/selu with "
                "he_normal/lecun_normal, glorot init for sigmoid/tanh, or batch norm")
    relus = hidden[np.isfinite(hidden["dead"])]
    if len(relus):
        bad = relus[relus["dead"] > DEAD]
        v.numbers["max_dead"] = float(relus["dead"].max())
        v.numbers["median_dead"] = float(relus["dead"].median())
        if len(bad):
            v.findings.append(
                f"{len(bad)} of {len(relus)} ReLU layers have more than {DEAD:.0%} of units dead (0 for the whole "
                f"batch; worst {bad['dead'].max():.0%}, median {relus['dead'].median():.0%}): those units pass no "
                "gradient; try leaky_relu, elu or selu + lecun_normal, a lower learning rate, or batch norm")
    stds = hidden["std"].to_numpy()
    if len(stds) >= 2 and stds[0] > 0:
        ratio = stds[-1] / stds[0]
        v.numbers["std_ratio"] = float(ratio)
        if not np.isfinite(ratio) or ratio > 1 / SHRINK:
            v.findings.append(f"activation std grows {ratio:.3g}× from the first hidden layer to the last: "
                              f"activations explode; {FIX_EXPLODE}")
        elif ratio < SHRINK:
            v.findings.append(f"activation std shrinks to {ratio:.2g}× from the first hidden layer to the last "
                              f"({stds[0]:.2g} → {stds[-1]:.2g}): signals collapse with depth; {FIX_VANISH}")
    ratios = weighted["update_ratio"].to_numpy()
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios):
        v.numbers["min_update_ratio"], v.numbers["max_update_ratio"] = float(ratios.min()), float(ratios.max())
        if ratios.min() < UPDATE_LOW:
            v.findings.append(f"smallest update/weight ratio {ratios.min():.2g} (healthy ~1e-3): some layers "
                              "barely learn")
        if ratios.max() > UPDATE_HIGH:
            v.findings.append(f"largest update/weight ratio {ratios.max():.2g} (healthy ~1e-3): the learning rate "
                              "is probably too high")
    return v
