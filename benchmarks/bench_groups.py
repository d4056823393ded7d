"""Time to verdict: seeds trained together vs one after another, beside a hand-written JAX scan and Keras fit.

Every figure is measured in this one run, so the ratios hold whatever the machine's speed:

1. One model, seconds an epoch (median of the timed epochs after a warm-up epoch):
   deepfit's Trainer, a hand-written JAX ``lax.scan`` epoch of the same network (plain SGD, no
   library), and Keras's ``model.fit``. W1 = 784-300-100-10 SELU, batch 32, SGD; W2 = the
   notebook's 100-layer SELU network; W3 = W1 with batch 128 and Nadam (no hand-written peer).
2. Six seeds: ``deepfit.train`` six times one after another in this process, against
   ``deepfit.compare`` of the same six seeds (backend ``auto``: on a multi-core CPU one
   single-threaded worker per core; on an accelerator this process).
3. A second process training a shape this machine has trained before: seconds from the
   ``train`` call to the end of its first compiled chunk (import time apart), and how many
   step programs one process builds for six seeds.

    .venv/bin/python benchmarks/bench_groups.py [--quick] [--json benchmarks/results/groups.json]

``--quick`` uses 11,000 training images and fewer epochs (a check that the script runs, not a
measurement). The same script runs unchanged on a CUDA machine (``pip install 'jax[cuda12]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import deepfit as df
import jax
import jax.numpy as jnp
import keras
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def layers(depth: int, activation: str = "selu") -> list[dict]:
    """W1 (depth 2: 300-100) or W2 (depth 100: 300 then 99 x 100), SELU + LeCun init."""
    hidden = [{"type": "dense", "units": 300, "activation": activation, "kernel_initializer": "lecun_normal"},
              {"type": "dense", "units": 100, "activation": activation, "kernel_initializer": "lecun_normal",
               "repeat": depth - 1}]
    return [{"type": "flatten"}, *hidden, {"type": "dense", "units": 10, "activation": "softmax"}]


def config(depth: int, epochs: int, train_size: int | None, batch: int = 32,
           optimizer: dict | None = None) -> dict:
    data = {"scaling": "standardize", **({"train_size": train_size} if train_size else {})}
    return {"seed": 0, "data": data, "model": {"input_shape": [28, 28], "layers": layers(depth)},
            "training": {"epochs": epochs, "batch_size": batch, "progress": False,
                         "optimizer": optimizer or {"name": "sgd", "learning_rate": 1e-3}}}


# -- 1. one model --------------------------------------------------------------------------------
def time_deepfit(cfg: dict, data, epochs: int) -> list[float]:
    c = df.load_config(cfg)
    model = df.build_model(c.model, seed=0)
    trainer = df.Trainer(model, df.make_optimizer(c.training.optimizer), batch_size=c.training.batch_size,
                         epochs=1 + epochs, seed=0)
    trainer.fit(data.x_train, data.y_train)
    return [row["seconds"] for row in trainer.history[1:]]


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t)


def time_keras_fit(cfg: dict, data, epochs: int) -> list[float]:
    c = df.load_config(cfg)
    model = df.build_model(c.model, seed=0)
    model.compile(optimizer=df.make_optimizer(c.training.optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(data.x_train, data.y_train, batch_size=c.training.batch_size, epochs=1 + epochs, verbose=0,
              callbacks=[timer])
    return timer.seconds[1:]


def time_hand_written(depth: int, data, epochs: int, batch: int = 32, rate: float = 1e-3) -> list[float]:
    """The peer: the same network and SGD as a plain JAX epoch (``lax.scan`` over batches), nothing else."""
    sizes = [784, 300, *[100] * (depth - 1), 10]
    keys = jax.random.split(jax.random.key(0), len(sizes) - 1)
    params = [(jax.random.truncated_normal(k, -2, 2, (m, n)) * np.sqrt(1 / m) / 0.8796, jnp.zeros(n))
              for k, m, n in zip(keys, sizes[:-1], sizes[1:])]

    def loss(params, x, y):
        h = x.reshape(x.shape[0], -1)
        for w, b in params[:-1]:
            h = jax.nn.selu(h @ w + b)
        logits = h @ params[-1][0] + params[-1][1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    @jax.jit
    def epoch(params, x, y, order):
        def step(params, idx):
            grads = jax.grad(loss)(params, x[idx], y[idx])
            return jax.tree.map(lambda p, g: p - rate * g, params, grads), None

        return jax.lax.scan(step, params, order)[0]

    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    n = len(x) // batch * batch
    seconds = []
    for e in range(1 + epochs):
        order = jnp.asarray(np.random.default_rng(e).permutation(len(x))[:n].reshape(-1, batch))
        t = time.perf_counter()
        params = jax.block_until_ready(epoch(params, x, y, order))
        seconds.append(time.perf_counter() - t)
    return seconds[1:]


# -- 2. six seeds ----------------------------------------------------------------------------------
def time_sequential(cfg: dict, seeds: list[int]) -> float:
    t = time.perf_counter()
    for s in seeds:
        df.train({**cfg, "seed": s}, save=False)
    return time.perf_counter() - t


def time_grouped(cfg: dict, seeds: list[int]) -> tuple[float, str]:
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        df.compare({"name": "bench", "base": cfg, "seeds": seeds, "variants": [{"name": "w"}]},
                   out=Path(tmp) / "exp", report=False, log=lines.append)
        seconds = time.perf_counter() - t
    return seconds, next((line for line in lines if line.startswith("backend")), "")


# -- 3. a second process ----------------------------------------------------------------------------
FIRST_STEP = """
import json, sys, time
t0 = time.perf_counter()
import deepfit as df
from deepfit.train.events import Callback
imported = time.perf_counter() - t0
class First(Callback):
    def on_chunk_end(self, trainer, chunk):
        if not hasattr(self, "at"):
            self.at = time.perf_counter()
