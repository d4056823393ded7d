"""A diverging run stops at the first non-finite loss, says why, keeps the last good state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from reliability_fixtures import tiny_config, toml_text, write_idx_dir

import deepfit as df
from deepfit.train.checkpoint import read_checkpoint


@pytest.mark.slow
def test_divergence_stops_keeps_last_good_checkpoint_and_exits_nonzero(tmp_path):
    # exp activations and SGD at 0.3 overflow in epoch 2 (step 34), after epoch 1's checkpoint.
    cfg = tiny_config(write_idx_dir(tmp_path / "data"), epochs=3,
                      optimizer={"name": "sgd", "learning_rate": 0.3, "momentum": 0.9})
    cfg["model"]["layers"][1]["activation"] = "exponential"
    cfg["data"]["scaling"] = "standardize"
    (tmp_path / "c.toml").write_text(toml_text(cfg))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "deepfit", "train", str(tmp_path / "c.toml"), "--out", str(out), "--no-progress"]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)

    assert done.returncode == 1, done.stderr
    assert "training diverged" in done.stderr and "deepfit find-lr" in done.stderr
    assert "checkpoints/ckpt-0000000019" in done.stderr and "no model was saved" in done.stderr
    final = json.loads((out / "final.json").read_text())
    assert final["status"] == "diverged"
    why = final["divergence"]
    assert why["step"] == 34 and why["epoch"] == 2
    assert np.isfinite(why["last_finite_loss"]) and why["learning_rate"] == pytest.approx(0.3)
    assert "find-lr" in why["hint"] and why["last_good_checkpoint"] == "checkpoints/ckpt-0000000019"
    # NaN weights are not saved as a model; the epoch that diverged has no row.
    assert not (out / "weights.safetensors").exists() and not (out / "model.json").exists()
    assert (out / "metrics.csv").read_text().count("\n") == 2  # header + epoch 1
    arrays, meta = read_checkpoint(out / why["last_good_checkpoint"])
    assert meta["step"] == 19 and all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")
    run = df.load_run(out)  # the record still loads (manifest checked), without a model
    assert run.model is None and run.final["status"] == "diverged"
    again = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=600)
    assert "already finished (diverged); nothing to do" in again.stderr and again.returncode == 1
