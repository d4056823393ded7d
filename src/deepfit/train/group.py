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

Resuming a group keeps that determinism: a member's numbers depend on the width of
the program's member axis, so every chunk of a group of width > 1 runs vmapped at the
group's full width, each member in its own slot, whichever members are still training
(a member outliving the others thus pays for their empty slots, on a CPU; on an
accelerator they cost next to nothing). A group resumed after some members finished
(``slots`` and ``width`` name where the rest were) computes exactly what it would have.
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

    def __init__(self, trainers: Sequence[Trainer], slots: Sequence[int] | None = None, width: int | None = None):
        self.trainers = list(trainers)
        self.slots = list(slots) if slots is not None else list(range(len(self.trainers)))
        self.width = max(width or 0, max(self.slots, default=-1) + 1, len(self.trainers))

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
        first = self.trainers[members[0]]
        if self.width == 1 or type(first.steps) is not Steps:
            return [first.steps.run_chunk(first.state, first.x_all, first.y_all, *requests[members[0]])]
        # Every slot of the group's width, so neither a member that stopped nor one that is not here
        # (finished before a resume) changes the program's shape, or a member's numbers: an empty
        # slot repeats a running member's state with no active step.
        source = [members[0]] * self.width
        for i in members:
            source[self.slots[i]] = i
        idx = np.stack([requests[s][0] for s in source])
        active = np.stack([requests[s][1] if self.slots[s] == p else np.zeros_like(requests[s][1])
                           for p, s in enumerate(source)])
        states = stack([self.trainers[s].state for s in source])
        state, losses, rates, aux = vmapped_chunk(first.steps)(states, first.x_all, first.y_all, idx, active)
        unstacked = unstack(state, len(source))
        return [(unstacked[self.slots[i]], losses[self.slots[i]], rates[self.slots[i]],
                 jax.tree.map(lambda a: a[self.slots[i]], aux)) for i in members]