first = First()
cfg = json.loads(sys.argv[1])
cfg["training"]["steps_per_chunk"] = 20
t = time.perf_counter()
df.train(cfg, save=False, callbacks=[first])
print(json.dumps({"import_s": imported, "first_chunk_s": first.at - t}))
"""


def time_first_step(cfg: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", FIRST_STEP, json.dumps(cfg)], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def programs_built(cfg: dict, seeds: list[int]) -> int:
    from deepfit.train import step

    built = [0]
    original = step.Steps.__init__

    def counting(self, *a, **k):
        built[0] += 1
        original(self, *a, **k)

    step.Steps.__init__ = counting
    step._PROGRAMS.clear()
    try:
        for s in seeds:
            df.train({**cfg, "seed": s}, save=False)
    finally:
        step.Steps.__init__ = original
    return built[0]


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="11,000 images, fewer epochs: a smoke check")
    parser.add_argument("--json", default="benchmarks/results/groups.json")
    args = parser.parse_args()
    size = 11_000 if args.quick else None
    timed = 2 if args.quick else 4
    seeds = list(range(6))
    data = df.load_data({"scaling": "standardize", **({"train_size": size} if size else {})})
    result: dict = {"commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick,
                    "devices": [str(d) for d in jax.devices()], "cpus": os.cpu_count(),
                    "load_average_before": os.getloadavg(), "keras": keras.__version__, "jax": jax.__version__,
                    "machine": platform.processor() or platform.machine()}

    print("1. one model, seconds an epoch (median after a warm-up epoch)")
    one = {}
    for name, depth, batch, opt, epochs in (
            ("W1", 2, 32, None, timed), ("W2", 100, 32, None, max(1, timed // 2)),
            ("W3", 2, 128, {"name": "nadam", "learning_rate": 1e-3}, timed)):
        cfg = config(depth, 1, size, batch, opt)
        row = {"deepfit": statistics.median(time_deepfit(cfg, data, epochs)),
               "keras_fit": statistics.median(time_keras_fit(cfg, data, epochs))}
        if opt is None:
            row["hand_written_jax"] = statistics.median(time_hand_written(depth, data, epochs, batch))
            row["ratio_hand_over_deepfit"] = row["hand_written_jax"] / row["deepfit"]
        row["ratio_fit_over_deepfit"] = row["keras_fit"] / row["deepfit"]
        one[name] = row
        print(f"   {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    result["one_model_s_per_epoch"] = one

    print("2. six seeds, seconds in all")
    six = {}
    for name, depth, epochs, target in (("W1", 2, 3, 1.6), ("W2", 100, 1 if args.quick else 2, 1.7)):
        cfg = config(depth, epochs, size)
        sequential = time_sequential(cfg, seeds)
        grouped, how = time_grouped(cfg, seeds)
        six[name] = {"epochs": epochs, "sequential_train_s": sequential, "grouped_compare_s": grouped,
                     "speedup": sequential / grouped, "target": target, "backend": how}
        print(f"   {name} x 6 seeds x {epochs} epochs: one after another {sequential:.1f}s, grouped {grouped:.1f}s "
              f"-> {sequential / grouped:.2f}x (target {target}x) [{how}]")
    result["six_seeds"] = six

    print("3. a second process, and programs per group")
    cfg = config(2, 1, size or 11_000)
    time_first_step(cfg)  # fills the persistent compilation cache, as an earlier run on this machine would
    second = time_first_step(cfg)
    result["second_process"] = {**second, "target_first_chunk_s": 2.0}
    result["programs_for_6_seeds"] = programs_built(config(2, 1, 2048), seeds)
    print(f"   import {second['import_s']:.1f}s, then first chunk of 20 steps after {second['first_chunk_s']:.2f}s "
          f"(target 2s); step programs built for 6 seeds in one process: {result['programs_for_6_seeds']}")
    result["load_average_after"] = os.getloadavg()
    if args.json:
        path = ROOT / args.json
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {path}")


if __name__ == "__main__":
    main()
