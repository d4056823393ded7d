"""deepfit's loop vs Keras's model.fit, same model, same backend, same process.

The notebook's baseline network (784-300-100-10 SELU, lecun_normal, standardized
Fashion-MNIST, 55,000 training images), as W1 (batch 32, SGD 0.01) and W3 (batch 128,
Nadam 0.001). Three engines on each: deepfit's Trainer, ``deepfit.fit`` (a compiled Keras
model, Keras's callbacks) and Keras's ``model.fit``. Each gets a warm-up epoch
(compilation), then EPOCHS timed epochs without validation; the table shows the median
seconds an epoch and the ratio fit / deepfit.

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


WORKLOADS = {
    "W1": {"batch_size": 32, "optimizer": {"name": "sgd", "learning_rate": 0.01}},
    "W3": {"batch_size": 128, "optimizer": {"name": "nadam", "learning_rate": 0.001}},
}


def time_deepfit(data, epochs: int, batch_size: int = 32, optimizer=None) -> list[float]:
    model = df.build_model({"input_shape": [28, 28], "layers": LAYERS}, seed=0)
    trainer = df.Trainer(model, df.make_optimizer(optimizer or WORKLOADS["W1"]["optimizer"]), batch_size=batch_size,
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


def compiled_model(optimizer) -> keras.Model:
    model = df.build_model({"input_shape": [28, 28], "layers": LAYERS}, seed=0)
    model.compile(optimizer=df.make_optimizer(optimizer), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def time_keras_fit(data, epochs: int, batch_size: int = 32, optimizer=None) -> list[float]:
    model, timer = compiled_model(optimizer or WORKLOADS["W1"]["optimizer"]), EpochTimer()
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=1 + epochs, verbose=0, callbacks=[timer])
    return timer.seconds[1:]


def time_deepfit_fit(data, epochs: int, batch_size: int = 32, optimizer=None) -> list[float]:
    """``deepfit.fit`` on a compiled model, timed by the same Keras callback as model.fit."""
    model, timer = compiled_model(optimizer or WORKLOADS["W1"]["optimizer"]), EpochTimer()
    df.fit(model, data.x_train, data.y_train, batch_size=batch_size, epochs=1 + epochs, verbose=0,
           callbacks=[timer], seed=0)
    return timer.seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--json", default="benchmarks/results/loop.json")
    parser.add_argument("--workloads", default="W1,W3", help="comma-separated: W1, W3")
    args = parser.parse_args()
    data = df.load_data({"scaling": "standardize"})
    result = {"workload": "784-300-100-10 SELU, 55,000 images; W1 batch 32 SGD 0.01, W3 batch 128 Nadam 0.001",
              "keras": keras.__version__, "machine": platform.processor() or platform.machine(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "epochs": args.epochs}
    for name, w in WORKLOADS.items():
        if name not in args.workloads.split(","):
            continue
        times = {engine: fn(data, args.epochs, **w) for engine, fn in
                 (("deepfit", time_deepfit), ("deepfit_fit", time_deepfit_fit), ("keras_fit", time_keras_fit))}
        med = {k: statistics.median(v) for k, v in times.items()}
        result[name] = {f"{k}_s_per_epoch": v for k, v in med.items()} | {
            "ratio_fit_over_deepfit": med["keras_fit"] / med["deepfit"],
            "ratio_fit_over_deepfit_fit": med["keras_fit"] / med["deepfit_fit"],
            **{f"{k}_epochs": v for k, v in times.items()}}
        for engine, label in (("deepfit", "deepfit Trainer"), ("deepfit_fit", "deepfit.fit"),
                              ("keras_fit", "keras model.fit")):
            print(f"{name} {label:16s} {med[engine]:.3f} s/epoch  {np.round(times[engine], 3).tolist()}")
        print(f"{name} ratio fit/deepfit {med['keras_fit'] / med['deepfit']:.2f}x, "
              f"fit/deepfit.fit {med['keras_fit'] / med['deepfit_fit']:.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
