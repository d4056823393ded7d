"""Per-epoch training losses of two of the notebook's configs (seed 0), to compare checkouts.

A change that must not move the numerics (a refactor of the core) gives the same lines on both:

    PYTHONPATH=/path/to/old/src .venv/bin/python benchmarks/same_numbers.py old
    .venv/bin/python benchmarks/same_numbers.py new
"""

import sys

import deepfit as df

for name in ("max_norm", "l2"):
    run = df.train(f"configs/{name}.toml", save=False, overrides={"training.progress": False, "seed": 0})
    print(sys.argv[1] if len(sys.argv) > 1 else "this", name,
          [round(float(r["loss"]), 8) for r in run.history_rows], run.final["last"]["val_accuracy"])
