"""Seeds of a data directory through the ``group`` backend: how many compiled calls, how many members each,
how long (issue 20 item 29), beside the same runs one after another (``local``).

    DEEPFIT_COMPILE_CACHE=0 .venv/bin/python benchmarks/bench_group_directory.py [--data DIR] [--backend group]

The notebook's leaky_relu network, 3 seeds, 2 epochs, on the official Fashion-MNIST files in DIR
(default ../shared/data/fashion-mnist), in a temporary experiment directory.
"""

import argparse
import tempfile
import time
from pathlib import Path

import deepfit
from deepfit.train import group

parser = argparse.ArgumentParser()
parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"))
parser.add_argument("--backend", default="group", choices=["group", "local"])
args = parser.parse_args()

sizes = []
run_chunk = group.Group._run


def counted(self, members, requests):
    sizes.append(len(members))
    return run_chunk(self, members, requests)


group.Group._run = counted
experiment = {"name": "dir3", "base": str(Path(deepfit.__file__).parent / "configs" / "leaky_relu.toml"),
              "seeds": [0, 1, 2], "variants": [{"name": "leaky", "overrides": {}}],
              "overrides": {"data.source": "directory", "data.path": args.data, "training.epochs": 2}}
with tempfile.TemporaryDirectory() as out:
    started = time.perf_counter()
    deepfit.experiments.runner.compare(experiment, out, backend=args.backend, log=lambda s: None)
    seconds = time.perf_counter() - started
print(f"{args.backend}: {seconds:.1f}s, {len(sizes)} vmapped call(s) of {sizes} member(s)")
