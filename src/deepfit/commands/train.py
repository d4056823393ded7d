from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("train", help="train what a config describes; write a run directory",
                       description="Train a network from a TOML config and record the run in a directory.",
                       epilog="examples:\n  deepfit train configs/leaky_relu.toml --out runs/lr\n"
                              "  deepfit train configs/dropout.toml --seed 3 --epochs 2 training.batch_size=64\n"
                              "  deepfit train configs/leaky_relu.toml --out runs/lr --resume   # after a crash\n"
                              "  deepfit train runs/lr --resume --epochs 20                   # 20 epochs in all",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a TOML config file, or a run directory (with --resume: continue or, with "
                                   "--epochs N, extend it)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override a config value by dotted path, e.g. training.epochs=5")
    p.add_argument("--out", help="run directory (default: runs/NAME-TIMESTAMP)")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (a finished run: nothing to do)")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="do not back the training state up at each epoch's end (then --resume restarts)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.run import train

    from pathlib import Path

    if Path(args.config).is_dir():  # a run directory: its own config, its own directory
        args.out = args.out or args.config
        args.config = str(Path(args.config) / "config.toml")
    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.epochs is not None:
        overrides.append(f"training.epochs={args.epochs}")
    if args.no_progress:
        overrides.append("training.progress=false")
    result = train(args.config, out=args.out, overrides=overrides, overwrite=args.overwrite,
                   resume=args.resume, checkpoint=not args.no_checkpoint)
    if result.resume_note:
        print(result.resume_note, file=sys.stderr)
    final = result.final
    last = final.get("last", {})
    print(f"run: {result.dir}")
    if "val_accuracy" in last:
        kept = f"; weights of epoch {final['restored_epoch']} restored" if final.get("restored_epoch") else ""
        print(f"val_accuracy {last['val_accuracy']:.4f}  val_loss {last['val_loss']:.4f}  "
              f"after {final['epochs_run']} epochs ({final['seconds']:.1f}s{kept})")
    if "test_accuracy" in final:
        print(f"test_accuracy {final['test_accuracy']:.4f}")
    if final["status"] == "diverged":
        print(f"deepfit: training diverged: {final['stop_reason']}", file=sys.stderr)
        if "last_good_checkpoint" in final.get("divergence", {}):
            print(f"the last good state is kept in {result.dir / final['divergence']['last_good_checkpoint']}; "
                  f"no model was saved", file=sys.stderr)
        return 1
    if final["stop_reason"]:
        print(final["stop_reason"])
    return 0
