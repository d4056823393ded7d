"""The chapter's Table 11-2 (optimizer comparison), measured, with its stars computed by a stated rule.

The book grades eight optimizers by convergence speed and quality in stars
(one to three). Here each grade comes from numbers over seeds:

* **The learning rate** of each optimizer is chosen by one rule, the same for
  all and never tuned on the validation images the table is scored on: the
  best rate of the grid :data:`RATE_GRID` (half-decades, 1e-4 to 0.3: every
  optimizer's Keras default and a decade either side) after
  :data:`TUNING_EPOCHS` epochs, scored on a *tuning split*, the last
  :data:`TUNING_IMAGES` images of the training split (trained on the rest),
  from one seed (:data:`TUNING_SEED`) that is not among the measured seeds.
  Ties go to the smaller rate. The choice is kept in ``rate.json`` under a key of
  everything that made it (config, grid, epochs, seed, tuning images, data), and
  redone when any of them changes.
* **Speed**: epochs until the validation accuracy first reaches
  :data:`THRESHOLD` (evaluated after each epoch). A run that never reaches it in
  ``E`` epochs is *censored*: its time is only known to exceed ``E``. The
  measure is the restricted time ``min(T, E + 1)`` (the restricted mean of
  survival analysis): defined for every run, at most ``E + 1``, and a lower
  bound of the true time, so a row with censored runs is at least that slow
  (the table says how many reached, and its interval stays inside [1, E + 1]).
  Censoring only shrinks a slow row's lead over a faster one, so a speed gap
  found on the restricted times is there on the true times too.
* **Quality**: the best validation accuracy over the epochs.
* **Stars** (:func:`stars`): the best row on a measure gets ***; another row
  loses a star only when its difference from the best row is both significant
  and larger than a tolerance: speed, more than 1.5x the fastest row's mean
  epochs for **, more than 3x for *; quality, more than 0.5 accuracy points
  below the best row for **, more than 1.5 points for *. Significance: a paired
  t-test on the shared seeds (:func:`deepfit.experiments.stats.paired_test`),
  Holm-adjusted over every star test of the table (both measures) at 95%.
  Epoch counts are whole numbers: a count is the crossing time rounded up to an
  epoch, so the difference of two counts carries a rounding noise of variance
  1/6 epoch² (Sheppard's correction for a grid of width 1), and its standard
  deviation is taken as at least 1/√6 ≈ 0.41 epoch (:data:`EPOCH_RESOLUTION`).
  Without that floor, rows that differ by exactly the same whole number of epochs
  on every seed have no spread, fall to the sign test, and can never be
  significant below 6 seeds (p = 0.0625 at 5).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy

from deepfit.experiments.stats import MIN_SEEDS_FOR_INTERVAL, Column, column_of, fixed_n_test, holm, t_interval

THRESHOLD = 0.87
EPOCH_RESOLUTION = 1.0  # epochs are counted whole: see the module doc
RATE_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
TUNING_EPOCHS = 2
TUNING_IMAGES = 5000
TUNING_SEED = 100

# Table 11-2 as printed: (convergence speed, convergence quality); a set where the book says "** or ***".
BOOK_11_2: dict[str, tuple[set[int], set[int], str]] = {
    "sgd": ({1}, {3}, "SGD"),
    "momentum": ({2}, {3}, "SGD(momentum=...)"),
    "nesterov": ({2}, {3}, "SGD(momentum=..., nesterov=True)"),
    "adagrad": ({3}, {1}, "Adagrad"),
    "rmsprop": ({3}, {2, 3}, "RMSprop"),
    "adam": ({3}, {2, 3}, "Adam"),
    "nadam": ({3}, {2, 3}, "Nadam"),
    "adamax": ({3}, {2, 3}, "AdaMax"),
}

SPEED_RATIOS = (1.5, 3.0)  # mean epochs / the fastest row's: above the first **, above the second *
QUALITY_GAPS = (0.005, 0.015)  # accuracy below the best row: above the first **, above the second *


# ---------------------------------------------------------------- the learning-rate rule


def tuning_split(dataset, images: int = TUNING_IMAGES):
    """The training split minus its last ``images``, scored on those: the validation split is never touched."""
    from deepfit.data.prepare import Dataset

    if images >= len(dataset.x_train):
        images = max(1, len(dataset.x_train) // 10)
    return Dataset(dataset.x_train[:-images], dataset.y_train[:-images], dataset.x_train[-images:],
                   dataset.y_train[-images:], info={**dataset.info, "tuning_split": images})


def choose_rate(config: Mapping[str, Any], record: Path, *, grid: Sequence[float] = RATE_GRID,
                epochs: int = TUNING_EPOCHS, seed: int = TUNING_SEED, images: int = TUNING_IMAGES,
                dataset=None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ``config`` at each rate of ``grid`` on the tuning split; the rate with the best final tuning accuracy.

    ``record`` (JSON) keeps every score as it comes, so an interrupted choice resumes; it is keyed by
    everything that made it (:func:`rate_key`), and a record made by anything else is redone, not reused.
    """
    from deepfit.config import load_config
    from deepfit.data import load_data
    from deepfit.run import train

    key = rate_key(config, grid, epochs, seed, images, dataset)
    done: dict[str, Any] = json.loads(record.read_text()) if record.is_file() else {}
    if done and done.get("key") != key:
        log(f"    {record} was made by another config, grid or data: choosing the rate again")
        done = {}
    scores: dict[str, float] = dict(done.get("scores", {}))
    split = None
    for rate in grid:
        rate_name = f"{rate:g}"
        if rate_name in scores:
            continue
        cfg = load_config(dict(config), {"seed": seed, "training.epochs": epochs, "training.progress": False,
                                         "training.callbacks": [], "training.optimizer.learning_rate": rate})
        if split is None:
            split = tuning_split(dataset if dataset is not None else load_data(cfg.data), images)
        run = train(cfg, data=split, save=False)
        acc = float(run.history["val_accuracy"].iloc[-1]) if "val_accuracy" in run.history else math.nan
        scores[rate_name] = acc if math.isfinite(acc) else math.nan
        log(f"    rate {rate_name}: tuning accuracy {acc:.4f}")
        _write(record, {"key": key, "scores": scores})
    best = pick_rate({float(k): v for k, v in scores.items() if float(k) in grid})
    result = {"key": key, "rate": best, "scores": scores, "grid": [float(r) for r in grid], "epochs": epochs,
              "seed": seed, "tuning_images": images, "at_edge": best in (min(grid), max(grid))}
    _write(record, result)
    return result


