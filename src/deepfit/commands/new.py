from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("new", help="write a commented config from the chapter's default configurations",
                       description="Write a TOML config that follows one of the chapter's tables of defaults "
                                   "(Table 11-3: default; Table 11-4: self_normalizing), each line saying which "
                                   "row it follows. It trains as it is.",
                       epilog="examples:\n  deepfit new --list\n  deepfit new default --out my.toml\n"
                              "  deepfit new self_normalizing --depth 20 --out deep.toml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", nargs="?", help="default or self_normalizing (see --list)")
    p.add_argument("--out", help="the config file to write (default: print it)")
    p.add_argument("--depth", type=int, default=2, help="hidden layers (default 2: the notebook's 300-100)")
    bn = p.add_mutually_exclusive_group()
    bn.add_argument("--batch-norm", dest="batch_norm", action="store_const", const=True,
                    help="batch norm after each hidden layer even if shallow (default: the table's rule)")
    bn.add_argument("--no-batch-norm", dest="batch_norm", action="store_const", const=False,
                    help="no batch norm even if deep")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--list", action="store_true", help="list the presets")
    p.set_defaults(handler=run, batch_norm=None)


def run(args) -> int:
    from deepfit.errors import ConfigError
    from deepfit.io import write_atomic
    from deepfit.presets import DEEP_FROM, PRESETS, render

    if args.list or args.preset is None:
        for p in PRESETS.values():
            print(f"  {p.name:18s} {p.table}, {p.title}: {p.summary}")
        print(f"  (--depth N hidden layers; batch norm from {DEEP_FROM} on, as the table's 'if deep')")
        return 0
    text = render(args.preset, args.depth, args.batch_norm)
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{str(out)!r} exists; choose another --out or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text)
    print(f"wrote {out} ({PRESETS[args.preset].table}, {args.depth} hidden layers); train it with: "
          f"deepfit train {out}")
    return 0
