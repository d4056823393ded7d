from __future__ import annotations

import argparse

# What `deepfit plot` can draw: name → (help, function of the parsed args returning written paths).
PLOTS = {
    "activations": "the notebook's activation figures (sigmoid saturation, leaky ReLU, ELU, SELU) and derivatives",
}


def register(sub) -> None:
    p = sub.add_parser("plot", help="draw figures as PNG files",
                       description="Draw figures as PNG files. " + "; ".join(f"{k}: {v}" for k, v in PLOTS.items()),
                       epilog="examples:\n  deepfit plot activations --out figures",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=sorted(PLOTS), help="which figures")
    p.add_argument("--out", default="figures", help="output directory (default: figures)")
    p.set_defaults(handler=run)


def run(args) -> int:
    from deepfit.diagnostics.figures import activation_figures

    for path in activation_figures(args.out):
        print(f"wrote {path}")
    return 0