def rate_key(config: Mapping[str, Any], grid: Sequence[float], epochs: int, seed: int, images: int,
             dataset=None) -> str:
    """sha256 of what makes a rate choice: the config (its data section included, the rate excepted, which the
    grid replaces), the grid, the tuning epochs, seed and images, and arrays handed in directly."""
    tree = json.loads(json.dumps(dict(config), sort_keys=True, default=repr))
    tree.pop("name", None)
    tree.get("training", {}).pop("progress", None)
    tree.get("training", {}).get("optimizer", {}).pop("learning_rate", None)
    h = hashlib.sha256(json.dumps([tree, [float(r) for r in grid], epochs, seed, images], sort_keys=True).encode())
    if dataset is not None:
        for a in (dataset.x_train, dataset.y_train):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def pick_rate(scores: Mapping[float, float]) -> float:
    """The rate with the highest score; a tie (or an all-NaN grid) goes to the smaller rate."""
    finite = {r: s for r, s in scores.items() if s == s}
    if not finite:
        return min(scores)
    top = max(finite.values())
    return min(r for r, s in finite.items() if s == top)


def _write(path: Path, obj: dict[str, Any]) -> None:
    from deepfit.io import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


# ---------------------------------------------------------------- per-run measures


def epochs_to_threshold(val_accuracy: Sequence[float], threshold: float = THRESHOLD) -> float:
    """The first epoch (1-based) whose validation accuracy is at least ``threshold``; NaN if none is."""
    for i, acc in enumerate(val_accuracy, 1):
        if acc >= threshold:
            return float(i)
    return math.nan


