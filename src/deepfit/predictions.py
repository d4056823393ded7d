"""Predictions of a finished run, with their uncertainty, as a CSV and a reliability diagram.

One row per input: the label, the deterministic prediction and probabilities,
and with MC dropout the MC mean's prediction, probabilities, their std,
predictive entropy and mutual information (see :mod:`deepfit.uncertainty`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepfit.calibration import calibration_metrics, reliability_diagram
from deepfit.data.prepare import load_data
from deepfit.io import add_to_manifest, write_atomic
from deepfit.run import load_run
from deepfit.uncertainty import MCPrediction, entropy, mc_predict, predict_proba


def predictions_table(y: np.ndarray, det: np.ndarray, mc: MCPrediction | None = None):
    """A DataFrame of per-input predictions (see the module doc)."""
    import pandas as pd

    k = det.shape[1]
    table: dict[str, Any] = {"index": np.arange(len(y)), "label": y, "pred": det.argmax(axis=1),
                             "confidence": det.max(axis=1), "entropy": entropy(det)}
    table.update({f"p_{c}": det[:, c] for c in range(k)})
    if mc is not None:
        table.update({"mc_pred": mc.predictions, "mc_confidence": mc.mean.max(axis=1),
                      "mc_entropy": mc.entropy, "mc_mutual_information": mc.mutual_information})
        table.update({f"mc_p_{c}": mc.mean[:, c] for c in range(k)})
        table.update({f"mc_std_{c}": mc.std[:, c] for c in range(k)})
    return pd.DataFrame(table)


def predict_split(model, x, y, mc_samples: int = 0, *, seed: int = 0, bins: int = 15,
                  batch_size: int = 250) -> tuple[np.ndarray, MCPrediction | None, dict[str, Any]]:
    """Deterministic probabilities, the MC prediction (if ``mc_samples``) and the metrics of both."""
    det = predict_proba(model, x, batch_size)
    metrics: dict[str, Any] = {"deterministic": calibration_metrics(det, y, bins)}
    mc = None
    if mc_samples:
        mc = mc_predict(model, x, mc_samples, seed=seed, batch_size=batch_size)
        metrics["mc"] = {**calibration_metrics(mc.mean, y, bins), "samples": mc_samples, "seed": seed}
    return det, mc, metrics


def predict_run(
    run_dir: str | Path,
    split: str = "test",
    mc_samples: int = 0,
    *,
    seed: int = 0,
    out: str | Path | None = None,
    figure: str | Path | None = None,
    bins: int = 15,
    batch_size: int = 250,
) -> dict[str, Any]:
    """Predict a run's ``split`` (data as its config prepares it); write the CSV and the diagram.

    Defaults: ``RUN_DIR/predictions-SPLIT.csv`` and ``RUN_DIR/figures/reliability-SPLIT.png``,
    added to the run's manifest (a file written elsewhere is not).
    Returns accuracy, NLL and ECE of the deterministic pass (and of the MC mean).
    """
    run = load_run(run_dir)
    x, y = load_data(run.config.data).split(split)
    det, mc, metrics = predict_split(run.model, x, y, mc_samples, seed=seed, bins=bins, batch_size=batch_size)
    result: dict[str, Any] = {"split": split, "n": len(y), "bins": bins, **metrics}
    out = Path(out) if out else Path(run_dir) / f"predictions-{split}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, predictions_table(y, det, mc).to_csv(index=False, float_format="%.6g"))
    figure = Path(figure) if figure else Path(run_dir) / "figures" / f"reliability-{split}.png"
    panels = {"deterministic": det} if mc is None else {"deterministic": det, f"MC dropout ({mc_samples})": mc.mean}
    reliability_diagram(panels, y, figure, bins, title=f"{Path(run_dir).name}: {split}")
    add_to_manifest(run_dir, [out, figure])  # never an unlisted file inside a run
    result["csv"], result["figure"] = str(out), str(figure)
    return result
