"""Seeds until decided: train in rounds, look after each, stop a claim once its verdict is in.

A *claim* compares two sides (a variant of a runner each) on their shared seeds.
Every claim starts with ``min_seeds``; whenever all the runs of a claim's current
round are finished, the claim is looked at with the sequential rule
(:func:`deepfit.experiments.sequential.judge_sequence`, the family's level); if it is
decided it gets no more seeds, else one more round (``per_round`` seeds), up to its
``max_seeds``. A side stops growing when every claim that needs it is decided.

The look replays every seed count from ``min_seeds`` up, so a verdict depends on
the runs' numbers only, not on how they arrived in rounds: a rerun of the same
command finds the same verdicts from the runs on disk and trains only what is
still open (finished runs are kept, as always).

A crossed init × order design cannot grow this way: its test needs the complete
grid (every init seed crossed with every order seed), so a round would add a whole
row and column at once, and its cells are not independent pairs, which the
anytime-valid test needs. ``compare --until-decided`` refuses it and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from deepfit.experiments.sequential import ALPHA, MAX_SEEDS, MIN_SEEDS, Sequential, judge_sequence
from deepfit.experiments.store import is_finished, run_dir

CROSSED_REFUSAL = ("--until-decided needs plain seeds: a crossed init x order grid is tested as a complete grid "
                   "whose cells share init and order seeds, not as independent pairs, so it can neither grow one "
                   "seed at a time nor use the anytime-valid paired test. Run the crossed design at a fixed size "
                   "(without --until-decided), or give plain seeds (seeds = N) to decide by rounds")


@dataclass
class Side:
    """What one side of a claim trains (a runner's variant) and how to read its value on a seed
    (``value(seed)``: a float, NaN for a run without one, such as a diverged run)."""

    runner: object  # deepfit.experiments.runner.Runner
    variant: str
    value: Callable[[int], float]

    def finished(self, seed: int) -> bool:
        return is_finished(run_dir(self.runner.out, self.variant, seed))


@dataclass
class Claim:
    name: str
    a: Side
    b: Side
    delta: float | None | Callable[[], float | None]  # a callable is asked at the first look (runs exist then)
    max_seeds: int
    target: int = 0  # seeds asked for now
    result: Sequential | None = None  # once decided, or at max_seeds still open
    _values: dict = field(default_factory=dict, repr=False)

    @property
    def closed(self) -> bool:
        return self.result is not None

    def seeds(self) -> list[int]:
        return self.a.runner.seed_sequence(self.target)

    def differences(self) -> np.ndarray | None:
        """``a − b`` on the current round's seeds, in seed order; None until every one of those runs is finished."""
        seeds = self.seeds()
        if not all(side.finished(s) for s in seeds for side in (self.a, self.b)):
            return None
        for s in seeds:
            if s not in self._values:
                self._values[s] = self.a.value(s) - self.b.value(s)
        return np.array([self._values[s] for s in seeds], np.float64)


class Rounds:
    """The claims of one family, grown round by round (see the module doc). ``grow()`` is the
    :class:`~deepfit.experiments.runner.Schedule`'s hook: it looks at every claim whose round is complete
    and returns True when it asked for more runs."""

    def __init__(self, claims: Sequence[Claim], *, min_seeds: int = MIN_SEEDS, per_round: int = 1,
                 alpha: float = ALPHA, family: int | None = None, log: Callable[[str], None] = print):
        self.claims = list(claims)
        self.min_seeds, self.per_round, self.alpha = min_seeds, max(1, per_round), alpha
        self.family = family or len(self.claims)
        self.log = log
        self.lines: list[str] = []
        for c in self.claims:
            c.target = min(max(min_seeds, c.target), c.max_seeds)
            self._ask(c)

    def _ask(self, c: Claim) -> None:
        for side in (c.a, c.b):
            side.runner.extend(side.variant, c.target)

    def _say(self, line: str) -> None:
        self.lines.append(line)
        self.log(line)

    def grow(self) -> bool:
        added = False
        for c in self.claims:
            if c.closed:
                continue
            d = c.differences()
            if d is None:
                continue  # its round is still training
            if callable(c.delta):
                c.delta = c.delta()
            seq = judge_sequence(d, delta=c.delta, family=self.family, alpha=self.alpha, min_seeds=self.min_seeds)
            if seq.decided:
                c.result = seq
                where = {"up": "above 0", "down": "below 0", "equivalent": f"inside ±{c.delta:g}"}[seq.decision]
                self._say(f"{c.name}: decided at {seq.n} seeds, its interval [{seq.cs_low:.4g}, {seq.cs_high:.4g}] "
                          f"{where}")
                continue
            if c.target >= c.max_seeds:
                c.result = seq
                self._say(f"{c.name}: undecided at {c.target} seeds, its maximum (interval "
                          f"[{seq.cs_low:.4g}, {seq.cs_high:.4g}]"
                          + (f"; about {seq.to_decide:.0f} seeds would decide it at the observed mean and sd)"
                             if math.isfinite(seq.to_decide) else ")"))
                continue
            c.target = min(c.max_seeds, c.target + self.per_round)
            self._ask(c)
            added = True
        return added

    def open(self) -> list[Claim]:
        return [c for c in self.claims if not c.closed]


def check_seeds(min_seeds: int, max_seeds: int) -> None:
    from deepfit.errors import ConfigError

    if min_seeds < MIN_SEEDS:
        raise ConfigError(f"--min-seeds {min_seeds}: verdicts need at least {MIN_SEEDS} seeds (below that no interval "
                          f"is meaningful); use --min-seeds {MIN_SEEDS} or more")
    if max_seeds < min_seeds:
        raise ConfigError(f"--max-seeds {max_seeds} is below --min-seeds {min_seeds}; raise --max-seeds")


__all__ = ["CROSSED_REFUSAL", "Claim", "MAX_SEEDS", "MIN_SEEDS", "Rounds", "Side", "check_seeds"]
