"""The chapter's last page, measured: fast, small and sparse models, augmentation, abstaining with MC dropout.

The trained entries of the catalog's "last_page" table are runs like any other
(``configs/last_page/``); the measured entries compute, for each seed, numbers
from finished runs (one JSON per entry and seed in ``OUT/<id>/``, so a rerun
skips what is done). Each value is keyed ``"<entry>[:<variant>]@<metric>"`` as
:func:`deepfit.experiments.reproduce.collect_values` keys the trained entries',
and the claims pair them on seeds with the same statistics as every other claim.
Every metric here is one to maximize.

- ``bn_folded`` (the batch_norm runs): the network with its batch norm folded
  (:mod:`deepfit.deploy.fold`) against itself unfolded: test accuracy, the
  largest change of any test probability, and latency.
- ``activation_speed`` (leaky_relu, l2_free, max_norm_free: 784-300-100-10 with
  leaky ReLU, ELU and SELU; keyed ``activation_speed``, ``:elu``, ``:selu``):
  latency of the three, timed in alternation on the same inputs.
- ``precision`` (leaky_relu): float32 (``precision``) against float16 and int8
  (``:float16``, ``:int8``: Keras's own ``quantize("int8")``), on the JAX
  engine: test accuracy, weight bytes, latency.
- ``sparse`` (dense_adam as ``sparse``, adam_l1, ftrl_l1): each model's test accuracy after
  zeroing the smallest fraction of its kernels' weights (one global threshold,
  "zero out the tiny weights"), along :data:`PRUNE_GRID`: the sparsity-accuracy
  curve per method. ``adam_l1_pruned90`` is Adam + l1 with 90% zeroed;
  ``sparsity_at_target`` is the largest fraction of zero kernel weights at which
  a method keeps the accuracy both reach (the lower of the two methods' dense
  accuracies, minus :data:`TARGET_GAP`).
- ``mc_abstain`` (the dropout runs): the accuracy on the 90% of test images a
  model is most sure of (highest top probability), MC dropout's mean over the
  passes against the deterministic softmax; the risk-coverage curve of both.

Latency: the median of warm calls of the compiled inference pass (JAX ``jit``)
at batch 1 (the latency of one request) and batch 1000, the compared models
timed in alternating rounds (:mod:`deepfit.deploy.latency`); claims use
predictions per second at batch 1, ``1 / median``, so that more is better;
the batch-1000 figures and the ratios sit beside them in ``OUT/<id>/``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from deepfit.experiments.stats import Column
from deepfit.io import read_json, write_atomic, write_json

PRUNE_GRID = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
TARGET_GAP = 0.01
COVERAGES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
ABSTAIN_COVERAGE = 0.9
LATENCY_CALLS = {"full": {1: 300, 1000: 30}, "quick": {1: 40, 1000: 4}}

# Measured entry -> the trained entries (by role) whose runs it reads.
SOURCES: dict[str, dict[str, str]] = {
    "bn_folded": {"original": "batch_norm"},
    "activation_speed": {"leaky_relu": "leaky_relu", "elu": "l2_free", "selu": "max_norm_free"},
    "precision": {"float32": "leaky_relu"},
    "sparse": {"dense": "dense_adam", "adam_l1": "adam_l1", "ftrl_l1": "ftrl_l1"},
    "mc_abstain": {"model": "dropout"},
}


def run_path(out: Path, entry_id: str, seed: int) -> Path:
    return out / entry_id / "runs" / entry_id / f"seed-{seed}"


def _runs(out: Path, measured: str, seed: int):
    """The finished runs a measured entry needs for ``seed`` (None if any is missing or diverged)."""
    from deepfit.run import load_run

    runs = {}
    for role, source in SOURCES[measured].items():
        path = run_path(out, source, seed)
        if not (path / "manifest.json").is_file():
            return None
        run = load_run(path)
        if run.model is None:
            return None
        runs[role] = run
    return runs


def _test_set(run, limit: int | None):
    from deepfit.data import load_data

    data = load_data(run.config.data)
    return np.asarray(data.x_test[:limit], np.float32), np.asarray(data.y_test[:limit])


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    pred = (probs[:, 0] > 0.5).astype(int) if probs.shape[-1] == 1 else probs.argmax(axis=-1)
    return float((pred == y).mean())


def _speeds(predictors: dict, x: np.ndarray, calls: dict[int, int]) -> dict[str, dict[str, float]]:
    """Per predictor: predictions per second (batch 1 and 1000) and the median / p90 latencies."""
    from deepfit.deploy import latency

    timed = latency.measure(predictors, x, calls)
    out: dict[str, dict[str, float]] = {}
    for name in predictors:
        row = {}
        for b in latency.BATCHES:
            t = timed[name][f"batch_{b}"]
            row[f"predictions_per_second_b{b}"] = b / t["median_s"]
            row[f"latency_median_s_b{b}"], row[f"latency_p90_s_b{b}"] = t["median_s"], t["p90_s"]
        out[name] = row
    out["load"] = timed["load"]
    return out


def measure_bn_folded(runs, x, y, calls) -> dict[str, Any]:
    from deepfit.deploy.engines import JaxPredictor
    from deepfit.deploy.fold import fold_batch_norm

    model = runs["original"].model
    folded = fold_batch_norm(model)
    original, fast = JaxPredictor(model), JaxPredictor(folded.model)
    p0, p1 = original.predict(x), fast.predict(x)
    speeds = _speeds({"original": original, "folded": fast}, x, calls)
    values = {"bn_folded@test_accuracy": _accuracy(p1, y), "bn_folded:original@test_accuracy": _accuracy(p0, y),
              "bn_folded@max_probability_change": float(np.abs(p1 - p0).max())}
    for metric, v in speeds["folded"].items():
        values[f"bn_folded@{metric}"] = v
    for metric, v in speeds["original"].items():
        values[f"bn_folded:original@{metric}"] = v
    for b in (1, 1000):
        values[f"bn_folded@latency_ratio_b{b}"] = (speeds["folded"][f"latency_median_s_b{b}"]
                                                   / speeds["original"][f"latency_median_s_b{b}"])
    return {"values": values, "folded": folded.record(), "load": speeds["load"]}


def measure_activation_speed(runs, x, y, calls) -> dict[str, Any]:
    from deepfit.deploy.engines import JaxPredictor

    speeds = _speeds({role: JaxPredictor(run.model) for role, run in runs.items()}, x, calls)
    key = {"leaky_relu": "activation_speed", "elu": "activation_speed:elu", "selu": "activation_speed:selu"}
    values = {f"{key[role]}@{metric}": v for role in runs for metric, v in speeds[role].items()}
    for other in ("elu", "selu"):
        for b in (1, 1000):
            values[f"{key[other]}@latency_ratio_to_leaky_b{b}"] = (
                speeds[other][f"latency_median_s_b{b}"] / speeds["leaky_relu"][f"latency_median_s_b{b}"])
    return {"values": values, "load": speeds["load"]}


def measure_precision(runs, x, y, calls) -> dict[str, Any]:
    from deepfit.deploy.engines import JaxPredictor
    from deepfit.deploy.precision import lower

    model = runs["float32"].model
    models = {p: lower(model, p) for p in ("float32", "float16", "int8")}
    predictors = {p: JaxPredictor(m) for p, m in models.items()}
    probs = {p: predictors[p].predict(x) for p in models}
    speeds = _speeds(predictors, x, calls)
    values = {}
    for p, m in models.items():
        key = "precision" if p == "float32" else f"precision:{p}"
        values[f"{key}@test_accuracy"] = _accuracy(probs[p], y)
        values[f"{key}@max_probability_change"] = float(np.abs(probs[p] - probs["float32"]).max())
        values[f"{key}@weight_bytes"] = float(sum(np.asarray(w.value).nbytes for w in m.weights
                                                  if "seed_generator" not in w.path))
        values.update({f"{key}@{metric}": v for metric, v in speeds[p].items()})
    return {"values": values, "load": speeds["load"]}


def sparsity_curve(model, x, y, fractions=PRUNE_GRID) -> list[dict[str, float]]:
    """Test accuracy after zeroing the smallest ``fraction`` of the kernels' weights (global threshold)."""
    from deepfit.deploy.engines import JaxPredictor
    from deepfit.nn.sparsity import prune, sparsity

    weights, out = model.get_weights(), []
    for f in fractions:
        model.set_weights(weights)
        if f:
            prune(model, f, "global")
        out.append({"fraction": f, "sparsity": sparsity(model)["fraction"],
                    "test_accuracy": _accuracy(JaxPredictor(model).predict(x), y)})
    model.set_weights(weights)
    return out


