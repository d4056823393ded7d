from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("transfer", help="the notebook's transfer experiment: task A, B from scratch, B on A",
                       description="Train task A, then task B from scratch and task B on A's layers "
                                   "(the third config's model.from_run is set to the new task A run), "
                                   "and print the test accuracies beside the notebook's.",
                       epilog="examples:\n  deepfit transfer --out runs/transfer --seed 1\n"
                              "  deepfit transfer --task-a-run runs/transfer/task_a --out runs/transfer-b2 --seed 2",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override a value in all three configs, e.g. training.epochs=2")
    p.add_argument("--task-a", default="configs/task_a.toml", help="task A config (default configs/task_a.toml)")
    p.add_argument("--scratch", default="configs/task_b_scratch.toml",
                   help="task B from scratch config (default configs/task_b_scratch.toml)")
    p.add_argument("--on-a", default="configs/task_b_on_a.toml",
                   help="task B on A config (default configs/task_b_on_a.toml)")
    p.add_argument("--task-a-run", help="reuse this finished task A run instead of training A")
    p.add_argument("--out", default="runs/transfer", help="directory for the three runs (default runs/transfer)")
    p.add_argument("--seed", type=int, help="seed for all three runs (default: each config's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing run directories")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.transfer_study import run_transfer

    overrides = list(args.overrides) + (["training.progress=false"] if args.no_progress else [])
    s = run_transfer(args.task_a, args.scratch, args.on_a, args.out, seed=args.seed,
                     task_a_run=args.task_a_run, overrides=overrides, overwrite=args.overwrite)
    nb = s["notebook"]
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"seed {s['seed']}                 deepfit   notebook (one run)")
    print(f"task A val accuracy      {fmt(s['task_a']['val_accuracy'])}    {nb['task_a_val_accuracy']:.4f}")
    print(f"B from scratch, test acc {fmt(s['task_b_scratch']['test_accuracy'])}    "
          f"{nb['task_b_scratch_test_accuracy']:.4f}")
    print(f"B on A, test acc         {fmt(s['task_b_on_a']['test_accuracy'])}    {nb['task_b_on_a_test_accuracy']:.4f}")
    print(f"summary: {args.out}/summary.json (one seed proves nothing: compare over seeds)")
    return 0
