from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("export", help="make a run's model fast and small for prediction, and measure what it costs",
                       description="Export a finished run's model: fold batch norm, prune, lower the precision, "
                                   "write it as a Keras file or ONNX; export.json sets it against the original "
                                   "(accuracy and loss on validation and test, largest probability change, "
                                   "parameters, non-zero weights, file size, latency at batch 1 and 1000).",
                       epilog="examples:\n  deepfit export runs/batch_norm --fold-batch-norm\n"
                              "  deepfit export runs/selu --prune 0.9 --precision int8 --format onnx\n"
                              "  deepfit export runs/selu --precision float16 --out exports/selu16",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN", help="a finished run directory")
    p.add_argument("--out", help="export directory (default RUN-export-OPTIONS beside the run)")
    p.add_argument("--fold-batch-norm", action="store_true",
                   help="fold BatchNormalization into the Dense layer before or after it (exact; the layers that "
                        "cannot be folded are named)")
    p.add_argument("--prune", type=float, metavar="FRACTION",
                   help="zero this fraction of the Dense kernels' weights, smallest magnitude first (e.g. 0.9)")
    p.add_argument("--prune-scope", choices=("global", "layer"), default="global",
                   help="one threshold over all kernels (global, default: the tiny weights wherever they are) or "
                        "the fraction of each kernel (layer: the small output layer loses as much)")
    p.add_argument("--precision", choices=("float32", "float16", "bfloat16", "int8"), default="float32",
                   help="weights and arithmetic (int8: Keras's quantize for keras, onnxruntime's dynamic "
                        "quantization for onnx)")
    p.add_argument("--format", choices=("keras", "onnx"), default="keras",
                   help="model.keras (run by JAX) or model.onnx (run by onnxruntime; needs deepfit[export])")
    p.add_argument("--calls", type=int, default=200, metavar="N",
                   help="timed warm calls at batch 1 (batch 1000 gets N/10, at least 10; default 200)")
    p.add_argument("--overwrite", action="store_true", help="replace an export directory that holds files")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.deploy import export
    from deepfit.errors import ConfigError

    if args.calls < 1:
        raise ConfigError(f"--calls must be >= 1, got {args.calls}")
    result = export(args.run_dir, args.out, fold_batch_norm=args.fold_batch_norm, prune=args.prune,
                    prune_scope=args.prune_scope, precision=args.precision, format=args.format,
                    latency_calls={1: args.calls, 1000: max(10, args.calls // 10)}, overwrite=args.overwrite)
    print(describe(result.record))
    print(f"exported: {result.file}\nrecord: {result.dir / 'export.json'}")
    return 0


def describe(r: dict) -> str:
    """export.json as a few lines: before and after, side by side."""
    lines = [f"{r['source']} -> {r['file']} ({r['engine']})"]
    for item in r.get("batch_norm", {}).get("not_folded", []):
        lines.append(f"  not folded: {item['layer']}: {item['reason']}")
    if r.get("batch_norm"):
        lines.append(f"  folded {len(r['batch_norm']['folded'])} batch-norm layer(s)")
    rows = []
    for key in ("val_accuracy", "test_accuracy", "val_loss", "test_loss"):
        if key in r.get("metrics", {}).get("before", {}):
            rows.append((key, f"{r['metrics']['before'][key]:.4f}", f"{r['metrics']['after'][key]:.4f}"))
    rows.append(("parameters", f"{r['before']['parameters']:,}", f"{r['after']['parameters']:,}"))
    rows.append(("non-zero weights", f"{r['before']['nonzero']:,}", f"{r['after']['nonzero']:,}"))
    rows.append(("file bytes (gzip)", f"{r['before']['size']['bytes']:,} ({r['before']['size']['gzip_bytes']:,})",
                 f"{r['after']['size']['bytes']:,} ({r['after']['size']['gzip_bytes']:,})"))
    for b in ("batch_1", "batch_1000"):
        before, after = r["latency"]["before"][b], r["latency"]["after"][b]
        rows.append((f"latency {b.replace('_', ' ')} (median / p90)",
                     f"{before['median_s'] * 1e3:.3f} / {before['p90_s'] * 1e3:.3f} ms",
                     f"{after['median_s'] * 1e3:.3f} / {after['p90_s'] * 1e3:.3f} ms"))
    width = max(len(k) for k, _, _ in rows)
    lines.append(f"  {'':{width}}  {'before':>24}  {'after':>24}")
    lines += [f"  {k:{width}}  {a:>24}  {b:>24}" for k, a, b in rows]
    if "max_probability_change" in r:
        lines.append(f"  largest change of a predicted probability: {r['max_probability_change']['all']:.3g}")
    if "onnx_vs_keras" in r:
        lines.append(f"  onnxruntime vs Keras (same float32 model): {r['onnx_vs_keras']['max_probability_difference']:.3g}")
    lines.append(f"  load average {r['latency']['load']['before']:.2f} -> {r['latency']['load']['after']:.2f} "
                 f"on {r['latency']['load']['cpus']} CPUs")
    return "\n".join(lines)