def sparsity_at(curve: list[dict[str, float]], target: float) -> float:
    """The largest sparsity on ``curve`` whose accuracy is at least ``target`` (0 if none is)."""
    return max([p["sparsity"] for p in curve if p["test_accuracy"] >= target], default=0.0)


def measure_sparse(runs, x, y, calls) -> dict[str, Any]:
    curves = {role: sparsity_curve(run.model, x, y) for role, run in runs.items()}
    target = min(curves["adam_l1"][0]["test_accuracy"], curves["ftrl_l1"][0]["test_accuracy"]) - TARGET_GAP
    at90 = next(p for p in curves["adam_l1"] if p["fraction"] == 0.9)
    values = {"sparse@test_accuracy": curves["dense"][0]["test_accuracy"],
              "sparse:adam_l1_pruned90@test_accuracy": at90["test_accuracy"],
              "sparse:adam_l1_pruned90@sparsity": at90["sparsity"]}
    for role in ("adam_l1", "ftrl_l1"):
        values[f"sparse:{role}@test_accuracy"] = curves[role][0]["test_accuracy"]
        values[f"sparse:{role}@natural_sparsity"] = curves[role][0]["sparsity"]
        values[f"sparse:{role}@sparsity_at_target"] = sparsity_at(curves[role], target)
    return {"values": values, "curves": curves, "target_accuracy": target}


