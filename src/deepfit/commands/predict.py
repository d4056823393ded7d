from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict with a finished run; MC dropout uncertainty; calibration",
                       description="Predict a split of a run's data with its model: a CSV of predictions "
                                   "(with MC dropout: mean, std, predictive entropy, mutual information), "
                                   "a reliability diagram, and accuracy / NLL / ECE printed.",
                       epilog="examples:\n  deepfit predict runs/dropout --mc 100\n"
                              "  deepfit predict runs/task_b --data valid --out preds.csv",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--data", default="test", choices=("train", "valid", "test"), help="which split (default test)")
    p.add_argument("--mc", type=int, default=0, metavar="N",
                   help="also N stochastic passes with dropout on (MC dropout); 0: deterministic only")
    p.add_argument("--seed", type=int, default=0, help="seed of the MC dropout masks (default 0)")
    p.add_argument("--out", help="CSV file (default RUN_DIR/predictions-SPLIT.csv)")
    p.add_argument("--figure", help="reliability diagram PNG (default RUN_DIR/figures/reliability-SPLIT.png)")
    p.add_argument("--bins", type=int, default=15, help="equal-width confidence bins for ECE (default 15)")
    p.add_argument("--batch-size", type=int, default=250, help="inputs per compiled call (default 250)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.errors import ConfigError
    from deepfit.predictions import predict_run

    if args.mc < 0 or args.bins < 1 or args.batch_size < 1:
        raise ConfigError(f"--mc must be >= 0, --bins and --batch-size >= 1 (got {args.mc}, {args.bins}, "
                          f"{args.batch_size})")
    result = predict_run(args.run_dir, args.data, args.mc, seed=args.seed, out=args.out, figure=args.figure,
                         bins=args.bins, batch_size=args.batch_size)
    rows = [("deterministic", result["deterministic"])]
    if "mc" in result:
        rows.append((f"MC dropout ({args.mc} passes)", result["mc"]))
    print(f"{result['split']}: {result['n']} inputs; ECE over {result['bins']} equal-width confidence bins")
    for name, m in rows:
        print(f"  {name:28s} accuracy {m['accuracy']:.4f}  NLL {m['nll']:.4f}  ECE {m['ece']:.4f}")
    print(f"predictions: {result['csv']}\nreliability diagram: {result['figure']}")
    return 0
