"""The pilot that fixed the l1 strengths (and FTRL's rate) of configs/last_page/ before any full run.

On 10,000 training images for 4 epochs, scored on the validation split (never the test images the
last-page claims are judged on), for each method (Adam + l1 on every kernel; FTRL with its own l1):
the dense validation accuracy and the accuracy after zeroing the smallest fraction of the kernels'
weights (one global threshold) along a grid. The rule: for each method, the strongest l1 (FTRL: with
its rate) whose dense accuracy is within 1 point of the best dense accuracy of that method's grid.

    .venv/bin/python benchmarks/pilot_l1.py     # -> benchmarks/results/pilot_l1.json (about 10 min here)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import deepfit as df
from deepfit.deploy.engines import JaxPredictor
from deepfit.nn.sparsity import prune, sparsity

BASE = Path(__file__).resolve().parents[1] / "configs" / "last_page" / "dense_adam.toml"
PILOT = {"data.train_size": 10_000, "training.epochs": 4, "training.progress": False}
FRACTIONS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)
GRID = [("adam", {"name": "adam"}, l1) for l1 in (0.0, 1e-5, 1e-4, 1e-3)]
GRID += [("ftrl", {"name": "ftrl", "learning_rate": lr, "l1_regularization_strength": l1}, l1)
         for lr in (0.05, 0.2) for l1 in (0.001, 0.01, 0.05)]


def curve(model, x, y):
    weights, out = model.get_weights(), []
    for f in FRACTIONS:
        model.set_weights(weights)
        if f:
            prune(model, f, "global")
        accuracy = float((JaxPredictor(model).predict(x).argmax(1) == y).mean())
        out.append({"fraction": f, "sparsity": sparsity(model)["fraction"], "val_accuracy": accuracy})
    model.set_weights(weights)
    return out


def main() -> None:
    data = df.load_data(df.load_config(BASE, PILOT).data)
    rows = []
    for method, optimizer, l1 in GRID:
        overrides = {**PILOT, "training.optimizer": optimizer}
        if method == "adam" and l1:
            for i in (1, 2, 3):
                overrides[f"model.layers.{i}.kernel_regularizer"] = {"name": "l1", "l1": l1}
        started = time.perf_counter()
        run = df.train(BASE, overrides=overrides, data=data, save=False)
        points = curve(run.model, data.x_valid, data.y_valid)
        rows.append({"method": method, "optimizer": optimizer, "l1": l1, "dense_val_accuracy": points[0]["val_accuracy"],
                     "natural_sparsity": run.final["sparsity"]["fraction"], "curve": points,
                     "seconds": time.perf_counter() - started})
        print(f"{method} {optimizer} l1={l1:g}: dense {points[0]['val_accuracy']:.4f}, natural sparsity "
              f"{rows[-1]['natural_sparsity']:.3f}; " + " ".join(f"{p['fraction']:g}:{p['val_accuracy']:.3f}"
                                                                  for p in points[1:]), flush=True)
    chosen = {}
    for method in ("adam", "ftrl"):
        mine = [r for r in rows if r["method"] == method and r["l1"] > 0]
        best = max(r["dense_val_accuracy"] for r in mine)
        ok = [r for r in mine if r["dense_val_accuracy"] >= best - 0.01]
        pick = max(ok, key=lambda r: (r["l1"], r["dense_val_accuracy"]))
        chosen[method] = {"optimizer": pick["optimizer"], "l1": pick["l1"], "dense_val_accuracy": pick["dense_val_accuracy"]}
        print(f"chosen for {method}: {chosen[method]}")
    target = Path(__file__).parent / "results" / "pilot_l1.json"
    target.write_text(json.dumps({"pilot": PILOT, "rule": __doc__.split("The rule: ")[1].split("\n\n")[0],
                                  "rows": rows, "chosen": chosen, "load_average": os.getloadavg()}, indent=1) + "\n")
    print(f"-> {target}")


if __name__ == "__main__":
    main()