def risk_coverage(probs: np.ndarray, y: np.ndarray, coverages=COVERAGES) -> list[dict[str, float]]:
    """Accuracy on the ``coverage`` fraction of inputs with the highest top probability (the rest abstained)."""
    confidence = probs.max(axis=-1)
    order = np.argsort(-confidence, kind="stable")
    correct = (probs.argmax(axis=-1) == y)[order]
    return [{"coverage": c, "accuracy": float(correct[:max(1, int(round(c * len(y))))].mean())} for c in coverages]


def measure_mc_abstain(runs, x, y, calls, mc_samples: int, seed: int) -> dict[str, Any]:
    from deepfit.predictions import predict_split

    det, mc, _ = predict_split(runs["model"].model, x, y, mc_samples, seed=seed)
    curves = {"deterministic": risk_coverage(det, y), "mc": risk_coverage(mc.mean, y)}
    pick = lambda c: next(p["accuracy"] for p in c if p["coverage"] == ABSTAIN_COVERAGE)  # noqa: E731
    metric = f"accuracy_at_{int(100 * ABSTAIN_COVERAGE)}_coverage"
    return {"values": {f"mc_abstain@{metric}": pick(curves["mc"]),
                       f"mc_abstain:deterministic@{metric}": pick(curves["deterministic"])},
            "curves": curves, "samples": mc_samples}


MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "bn_folded": measure_bn_folded, "activation_speed": measure_activation_speed, "precision": measure_precision,
    "sparse": measure_sparse, "mc_abstain": measure_mc_abstain,
}


def measure(out: Path, ids: list[str], seeds: dict[str, list[int]], mode, log: Callable[[str], None]) -> None:
    """Each measured entry in ``ids``, each seed whose runs have finished (``OUT/<id>/seed-N.json``; kept)."""
    calls = LATENCY_CALLS["full" if mode.name != "quick" else "quick"]
    for measured in (i for i in ids if i in MEASURES):
        (out / measured).mkdir(parents=True, exist_ok=True)
        for s in seeds[measured]:
            record = out / measured / f"seed-{s}.json"
            if record.is_file():
                continue
            runs = _runs(out, measured, s)
            if runs is None:
                continue
            limit = mode.mc_test_images if measured == "mc_abstain" else None
            x, y = _test_set(next(iter(runs.values())), limit)
            started = time.perf_counter()
            extra = {"mc_samples": mode.mc_samples, "seed": s} if measured == "mc_abstain" else {}
            result = MEASURES[measured](runs, x, y, calls, **extra)
            result.update({"seed": s, "test_images": len(y), "seconds": time.perf_counter() - started})
            write_json(record, result)
            log(f"  {measured} seed {s}: " + ", ".join(f"{k.split('@')[0]} {k.split('@')[1]} {v:.4g}"
                                                       for k, v in list(result["values"].items())[:4]))
        write_tables(out / measured)


def write_tables(directory: Path) -> None:
    """``values.csv`` (one row per seed and value) and, where there are curves, ``curves.csv``."""
    rows, curves = [], []
    for path in sorted(directory.glob("seed-*.json")):
        result = read_json(path, "last-page measurement")
        rows += [{"seed": result["seed"], "key": k, "value": v} for k, v in result["values"].items()]
        for name, points in result.get("curves", {}).items():
            curves += [{"seed": result["seed"], "curve": name, **p} for p in points]
    write_atomic(directory / "values.csv", pd.DataFrame(rows, columns=["seed", "key", "value"])
                 .to_csv(index=False, float_format="%.17g"))
    if curves:
        write_atomic(directory / "curves.csv", pd.DataFrame(curves).to_csv(index=False, float_format="%.17g"))


def column(metric: str) -> Column:
    """What a measured value is (direction and range): deepfit computes them, so they are known by
    construction; a ratio of latencies has no better side."""
    if metric.startswith("predictions_per_second"):
        return Column(metric, "max", 0.0, math.inf)
    if metric.startswith("latency_median") or metric.startswith("latency_p90") or metric == "weight_bytes":
        return Column(metric, "min", 0.0, math.inf)
    if metric == "max_probability_change":
        return Column(metric, "min", 0.0, 1.0)
    if metric in ("test_accuracy", "sparsity", "natural_sparsity", "sparsity_at_target") \
            or metric.startswith("accuracy_at_"):
        return Column(metric, "max", 0.0, 1.0)
    return Column(metric)


def values(out: Path, ids: list[str], columns: dict[str, Column] | None = None) -> dict[str, dict[int, float]]:
    """``{"<entry>[:<variant>]@<metric>": {seed: value}}`` from the measured entries' ``values.csv``;
    ``columns`` gets what each key is."""
    found: dict[str, dict[int, float]] = {}
    for measured in (i for i in ids if i in MEASURES):
        path = out / measured / "values.csv"
        if not path.is_file() or path.stat().st_size <= 1:
            continue
        table = pd.read_csv(path)
        for key, group in table.groupby("key", sort=False):
            found[str(key)] = dict(zip(group["seed"].astype(int), group["value"].astype(float)))
            if columns is not None:
                columns[str(key)] = column(str(key).split("@")[1])
    return found
