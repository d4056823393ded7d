"""Small experiments for the tests: a 784-16-10 network on 1,000 training images, 2 epochs."""

from __future__ import annotations

import json
from pathlib import Path

BASE = """\
seed = 0
[data]
validation_size = 200
train_size = 1000
scaling = "standardize"
[model]
input_shape = [28, 28]
layers = [
  { type = "flatten" },
  { type = "dense", units = 16, activation = "relu", kernel_initializer = "he_normal" },
  { type = "dense", units = 10, activation = "softmax" },
]
[training]
epochs = 2
batch_size = 50
optimizer = { name = "sgd", learning_rate = 0.01 }
"""

EXPERIMENT = """\
name = "tiny"
base = "base.toml"
seeds = [0, 1, 2, 3, 4]
reference = "relu"
[[variants]]
name = "relu"
[[variants]]
name = "selu"
overrides = { "model.layers.1.activation" = "selu", "model.layers.1.kernel_initializer" = "lecun_normal" }
[[variants]]
name = "elu"
overrides = { "model.layers.1.activation" = "elu" }
"""


def write_experiment(directory: Path, experiment: str = EXPERIMENT, base: str = BASE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "base.toml").write_text(base)
    path = directory / "experiment.toml"
    path.write_text(experiment)
    return path


# What a run of a softmax classifier compiled with sparse crossentropy and "accuracy" records about its columns
# (Objective.columns(): directions and ranges from the Keras loss and metric objects).
COLUMNS = {name: {"direction": way, "range": rng, **({"kind": "crossentropy"} if "loss" in name else {})}
           for name, way, rng in (("loss", "min", [0.0, None]), ("val_loss", "min", [0.0, None]),
                                  ("accuracy", "max", [0.0, 1.0]), ("val_accuracy", "max", [0.0, 1.0]))}


def fake_experiment_dir(directory: Path, finals: dict[str, list[float]], curves: dict[str, list[list[float]]],
                        reference: str, seeds_spec=None, columns: dict | None = COLUMNS) -> Path:
    """An experiment directory written by hand (no training): hand-made numbers for report tests.

    ``finals[variant][k]`` is the last val_accuracy of the k-th seed (or crossed cell, init-major, when
    ``seeds_spec`` is ``{"init": [...], "order": [...]}``); ``curves[variant][k]`` its per-epoch values.
    A final of NaN writes a diverged run.
    """
    from deepfit.experiments.spec import parse_seeds

    variants = list(finals)
    seeds = parse_seeds(seeds_spec) if seeds_spec is not None else list(range(len(finals[variants[0]])))
    base = {"model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 10, "activation": "softmax"}]}}
    spec = {"name": "handmade", "base": base, "seeds": seeds_spec if seeds_spec is not None else seeds,
            "reference": reference, "metric": "val_accuracy",
            "overrides": {}, "variants": [{"name": v, "overrides": {}} for v in variants]}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "experiment.json").write_text(json.dumps(spec))
    for v in variants:
        for k, s in enumerate(seeds):
            d = directory / "runs" / v / f"seed-{s}"
            d.mkdir(parents=True)
            rows = ["epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds"]
            for e, acc in enumerate(curves[v][k]):
                rows.append(f"{e + 1},{1 - acc:.6f},{acc:.6f},{1.1 - acc:.6f},{acc!r},0.01,1.0")
            (d / "metrics.csv").write_text("\n".join(rows) + "\n")
            acc = finals[v][k]
            last = {"epoch": len(curves[v][k]), "loss": 1 - acc, "accuracy": acc, "val_loss": 1.1 - acc,
                    "val_accuracy": acc, "learning_rate": 0.01, "seconds": 1.0}
            status = "diverged" if acc != acc else "completed"
            (d / "final.json").write_text(json.dumps({"status": status, "stop_reason": None,
                                                      "epochs_run": len(curves[v][k]), "seconds": 1.0,
                                                      "last": {} if status == "diverged" else last,
                                                      **({"columns": columns} if columns else {})}))
            (d / "manifest.json").write_text("{}")
    return directory
