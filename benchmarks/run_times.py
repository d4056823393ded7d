"""What a reproduction's runs cost, and what they would cost at another reproduction's speed.

A reproduction that was resumed, or shared its machine, has no honest wall time of its own; its runs' own
training times (``train_seconds`` in each experiment's finals table) remain. This prints, per experiment,
the runs and their median seconds in ``NEW`` beside ``OLD`` (e.g. an earlier run on a quiet machine), the
median ratio, and an estimate of ``NEW``'s wall time on ``--workers`` workers with each experiment's runs at
the faster of the two medians.

    .venv/bin/python benchmarks/run_times.py docs/results/tables /tmp/old/tables
    # OLD from a commit: mkdir /tmp/old && git archive e0c02c2 docs/results/tables | tar -x -C /tmp/old --strip-components=2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def medians(folder: Path) -> pd.DataFrame:
    rows = []
    for finals in sorted(folder.glob("*-finals.csv")):
        seconds = pd.read_csv(finals)["train_seconds"]
        rows.append({"id": finals.name.removesuffix("-finals.csv"), "runs": len(seconds),
                     "median_s": float(seconds.median()), "sum_s": float(seconds.sum())})
    return pd.DataFrame(rows).set_index("id")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path, help="a folder of <id>-finals.csv (a published reproduction's tables/)")
    parser.add_argument("old", type=Path, help="the same for the reproduction to compare with")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    new, old = medians(args.new), medians(args.old)
    table = new.join(old[["runs", "median_s"]].add_suffix("_old"))
    table["ratio"] = table["median_s"] / table["median_s_old"]
    faster = table[["median_s", "median_s_old"]].min(axis=1)
    print(table.round(2).to_string())
    print(f"\n{int(table['runs'].sum())} runs, {table['sum_s'].sum() / 60:.0f} min of training summed over runs; "
          f"median ratio of per-run times to OLD: {table['ratio'].median():.2f} (over {table['ratio'].count()} "
          f"experiments in both); at the faster median of each experiment, about "
          f"{(table['runs'] * faster).sum() / args.workers / 60:.0f} min on {args.workers} workers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
