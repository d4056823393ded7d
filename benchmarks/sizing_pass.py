"""What the preflight's sizing pass costs beside the real build of a config's model.

The sizing pass builds the model under Keras's StatelessScope without allocating its variables,
so a model too large to allocate is refused before it is allocated; the real build follows.

    .venv/bin/python benchmarks/sizing_pass.py [configs/selu_100.toml]
"""

import sys
import time

import deepfit as df
from deepfit.preflight import _shapes_without_allocating, build_checked

cfg = df.load_config(sys.argv[1] if len(sys.argv) > 1 else "configs/selu_100.toml")
t = time.perf_counter()
_shapes_without_allocating(cfg)
sizing = time.perf_counter() - t
t = time.perf_counter()
build_checked(cfg)
build = time.perf_counter() - t
t = time.perf_counter()
_shapes_without_allocating(cfg)
again = time.perf_counter() - t
print(f"sizing pass {sizing:.3f}s (again {again:.3f}s), real build {build:.3f}s")
