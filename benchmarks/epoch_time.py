"""Seconds an epoch of the trainer on W1 (SGD, batch 32) or W3 (Nadam, batch 128), median of 3 after a warm-up.

For A/B runs of two checkouts on one machine, alternating (a change of the core must not slow the step):

    for i in 1 2 3; do
      PYTHONPATH=/path/to/old/src .venv/bin/python benchmarks/epoch_time.py nadam 128 old
      .venv/bin/python benchmarks/epoch_time.py nadam 128 new
    done
"""

import sys, time, statistics
import deepfit as df
import keras, numpy as np
from deepfit.train.loop import Trainer
data = df.load_data(df.load_config({"model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]}, "data": {"scaling": "standardize"}}).data)
opt_name = sys.argv[1]
batch = int(sys.argv[2])
spec = {"input_shape": [28, 28], "layers": [{"type": "flatten"}, {"type": "dense", "units": 300, "activation": "selu", "kernel_initializer": "lecun_normal"}, {"type": "dense", "units": 100, "activation": "selu", "kernel_initializer": "lecun_normal"}, {"type": "dense", "units": 10, "activation": "softmax"}]}
m = df.build_model(spec, seed=0)
opt = keras.optimizers.SGD(0.01) if opt_name == "sgd" else keras.optimizers.Nadam(1e-3)
t = Trainer(m, opt, batch_size=batch, epochs=4, seed=0)
t.fit(data.x_train, data.y_train)
secs = [r["seconds"] for r in t.history[1:]]
print(sys.argv[3], opt_name, batch, round(statistics.median(secs), 3), [round(s, 3) for s in secs])
