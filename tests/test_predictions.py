"""`deepfit predict` and `deepfit transfer`, end to end on a small slice of the bundled data."""

import deepfit as df  # first: it selects Keras's JAX backend

import json

import numpy as np
import pandas as pd
import pytest

from deepfit.cli import main

@pytest.mark.slow
def test_predict_writes_uncertainty_and_matches_the_runs_own_evaluation(tmp_path, capsys):
    cfg = df.load_config("configs/dropout.toml", {"data.train_size": 2000, "data.validation_size": 500,
                                                   "training.epochs": 1, "training.progress": False})
    run = df.train(cfg, tmp_path / "run")
    out = tmp_path / "preds.csv"
    args = ["predict", str(run.dir), "--data", "valid", "--mc", "5", "--out", str(out),
            "--figure", str(tmp_path / "r.png")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out)
    assert len(table) == 500
    assert {"label", "pred", "entropy", "mc_pred", "mc_entropy", "mc_mutual_information", "p_9", "mc_std_9"} <= set(table)
    det_acc = np.mean(table["pred"] == table["label"])
    # The deterministic pass agrees with the trainer's own evaluation of the validation set.
    np.testing.assert_allclose(det_acc, run.final["last"]["val_accuracy"], atol=1e-6)
    np.testing.assert_allclose(table[[f"p_{c}" for c in range(10)]].sum(axis=1), 1, atol=1e-4)
    assert (table["mc_mutual_information"] <= table["mc_entropy"] + 1e-6).all()
    assert f"accuracy {det_acc:.4f}" in printed and "MC dropout (5 passes)" in printed
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_on_a_missing_run_is_a_clean_error(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_transfer_runs_a_then_b_from_scratch_and_b_on_a(tmp_path, capsys):
    out = tmp_path / "transfer"
    code = main(["transfer", "--out", str(out), "--seed", "3", "--no-progress",
                 "data.train_size=100", "data.validation_size=500", "training.epochs=5"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 3
    assert 0 <= summary["task_b_on_a"]["test_accuracy"] <= 1
    on_a = df.load_run(out / "task_b_on_a")
    assert on_a.config.model.from_run == str(out / "task_a")
    assert [int(p) for p in on_a.history["phase"]] == [1, 1, 1, 1, 2]
    a = df.load_run(out / "task_a")  # its manifest still verifies: B on A did not touch A's files
    assert a.model.output_shape == (None, 8) and on_a.model.output_shape == (None, 1)
    np.testing.assert_array_equal(a.model.layers[-1].get_weights()[0].shape, (50, 8))
    assert "B on A, test acc" in capsys.readouterr().out
