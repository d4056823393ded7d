"""The optimizer and schedule a training config describes, wired together.

1cycle's momentum schedule must reach the optimizer, so the two are built in
one place: a schedule that carries a ``momentum`` gets an optimizer whose
``momentum`` (SGD) or ``beta_1`` (Adam family) follows it, chosen from
:data:`deepfit.optim.optimizers.CAPABILITIES`.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras

from deepfit.optim.optimizers import make_optimizer, optimizer_spec, supports_momentum_schedule
from deepfit.optim.schedules import Schedule, make_schedule


def make_optimizer_and_schedule(training: Any, steps_per_epoch: int) -> tuple[keras.optimizers.Optimizer,
                                                                               Schedule | None]:
    """``(optimizer, schedule)`` for a :class:`~deepfit.config.TrainingConfig`.

    The schedule's default starting rate is the optimizer's ``learning_rate``.
    An optimizer without momentum (e.g. RMSprop, Adagrad) under 1cycle gets
    the rate cycle alone, with a warning.
    """
    optimizer = make_optimizer(training.optimizer)
    if training.schedule is None:
        return optimizer, None
    schedule = make_schedule(training.schedule, steps_per_epoch, training.epochs, float(optimizer.learning_rate))
    if schedule.momentum is None:
        return optimizer, schedule
    if not supports_momentum_schedule(training.optimizer):
        warnings.warn(f"optimizer {optimizer_spec(training.optimizer)[0]!r} has no momentum to cycle: "
                      "1cycle cycles the learning rate only", stacklevel=2)
        return optimizer, Schedule(schedule.rate, None, schedule.name)
    return make_optimizer(training.optimizer, momentum_schedule=schedule.momentum), schedule
