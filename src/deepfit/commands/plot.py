from __future__ import annotations

import argparse
from pathlib import Path

# What `deepfit plot` can draw: name → help. Anything else is read as a run directory.
PLOTS = {
    "activations": "the notebook's activation figures (sigmoid saturation, leaky ReLU, ELU, SELU) and derivatives",
    "RUN": "a run directory: its learning curves (every metric of metrics.csv by epoch, as the notebook "
           "plots pd.DataFrame(history.history))",
}


def register(sub) -> None:
    p = sub.add_parser("plot", help="draw figures as PNG files",
                       description="Draw figures as PNG files. " + "; ".join(f"{k}: {v}" for k, v in PLOTS.items()),
                       epilog="examples:\n  deepfit plot activations --out figures\n"
                              "  deepfit plot runs/leaky             # -> runs/leaky/figures/learning_curves.png",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", help="'activations', or a run directory")
    p.add_argument("--out", help="output directory (default: figures, or the run's figures/)")
    p.set_defaults(handler=run)


def learning_curves(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """The notebook's learning-curve figure of a finished (or running) run, from its metrics.csv."""
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules:  # keep a notebook's inline backend
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from deepfit.errors import ConfigError

    d = Path(run_dir)
    metrics = d / "metrics.csv"
    if not metrics.is_file() or not metrics.stat().st_size:
        raise ConfigError(f"{str(d)!r} is not a run directory with epochs recorded (no metrics.csv); "
                          f"plot one of: {', '.join(k for k in PLOTS if k != 'RUN')}, or a run directory")
    frame = pd.read_csv(metrics).set_index("epoch")
    frame = frame[[c for c in frame.columns if c not in ("learning_rate", "seconds")]]
    fig, ax = plt.subplots(figsize=(8, 5))
    frame.plot(ax=ax)
    ax.grid(True)
    ax.set_xlabel("epoch")
    if frame.max().max() <= 1.5:
        ax.set_ylim(0, 1)
    ax.set_title(d.name)
    target = Path(out) if out is not None else d / "figures"
    target.mkdir(parents=True, exist_ok=True)
    path = target / "learning_curves.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def run(args) -> int:
    if args.what == "activations":
        from deepfit.diagnostics.figures import activation_figures

        for path in activation_figures(args.out or "figures"):
            print(f"wrote {path}")
        return 0
    print(f"wrote {learning_curves(args.what, args.out)}")
    return 0
