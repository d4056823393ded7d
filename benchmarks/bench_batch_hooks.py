"""What a Keras callback with batch hooks costs, in deepfit.fit and in Keras's model.fit.

A callback that overrides ``on_train_batch_begin``/``end`` (the notebook's ExponentialLearningRate,
OneCycleScheduler) must see every batch, as in ``model.fit``: deepfit then returns to Python after every
step instead of once an epoch. This measures the price on the notebook's baseline network (W1:
784-300-100-10 SELU, batch 32, SGD, 55,000 images), in seconds an epoch, for four cases, each a fresh
process-warm model trained 1 + EPOCHS epochs (the first, with compilation, not timed):

- ``deepfit.fit`` with no callback (chunks of a whole epoch);
- ``deepfit.fit`` with a callback that reads the logs at every batch (no model access: no sync);
- ``deepfit.fit`` with the notebook's pattern: read and set ``self.model.optimizer.learning_rate`` at every
  batch (the model synced from the state at every step, as Keras's jax_state_sync does);
- Keras's ``model.fit`` with that same callback (the peer).

The cases run in turn, ROUNDS times (A B C D A B C D ...); the table gives each case's median and its ratio
to Keras's in the same run.

    .venv/bin/python benchmarks/bench_batch_hooks.py [--epochs 2] [--rounds 3] [--json benchmarks/results/batch_hooks.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import deepfit as df
import keras

from bench_loop import EpochTimer, compiled_model


class ReadsLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(logs["loss"])


class SetsTheRate(keras.callbacks.Callback):
    """The notebook's ExponentialLearningRate (cell 83): read and set the rate at every batch."""

    def on_train_batch_end(self, batch, logs=None):
        self.model.optimizer.learning_rate = float(self.model.optimizer.learning_rate) * 1.0


OPTIMIZER = {"name": "sgd", "learning_rate": 0.01}


def run(case: str, data, epochs: int) -> list[float]:
    model, timer = compiled_model(OPTIMIZER), EpochTimer()
    extra = {"none": [], "reads_logs": [ReadsLogs()], "sets_rate": [SetsTheRate()], "keras_sets_rate": [SetsTheRate()]}
    callbacks = [timer, *extra[case]]
    if case == "keras_sets_rate":
        model.fit(data.x_train, data.y_train, batch_size=32, epochs=1 + epochs, verbose=0, callbacks=callbacks)
    else:
        df.fit(model, data.x_train, data.y_train, batch_size=32, epochs=1 + epochs, verbose=0, callbacks=callbacks,
               seed=0)
    return timer.seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = df.load_data({"scaling": "standardize"})
    cases = ["none", "reads_logs", "sets_rate", "keras_sets_rate"]
    seconds: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(args.rounds):
        for case in cases:
            seconds[case] += run(case, data, args.epochs)
    median = {c: statistics.median(v) for c, v in seconds.items()}
    print(f"{'case':<18}{'s/epoch':>10}{'x Keras':>10}")
    for c in cases:
        print(f"{c:<18}{median[c]:>10.3f}{median[c] / median['keras_sets_rate']:>10.2f}")
    if args.json:
        result = {"machine": platform.platform(), "cpu_count": os.cpu_count(), "load_before": os.getloadavg(),
                  "epochs": args.epochs, "rounds": args.rounds, "seconds": seconds, "median": median,
                  "ratio_to_keras": {c: median[c] / median["keras_sets_rate"] for c in cases}}
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
