"""Overhead of the layer_stats callback: epoch time with it vs without, same process, same data.

Networks: W1 (784-300-100-10 SELU, the notebook's baseline) and W2 (784-300-99x100-10 SELU,
selu_100), SGD, batch 32, standardized Fashion-MNIST (first ``--train`` training images).
Each configuration compiles in a warm-up epoch, then epochs alternate plain / stats so
load on the machine hits both alike; the ratio is of the medians.

    .venv/bin/python benchmarks/bench_layer_stats.py [--train 20000] [--epochs 3] [--every 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import deepfit as df  # first: sets KERAS_BACKEND=jax
import keras
from deepfit.train.callbacks.layer_stats import LayerStats
from deepfit.train.loop import Trainer


def network(depth: int) -> dict:
    hidden = {"type": "dense", "units": 100, "activation": "selu", "kernel_initializer": "lecun_normal"}
    return {"input_shape": [28, 28], "layers": [{"type": "flatten"}, {**hidden, "units": 300}, *[hidden] * depth,
                                                {"type": "dense", "units": 10, "activation": "softmax"}]}


def trainer(model_cfg, callbacks) -> Trainer:
    model = df.build_model(model_cfg, seed=42)
    return Trainer(model, keras.optimizers.SGD(1e-3), batch_size=32, epochs=10**6, seed=42, callbacks=callbacks)


def epoch_seconds(t: Trainer, x, y) -> float:
    t.epochs = int(t.state.step) // t.steps_per_epoch(len(x)) + 1
    start = time.perf_counter()
    t.fit(x, y)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--every", type=int, default=100)
    args = ap.parse_args()
    data = df.load_data({"train_size": args.train, "scaling": "standardize"})
    x, y = data.x_train, data.y_train
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, device "
          f"{__import__('jax').devices()[0]}, {len(x)} images, batch 32, layer_stats every {args.every} steps")
    for name, depth in (("W1 784-300-100-10", 1), ("W2 784-300-99x100-10", 99)):
        plain, stats = trainer(network(depth), []), trainer(network(depth), [LayerStats(every_n_steps=args.every)])
        epoch_seconds(plain, x, y), epoch_seconds(stats, x, y)  # compile
        times = {"plain": [], "stats": []}
        for _ in range(args.epochs):
            times["plain"].append(epoch_seconds(plain, x, y))
            times["stats"].append(epoch_seconds(stats, x, y))
        p, s = statistics.median(times["plain"]), statistics.median(times["stats"])
        print(f"{name}: plain {p:.3f} s/epoch, layer_stats {s:.3f} s/epoch, ratio {s / p:.3f} "
              f"(all: plain {[round(v, 3) for v in times['plain']]}, stats {[round(v, 3) for v in times['stats']]})")


if __name__ == "__main__":
    main()
