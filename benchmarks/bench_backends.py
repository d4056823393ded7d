"""Backends on this machine: one in-process driver vs a pool of single-threaded workers.

The same small experiment (300-100 SELU, 5,000 images, 3 epochs, 2 variants x 2 seeds) through
``deepfit.compare`` with ``--backend local`` and ``--backend pool --jobs N``; per-run metrics are
checked equal, then the wall time of each is printed with the ratio. This decides the default
backend (``local``) on a 2-core machine; rerun it on yours.

    .venv/bin/python benchmarks/bench_backends.py [--jobs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import deepfit as df

EXPERIMENT = {
    "name": "bench_backends",
    "seeds": [0, 1],
    "base": {
        "data": {"train_size": 5000, "validation_size": 1000, "scaling": "standardize"},
        "model": {"input_shape": [28, 28], "layers": [
            {"type": "flatten"},
            {"type": "dense", "units": 300, "activation": "selu", "kernel_initializer": "lecun_normal"},
            {"type": "dense", "units": 100, "activation": "selu", "kernel_initializer": "lecun_normal"},
            {"type": "dense", "units": 10, "activation": "softmax"}]},
        "training": {"epochs": 3, "optimizer": {"name": "sgd", "learning_rate": 1e-3}, "progress": False},
    },
    "variants": [{"name": "a"}, {"name": "b", "overrides": {"training.batch_size": 64}}],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    seconds, finals = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("local", "pool"):
            started = time.perf_counter()
            result = df.compare(EXPERIMENT, out=Path(tmp) / backend, backend=backend, jobs=args.jobs, report=False)
            seconds[backend] = time.perf_counter() - started
            finals[backend] = result.finals.sort_values(["variant", "seed"])["val_accuracy"].tolist()
    assert finals["local"] == finals["pool"], "backends disagree"
    print(f"local (1 process, XLA's threads)    {seconds['local']:.1f} s")
    print(f"pool  ({args.jobs} workers, 1 thread each) {seconds['pool']:.1f} s")
    print(f"ratio pool/local {seconds['pool'] / seconds['local']:.2f} (>1: the in-process default is faster)")


if __name__ == "__main__":
    main()
