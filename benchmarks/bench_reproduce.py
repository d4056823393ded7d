"""Wall time of ``deepfit reproduce`` (the demo or the whole chapter), and where it goes.

Runs ``deepfit reproduce --MODE --out DIR`` in a fresh process (its wall time includes start-up,
every experiment, MC dropout, the LR finder and the report), then reads each experiment's
``finals.csv``: per experiment the runs and the seconds they trained (summed over its runs;
the runs of several experiments overlap on the workers, so these add up to more than the wall
time). Writes ``benchmarks/results/reproduce_MODE.json`` with the commit and the load average.

    .venv/bin/python benchmarks/bench_reproduce.py --mode demo --cold # empty compile and data caches
    .venv/bin/python benchmarks/bench_reproduce.py --mode full        # 345 runs until decided: an hour or more
    .venv/bin/python benchmarks/bench_reproduce.py --mode full --existing runs/reproduce-full --wall 1234

``--existing`` reads a reproduction already made (its wall time given by ``--wall``, e.g. from
``time``), so a measurement is not paid twice. ``--cold`` points ``DEEPFIT_CACHE`` at an empty folder, so
the compiled programs and prepared data are made from scratch, as on a fresh machine. The demo's target is
its training time (``train_seconds``: from the start to the last run filed, the rate rule included).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def per_experiment(out: Path) -> dict[str, dict]:
    rows = {}
    for finals in sorted(out.glob("*/finals.csv")):
        table = pd.read_csv(finals)
        rows[finals.parent.name] = {"runs": len(table), "run_seconds": float(table["train_seconds"].sum()),
                                    "backend": sorted(set(map(str, table.get("backend", pd.Series(["?"])))))}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["demo", "full"], default="demo")
    parser.add_argument("--out", help="reproduction directory (default: a fresh temporary one under runs/)")
    parser.add_argument("--existing", help="read this finished reproduction instead of running one")
    parser.add_argument("--wall", type=float, help="with --existing: its wall time in seconds")
    parser.add_argument("--json", help="default benchmarks/results/reproduce_MODE.json")
    parser.add_argument("--cold", action="store_true", help="empty compile and data caches (a fresh DEEPFIT_CACHE)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.existing:
        out, wall = Path(args.existing), args.wall
    else:
        out = Path(args.out or ROOT / "runs" / f"bench-reproduce-{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}")
        env = dict(os.environ)
        if args.cold:
            import tempfile

            env["DEEPFIT_CACHE"] = tempfile.mkdtemp(prefix="deepfit-cold-cache-")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "deepfit", "reproduce", f"--{args.mode}", "--out", str(out)],
                       check=True, cwd=ROOT, env=env)
        wall = time.perf_counter() - started
    provenance = json.loads((out / "provenance.json").read_text())
    experiments = per_experiment(out)
    result = {"mode": args.mode, "wall_seconds": wall, "train_seconds": provenance.get("train_seconds"),
              "runs": provenance.get("runs"), "cold_caches": bool(args.cold), "rounds": provenance.get("rounds"),
              "target_seconds": {"demo": 150, "full": 720}[args.mode],
              "commit": provenance.get("commit"), "date": provenance.get("date"), "machine": provenance.get("machine"),
              "devices": provenance.get("devices"), "load_average_before": load_before,
              "load_average_after": os.getloadavg(), "experiments": experiments,
              "run_seconds_total": sum(e["run_seconds"] for e in experiments.values())}
    path = Path(args.json or ROOT / "benchmarks" / "results" / f"reproduce_{args.mode}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, experiments), default=10)
    for name, e in sorted(experiments.items(), key=lambda kv: -kv[1]["run_seconds"]):
        print(f"{name:{width}s} {e['runs']:3d} runs {e['run_seconds']:8.1f} s of training")
    trained = result["train_seconds"]
    print(f"training {trained:.0f} s (target {result['target_seconds']} s), wall {wall:.0f} s; written {path}"
          if trained is not None else f"wall {wall:.0f} s; written {path}")


if __name__ == "__main__":
    main()
