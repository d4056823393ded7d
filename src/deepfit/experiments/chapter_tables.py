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
  Ties go to the smaller rate.
* **Speed**: epochs until the validation accuracy first reaches
  :data:`THRESHOLD` (evaluated after each epoch). A run that never reaches it
  in ``E`` epochs counts as ``E + 1``: a lower bound on its true time, so a
  row with such runs is at least that slow (the table says how many reached).
* **Quality**: the best validation accuracy over the epochs.
* **Stars** (:func:`stars`): the best row on a measure gets ***; another row
  loses a star only when its difference from the best row is both significant
  (paired t-test on the shared seeds, 95%, :func:`deepfit.experiments.stats.paired_test`)
  and larger than a tolerance: speed, more than 1.5x the fastest row's mean
  epochs for **, more than 3x for *; quality, more than 0.5 accuracy points
  below the best row for **, more than 1.5 points for *.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from deepfit.experiments.stats import paired_test, t_interval

THRESHOLD = 0.87
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

    ``record`` (JSON) keeps every score as it comes, so an interrupted choice resumes.
    """
    from deepfit.config import load_config
    from deepfit.data import load_data
    from deepfit.run import train

    done: dict[str, Any] = json.loads(record.read_text()) if record.is_file() else {}
    scores: dict[str, float] = dict(done.get("scores", {}))
    split = None
    for rate in grid:
        key = f"{rate:g}"
        if key in scores:
            continue
        cfg = load_config(dict(config), {"seed": seed, "training.epochs": epochs, "training.progress": False,
                                         "training.callbacks": [], "training.optimizer.learning_rate": rate})
        if split is None:
            split = tuning_split(dataset if dataset is not None else load_data(cfg.data), images)
        run = train(cfg, data=split, save=False)
        acc = float(run.history["val_accuracy"].iloc[-1]) if "val_accuracy" in run.history else math.nan
        scores[key] = acc if math.isfinite(acc) else math.nan
        log(f"    rate {key}: tuning accuracy {acc:.4f}")
        _write(record, {"scores": scores})
    best = pick_rate({float(k): v for k, v in scores.items()})
    result = {"rate": best, "scores": scores, "grid": [float(r) for r in grid], "epochs": epochs, "seed": seed,
              "tuning_images": images, "at_edge": best in (min(grid), max(grid))}
    _write(record, result)
    return result


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


def _paired(row: pd.Series, best: pd.Series) -> Any:
    seeds = sorted(set(row.index) & set(best.index))
    return paired_test(row.loc[seeds].to_numpy(), best.loc[seeds].to_numpy())


def stars(values: Mapping[str, pd.Series], higher_is_better: bool, limits: tuple[float, float],
          ratio: bool) -> dict[str, dict[str, Any]]:
    """Stars per row from per-seed values (a Series indexed by seed per row); see the module doc for the rule.

    ``ratio``: compare as ``mean / best mean`` (speed) rather than ``best mean − mean`` (quality).
    """
    means = {k: float(np.mean(v)) for k, v in values.items() if len(v)}
    best = (max if higher_is_better else min)(means, key=means.get)
    out = {}
    for k, v in values.items():
        if k not in means:
            out[k] = {"stars": 0, "best": best, "gap": math.nan, "p_value": math.nan}
            continue
        gap = means[k] / means[best] if ratio else (means[best] - means[k]) * (1 if higher_is_better else -1)
        p = _paired(v, values[best]).p_value if k != best else math.nan
        significant = p < 0.05
        n = 3
        if k != best and significant and gap > limits[0]:
            n = 2 if gap <= limits[1] else 1
        out[k] = {"stars": n, "best": best, "gap": gap, "p_value": p}
    return out


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
    speed = stars({k: v["epochs_censored"] for k, v in per.items()}, False, SPEED_RATIOS, ratio=True)
    quality = stars({k: v["best_val_accuracy"] for k, v in per.items()}, True, QUALITY_GAPS, ratio=False)
    rows = []
    for k, m in per.items():
        book_s, book_q, label = BOOK_11_2.get(k, ({0}, {0}, k))
        t, q = t_interval(m["epochs_censored"]), t_interval(m["best_val_accuracy"])
        rows.append({"optimizer": k, "keras": label, "learning_rate": (rates or {}).get(k, math.nan),
                     "seeds": len(m), "reached": int(m["reached"].sum()),
                     "epochs_mean": t.mean, "epochs_ci_low": t.ci_low, "epochs_ci_high": t.ci_high,
                     "best_val_accuracy_mean": q.mean, "best_val_accuracy_ci_low": q.ci_low,
                     "best_val_accuracy_ci_high": q.ci_high,
                     "speed_stars": speed[k]["stars"], "speed_vs_fastest": speed[k]["gap"],
                     "speed_p_vs_fastest": speed[k]["p_value"],
                     "quality_stars": quality[k]["stars"], "quality_gap_to_best": quality[k]["gap"],
                     "quality_p_vs_best": quality[k]["p_value"],
                     "book_speed": star_text(book_s), "book_quality": star_text(book_q),
                     "verdict": row_verdict(speed[k]["stars"], quality[k]["stars"], book_s, book_q)})
    seeds = pd.concat([m.reset_index().assign(optimizer=k) for k, m in per.items()], ignore_index=True) \
        if per else pd.DataFrame()
    return OptimizerTable(pd.DataFrame(rows), seeds, threshold, planned)


__all__ = ["BOOK_11_2", "RATE_GRID", "THRESHOLD", "OptimizerTable", "choose_rate", "epochs_to_threshold",
           "optimizer_table", "pick_rate", "row_verdict", "run_measures", "stars", "tuning_split"]
