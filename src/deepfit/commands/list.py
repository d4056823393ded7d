from __future__ import annotations

import inspect

import keras

from deepfit.errors import ConfigError
from deepfit.registry import did_you_mean


def _keras(module) -> list[tuple[str, str]]:
    from deepfit.nn.specs import keras_names

    rows = []
    for name in keras_names(module):
        obj = getattr(module, name)
        doc = (inspect.getdoc(obj) or "").strip().splitlines()
        rows.append((name, doc[0] if doc else ""))
    return rows


def _named(module, names: list[str], note: str) -> list[tuple[str, str]]:
    rows = []
    for name in names:
        obj = getattr(module, name, None)
        doc = (inspect.getdoc(obj) or "").strip().splitlines() if obj is not None else []
        rows.append((name, doc[0] if doc else ("chosen by the labels' shape, as Keras does" if name in
                                               ("accuracy", "acc") else "")))
    return rows + ([("", note)] if note else [])


def families() -> dict[str, callable]:
    from deepfit.train.objective import loss_names, metric_names

    from deepfit.nn.specs import LAYERS
    from deepfit.optim.optimizers import OPTIMIZERS
    from deepfit.optim.schedules import SCHEDULES
    from deepfit.train.callbacks import CALLBACKS

    def registry(reg):
        return lambda: [(e.name + (f" ({', '.join(e.aliases)})" if e.aliases else ""), e.doc) for e in reg.entries()]

    return {
        "layers": registry(LAYERS),
        "initializers": lambda: _keras(keras.initializers),
        "activations": lambda: _keras(keras.activations),
        "regularizers": lambda: _keras(keras.regularizers),
        "constraints": lambda: _keras(keras.constraints),
        "optimizers": lambda: [(n, f"keras.optimizers.{c.__name__}") for n, c in OPTIMIZERS.items()],
        "losses": lambda: _named(keras.losses, loss_names(), "loss = { name = ..., from_logits = true } for "
                                 "outputs without softmax/sigmoid"),
        "metrics": lambda: _named(keras.metrics, metric_names(), ""),
        "schedules": registry(SCHEDULES),
        "callbacks": lambda: registry(CALLBACKS)() + [
            (n, "Keras's own, run unchanged") for n in ("ModelCheckpoint", "CSVLogger", "RemoteMonitor")],
        "experiments": lambda: [(e.id, e.title + ("" if e.notebook is None else f" (notebook: {e.notebook})"))
                                for e in __import__("deepfit.experiments.catalog", fromlist=["CATALOG"]).CATALOG],
    }


def register(sub) -> None:
    p = sub.add_parser("list", help="list the names deepfit and Keras resolve",
                       description="List every name a config can use, by family, with a one-line description.")
    p.add_argument("family", nargs="?", help="one of: " + ", ".join(families()))
    p.set_defaults(handler=run)


def run(args) -> int:
    fams = families()
    if args.family and args.family not in fams:
        raise ConfigError(f"unknown family {args.family!r}.{did_you_mean(args.family, list(fams))} "
                          f"Families: {', '.join(fams)}.")
    for fam in [args.family] if args.family else fams:
        print(f"{fam}:")
        for name, doc in fams[fam]():
            print(f"  {name:34s} {doc}")
    return 0
