"""Trainers of one shape trained together: each chunk of every member in one compiled call.

The members' states are stacked on a leading axis and ``jax.vmap`` runs the
chunk of steps for all of them at once, over one copy of the data; each member
keeps its own data order, dropout stream, callbacks, history and life: a member
that stops (early stopping, a NaN) takes no more steps while the others go on.
On an accelerator that turns N runs into little more than the time of one; on
this 2-core CPU it gains little (1.3x for the notebook's network, slower for the
100-layer one: ``benchmarks/bench_groups.py``), where one worker per core wins.

Members whose next chunks cannot share a program (another step function, as
in another phase of a freeze schedule; other shapes; other data) run one
after another instead: a group is split, never refused. vmap changes how XLA
orders some sums, so a member equals the same run trained alone to float
tolerance (tested), not bit for bit; a group is deterministic run to run.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deepfit.train.loop import Trainer
from deepfit.train.step import Steps


def stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, n: int) -> list[Any]:
    return [jax.tree.map(lambda leaf: leaf[i], tree) for i in range(n)]


def vmapped_chunk(steps: Steps):
    """``steps.run_chunk`` over a leading member axis (state, idx, active batched; the data shared)."""
    if not hasattr(steps, "_group_chunk"):
        steps._group_chunk = jax.jit(jax.vmap(steps._run_chunk, in_axes=(0, None, None, 0, 0)))
    return steps._group_chunk


class Group:
    """Trainers stepped in lockstep, chunk by chunk (see the module's docstring)."""

    def __init__(self, trainers: Sequence[Trainer]):
        self.trainers = list(trainers)

    def fit(self, data: Sequence[tuple[Any, Any, Any]]) -> None:
        """Train every member on its ``(x, y, validation_data)`` until each is done or stopped."""
        loops = [t.loop(x, y, v) for t, (x, y, v) in zip(self.trainers, data)]
        requests: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        try:
            for i, loop in enumerate(loops):
                self._advance(i, loop, requests, None)
            while requests:
                for members in self._batches(requests):
                    results = self._run(members, requests)
                    for i, result in zip(members, results):
                        self._advance(i, loops[i], requests, result)
        finally:
            for loop in loops:
                loop.close()  # on an error: every member still writes its state back and ends its fit

    @staticmethod
    def _advance(i: int, loop, requests: dict, result) -> None:
        try:
            requests[i] = next(loop) if result is None else loop.send(result)
        except StopIteration:
            requests.pop(i, None)

    def _batches(self, requests: dict) -> list[list[int]]:
        """Members whose next chunks one vmapped call can run, grouped; a lone member runs alone."""
        groups: dict[tuple, list[int]] = {}
        for i, (idx, active) in requests.items():
            t = self.trainers[i]
            plain = type(t.steps) is Steps  # a step with extras (layer statistics) runs alone
            key = (id(t.steps), id(t.x_all), id(t.y_all), idx.shape) if plain else ("alone", i)
            groups.setdefault(key, []).append(i)
        return list(groups.values())

    def _run(self, members: list[int], requests: dict) -> list[tuple]:
        if len(members) == 1:
            i = members[0]
            t = self.trainers[i]
            return [t.steps.run_chunk(t.state, t.x_all, t.y_all, *requests[i])]
        first = self.trainers[members[0]]
        # Pad to every member of the group, so a member that stopped does not change the program's
        # shape (and so recompile it): its slot repeats a running member's state with no active step.
        source = [p if p in members else members[0] for p in range(len(self.trainers))]
        idx = np.stack([requests[s][0] for s in source])
        active = np.stack([requests[s][1] if p == s else np.zeros_like(requests[s][1])
                           for p, s in enumerate(source)])
        states = stack([self.trainers[s].state for s in source])
        state, losses, rates, aux = vmapped_chunk(first.steps)(states, first.x_all, first.y_all, idx, active)
        unstacked = unstack(state, len(source))
        return [(unstacked[p], losses[p], rates[p], jax.tree.map(lambda a: a[p], aux)) for p in members]
