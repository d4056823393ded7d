"""What the prepared-data cache costs and saves: preparing the bundled data, storing it, and opening the
stored copy in a fresh process's way (every file checked against its record: size, shape, dtype, sha256).

    .venv/bin/python benchmarks/bench_data_cache.py [--repeat 3]

Uses a temporary $DEEPFIT_CACHE; the data config is the notebook's (60,000 images, standardized).
"""

import argparse
import os
import tempfile
import time

parser = argparse.ArgumentParser()
parser.add_argument("--repeat", type=int, default=3)
args = parser.parse_args()
os.environ["DEEPFIT_CACHE"] = tempfile.mkdtemp(prefix="deepfit-bench-cache-")

from deepfit.data import cache  # noqa: E402
from deepfit.data.prepare import _PREPARED, load_data  # noqa: E402

config = {"scaling": "standardize"}
t = time.perf_counter()
load_data(config)
first = time.perf_counter() - t
size = sum(p.stat().st_size for p in (cache.cache_root() / "data").rglob("*.npy"))
opens = []
for _ in range(args.repeat):
    _PREPARED.clear()  # as a new process: nothing kept in memory
    t = time.perf_counter()
    load_data(config)
    opens.append(time.perf_counter() - t)
print(f"prepare + store {first:.2f}s; open the stored {size / 1e6:.0f} MB, checked: "
      f"{', '.join(f'{s:.3f}s' for s in opens)}")
