"""deepfit's loop vs Keras's model.fit, same model, same backend, same process.

The notebook's baseline network (784-300-100-10 SELU, lecun_normal, batch 32,
SGD 0.01, standardized Fashion-MNIST, 55,000 training images). Each engine gets
a warm-up epoch (compilation), then EPOCHS timed epochs without validation;
the table shows the median seconds an epoch and the ratio fit / deepfit.

    .venv/bin/python benchmarks/bench_loop.py [--epochs 6] [--json benchmarks/results/loop.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import deepfit as df
import keras
import numpy as np

LAYERS = [
    {"type": "flatten"},
    {"type": "dense", "units": 300, "activation": "selu", "kernel_initializer": "lecun_normal"},
    {"type": "dense", "units": 100, "activation": "selu", "kernel_initializer": "lecun_normal"},
    {"type": "dense", "units": 10, "activation": "softmax"},
]


def time_deepfit(data, epochs: int) -> list[float]:
    model = df.build_model({"input_shape": [28, 28], "layers": LAYERS}, seed=0)
    trainer = df.Trainer(model, df.make_optimizer({"name": "sgd", "learning_rate": 0.01}), batch_size=32,
                         epochs=1, seed=0)
    trainer.fit(data.x_train, data.y_train)  # warm-up: compilation
    trainer.epochs = 1 + epochs
    trainer.fit(data.x_train, data.y_train)
    return [row["seconds"] for row in trainer.history[1:]]


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def time_keras_fit(data, epochs: int) -> list[float]:
    model = df.build_model({"input_shape": [28, 28], "layers": LAYERS}, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(data.x_train, data.y_train, batch_size=32, epochs=1 + epochs, verbose=0, callbacks=[timer])
    return timer.seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", default="benchmarks/results/loop.json")
    args = parser.parse_args()
    data = df.load_data({"scaling": "standardize"})
    ours = time_deepfit(data, args.epochs)
    theirs = time_keras_fit(data, args.epochs)
    result = {
        "workload": "784-300-100-10 SELU, batch 32, SGD 0.01, 55,000 images",
        "deepfit_s_per_epoch": statistics.median(ours),
        "keras_fit_s_per_epoch": statistics.median(theirs),
        "ratio_fit_over_deepfit": statistics.median(theirs) / statistics.median(ours),
        "deepfit_epochs": ours, "keras_fit_epochs": theirs,
        "keras": keras.__version__, "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(f"deepfit loop     {result['deepfit_s_per_epoch']:.3f} s/epoch  {np.round(ours, 3).tolist()}")
    print(f"keras model.fit  {result['keras_fit_s_per_epoch']:.3f} s/epoch  {np.round(theirs, 3).tolist()}")
    print(f"ratio fit/deepfit {result['ratio_fit_over_deepfit']:.2f}x (target >= 1.3x)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
