"""Rebuilding a model recorded as Keras's architecture (a network handed in from Python): Keras's own
deserialization, which rebuilds a Sequential after each layer it adds, beside deepfit's, which adds them at
once; and the stateless sizing pass ``auto`` uses to cost it (issue 20 item 30).

    .venv/bin/python benchmarks/bench_architecture_build.py [--depth 99]
"""

import argparse
import json
import time

import keras

from deepfit.experiments.task import architecture_work
from deepfit.keras_model import architecture_json, build_architecture

parser = argparse.ArgumentParser()
parser.add_argument("--depth", type=int, default=99)
args = parser.parse_args()
model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(300, activation="selu"),
                          *[keras.layers.Dense(100, activation="selu") for _ in range(args.depth)],
                          keras.layers.Dense(10, activation="softmax")])
text = architecture_json(model)
timings = {}
for name, build in (("keras", lambda: keras.saving.deserialize_keras_object(json.loads(text), safe_mode=True)),
                    ("deepfit", lambda: build_architecture(text, seed=0)),
                    ("sizing pass", lambda: architecture_work.__wrapped__(text))):
    started = time.perf_counter()
    build()
    timings[name] = time.perf_counter() - started
print(", ".join(f"{name} {seconds:.2f}s" for name, seconds in timings.items()) + f" ({args.depth + 2} Dense layers)")
