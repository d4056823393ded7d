"""The table of `deepfit export` on the notebook's batch-norm network and on a SELU 300-100 network.

Trains each network once at the notebook's protocol (configs/batch_norm.toml: 10 epochs of SGD 1e-3;
configs/baselines/max_norm_free.toml: 784-300-100-10 SELU + LeCun, Nadam, 2 epochs; seed 0), then exports
it with each option, as a Keras file (run by JAX jit) and as ONNX (run by onnxruntime), and collects
export.json: test accuracy before and after, the largest change of a predicted probability, file size,
non-zero weights, and latency at batch 1 and 1000 (median and p90 of warm calls, the exported model and
the original timed in alternation in the same rounds, same format and engine; the ratio is after/before).

    .venv/bin/python benchmarks/bench_export.py                   # -> benchmarks/results/export.json
    .venv/bin/python benchmarks/bench_export.py --train-size 5000 # a quicker look (not the protocol)

Latency is this machine's at the time (the load average is recorded with every row): quote ratios
from one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import deepfit as df

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NETWORKS = {"batch_norm": CONFIGS / "batch_norm.toml", "selu_300_100": CONFIGS / "baselines" / "max_norm_free.toml"}
OPTIONS = [  # (label, export options, formats)
    ("none", {}, ("keras", "onnx")),
    ("fold", {"fold_batch_norm": True}, ("keras", "onnx")),
    ("prune 0.9 global", {"prune": 0.9}, ("keras", "onnx")),
    ("prune 0.9 per layer", {"prune": 0.9, "prune_scope": "layer"}, ("keras",)),
    ("float16", {"precision": "float16"}, ("keras", "onnx")),
    ("bfloat16", {"precision": "bfloat16"}, ("keras",)),  # onnxruntime has no bfloat16 CPU kernels
    ("int8", {"precision": "int8"}, ("keras", "onnx")),
    ("fold + int8", {"fold_batch_norm": True, "precision": "int8"}, ("keras", "onnx")),
]


def row(network: str, label: str, fmt: str, r: dict) -> dict:
    lat = r["latency"]
    return {
        "network": network, "options": label, "format": fmt, "engine": r["engine"],
        "test_accuracy_before": r["metrics"]["before"]["test_accuracy"],
        "test_accuracy_after": r["metrics"]["after"]["test_accuracy"],
        "max_probability_change": r["max_probability_change"]["all"],
        "bytes_before": r["before"]["size"]["bytes"], "bytes_after": r["after"]["size"]["bytes"],
        "gzip_bytes_after": r["after"]["size"]["gzip_bytes"],
        "nonzero_before": r["before"]["nonzero"], "nonzero_after": r["after"]["nonzero"],
        **{f"{w}_{b}_{q}": lat[w][b][q] for w in ("before", "after") for b in ("batch_1", "batch_1000")
           for q in ("median_s", "p90_s")},
        "ratio_batch_1": lat["ratio_batch_1"], "ratio_batch_1000": lat["ratio_batch_1000"],
        "load": lat["load"], "onnx_vs_keras": r.get("onnx_vs_keras", {}).get("max_probability_difference"),
        "not_folded": [k["layer"] for k in r.get("batch_norm", {}).get("not_folded", [])],
    }


def markdown(rows: list[dict]) -> str:
    head = ("| network | options | format (engine) | test acc before → after | max Δp | bytes (gzip) | non-zero | "
            "batch 1 median / p90 µs (× before) | batch 1000 median / p90 ms (× before) | load |")
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['options']} | {r['format']} ({r['engine'].split(' (')[0]}) | "
            f"{r['test_accuracy_before']:.4f} → {r['test_accuracy_after']:.4f} | {r['max_probability_change']:.2g} | "
            f"{r['bytes_after']:,} ({r['gzip_bytes_after']:,}) | {r['nonzero_after']:,} | "
            f"{r['after_batch_1_median_s'] * 1e6:.0f} / {r['after_batch_1_p90_s'] * 1e6:.0f} (×{r['ratio_batch_1']:.2f}) | "
            f"{r['after_batch_1000_median_s'] * 1e3:.2f} / {r['after_batch_1000_p90_s'] * 1e3:.2f} "
            f"(×{r['ratio_batch_1000']:.2f}) | {r['load']['before']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, help="train on fewer images (a quick look; not the protocol)")
    parser.add_argument("--calls", type=int, default=200, help="timed calls at batch 1 (batch 1000: a tenth)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "export.json"))
    args = parser.parse_args()
    started, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        for network, config in NETWORKS.items():
            overrides = {"training.progress": False, "seed": 0}
            if args.train_size:
                overrides["data.train_size"] = args.train_size
            run = df.train(config, out=Path(tmp) / network, overrides=overrides)
            print(f"{network}: trained, val_accuracy {run.final['last']['val_accuracy']:.4f}", flush=True)
            for label, options, formats in OPTIONS:
                if options.get("fold_batch_norm") and network != "batch_norm":
                    continue
                for fmt in formats:
                    result = df.export(run.dir, Path(tmp) / f"{network}-{len(rows)}", format=fmt,
                                       latency_calls={1: args.calls, 1000: max(10, args.calls // 10)}, **options)
                    rows.append(row(network, label, fmt, result.record))
                    print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    table = markdown(rows)
    Path(args.out).write_text(json.dumps({
        "command": "benchmarks/bench_export.py" + (f" --train-size {args.train_size}" if args.train_size else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "seconds": time.perf_counter() - started,
        "rows": rows, "markdown": table}, indent=1) + "\n")
    print(table)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
