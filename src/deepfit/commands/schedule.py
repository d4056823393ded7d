from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("schedule", help="plot a config's learning-rate (and momentum) schedule before training",
                       description="Plot the learning rate (and 1cycle's momentum) over the planned steps, x in "
                                   "epochs, without training. Given a run directory instead of a config, plot its "
                                   "recorded rate and validation loss (the notebook's plateau figure).",
                       epilog="examples:\n  deepfit schedule configs/one_cycle.toml --out one_cycle.png\n"
                              "  deepfit schedule runs/plateau --out plateau.png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a TOML config file, or a run directory (plateau figure)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a config value by dotted path")
    p.add_argument("--out", required=True, help="the PNG file to write")
    p.add_argument("--steps-per-epoch", type=int, help="plan with this many steps an epoch instead of the data's")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.config import load_config
    from deepfit.errors import ConfigError
    from deepfit.optim.figures import plot_plateau, plot_schedule
    from deepfit.optim.plan import make_optimizer_and_schedule
    from deepfit.optim.schedules import make_schedule

    if Path(args.config).is_dir():
        out = plot_plateau(Path(args.config), args.out)
        print(f"wrote {out}")
        return 0
    cfg = load_config(args.config, args.overrides)
    t = cfg.training
    spe = args.steps_per_epoch
    if spe is None:
        from deepfit.data.prepare import load_data

        spe = -(-len(load_data(cfg.data).x_train) // t.batch_size)
    if spe < 1:
        raise ConfigError(f"--steps-per-epoch must be at least 1, got {spe}")
    optimizer, schedule = make_optimizer_and_schedule(t, spe)
    if schedule is None:
        schedule = make_schedule("constant", spe, t.epochs, float(optimizer.learning_rate))
    out = plot_schedule(schedule, spe, t.epochs, args.out)
    starts = [int(e * spe) for e in range(t.epochs)]
    rates = [float(r) for r in schedule(starts)]
    print(f"{schedule.name}: {t.epochs} epochs x {spe} steps; rate at epoch starts "
          + ", ".join(f"{r:.3g}" for r in rates[:6]) + (" ..." if len(rates) > 6 else ""))
    if any("plateau" in str(c.get("name", "")) for c in t.callbacks if isinstance(c, dict)):
        print("note: reduce_lr_on_plateau multiplies this rate at run time, as the validation loss dictates")
    print(f"wrote {out}")
    return 0
