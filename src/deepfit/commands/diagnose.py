from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "diagnose", help="are my gradients vanishing or exploding? per-layer statistics and a verdict",
        description="Record per-layer activation mean/std, saturated and dead units, gradient norms and "
                    "update ratios at initialization and over a short training; print a table and a verdict. "
                    "--selu-demo runs the notebook's 1,000-layer self-normalization demo instead.",
        epilog="examples:\n  deepfit diagnose configs/relu_100.toml --steps 200 --out runs/diag-relu\n"
               "  deepfit diagnose --selu-demo --out runs/selu-demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="a TOML config file")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a config value by dotted path")
    p.add_argument("--steps", type=int, default=200, help="training steps after initialization (default 200)")
    p.add_argument("--every", type=int, help="record every N steps (default: steps // 20)")
    p.add_argument("--out", help="write layer_stats.csv, verdict.txt and figures to this directory")
    p.add_argument("--selu-demo", action="store_true",
                   help="the notebook's 1,000 SELU layers (cell 21) beside other activation + init pairs")
    p.add_argument("--layers", type=int, default=1000, help="depth of the --selu-demo networks (default 1000)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from rich.console import Console

    from deepfit.errors import ConfigError

    console = Console()
    if args.selu_demo:
        return selu_demo(args, console)
    if not args.config:
        raise ConfigError("diagnose needs a CONFIG file (or --selu-demo)")
    from deepfit.diagnostics.diagnose import diagnose, rich_table

    result = diagnose(args.config, args.steps, overrides=args.overrides, every_n_steps=args.every, out=args.out)
    console.print(rich_table(result.at(0), "at initialization"))
    console.print(rich_table(result.at(), f"after {result.steps} steps"))
    console.print(f"[bold]at initialization:[/bold] {result.initial.text()}")
    console.print(f"[bold]after {result.steps} steps:[/bold] {result.final.text()}")
    for path in result.figures:
        console.print(f"wrote {path}")
    return 0


def selu_demo(args, console) -> int:
    from pathlib import Path

    import keras

    from deepfit.diagnostics.selu_demo import ALPHA, SCALE, format_table, run_all
    from deepfit.errors import ConfigError

    if args.layers < 1:
        raise ConfigError(f"--layers must be >= 1, got {args.layers}")
    results = run_all(layers=args.layers)
    console.print(format_table(results))
    # Keras's own constants, read off its selu: scale = selu(1), alpha = -selu(-inf) / scale.
    keras_scale = float(keras.activations.selu(keras.ops.convert_to_tensor([1.0]))[0])
    keras_alpha = -float(keras.activations.selu(keras.ops.convert_to_tensor([-50.0]))[0]) / keras_scale
    console.print(f"SELU constants from erfc (Klambauer et al. 2017, eq. 14): alpha {ALPHA:.8f}, scale {SCALE:.8f}; "
                  f"Keras {keras.__version__}: alpha {keras_alpha:.6f}, scale {keras_scale:.6f} (float32)")
    if args.out:
        from deepfit.diagnostics.figures import demo_figure

        console.print(f"wrote {demo_figure(results, Path(args.out) / 'selu_demo.png')}")
    return 0
