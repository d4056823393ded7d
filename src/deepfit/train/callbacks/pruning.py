from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from deepfit.train.callbacks.registry import CALLBACKS
from deepfit.train.events import Callback


@CALLBACKS.register("magnitude_pruning", aliases=("pruning", "prune"))
class MagnitudePruning(Callback):
    """Gradual magnitude pruning of the Dense kernels, exact inside the compiled step.

    ``target`` (e.g. 0.9) is the fraction of each kernel's weights (``scope = "layer"``)
    or of all kernels' weights (``"global"``) that are zero from ``end_step`` on;
    sparsity rises from ``initial`` at ``begin_step`` along Zhu & Gupta's cubic,
    the mask recomputed every ``frequency`` steps and applied after every update
    (see :mod:`deepfit.train.prune_step`). ``layers``: the Dense layers to prune
    by name (default: all). Each epoch's logs get ``sparsity`` (the fraction of
    the pruned kernels' weights that are zero); the run record keeps it per layer.
    The step comes from the trainer's step factory, so this callback cannot be
    combined with another that brings its own step (``layer_stats``).
    """

    order = -40  # before the callbacks that read or record the epoch's logs

    def __init__(self, target: float = 0.9, end_step: int = 1000, begin_step: int = 0, frequency: int = 100,
                 initial: float = 0.0, scope: str = "layer", layers: Sequence[str] | None = None):
        from deepfit.train.prune_step import PrunePlan

        if not 0 <= initial <= target < 1:
            raise ValueError(f"pruning needs 0 <= initial <= target < 1, got initial={initial}, target={target}")
        if not 0 <= begin_step <= end_step or int(frequency) < 1:
            raise ValueError(f"pruning needs 0 <= begin_step <= end_step and frequency >= 1, got begin_step="
                             f"{begin_step}, end_step={end_step}, frequency={frequency}")
        if scope not in ("layer", "global"):
            raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
        self.plan = PrunePlan(float(target), int(begin_step), int(end_step), int(frequency), float(initial), scope)
        self.layers = list(layers) if layers is not None else None
        self.targets: tuple[str, ...] = ()

    def steps_factory(self, model, optimizer, loss, schedule=None, layout=None):
        """The trainer's step factory while this callback is attached: steps that prune after each update."""
        from deepfit.train.prune_step import PruneSteps

        steps = PruneSteps(model, optimizer, loss, schedule, layout, plan=self.plan, layers=self.layers)
        self.targets = steps.targets
        return steps

    def sparsity(self, trainer) -> dict[str, float]:
        """Fraction of exact zeros in each pruned kernel (by state key), and ``"all"`` over them."""
        out, zeros, total = {}, 0, 0
        for key in self.targets:
            w = np.asarray(trainer.state.params[key])
            z = int(w.size - np.count_nonzero(w))
            out[key] = z / w.size
            zeros, total = zeros + z, total + w.size
        out["all"] = zeros / total if total else 0.0
        return out

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:
        logs["sparsity"] = self.sparsity(trainer)["all"]
