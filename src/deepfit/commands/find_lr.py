from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("find-lr", help="sweep the learning rate over one epoch; plot loss vs rate; suggest one",
                       description="The learning-rate finder: grow the rate geometrically from --min-rate to "
                                   "--max-rate over one epoch (or --steps batches), stop when the smoothed loss "
                                   "passes 4x its best or is not finite, and suggest a rate read off the loss "
                                   "averaged without lag: for a 1cycle config the rate of the lowest loss (its "
                                   "max_rate), else a tenth of it (--rule to choose). Nothing is trained for keeps.",
                       epilog="examples:\n  deepfit find-lr configs/one_cycle.toml --out runs/lr\n"
                              "  deepfit find-lr configs/power.toml --steps 300 --apply",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a TOML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a config value by dotted path")
    p.add_argument("--out", default=None, help="directory for lr_finder.png / .json (default: runs/NAME-lr)")
    p.add_argument("--min-rate", type=float, default=1e-5)
    p.add_argument("--max-rate", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=None, help="batches to sweep (default: one epoch)")
    p.add_argument("--rule", choices=["minimum", "minimum/10", "steepest"], default=None,
                   help="how to suggest (default: minimum for 1cycle's max_rate, else minimum/10)")
    p.add_argument("--apply", action="store_true",
                   help="write a copy of the config with the suggested rate (1cycle: max_rate) into --out")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.config import dump_toml, load_config
    from deepfit.io import write_atomic
    from deepfit.lr_finder import apply_suggestion, find_lr, save_result

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out or Path("runs") / f"{cfg.name or Path(args.config).stem}-lr")
    result = find_lr(cfg, min_rate=args.min_rate, max_rate=args.max_rate, steps=args.steps, rule=args.rule)
    files = save_result(result, out)
    print(f"swept {len(result.rates)} steps, rate {result.rates[0]:.3g} -> {result.rates[-1]:.3g}; "
          f"stopped: {result.stop_reason}")
    if result.suggestion is None:
        print(f"no suggestion: {result.reason}")
    else:
        print(f"suggested learning rate: {result.suggestion:.4g} (rule {result.rule}: {result.reason})")
    for f in files:
        print(f"wrote {f}")
    if args.apply:
        if result.suggestion is None:
            print("--apply: nothing written (no suggestion)")
            return 1
        target = out / f"{Path(args.config).stem}-lr.toml"
        write_atomic(target, dump_toml(apply_suggestion(cfg, result.suggestion)))
        print(f"wrote {target}")
    return 0