def run_measures(results: pd.DataFrame, threshold: float = THRESHOLD, epochs: int | None = None) -> pd.DataFrame:
    """One row per seed of one row of the table (``results``: one run per seed, one line per epoch).

    ``epochs_censored`` is ``epochs_to_threshold`` with a run that never reached
    it counted as ``epochs + 1`` (``epochs``: the planned epochs, default the
    longest run's). ``late_loss_drop``: training loss at the middle epoch minus
    at the last, i.e. how much it was still learning in the second half.
    """
    rows = []
    planned = epochs or int(results["epoch"].max())
    for seed, run in results.sort_values(["seed", "epoch"]).groupby("seed"):
        acc = run["val_accuracy"].to_numpy(np.float64)
        t = epochs_to_threshold(acc, threshold)
        loss = run["loss"].to_numpy(np.float64)
        mid = loss[len(loss) // 2 - 1] if len(loss) >= 2 else math.nan
        rows.append({"seed": int(seed), "best_val_accuracy": float(np.nanmax(acc)) if len(acc) else math.nan,
                     "epochs_to_threshold": t, "reached": t == t,
                     "epochs_censored": t if t == t else float(planned + 1),
                     "final_loss": float(loss[-1]) if len(loss) else math.nan,
                     "late_loss_drop": float(mid - loss[-1]) if len(loss) >= 2 else math.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- stars


def star_test(row: pd.Series, best: pd.Series, resolution: float | None = None) -> float:
    """p of the paired t-test of ``row`` against ``best`` on their shared seeds; with a ``resolution`` (values
    counted on a grid of that width) the differences' sd is at least ``resolution/√6`` (see the module doc)."""
    seeds = sorted(set(row.index) & set(best.index))
    a, b = row.loc[seeds].to_numpy(np.float64), best.loc[seeds].to_numpy(np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < MIN_SEEDS_FOR_INTERVAL:
        return math.nan  # the one rule below 3 seeds: no test
    if resolution is None:
        return fixed_n_test(a, b)[2]
    d = a - b
    n = len(d)
    sd = max(float(d.std(ddof=1)), resolution / math.sqrt(6))
    t = float(d.mean()) / (sd / math.sqrt(n))
    return float(2 * scipy.stats.t.sf(abs(t), n - 1)) if d.mean() != 0 else 1.0


def star_tests(values: Mapping[str, pd.Series], higher_is_better: bool, ratio: bool,
               resolution: float | None = None) -> dict[str, dict[str, Any]]:
    """Each row's gap to the best row of a measure and the raw p of its difference (not adjusted yet)."""
    means = {k: float(np.mean(v)) for k, v in values.items() if len(v)}
    best = (max if higher_is_better else min)(means, key=means.get)
    out = {}
    for k, v in values.items():
        if k not in means:
            out[k] = {"best": best, "gap": math.nan, "p_value": math.nan}
            continue
        gap = means[k] / means[best] if ratio else (means[best] - means[k]) * (1 if higher_is_better else -1)
        p = star_test(v, values[best], resolution) if k != best else math.nan
        out[k] = {"best": best, "gap": gap, "p_value": p}
    return out


def assign_stars(tests: dict[str, dict[str, Any]], limits: tuple[float, float]) -> dict[str, dict[str, Any]]:
    """Stars from tests whose ``p_holm`` is set: the best row ***, another drops one when significant and past
    ``limits[0]``, two past ``limits[1]``."""
    out = {}
    for k, t in tests.items():
        if math.isnan(t["gap"]):
            out[k] = {**t, "stars": 0}
            continue
        n = 3
        if k != t["best"] and t["p_holm"] < 0.05 and t["gap"] > limits[0]:
            n = 2 if t["gap"] <= limits[1] else 1
        out[k] = {**t, "stars": n}
    return out


def _holm_into(*families: dict[str, dict[str, Any]]) -> None:
    """Holm over every star test of the given measures together (each test gets ``p_holm``)."""
    keys = [(i, k) for i, f in enumerate(families) for k in f]
    adjusted = holm([families[i][k]["p_value"] for i, k in keys])
    for (i, k), p in zip(keys, adjusted):
        families[i][k]["p_holm"] = float(p)


def stars(values: Mapping[str, pd.Series], higher_is_better: bool, limits: tuple[float, float],
          ratio: bool, resolution: float | None = None) -> dict[str, dict[str, Any]]:
    """Stars per row from per-seed values (a Series indexed by seed per row) of one measure, its tests
    Holm-adjusted over its rows; :func:`optimizer_table` adjusts over both measures of the table.

    ``ratio``: compare as ``mean / best mean`` (speed) rather than ``best mean − mean`` (quality).
    """
    tests = star_tests(values, higher_is_better, ratio, resolution)
    _holm_into(tests)
    return assign_stars(tests, limits)


def star_text(n: int | set[int]) -> str:
    if isinstance(n, set):
        return " or ".join("*" * k for k in sorted(n))
    return "*" * n if n else "n/a"


def row_verdict(speed: int, quality: int, book_speed: set[int], book_quality: set[int]) -> str:
    """"as the book says", or what differs: "faster than the book says", "worse quality than the book says", ..."""
    parts = []
    if speed > max(book_speed):
        parts.append("faster than the book says")
    elif speed < min(book_speed):
        parts.append("slower than the book says")
    if quality > max(book_quality):
        parts.append("better quality than the book says")
    elif quality < min(book_quality):
        parts.append("worse quality than the book says")
    return "as the book says" if not parts else "; ".join(parts)


@dataclass
class OptimizerTable:
    table: pd.DataFrame  # one row per optimizer: measures with intervals, stars, book stars, verdict
    per_seed: pd.DataFrame  # one row per (optimizer, seed)
    threshold: float
    epochs: int


def optimizer_table(results: Mapping[str, pd.DataFrame], rates: Mapping[str, float] | None = None,
                    threshold: float = THRESHOLD, epochs: int | None = None) -> OptimizerTable:
    """Table 11-2 from each optimizer's ``results`` (keys: the names of :data:`BOOK_11_2`)."""
    planned = epochs or max(int(r["epoch"].max()) for r in results.values())
    per = {k: run_measures(r, threshold, planned).set_index("seed") for k, r in results.items() if len(r)}
    # Speed: fewer epochs is faster; quality: the best accuracy, higher is better (both by construction).
    speed_tests = star_tests({k: v["epochs_censored"] for k, v in per.items()}, False, True, EPOCH_RESOLUTION)
    quality_tests = star_tests({k: v["best_val_accuracy"] for k, v in per.items()}, True, False)
    _holm_into(speed_tests, quality_tests)
    speed, quality = assign_stars(speed_tests, SPEED_RATIOS), assign_stars(quality_tests, QUALITY_GAPS)
    rows = []
    for k, m in per.items():
        book_s, book_q, label = BOOK_11_2.get(k, ({0}, {0}, k))
        t = t_interval(m["epochs_censored"], limits=(1.0, float(planned + 1)))
        q = t_interval(m["best_val_accuracy"], limits=(0.0, 1.0))
        rows.append({"optimizer": k, "keras": label, "learning_rate": (rates or {}).get(k, math.nan),
                     "seeds": len(m), "reached": int(m["reached"].sum()),
                     "epochs_mean": t.mean, "epochs_ci_low": t.ci_low, "epochs_ci_high": t.ci_high,
                     "best_val_accuracy_mean": q.mean, "best_val_accuracy_ci_low": q.ci_low,
                     "best_val_accuracy_ci_high": q.ci_high,
                     "epochs_censored": int((~m["reached"]).sum()), "epochs_max": planned + 1,
                     "speed_stars": speed[k]["stars"], "speed_vs_fastest": speed[k]["gap"],
                     "speed_p_vs_fastest": speed[k]["p_value"], "speed_p_holm": speed[k]["p_holm"],
                     "quality_stars": quality[k]["stars"], "quality_gap_to_best": quality[k]["gap"],
                     "quality_p_vs_best": quality[k]["p_value"], "quality_p_holm": quality[k]["p_holm"],
                     "book_speed": star_text(book_s), "book_quality": star_text(book_q),
                     "verdict": row_verdict(speed[k]["stars"], quality[k]["stars"], book_s, book_q)})
    seeds = pd.concat([m.reset_index().assign(optimizer=k) for k, m in per.items()], ignore_index=True) \
        if per else pd.DataFrame()
    return OptimizerTable(pd.DataFrame(rows), seeds, threshold, planned)


def measure_columns(columns: Mapping[str, Column], epochs: int) -> dict[str, Column]:
    """What the per-run measures are: the best validation accuracy is a validation accuracy, the restricted
    epochs lie in [1, epochs + 1] and fewer is faster, the final loss is the loss; ``late_loss_drop`` (how
    much the loss fell in the second half) has no better way."""
    return {"best_val_accuracy": column_of(columns, "val_accuracy").renamed("best_val_accuracy"),
            "epochs_censored": Column("epochs_censored", "min", 1.0, float(epochs + 1) if epochs else math.inf),
            "final_loss": column_of(columns, "loss").renamed("final_loss"),
            "late_loss_drop": Column("late_loss_drop")}


__all__ = ["BOOK_11_2", "EPOCH_RESOLUTION", "RATE_GRID", "THRESHOLD", "OptimizerTable", "assign_stars",
           "choose_rate", "epochs_to_threshold", "measure_columns", "optimizer_table", "pick_rate", "rate_key",
           "row_verdict", "run_measures", "star_tests", "stars", "tuning_split"]
